"""The Python client: calls over the encrypted WebSocket protocol.

Python 客户端：通过加密 WebSocket 协议调用 System。

```python
async with hetu.client.connect("ws://127.0.0.1:2466/hetu/default") as c:
    data = await c.call("user_chat", "hi")
```

Subscriptions plug in through :meth:`Client.request` (send a request, get its
reply), :meth:`Client.on_push` (a handler per subscription id) and
:attr:`Client.reconnect_hooks` (run after a reconnect, before queued requests
are resent).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

from hetu.errors import HeTuError, ProtocolError
from hetu.pipeline import ClientHandshake, Pipeline
from hetu.pipeline.frames import FastFrames, client_frame
from hetu.protocol import (
    Call,
    ClientMsg,
    Err,
    Ok,
    Push,
    Subscribed,
    encoder,
    server_msg_decoder,
)
from hetu.subscription import Subscription, watch_range, watch_row

logger = logging.getLogger(__name__)

#: Close codes after which a reconnecting client gives up (docs/protocol.md).
FINAL_CLOSE_CODES = frozenset({1000, 4000, 4001, 4003})
MAX_MESSAGE_BYTES = 64 << 20


class CallError(HeTuError):
    """A request failed: ``code`` is one of ``hetu.protocol.ERROR_CODES``.

    Raised by :meth:`Client.call`. The connection stays usable. ``timeout`` means
    the outcome is unknown; other codes are final for that call.

    请求失败；``code`` 为错误码。连接仍可使用。``timeout`` 表示结果未知。
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ClosedError(HeTuError):
    """The connection is closed (``code``/``reason`` of the close, e.g. 4003
    ``kicked``) and will not reconnect. Not retryable on this client.

    连接已关闭且不会重连（如被踢下线）。
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason or 'no reason'}")
        self.code = code
        self.reason = reason


ReplyMsg = Ok | Subscribed


class _FastConnection(FastFrames, ClientConnection):
    """Hands complete binary frames straight to ``on_frame`` once set, skipping
    websockets' parser, receive queue and a task wake-up per message."""


