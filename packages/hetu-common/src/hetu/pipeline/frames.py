"""WebSocket framing on the hot path, beside the websockets library.

热路径上的 WebSocket 分帧（绕过 websockets 库的逐帧开销）。

websockets parses every frame through generators, a stream buffer and event
objects, and builds every outgoing frame through a ``Frame`` and a ``BytesIO``:
tens of microseconds per message. :class:`FastFrames` (a mixin for websockets'
asyncio ``ClientConnection`` / ``ServerConnection``) parses complete,
unfragmented binary data frames itself and hands their payloads to
:attr:`FastFrames.on_frame`; every other frame (control frames, text,
fragments, oversized or malformed ones) is passed whole to websockets, which
handles it as usual (pings, closing handshake, errors). :func:`server_frame` and
:func:`client_frame` build outgoing binary frames in one ``bytes``.

Taking over is safe only at a frame boundary of websockets' own parser, so it
starts once websockets holds no buffered bytes and waits for a new frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from websockets.protocol import State
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

_OPEN = State.OPEN
_BINARY_FIN = 0x82  # FIN, no RSV bits, opcode 2
_AT_EOF_CODE = StreamReader.at_eof.__code__
# Header of a small binary frame (payload under 126 bytes), by length.
_SMALL = [bytes((_BINARY_FIN, n)) for n in range(126)]
_SMALL_MASKED = [bytes((_BINARY_FIN, 0x80 | n)) for n in range(126)]


def server_frame(payload: bytes) -> bytes:
    """An unmasked binary frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        return _SMALL[n] + payload
    if n < 65536:
        return b"\x82\x7e" + n.to_bytes(2, "big") + payload
    return b"\x82\x7f" + n.to_bytes(8, "big") + payload


def client_frame(payload: bytes) -> bytes:
    """A masked binary frame (what a client must send, RFC 6455 §5.3)."""
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        head = _SMALL_MASKED[n]
    elif n < 65536:
        head = b"\x82\xfe" + n.to_bytes(2, "big")
    else:
        head = b"\x82\xff" + n.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


def _header(buf: bytes, pos: int, size: int) -> tuple[int, int] | None:
    """(payload offset, payload length) of the frame at ``pos``; None if its
    header is incomplete (at least 2 bytes are there)."""
    b1 = buf[pos + 1]
    length = b1 & 0x7F
    head = pos + 2
    if length == 126:
        if size - pos < 4:
            return None
        length = int.from_bytes(buf[head : head + 2], "big")
        head += 2
    elif length == 127:
        if size - pos < 10:
            return None
        length = int.from_bytes(buf[head : head + 8], "big")
        head += 8
    if b1 & 0x80:
        head += 4
    return head, length


def _at_frame_boundary(protocol: Any) -> bool:
    """websockets' parser holds no bytes and waits for the start of a frame."""
    if protocol.state is not _OPEN or protocol.current_size is not None:
        return False
    if protocol.reader.buffer:
        return False
    gen = protocol.parser  # the server's parser delegates to the frame parser
    while (inner := getattr(gen, "gi_yieldfrom", None)) is not None:
        gen = inner
    return getattr(gen, "gi_code", None) is _AT_EOF_CODE


class FastFrames:
    """Mixin placed before websockets' asyncio connection class.

    Once :attr:`on_frame` is set, complete binary messages arriving in one frame
    go to ``on_frame(payload)`` straight from ``data_received``.
    """

    on_frame: Callable[[bytes], None] | None = None
    #: Whether incoming frames must be masked (True on the server side).
    masked_frames = False
    _fast = False
    #: Bytes of an unfinished frame, kept as chunks and joined once the frame is
    #: complete (``_have >= _need``), so a large frame is not copied per chunk.
    _pending: list[bytes] | None = None
    _have = 0
    _need = 0

    def data_received(self, data: bytes) -> None:
        on_frame = self.on_frame
        protocol: Any = self.protocol  # type: ignore[attr-defined]
        if not self._fast:
            if on_frame is None or not _at_frame_boundary(protocol):
                super().data_received(data)  # type: ignore[misc]
                return
            self._fast = True
        buf = self._join(data)
        if buf is None:
            return
        size = len(buf)
        pos = 0
        need = 0  # bytes from pos that complete the frame, when known
        max_size = protocol.max_message_size
        masked = self.masked_frames
        while size - pos >= 2:
            header = _header(buf, pos, size)
            if header is None:
                break
            head, length = header
            is_masked = buf[pos + 1] & 0x80
            end = head + length
            if max_size is not None and length > max_size:
                self._give_back(buf[pos:])  # websockets closes with 1009
                return
            if end > size:
                need = end - pos
                break
            if (
                buf[pos] == _BINARY_FIN
                and bool(is_masked) is masked
                and protocol.state is _OPEN
                and on_frame is not None
            ):
                if is_masked:
                    payload = apply_mask(buf[head:end], buf[head - 4 : head])
                else:
                    payload = buf[head:end]
                on_frame(payload)
            else:
                super().data_received(buf[pos:end])  # type: ignore[misc]
                if not _at_frame_boundary(protocol):
                    self._give_back(buf[end:])
                    return
            pos = end
        if pos < size:
            self._pending = [buf[pos:]]
            self._have = size - pos
            self._need = need

    def _join(self, data: bytes) -> bytes | None:
        """``data`` after the unfinished frame's bytes, or None while it is short."""
        pending = self._pending
        if pending is None:
            return data
        pending.append(data)
        self._have += len(data)
        if self._have < self._need:
            return None
        self._pending = None
        return b"".join(pending)

    def _give_back(self, rest: bytes) -> None:
        """Hand the remaining bytes to websockets and stop parsing them here."""
        self._fast = False
        self._pending = None
        if rest:
            super().data_received(rest)  # type: ignore[misc]
