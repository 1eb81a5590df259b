"""A small pipelined RESP2 client for the gateway's hot path (XADD and pub/sub).

网关热路径（XADD 与发布/订阅）使用的小型流水线 RESP2 客户端。

redis-py costs tens of microseconds per command; the hot path needs only "write
many commands in one syscall, read replies in order" and "receive pub/sub
messages", which an ``asyncio.Protocol`` with a hiredis reader does for a few.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis

from hetu.errors import ConfigError

logger = logging.getLogger(__name__)

ReplyCallback = Callable[[Any], None]
MessageCallback = Callable[[bytes, bytes], None]


def pack_command(*args: bytes | str | int) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class RespConnection(asyncio.Protocol):
    """One Redis connection. Commands queued with :meth:`send` go out together at
    the next loop iteration; replies reach their callbacks in order. In pub/sub mode
    (:meth:`subscribe`) messages go to ``on_message(channel, data)``.
    """

    def __init__(self, on_message: MessageCallback | None = None) -> None:
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._callbacks: deque[ReplyCallback | None] = deque()
        self._on_message = on_message
        self._flush_scheduled = False
        self.closed = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        err = ConnectionError(f"Redis connection lost: {exc}")
        while self._callbacks:
            cb = self._callbacks.popleft()
            if cb is not None:
                cb(err)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if (
                self._on_message is not None
                and isinstance(reply, list)
                and reply
                and reply[0] == b"message"
            ):
                self._on_message(reply[1], reply[2])
                continue
            cb = self._callbacks.popleft() if self._callbacks else None
            if cb is not None:
                cb(reply)

    # commands
    @property
    def is_connected(self) -> bool:
        return self._transport is not None

    def send(self, command: bytes, callback: ReplyCallback | None = None) -> None:
        """Queue one packed command; ``callback`` gets its reply (an exception
        instance for an error reply or a lost connection)."""
        if self._transport is None:
            if callback is not None:
                callback(ConnectionError("Redis connection lost"))
            return
        self._out.append(command)
        self._callbacks.append(callback)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._transport is not None and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    async def execute(self, *args: bytes | str | int) -> Any:
        """Send one command and wait for its reply.

        Raises:
            hiredis.ReplyError: Redis answered with an error.
            ConnectionError: the connection was lost.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(reply: Any) -> None:
            if fut.done():
                return
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

        self.send(pack_command(*args), done)
        return await fut

    async def subscribe(self, *channels: str) -> None:
        for channel in channels:
            await self.execute("SUBSCRIBE", channel)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_connection(
    url: str, on_message: MessageCallback | None = None, timeout_s: float = 5.0
) -> RespConnection:
    """Connect to ``redis://[user:password@]host:port/db``.

    Raises:
        ConfigError: the URL is not a ``redis://`` URL.
        OSError, TimeoutError: Redis is unreachable.
    """
    parts = urlparse(url)
    if parts.scheme != "redis":
        raise ConfigError(f"Redis URL must start with redis:// (got {url!r})")
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: RespConnection(on_message),
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
        ),
        timeout_s,
    )
    if parts.password:
        user = unquote(parts.username or "default")
        await conn.execute("AUTH", user, unquote(parts.password))
    db = parts.path.strip("/")
    if db and db != "0" and on_message is None:
        await conn.execute("SELECT", db)
    return conn
