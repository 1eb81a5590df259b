"""A reconnecting client moves to the next gateway, keeps its login and retries
an unanswered call with the same request id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.keys import Keys
from hetu.redis_server import free_port

from .conftest import INSTANCE, FakeLogic, url_of


async def test_reconnect_restores_login_and_retries_same_rid(
    start_gateway: Any, fake_logic: FakeLogic
) -> None:
    gw1, gw2 = await start_gateway(), await start_gateway()
    async with hetu.client.connect([url_of(gw1), url_of(gw2)], reconnect=True) as c:
        await c.call("login", 4)
        token = c.token
        call = asyncio.create_task(c.call("once", timeout_s=10))
        await fake_logic.unanswered.wait()
        gw1.stop()
        assert await call == "again"
        assert c.token == token
        assert await c.call("whoami") == [4, "", {"n": 1}]
    rids = [m.rid for m in fake_logic.calls if m.sys == "once"]
    assert len(rids) == 2 and rids[0] == rids[1]
    assert {m.gw for m in fake_logic.calls if m.sys == "once"} == {gw1.gw_id, gw2.gw_id}


async def test_first_connect_tries_the_urls_in_turn(
    start_gateway: Any, fake_logic: FakeLogic
) -> None:
    live = await start_gateway()
    dead = f"ws://127.0.0.1:{free_port()}/hetu/{INSTANCE}"
    async with hetu.client.connect([dead, url_of(live)]) as c:
        assert await c.call("hello") == "hello"


async def test_call_of_an_expired_session_is_not_resent(
    start_gateway: Any, fake_logic: FakeLogic, redis_client: aioredis.Redis
) -> None:
    gw1, gw2 = await start_gateway(), await start_gateway()
    async with hetu.client.connect([url_of(gw1), url_of(gw2)], reconnect=True) as c:
        call = asyncio.create_task(c.call("once", timeout_s=10))
        await fake_logic.unanswered.wait()
        await redis_client.delete(Keys(INSTANCE).session(c.token))  # expired
        gw1.stop()
        with pytest.raises(hetu.client.CallError) as e:
            await call
        assert e.value.code == "timeout"
        assert await c.call("hello") == "hello"  # the new session works
    assert [m.sys for m in fake_logic.calls].count("once") == 1
