"""Calls through an in-process gateway against a stand-in logic worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import CallError, ClosedError
from hetu.keys import Keys

from .conftest import INSTANCE, FakeLogic, url_of

pytestmark = pytest.mark.usefixtures("fake_logic")


@pytest.mark.parametrize("comp", ["none", "zlib", "zstd"])
@pytest.mark.parametrize("encrypt", [True, False])
async def test_call_round_trip(start_gateway: Any, comp: str, encrypt: bool) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw), comp, encrypt) as c:
        assert await c.call("hello") == "hello"
        big = ["x" * 1000] * 20
        assert await c.call("echo", 1, "a", big) == [1, "a", big]


async def test_error_codes_keep_connection_usable(start_gateway: Any) -> None:
    gw = await start_gateway(call_timeout_s=0.3)
    async with hetu.client.connect(url_of(gw)) as c:
        cases = [
            (("nope",), "unknown_system"),
            (("on_disconnect",), "unknown_system"),
            (("whoami",), "permission_denied"),
            (("admin_only",), "permission_denied"),
            (("login",), "bad_arguments"),
            (("hello", 1), "bad_arguments"),
            (("fail",), "internal"),
            (("slow",), "timeout"),
        ]
        for args, code in cases:
            with pytest.raises(CallError) as info:
                await c.call(*args)
            assert info.value.code == code, args
            assert await c.call("hello") == "hello"
        assert await c.call("limited") == "ok"
        assert await c.call("limited") == "ok"
        with pytest.raises(CallError, match="rate_limited"):
            await c.call("limited")


async def test_login_state_travels_with_calls(start_gateway: Any) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw)) as c:
        assert await c.call("login", 7) == "ok"
        assert await c.call("whoami") == [7, "", {"n": 1}]
        with pytest.raises(CallError, match="permission_denied"):
            await c.call("admin_only")
        assert await c.call("login", 99) == "ok"
        assert await c.call("admin_only") == "ok"


async def test_calls_of_one_connection_run_in_order(
    start_gateway: Any, fake_logic: FakeLogic
) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw)) as c:
        got = await asyncio.gather(*(c.call("echo", i) for i in range(50)))
        assert got == [[i] for i in range(50)]
    args = [call.args for call in fake_logic.calls if call.sys == "echo"]
    assert args == [[i] for i in range(50)]


async def test_login_elsewhere_kicks_first(start_gateway: Any) -> None:
    gw1, gw2 = await start_gateway(), await start_gateway()
    async with (
        hetu.client.connect(url_of(gw1)) as a,
        hetu.client.connect(url_of(gw2)) as b,
    ):
        await a.call("login", 5)
        await b.call("login", 5)
        with pytest.raises(ClosedError) as info:
            for _ in range(100):
                await a.call("hello")
                await asyncio.sleep(0.01)
        assert info.value.code == 4003 and info.value.reason == "kicked"
        assert await b.call("whoami") == [5, "", {"n": 1}]


async def test_close_runs_on_disconnect_and_releases_login(
    start_gateway: Any, fake_logic: FakeLogic, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw)) as c:
        await c.call("login", 3)
    key = Keys(INSTANCE).login(3)
    for _ in range(200):
        if fake_logic.disconnects and not await redis_client.exists(key):
            break
        await asyncio.sleep(0.01)
    assert [d.caller for d in fake_logic.disconnects] == [3]
    assert not await redis_client.exists(key)


async def test_heartbeat_key_exists_while_running(
    start_gateway: Any, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw)) as c:
        await c.call("hello")
        assert await redis_client.get(Keys(INSTANCE).gateway_alive(gw.gw_id))
