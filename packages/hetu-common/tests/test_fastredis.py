"""FastRedis: replies in order under concurrency, redis-py errors, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from hetu.redis_server import RedisServer
from hetu.storage.fastredis import FastRedis


async def test_concurrent_commands_get_their_own_replies(redis_url: str) -> None:
    r = await FastRedis.from_url(redis_url)
    try:

        async def one(i: int) -> None:
            await r.execute_command("SET", f"k{i}", i)
            assert await r.execute_command("GET", f"k{i}") == str(i).encode()
            await r.execute_command("HSET", f"h{i}", "a", b"\x00\xff", "b", 2.5)
            assert await r.execute_command("HGETALL", f"h{i}") == [
                b"a",
                b"\x00\xff",
                b"b",
                b"2.5",
            ]

        await asyncio.gather(*(one(i) for i in range(500)))
        assert await r.execute_command("DBSIZE") == 1000
    finally:
        await r.aclose()


async def test_errors_are_redis_py_exceptions(redis_url: str) -> None:
    r = await FastRedis.from_url(redis_url)
    try:
        with pytest.raises(NoScriptError):
            await r.evalsha("0" * 40, 0)
        sha = await r.script_load("return 7")
        assert await r.evalsha(sha.decode(), 0) == 7
        with pytest.raises(ResponseError, match="unknown command"):
            await r.execute_command("NOSUCHCOMMAND")
        assert await r.execute_command("PING") == b"PONG"  # still in step
    finally:
        await r.aclose()


async def test_reconnects_after_server_restart(
    redis_factory: Callable[[], RedisServer],
) -> None:
    server = redis_factory()
    r = await FastRedis.connect(port=server.port)
    try:
        await r.execute_command("SET", "a", 1)
        server.restart()
        with pytest.raises(RedisConnectionError):
            for _ in range(100):  # the loss is noticed on the next read
                await r.execute_command("PING")
                await asyncio.sleep(0.01)
        assert await r.execute_command("GET", "a") is None  # a fresh, empty server
    finally:
        await r.aclose()
