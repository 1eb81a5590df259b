"""FastRedis: replies in order, redis-py errors, callbacks, pub/sub, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from hetu.fastredis import FastRedis, pack_command
from hetu.redis_server import RedisServer


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


async def test_send_calls_back_in_order_with_errors_as_exceptions(
    redis_url: str,
) -> None:
    r = await FastRedis.from_url(redis_url)
    try:
        got: list[object] = []
        r.send(pack_command("SET", "a", 1), got.append)
        r.send(pack_command("INCR", "a"))  # no callback: reply dropped
        r.send(pack_command("NOSUCHCOMMAND"), got.append)
        r.send(pack_command("GET", "a"), got.append)
        assert await r.execute_command("PING") == b"PONG"
        assert got[0] == b"OK" and got[2] == b"2"
        assert isinstance(got[1], ResponseError)
    finally:
        await r.aclose()
    lost: list[object] = []
    r.send(pack_command("PING"), lost.append)  # closed: fails at once
    assert isinstance(lost[0], RedisConnectionError)


async def test_pubsub_messages_and_resubscribe_after_restart(
    redis_factory: Callable[[], RedisServer],
) -> None:
    server = redis_factory()
    got: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()
    sub = await FastRedis.from_url(
        server.url, lambda ch, data: got.put_nowait((ch, data))
    )
    pub = await FastRedis.from_url(server.url)
    try:
        await sub.subscribe("c1", "c2")
        assert await pub.execute_command("PUBLISH", "c2", b"x") == 1
        assert await asyncio.wait_for(got.get(), 5) == (b"c2", b"x")
        server.restart()
        await asyncio.wait_for(sub.wait_lost(), 5)
        assert not sub.connected
        await sub.ensure()
        n = 0
        for _ in range(100):  # pub notices the restart on its next command
            try:
                n = await pub.execute_command("PUBLISH", "c1", b"y")
                break
            except RedisConnectionError:
                await asyncio.sleep(0.01)
        assert n == 1
        assert await asyncio.wait_for(got.get(), 5) == (b"c1", b"y")
    finally:
        await sub.aclose()
        await pub.aclose()
