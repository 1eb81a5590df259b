"""HeTu's lean Redis client for the hot paths of gateway, worker and storage.

网关、逻辑进程与存储热路径共用的精简 Redis 客户端。

redis-py's asyncio client spends tens of microseconds of Python per command (pool,
timeouts, retries, instrumentation). ``FastRedis`` keeps one connection (an
``asyncio.Protocol`` with a hiredis reader), coalesces every command issued during
one event-loop iteration into one socket write, and matches replies to requests
in order (Redis answers in order). Three ways to use it:

- ``await r.execute_command(*args)``: the raw hiredis reply (``HGETALL`` gives a
  flat list); an error reply raises redis-py's exception class, so callers catch
  the same errors for both clients.
- ``r.send(pack_command(...), callback)``: fire and forget; ``callback(reply)``
  runs with the reply, or with the exception for an error reply or a lost
  connection. No Future or Task per command.
- ``FastRedis(on_message=cb)`` + ``await r.subscribe(channel)``: pub/sub;
  ``cb(channel, data)`` runs for each message. Channels are re-subscribed after
  a reconnect.

A lost connection fails the commands in flight with
``redis.exceptions.ConnectionError``; the next ``execute_command`` (or
:meth:`FastRedis.ensure`) reconnects. Blocking commands (``XREAD BLOCK``) stall
every command queued behind them: give them a connection of their own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import unquote, urlparse

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError

from hetu.errors import ConfigError

ReplyCallback = Callable[[Any], None]
MessageCallback = Callable[[bytes, bytes], None]
_Future = asyncio.Future
_ReplyError = hiredis.ReplyError
_MESSAGE = b"message"


def pack_command(*args: Any) -> bytes:
    """One command as a RESP array of bulk strings (for :meth:`FastRedis.send`)."""
    return hiredis.pack_command(args)


class _Protocol(asyncio.Protocol):
    """One connection. ``waiting`` holds, per command sent, the Future or the
    callback (or None) that takes its reply."""

    def __init__(self, on_message: MessageCallback | None) -> None:
        # Any: uvloop's transports are not asyncio.Transport subclasses.
        self.transport: Any = None
        self.reader = hiredis.Reader()
        self.waiting: deque[Any] = deque()
        self.buffer: list[bytes] = []
        self.lost: Exception | None = None
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.on_message = on_message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader, waiting, on_message = self.reader, self.waiting, self.on_message
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if (
                on_message is not None
                and type(reply) is list
                and reply
                and reply[0] == _MESSAGE
            ):
                on_message(reply[1], reply[2])
                continue
            waiter = waiting.popleft()
            if type(reply) is _ReplyError:
                error = BaseParser.parse_error(str(reply))
                if type(waiter) is _Future:
                    if not waiter.done():
                        waiter.set_exception(error)
                elif waiter is not None:
                    waiter(error)
            elif type(waiter) is _Future:
                if not waiter.done():  # else its caller was cancelled: dropped
                    waiter.set_result(reply)
            elif waiter is not None:
                waiter(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc}")
        self.transport = None
        self.buffer.clear()
        while self.waiting:
            waiter = self.waiting.popleft()
            if type(waiter) is _Future:
                if not waiter.done():
                    waiter.set_exception(self.lost)
            elif waiter is not None:
                waiter(self.lost)
        if not self.closed.done():
            self.closed.set_result(None)

    def flush(self) -> None:
        if self.transport is not None and self.buffer:
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()


class FastRedis:
    """``await FastRedis.from_url(url)``; then ``await r.execute_command(*args)``,
    ``r.send(packed, callback)`` or, with ``on_message``, ``await
    r.subscribe(channel)``. Constructing does no I/O.

    精简的自动流水线 Redis 客户端（等待式、回调式与发布/订阅）。
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        on_message: MessageCallback | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self._username, self._password = username, password
        self._on_message = on_message
        self._timeout_s = timeout_s
        self._channels: list[str] = []
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    async def connect(
        cls, host: str = "127.0.0.1", port: int = 6379, db: int = 0
    ) -> Self:
        """A client with its connection open.

        Raises:
            OSError, TimeoutError: Redis is not reachable.
        """
        client = cls(host, port, db)
        await client.ensure()
        return client

    @classmethod
    async def from_url(
        cls, url: str, on_message: MessageCallback | None = None, timeout_s: float = 5.0
    ) -> Self:
        """Connect to ``redis://[user:password@]host:port/db`` (no TLS).

        Raises:
            ConfigError: the URL is not a ``redis://`` URL.
            OSError, TimeoutError: Redis is not reachable.
        """
        u = urlparse(url)
        if u.scheme != "redis":
            raise ConfigError(f"Redis URL must start with redis:// (got {url!r})")
        client = cls(
            u.hostname or "127.0.0.1",
            u.port or 6379,
            int(u.path.strip("/") or 0),
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            on_message=on_message,
            timeout_s=timeout_s,
        )
        await client.ensure()
        return client

    @property
    def connected(self) -> bool:
        proto = self._proto
        return proto is not None and proto.lost is None

    async def wait_lost(self) -> None:
        """Return when the current connection is lost (at once if there is none)."""
        if self._proto is not None:
            await asyncio.shield(self._proto.closed)

    async def ensure(self) -> None:
        """Open the connection if it is not open (re-subscribing its channels).

        Raises:
            OSError, TimeoutError: Redis is not reachable.
            redis.exceptions.RedisError: AUTH or SELECT failed.
        """
        if self.connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                return
            loop = asyncio.get_running_loop()
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self._on_message), self.host, self.port
                ),
                self._timeout_s,
            )
            try:
                if self._password:
                    auth = ("AUTH", self._username or "default", self._password)
                    await self._queue(proto, auth)
                if self.db:
                    await self._queue(proto, ("SELECT", self.db))
                for channel in self._channels:
                    await self._queue(proto, ("SUBSCRIBE", channel))
            except BaseException:
                proto.transport.close()
                raise
            self._proto = proto

    def _queue(self, proto: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut = proto.loop.create_future()
        if not proto.buffer:
            proto.loop.call_soon(proto.flush)
        proto.buffer.append(hiredis.pack_command(args))
        proto.waiting.append(fut)
        return fut

    def execute_command(self, *args: Any) -> Awaitable[Any]:
        """Send one command; await its raw reply (bytes, int, list, None).

        Raises (when awaited):
            redis.exceptions.ResponseError: Redis answered with an error.
            redis.exceptions.ConnectionError: the connection was lost.
        """
        proto = self._proto
        if proto is None or proto.lost is not None:
            return self._reconnect_and_execute(args)
        return self._queue(proto, args)  # a Future: no coroutine per command

    async def _reconnect_and_execute(self, args: tuple[Any, ...]) -> Any:
        await self.ensure()
        assert self._proto is not None
        return await self._queue(self._proto, args)

    def send(self, command: bytes, callback: ReplyCallback | None = None) -> None:
        """Queue one packed command (see :func:`pack_command`) without waiting.

        ``callback(reply)`` gets the reply, or the exception for an error reply or
        a lost connection (at once when there is no connection).
        """
        proto = self._proto
        if proto is None or proto.lost is not None:
            if callback is not None:
                callback(RedisConnectionError("not connected to Redis"))
            return
        if not proto.buffer:
            proto.loop.call_soon(proto.flush)
        proto.buffer.append(command)
        proto.waiting.append(callback)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def script_load(self, script: str | bytes) -> Awaitable[Any]:
        return self.execute_command("SCRIPT", "LOAD", script)

    async def subscribe(self, *channels: str) -> None:
        """Subscribe to ``channels`` (kept across reconnects); needs ``on_message``.

        Raises:
            redis.exceptions.ConnectionError: the connection was lost.
        """
        if self._on_message is None:
            raise TypeError("subscribe needs a client created with on_message")
        for channel in channels:
            if channel not in self._channels:
                self._channels.append(channel)
            await self.execute_command("SUBSCRIBE", channel)

    def close(self) -> None:
        """Close the connection (queued commands are written first)."""
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.flush()
            proto.transport.close()

    async def aclose(self) -> None:
        self.close()
