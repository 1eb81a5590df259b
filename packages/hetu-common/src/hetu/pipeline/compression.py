"""Compression layer of the message pipeline: none, zlib or zstd.

消息管道的压缩层：不压缩、zlib 或 zstd。

With a codec other than ``none`` every frame body starts with one flag byte:
``0`` the rest is the message as is, ``1`` the rest is compressed. Small messages
skip compression because it costs more than it saves.
"""

from __future__ import annotations

import zlib
from typing import Literal

import zstandard

from hetu.errors import ProtocolError

CompressionName = Literal["none", "zlib", "zstd"]
COMPRESSIONS: tuple[CompressionName, ...] = ("zstd", "zlib", "none")
#: Messages shorter than this are sent uncompressed (flag byte 0).
MIN_COMPRESS_BYTES = 256

_RAW = b"\x00"
_PACKED = b"\x01"


class NoCompression:
    """Identity codec (no flag byte). 不压缩。"""

    name: CompressionName = "none"

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return data


class ZlibCompression:
    """zlib (RFC 1950 stream with header) behind a flag byte. zlib 压缩。"""

    name: CompressionName = "zlib"

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def compress(self, data: bytes) -> bytes:
        if len(data) < MIN_COMPRESS_BYTES:
            return _RAW + data
        return _PACKED + zlib.compress(data, 1)

    def decompress(self, data: bytes) -> bytes:
        flag, body = data[:1], data[1:]
        if flag == _RAW:
            return body
        if flag != _PACKED:
            raise ProtocolError("bad compression flag byte")
        d = zlib.decompressobj()
        try:
            out = d.decompress(body, self._max_bytes)
        except zlib.error as exc:
            raise ProtocolError(f"bad zlib data: {exc}") from None
        if d.unconsumed_tail or not d.eof:
            raise ProtocolError("zlib data too large or truncated")
        return out


class ZstdCompression:
    """zstd (level 1, one frame per message) behind a flag byte. zstd 压缩。"""

    name: CompressionName = "zstd"

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._c = zstandard.ZstdCompressor(level=1)
        self._d = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        if len(data) < MIN_COMPRESS_BYTES:
            return _RAW + data
        return _PACKED + self._c.compress(data)

    def decompress(self, data: bytes) -> bytes:
        flag, body = data[:1], data[1:]
        if flag == _RAW:
            return body
        if flag != _PACKED:
            raise ProtocolError("bad compression flag byte")
        try:
            size = zstandard.frame_content_size(body)
            if size > self._max_bytes:
                raise ProtocolError("zstd frame declares a size over the limit")
            return self._d.decompress(body, max_output_size=self._max_bytes)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"bad zstd data: {exc}") from None


Compression = NoCompression | ZlibCompression | ZstdCompression


def make_compression(name: str, max_bytes: int) -> Compression:
    """Return the codec called ``name``; ``max_bytes`` caps a decompressed message.

    Raises:
        ProtocolError: unknown codec name.
    """
    if name == "zstd":
        return ZstdCompression(max_bytes)
    if name == "zlib":
        return ZlibCompression(max_bytes)
    if name == "none":
        return NoCompression()
    raise ProtocolError(f"unknown compression {name!r}; use one of {COMPRESSIONS}")
