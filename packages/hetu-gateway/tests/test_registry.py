"""The gateway follows registry changes and holds calls until the first one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import CallError
from hetu.keys import Keys
from hetu.wire import SystemInfo, registry_encoder

from .conftest import INSTANCE, REGISTRY, FakeLogic, url_of


async def test_reload_on_registry_changed(
    start_gateway: Any, fake_logic: FakeLogic, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway()
    keys = Keys(INSTANCE)
    async with hetu.client.connect(url_of(gw)) as c:
        assert await c.call("hello") == "hello"
        with pytest.raises(CallError, match="unknown_system"):
            await c.call("echo2")
        systems = {
            **REGISTRY.systems,
            "echo2": SystemInfo("echo2", 1, "EVERYBODY", 0, None),
        }
        new = type(REGISTRY)(REGISTRY.namespace, {}, systems, REGISTRY.clusters, 2)
        await redis_client.set(keys.registry(), registry_encoder.encode(new))
        await redis_client.publish(keys.registry_changed(), "2")
        for _ in range(100):
            registry = gw.instances[INSTANCE].calls.registry
            if registry is not None and registry.version == 2:
                break
            await asyncio.sleep(0.01)
        # The stand-in logic answers unknown names with "ok".
        assert await c.call("echo2", 1) == "ok"


async def test_calls_wait_for_the_first_registry(
    start_gateway: Any, redis_client: aioredis.Redis
) -> None:
    gw = await start_gateway()
    logic = FakeLogic(redis_client)
    async with hetu.client.connect(url_of(gw)) as c:
        call = asyncio.create_task(c.call("hello"))
        await asyncio.sleep(0.1)
        assert not call.done()
        keys = Keys(INSTANCE)
        await redis_client.set(keys.registry(), registry_encoder.encode(REGISTRY))
        await redis_client.publish(keys.registry_changed(), "1")
        task = asyncio.create_task(logic.run())
        try:
            assert await call == "hello"
        finally:
            task.cancel()
