"""The chat example end to end: redis-server, hetu-logic and hetu-gateway
processes, hetu.client over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import CallError, ClosedError
from hetu.keys import Keys

from .gateway_procs import GatewayProcs, chat_logic, start_gateway_proc, url

__all__ = ["chat_logic", "start_gateway_proc"]

pytestmark = pytest.mark.usefixtures("chat_logic")
StartGateway = Callable[..., int]


async def chat_rows(redis: aioredis.Redis) -> list[tuple[int, str]]:
    rows = []
    async for key in redis.scan_iter(match="hetu:default:*:r:ChatMessage:*"):
        row: Any = await redis.hgetall(key)
        rows.append((int(row[b"owner"]), row[b"text"].decode()))
    return sorted(rows)


async def test_chat_two_users(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port)) as alice,
        hetu.client.connect(url(port), compression="zlib", encrypt=False) as bob,
    ):
        assert await alice.call("hello", "alice") == "hello alice"
        assert await alice.call("login", 1) == {"ok": True, "reason": None}
        assert await bob.call("login", 2) == {"ok": True, "reason": None}
        assert await alice.call("user_chat", "hi bob") == "ok"
        assert await bob.call("user_chat", "hi alice") == "ok"
        assert await alice.call("login", 3) == {
            "ok": False,
            "reason": "CURRENT_CONNECTION_ALREADY_ELEVATED",
        }
        assert await chat_rows(redis_client) == [(1, "hi bob"), (2, "hi alice")]
    for _ in range(200):  # on_disconnect of both leaves a "left" message
        if len(await chat_rows(redis_client)) == 4:
            break
        await asyncio.sleep(0.02)
    assert await chat_rows(redis_client) == [
        (1, "hi bob"), (1, "left"), (2, "hi alice"), (2, "left"),
    ]  # fmt: skip


async def test_login_elsewhere_kicks_the_first(
    start_gateway_proc: StartGateway,
) -> None:
    port1, port2 = start_gateway_proc(), start_gateway_proc()
    async with (
        hetu.client.connect(url(port1)) as first,
        hetu.client.connect(url(port2)) as second,
        hetu.client.connect(url(port2)) as third,
    ):
        assert (await first.call("login", 42))["ok"]
        assert (await second.call("login", 42))["ok"]
        with pytest.raises(ClosedError) as info:
            for _ in range(500):
                await first.call("hello")
                await asyncio.sleep(0.01)
        assert (info.value.code, info.value.reason) == (4003, "kicked")
        assert await third.call("login", 42, False) == {
            "ok": False,
            "reason": "USER_ALREADY_LOGGED_IN",
        }
        assert await second.call("user_chat", "still here") == "ok"


async def test_error_codes(start_gateway_proc: StartGateway) -> None:
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:

        async def code_of(*args: Any) -> str:
            with pytest.raises(CallError) as info:
                await c.call(*args)
            assert await c.call("hello") == "hello world"  # still usable
            return info.value.code

        assert await code_of("no_such_system") == "unknown_system"
        assert await code_of("on_disconnect") == "unknown_system"
        assert await code_of("hello", "a", "b") == "bad_arguments"
        assert await code_of("user_chat", "hi") == "permission_denied"
        await c.call("login", 9)
        with pytest.raises(CallError) as info:
            await c.call("user_chat", "   ")
        assert (info.value.code, info.value.message) == ("rejected", "empty_text")
        codes = set()
        for _ in range(25):
            try:
                await c.call("user_chat", "spam")
            except CallError as exc:
                codes.add(exc.code)
        assert codes == {"rate_limited"}
        assert await code_of("add", "not a number") in ("bad_arguments", "internal")


async def test_retry_after_gateway_death_runs_the_call_once(
    start_gateway_proc: GatewayProcs,
) -> None:
    """A call in flight when its gateway is SIGKILLed is resent with the same
    request id on the next gateway and applied exactly once."""
    ports = [start_gateway_proc() for _ in range(4)]
    async with hetu.client.connect([url(p) for p in ports], reconnect=True) as c:
        for key, port in enumerate(ports[:3], start=1000):
            call = asyncio.create_task(c.call("add", key, 1))
            await asyncio.sleep(0.001 * (key % 3))  # kill before, during or after
            start_gateway_proc.kill(port)
            assert await call == 1
            assert (await c.call("get", key))["value"] == 1


async def test_reconnect_after_gateway_death_resumes_the_session(
    start_gateway_proc: GatewayProcs, redis_client: aioredis.Redis
) -> None:
    """A SIGKILLed gateway's client resumes its session on the next one (proof
    of the session secret, docs/protocol.md §8): its login is back and a call in
    flight is retried under the same session id and applied exactly once."""
    ports = [start_gateway_proc() for _ in range(3)]
    async with hetu.client.connect([url(p) for p in ports], reconnect=True) as c:
        assert (await c.call("login", 7777))["ok"]
        # The gateway saves the session on its next loop turn after the reply: a
        # kill within that turn would lose the login (not what is tested here).
        session = Keys("default").session(c.token)
        for _ in range(250):
            raw: Any = await redis_client.get(session)
            if raw is not None and msgspec.msgpack.decode(raw)[0] == 7777:
                break
            await asyncio.sleep(0.02)
        for key, port in enumerate(ports[:2], start=2000):
            token = c.token
            call = asyncio.create_task(c.call("add", key, 1))
            await asyncio.sleep(0.001 * (key % 2))  # kill before or after the call
            start_gateway_proc.kill(port)
            assert await call == 1
            assert c.token == token
            assert await c.call("user_chat", f"still 7777 ({key})") == "ok"
            assert (await c.call("get", key))["value"] == 1
        login: Any = await redis_client.get("hetu:default:login:7777")
        assert login is not None and login.decode().endswith(f":{c.conn_id}")
