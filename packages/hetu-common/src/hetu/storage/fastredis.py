"""A lean, auto-pipelining Redis client for the storage hot path.

为存储热路径准备的精简、自动流水线的 Redis 客户端。

redis-py's asyncio client spends tens of microseconds of Python per command (pool,
timeouts, retries, instrumentation). ``FastRedis`` keeps one connection, packs
commands with hiredis, coalesces the commands of all tasks issued in one event-loop
iteration into one write, and matches replies to requests in order (Redis answers
in order). Replies are raw hiredis values (``HGETALL`` gives a flat list). Errors
are raised as redis-py's exception classes, so callers catch the same errors for
both clients.

Not for blocking commands (``BLPOP``, ``XREAD BLOCK``, pub/sub): they would stall
every command queued behind them; use redis-py for those.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buffer: list[bytes] = []
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            fut = waiting.popleft()
            if fut.done():  # its caller was cancelled; the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(BaseParser.parse_error(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc}")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(self.lost)

    def flush(self) -> None:
        if self.transport is not None and self.buffer:
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()


class FastRedis:
    """``await FastRedis.connect(host, port)``; ``await r.execute_command(*args)``.

    Reconnects on the next command after the connection was lost (commands in
    flight at that moment fail with ``redis.exceptions.ConnectionError``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0) -> None:
        self.host, self.port, self.db = host, port, db
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    async def connect(
        cls, host: str = "127.0.0.1", port: int = 6379, db: int = 0
    ) -> FastRedis:
        """A client with its connection open.

        Raises:
            OSError: Redis is not reachable.
        """
        client = cls(host, port, db)
        await client._ensure()
        return client

    @classmethod
    async def from_url(cls, url: str) -> FastRedis:
        """``redis://host:port/db`` (no auth, no TLS)."""
        from urllib.parse import urlparse

        u = urlparse(url)
        db = int(u.path.strip("/") or 0)
        return await cls.connect(u.hostname or "127.0.0.1", u.port or 6379, db)

    async def _ensure(self) -> _Protocol:
        proto = self._proto
        if proto is not None and proto.lost is None:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is None or self._proto.lost is not None:
                loop = asyncio.get_running_loop()
                _, proto = await loop.create_connection(_Protocol, self.host, self.port)
                self._proto = proto
                if self.db:
                    await self._send(proto, ("SELECT", self.db))
        assert self._proto is not None
        return self._proto

    def _send(self, proto: _Protocol, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        if not proto.buffer:
            asyncio.get_running_loop().call_soon(proto.flush)
        proto.buffer.append(hiredis.pack_command(args))
        proto.waiting.append(fut)
        return fut

    async def execute_command(self, *args: Any) -> Any:
        """Send one command; its raw reply (bytes, int, list, None)."""
        proto = self._proto
        if proto is None or proto.lost is not None:
            proto = await self._ensure()
        return await self._send(proto, args)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, script: str | bytes) -> Any:
        return await self.execute_command("SCRIPT", "LOAD", script)

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.flush()
            proto.transport.close()
