"""A negotiated pipeline: msgpack bytes -> compression -> encryption -> frame.

协商好的管道：msgpack 字节 → 压缩 → 加密 → 帧。
"""

from __future__ import annotations

from hetu.pipeline.compression import Compression
from hetu.pipeline.crypto import Encryption


class Pipeline:
    """Encode outgoing and decode incoming frames of one connection.

    ``encryption`` is ``(send_key, recv_key)`` or ``None`` for plain frames.

    Raises:
        ProtocolError: from :meth:`decode` on a frame that fails decryption or
            decompression.
    """

    __slots__ = ("_comp", "_enc", "compression", "encrypted")

    def __init__(
        self, compression: Compression, encryption: tuple[bytes, bytes] | None
    ) -> None:
        self._comp = compression
        self._enc = Encryption(*encryption) if encryption else None
        self.compression = compression.name
        self.encrypted = encryption is not None

    def encode(self, data: bytes) -> bytes:
        data = self._comp.compress(data)
        return self._enc.encrypt(data) if self._enc is not None else data

    def decode(self, frame: bytes) -> bytes:
        if self._enc is not None:
            frame = self._enc.decrypt(frame)
        return self._comp.decompress(frame)
