"""The gateway survives a Redis restart: its hot-path connections come back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

import hetu.client
from hetu.client import CallError
from hetu.keys import Keys
from hetu.redis_server import RedisServer
from hetu.wire import registry_encoder

from .conftest import INSTANCE, REGISTRY, FakeLogic, url_of


async def resilient_logic(url: str) -> None:
    """The stand-in worker, starting over whenever Redis goes away."""
    while True:
        client = aioredis.Redis.from_url(url)
        try:
            await client.set(
                Keys(INSTANCE).registry(), registry_encoder.encode(REGISTRY)
            )
            await FakeLogic(client).run()
        except (OSError, aioredis.RedisError):
            await asyncio.sleep(0.05)
        finally:
            await client.aclose()


async def test_gateway_reconnects_after_redis_restart(
    redis_factory: Callable[[], RedisServer], start_gateway: Any
) -> None:
    server = redis_factory()
    logic = asyncio.create_task(resilient_logic(server.url))
    restarted: RedisServer | None = None
    try:
        gw = await start_gateway(redis_url=server.url, call_timeout_s=0.3)
        async with hetu.client.connect(url_of(gw)) as c:
            assert await c.call("hello") == "hello"
            server.kill()
            restarted = RedisServer(server.port)
            restarted.start()
            deadline = time.monotonic() + 15
            while True:
                try:
                    assert await c.call("hello", timeout_s=2) == "hello"
                    break
                except CallError as exc:
                    assert exc.code == "timeout"
                    assert time.monotonic() < deadline, "gateway did not recover"
    finally:
        logic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await logic
        if restarted is not None:
            restarted.stop()
