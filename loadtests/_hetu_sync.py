"""A small synchronous HeTu client for load tests (locust runs on gevent).

负载测试用的小型同步 HeTu 客户端（locust 基于 gevent，无法使用 asyncio 客户端）。

It reuses the sans-IO parts of ``hetu`` (``hetu.pipeline`` handshake and codecs,
``hetu.protocol`` messages) over ``websockets.sync.client``, whose sockets gevent's
monkey-patching makes cooperative. One request at a time per client, no
reconnect; subscriptions as raw pushes (no local view): enough to measure calls
and change delivery. The file name starts with ``_`` so
``locust -f loadtests/`` does not load it as a locustfile.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hetu.client import CallError, ClosedError
from hetu.errors import ProtocolError
from hetu.pipeline import ClientHandshake, Pipeline
from hetu.protocol import (
    Call,
    ClientMsg,
    Err,
    Ok,
    Push,
    ServerMsg,
    Subscribed,
    WatchRange,
    encoder,
    server_msg_decoder,
)

MAX_MESSAGE_BYTES = 64 << 20


class SyncClient:
    """One blocking connection to ``ws://host:port/hetu/<instance>``.

    一个阻塞式连接。

    Raises (from :meth:`open`):
        ProtocolError: the gateway refused the handshake (e.g. wrong auth key).
        OSError: the gateway is not reachable.
    """

    def __init__(
        self,
        url: str,
        compression: str = "zstd",
        encrypt: bool = True,
        auth_key: str = "",
    ) -> None:
        self.url = url
        self.compression = compression
        self.encrypt = encrypt
        self.auth_key = auth_key.encode()
        self.conn_id = 0
        #: Bytes of the last reply frame (what locust reports as response length).
        self.last_reply_bytes = 0
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._pipeline: Pipeline | None = None
        self._pushes: deque[Push] = deque()  # pushes that arrived during a request

    def open(self, timeout_s: float = 10.0) -> None:
        """Connect and do the handshake (compression, X25519 key exchange)."""
        hs = ClientHandshake(self.compression, self.encrypt, self.auth_key)
        ws = connect(
            self.url, compression=None, max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout_s,
        )  # fmt: skip
        try:
            ws.send(hs.hello_frame())
            frame = ws.recv(timeout_s)
        except ConnectionClosed as exc:
            ws.close()
            reason = exc.rcvd.reason if exc.rcvd else "closed during handshake"
            raise ProtocolError(f"handshake refused: {reason}") from None
        if isinstance(frame, str):
            ws.close()
            raise ProtocolError("bad welcome")
        welcome, self._pipeline = hs.finish(frame, MAX_MESSAGE_BYTES)
        self.conn_id = welcome.conn
        self._ws = ws

    def call(self, name: str, *args: Any, timeout_s: float = 10.0) -> Any:
        """Call System or endpoint ``name``; return its data or ``"ok"``.

        Raises:
            CallError: an error reply (``code`` as in docs/protocol.md), or
                ``timeout`` when no reply came within ``timeout_s``.
            ClosedError: the connection is closed.
        """
        reply = self._request(lambda rid: Call(rid, name, list(args)), timeout_s)
        assert isinstance(reply, Ok)
        return reply.data

    def watch_range(
        self, comp: str, index: str, left: Any, right: Any, limit: int = 10,
        desc: bool = False, timeout_s: float = 10.0,
    ) -> Subscribed:  # fmt: skip
        """Subscribe to ``left <= comp.index <= right``; the reply holds the
        subscription id (``.sub``), the snapshot rows and its change id. Later
        changes come from :meth:`next_push`.

        Raises:
            CallError: the gateway refused the watch (``bad_request``, ...).
            ClosedError: the connection is closed.
        """
        reply = self._request(
            lambda rid: WatchRange(rid, comp, index, left, right, limit, desc),
            timeout_s,
        )
        assert isinstance(reply, Subscribed)
        return reply

    def next_push(self, timeout_s: float) -> Push | None:
        """The next change pushed for a subscription, or None after ``timeout_s``.

        Raises:
            ClosedError: the connection is closed.
        """
        if self._pushes:
            return self._pushes.popleft()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                msg = self._recv(deadline)
                if type(msg) is Push:
                    return msg
        except TimeoutError:
            return None

    def _request(self, make: Callable[[int], ClientMsg], timeout_s: float) -> Any:
        ws, pipeline = self._ws, self._pipeline
        if ws is None or pipeline is None:
            raise ClosedError(1000, "not connected: call open() first")
        req_id = next(self._ids)
        deadline = time.monotonic() + timeout_s
        try:
            ws.send(pipeline.encode(encoder.encode(make(req_id))))
            while True:
                msg = self._recv(deadline)
                if isinstance(msg, Push):
                    self._pushes.append(msg)
                elif isinstance(msg, Err):
                    if msg.id in (req_id, 0):
                        raise CallError(msg.code, msg.message)
                elif msg.id == req_id:
                    return msg
                # Anything else is a late reply to a timed-out request: skip it.
        except TimeoutError:
            raise CallError("timeout", f"no reply within {timeout_s:g} s") from None

    def _recv(self, deadline: float) -> ServerMsg:
        """The next message (TimeoutError at ``deadline``)."""
        ws, pipeline = self._ws, self._pipeline
        assert ws is not None and pipeline is not None
        try:
            frame = ws.recv(max(deadline - time.monotonic(), 0.0))
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            code, reason = (rcvd.code, rcvd.reason) if rcvd else (1006, "")
            raise ClosedError(code, reason) from None
        if isinstance(frame, str):
            raise ProtocolError("text frame from the gateway")
        self.last_reply_bytes = len(frame)
        return server_msg_decoder.decode(pipeline.decode(frame))

    def close(self) -> None:
        """Close the WebSocket (code 1000)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None
