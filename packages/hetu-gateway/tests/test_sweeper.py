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
