"""A SIGKILLed gateway's connections are closed by a live one: on_disconnect runs
and the login is released."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis

import hetu.client
from hetu.keys import Keys
from hetu.redis_server import free_port

from .conftest import INSTANCE, FakeLogic, url_of

EXE = os.path.join(os.path.dirname(sys.executable), "hetu-gateway")


async def test_dead_gateway_connections_are_closed(
    start_gateway: Any, fake_logic: FakeLogic, redis_client: aioredis.Redis
) -> None:
    live = await start_gateway(heartbeat_ttl_s=0.6)
    port = free_port()
    doomed = subprocess.Popen(
        [EXE, "--port", str(port), "--redis", fake_logic.redis_url,
         "--heartbeat-ttl", "0.6", "--log-level", "warning"],
    )  # fmt: skip
    try:
        async with contextlib.AsyncExitStack() as stack:
            watcher = await stack.enter_async_context(hetu.client.connect(url_of(live)))
            await watcher.call("hello")  # the live gateway serves the instance
            deadline = time.monotonic() + 10
            while True:
                try:
                    client = await stack.enter_async_context(
                        hetu.client.connect(url_of(port), reconnect=False)
                    )
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            await client.call("login", 11)
            doomed.kill()
            doomed.wait()
            login = Keys(INSTANCE).login(11)
            deadline = time.monotonic() + 10
            while fake_logic.disconnects == [] or await redis_client.exists(login):
                assert time.monotonic() < deadline, "dead gateway was not swept"
                await asyncio.sleep(0.05)
            assert [d.caller for d in fake_logic.disconnects] == [11]
            assert await watcher.call("hello") == "hello"
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()


async def test_a_login_the_dead_gateway_never_recorded_is_released(
    start_gateway: Any, fake_logic: FakeLogic, redis_client: aioredis.Redis
) -> None:
    # The worker set the login, then the gateway died before recording the caller.
    keys = Keys(INSTANCE)
    await redis_client.sadd(keys.gateways(), "ghost")
    await redis_client.set(keys.login(12), "ghost:3")
    await redis_client.set(keys.login(13), "elsewhere:3")
    live = await start_gateway(heartbeat_ttl_s=0.6)
    async with hetu.client.connect(url_of(live)) as watcher:
        await watcher.call("hello")  # the live gateway serves the instance
        deadline = time.monotonic() + 10
        while fake_logic.disconnects == [] or await redis_client.exists(keys.login(12)):
            assert time.monotonic() < deadline, "the ghost's login was not released"
            await asyncio.sleep(0.05)
    assert [(d.gw, d.conn, d.caller) for d in fake_logic.disconnects] == [
        ("ghost", 3, 12)
    ]
    assert await redis_client.get(keys.login(13)) == b"elsewhere:3"