class Client:
    """One logical connection to a HeTu deployment (use :func:`connect`).

    一个到 HeTu 部署的逻辑连接（用 :func:`connect` 创建）。
    """

    def __init__(
        self,
        urls: Sequence[str],
        compression: str = "zstd",
        encrypt: bool = True,
        auth_key: bytes = b"",
        reconnect: bool = False,
    ) -> None:
        self.urls = list(urls)
        self.compression = compression
        self.encrypt = encrypt
        self.reconnect = reconnect
        self._auth_key = auth_key
        #: Session id from the handshake; presented again on reconnect.
        self.token = ""
        #: The session's secret: proves the session on reconnect, never sent.
        self._secret = b""
        self.conn_id = 0
        self._url_index = 0
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._pipeline: Pipeline | None = None
        self._pending: dict[int, tuple[ClientMsg, asyncio.Future[ReplyMsg]]] = {}
        #: Request id -> (loop time it times out, its timeout in s).
        self._deadlines: dict[int, tuple[float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._push: dict[int, Callable[[Push], None]] = {}
        #: Awaited after each reconnect, before unanswered requests are resent.
        self.reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._closed: ClosedError | None = None
        #: Connected and past the handshake: requests are sent at once.
        self._online = False

    # --- public API ----------------------------------------------------------

    async def call(self, name: str, *args: Any, timeout_s: float = 30.0) -> Any:
        """Call System or endpoint ``name``; return its data or ``"ok"``.

        Raises:
            CallError: the call failed (the connection stays usable).
            ClosedError: the connection is closed for good.
        """
        if self._closed is not None:
            raise self._closed
        req_id = next(self._ids)
        # The body of request() inlined: one coroutine per call, not two.
        fut = self._submit(req_id, Call(req_id, name, list(args)), timeout_s)
        try:
            reply = await fut
        finally:
            self._pending.pop(req_id, None)
            self._deadlines.pop(req_id, None)
        return reply.data  # type: ignore[union-attr]  # a call's reply is Ok

    async def request(
        self, make: Callable[[int], ClientMsg], timeout_s: float = 30.0
    ) -> ReplyMsg:
        """Send the request ``make(request_id)`` and return its reply.

        With ``reconnect=True`` an unanswered request is resent with the same id
        on the new connection, so the server answers a repeated call from its
        first execution.

        Raises:
            CallError: an error reply, or ``timeout`` when none came in time.
            ClosedError: the connection is closed for good.
        """
        if self._closed is not None:
            raise self._closed
        req_id = next(self._ids)
        fut = self._submit(req_id, make(req_id), timeout_s)
        try:
            return await fut
        finally:
            self._pending.pop(req_id, None)
            self._deadlines.pop(req_id, None)

    def _submit(
        self, req_id: int, msg: ClientMsg, timeout_s: float
    ) -> asyncio.Future[ReplyMsg]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ReplyMsg] = loop.create_future()
        self._pending[req_id] = (msg, fut)
        deadline = loop.time() + timeout_s
        self._deadlines[req_id] = (deadline, timeout_s)
        if self._online:
            self._send(msg)
        # One lazy timer per client instead of one per request: it is armed for
        # the earliest deadline and re-armed when it fires.
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)
            self._timer_at = deadline
        return fut

    def _expire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        earliest: float | None = None
        for req_id, (deadline, timeout_s) in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[req_id]
                entry = self._pending.get(req_id)
                if entry is not None and not entry[1].done():
                    msg = f"no reply within {timeout_s:g} s"
                    entry[1].set_exception(CallError("timeout", msg))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._timer = asyncio.get_running_loop().call_at(earliest, self._expire)
            self._timer_at = earliest

    async def watch_range(
        self,
        component: str,
        index: str,
        left: Any,
        right: Any,
        limit: int = 10,
        desc: bool = False,
    ) -> Subscription:
        """Live view of rows with ``left <= index <= right`` (see hetu.subscription).

        Raises:
            CallError: ``bad_request`` or ``quota_exceeded``.
        """
        return await watch_range(self, component, index, left, right, limit, desc)

    async def watch_row(self, component: str, index: str, value: Any) -> Subscription:
        """Live view of the row whose ``index`` equals ``value`` (0 or 1 row).

        Raises:
            CallError: ``bad_request`` or ``quota_exceeded``.
        """
        return await watch_row(self, component, index, value)

    def on_push(self, sub: int, handler: Callable[[Push], None] | None) -> None:
        """Route pushes of subscription ``sub`` to ``handler`` (None: stop)."""
        if handler is None:
            self._push.pop(sub, None)
        else:
            self._push[sub] = handler

    async def close(self) -> None:
        """Close the connection (code 1000); pending requests get ClosedError."""
        self.reconnect = False
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_pending(ClosedError(1000, "closed by client"))

    @property
    def closed(self) -> ClosedError | None:
        """Why the connection ended for good, or None while it is usable."""
        return self._closed

    # --- internals -----------------------------------------------------------

    def _send(self, msg: ClientMsg) -> None:
        # Written without awaiting (requests are small; no flow control needed),
        # which saves a coroutine and a context manager per request.
        ws, pipeline = self._ws, self._pipeline
        assert ws is not None and pipeline is not None
        if ws.protocol.state is State.OPEN:
            ws.transport.write(client_frame(pipeline.encode(encoder.encode(msg))))

    async def open_first(self) -> None:
        """Open the first URL that accepts, in list order.

        Raises:
            ProtocolError, OSError, InvalidHandshake: as :meth:`open`, from the
            last URL, when none accepts.
        """
        for attempt in range(len(self.urls)):
            try:
                await self.open()
                return
            except (OSError, InvalidHandshake, ProtocolError, TimeoutError) as exc:
                if attempt == len(self.urls) - 1:
                    raise
                logger.info("gateway %s unavailable: %s", self.urls[attempt], exc)
                self._url_index += 1

    async def open(self) -> None:
        """Connect to the next URL and do the handshake.

        Raises:
            ProtocolError: the server refused the handshake.
            OSError, InvalidHandshake: no gateway reachable.
        """
        url = self.urls[self._url_index % len(self.urls)]
        hs = ClientHandshake(
            self.compression, self.encrypt, self._auth_key, self.token, self._secret
        )
        ws = await ws_connect(
            url,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            open_timeout=10,
            create_connection=_FastConnection,
        )
        try:
            await ws.send(hs.hello_frame())
            welcome_frame = await ws.recv()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            reason = rcvd.reason if rcvd else "closed during handshake"
            raise ProtocolError(f"handshake refused: {reason}") from None
        if isinstance(welcome_frame, str):
            await ws.close()
            raise ProtocolError("bad welcome")
        welcome, self._pipeline = hs.finish(welcome_frame, MAX_MESSAGE_BYTES)
        self.token, self._secret = welcome.token, hs.secret
        self.conn_id = welcome.conn
        self._ws = ws
        if isinstance(ws, _FastConnection):
            ws.on_frame = self._on_frame
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        self._online = True

    def _on_frame(self, frame: bytes) -> None:
        pipeline, ws = self._pipeline, self._ws
        assert pipeline is not None and ws is not None
        try:
            msg = server_msg_decoder.decode(pipeline.decode(frame))
        except (ProtocolError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.error("bad frame from server: %s", exc)
            asyncio.get_running_loop().create_task(ws.close(4002, "bad frame"))
            return
        self._dispatch(msg)

    async def _read(self, ws: ClientConnection) -> None:
        # Frames normally arrive through _on_frame; this loop takes the rest
        # (fragmented messages) and notices the close.
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if isinstance(frame, bytes):
                    self._on_frame(frame)
        self._online = False
        code, reason = ws.close_code or 1006, ws.close_reason or ""
        if self.reconnect and code not in FINAL_CLOSE_CODES:
            self._reader = asyncio.get_running_loop().create_task(self._reconnect())
            return
        self._fail_pending(ClosedError(code, reason))

    def _dispatch(self, msg: Any) -> None:
        if type(msg) is Push:
            handler = self._push.get(msg.sub)
            if handler is not None:
                handler(msg)
            return
        entry = self._pending.get(msg.id)
        if entry is None or entry[1].done():
            return
        if type(msg) is Err:
            entry[1].set_exception(CallError(msg.code, msg.message))
        else:
            entry[1].set_result(msg)

    def _fail_pending(self, exc: ClosedError) -> None:
        self._closed = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)

    async def _reconnect(self) -> None:
        delay_s = 0.05
        session = self.token
        while self.reconnect:
            self._url_index += 1
            try:
                await self.open()
                break
            except (OSError, InvalidHandshake, ProtocolError, TimeoutError) as exc:
                logger.info("reconnect failed: %s", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
        if not self.reconnect:  # closed by the client while reconnecting
            if self._ws is not None:
                await self._ws.close()
            self._fail_pending(ClosedError(1000, "closed by client"))
            return
        for hook in self.reconnect_hooks:
            await hook()
        lost = self.token != session  # the gateway no longer knew the session
        for msg, fut in list(self._pending.values()):
            if fut.done():
                continue
            if lost and isinstance(msg, Call):
                # Its request id lived in the old session: resent under the new
                # one it could run twice, so its outcome stays unknown.
                fut.set_exception(
                    CallError("timeout", "session expired during a reconnect")
                )
            else:
                self._send(msg)


@contextlib.asynccontextmanager
async def connect(
    url: str | Sequence[str],
    compression: str = "zstd",
    encrypt: bool = True,
    auth_key: str | bytes | None = None,
    reconnect: bool = False,
) -> AsyncIterator[Client]:
    """Open a client to ``ws://host:port/hetu/<instance>`` (or the first of a list
    that accepts).

    打开到网关的客户端连接；``reconnect=True`` 时断线自动重连并重发未答复的请求。

    Raises:
        ProtocolError: the gateway refused the handshake (e.g. wrong auth key).
        OSError: no gateway reachable.
    """
    urls = [url] if isinstance(url, str) else list(url)
    key = auth_key.encode() if isinstance(auth_key, str) else (auth_key or b"")
    client = Client(urls, compression, encrypt, key, reconnect)
    await client.open_first()
    try:
        yield client
    finally:
        await client.close()
