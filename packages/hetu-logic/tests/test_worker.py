"""Worker lifecycle in-process: registry versions, on_start, drain mode, and the
endpoint replay guarantee."""

import asyncio

import msgspec
import numpy as np
import pytest
import redis.asyncio as aioredis

import hetu
from hetu.errors import ConfigError
from hetu.keys import Keys
from hetu.registry import build_layout
from hetu.testing import AppTester, FakeGateway
from hetu_logic.config import LogicConfig
from hetu_logic.publish import check_schema, publish_registry
from hetu_logic.worker import Worker

NS = "LogicWorker"
EVERYBODY = hetu.Permission.EVERYBODY


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Tally(hetu.BaseComponent):
    key: np.int64 = hetu.property_field(0, unique=True)
    n: np.int64 = hetu.property_field(0)


@hetu.define_system(namespace=NS, components=(Tally,), permission=EVERYBODY, force=True)
async def bump(ctx, key):
    async with ctx.repo[Tally].upsert(key=key) as row:
        row.n += 1
    return hetu.ResponseToClient(int(row.n))


@hetu.define_system(namespace=NS, components=(Tally,), on_start=True, force=True)
async def started(ctx):
    await bump(ctx, -1)


@hetu.define_endpoint(namespace=NS, permission=EVERYBODY, force=True)
async def bump_twice(ctx, key):
    await ctx.systems.call("bump", key)
    return await ctx.systems.call("bump", key)


async def tally(t: AppTester, key: int) -> int:
    row = await t.read(Tally).get(key=key)
    return 0 if row is None else int(row.n)


async def test_on_start_runs_once_per_deployment(redis_url: str) -> None:
    async with AppTester(redis_url, namespace=NS) as t:
        assert await tally(t, -1) == 1
    async with AppTester(redis_url, namespace=NS) as t:  # same registry: not again
        assert await tally(t, -1) == 1


async def test_registry_version_bumps_only_on_change(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    keys = Keys("default")
    registry = build_layout(NS).registry
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.registry_changed())
    assert await publish_registry(redis_client, keys, registry) == 1
    assert await publish_registry(redis_client, keys, registry) == 1
    changed = msgspec.structs.replace(registry, systems={})
    assert await publish_registry(redis_client, keys, changed) == 2
    got = []
    async with asyncio.timeout(5):
        while len(got) < 2:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if item:
                got.append(item["data"])
    assert got == [b"1", b"2"]
    await pubsub.aclose()


def test_schema_check_names_the_component_and_the_command() -> None:
    registry = build_layout(NS).registry
    info = registry.components["Tally"]
    stored = msgspec.structs.replace(
        registry,
        components={"Tally": msgspec.structs.replace(info, hash="0" * 16)},
    )
    check_schema(registry, registry, "app.py")
    with pytest.raises(
        ConfigError, match=r"component Tally.*hetu-logic migrate my\.py"
    ):
        check_schema(stored, registry, "my.py")


async def test_drain_mode_processes_the_queue_and_returns(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    cfg = LogicConfig(app="", redis_url=redis_url, namespace=NS, drain=True)
    await Worker(cfg).serve()  # publishes the registry, nothing queued
    async with FakeGateway(redis_client) as gw:
        msgs = [gw.message("bump", 7, conn=i) for i in range(50)]
        await gw.send(*msgs)
        await asyncio.wait_for(Worker(cfg).serve(), 30)
        async with asyncio.timeout(5):
            while len(gw.replies) < 50:
                await asyncio.sleep(0.01)
    assert sorted(r[0].data for r in gw.replies.values()) == list(range(1, 51))


async def test_endpoint_rerun_does_not_apply_its_systems_twice(redis_url: str) -> None:
    async with AppTester(redis_url, namespace=NS) as t:
        first = await t.wait_reply(t.message("bump_twice", 5, rid="ep-1"))
        assert first.data == 2
        # A worker that died after the Systems committed but before the endpoint's
        # reply was cached: the retry runs the endpoint again...
        await t.redis.delete(t.keys.cluster("ep").reply_cache("ep-1"))
        again = await t.wait_reply(t.message("bump_twice", 5, rid="ep-1"))
        # ...but its two Systems are answered from their cache, not applied again.
        assert again.ok and again.data == 2
        assert await tally(t, 5) == 2


async def test_cluster_option_serves_only_those_streams(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    tally_cluster = build_layout(NS).cluster_of_comp[Tally].id
    cfg = LogicConfig(
        app="", redis_url=redis_url, namespace=NS, drain=True, clusters=(tally_cluster,)
    )
    await Worker(cfg).serve()  # publishes the registry
    async with FakeGateway(redis_client) as gw:
        bump_msg, hi_msg = gw.message("bump", 1), gw.message("bump_twice", 1)
        await gw.send(bump_msg, hi_msg)
        await Worker(cfg).serve()
        async with asyncio.timeout(5):
            while bump_msg.rid not in gw.replies:
                await asyncio.sleep(0.01)
        assert hi_msg.rid not in gw.replies  # endpoints are cluster 0: not served
        assert await redis_client.xlen(gw.stream_of("bump_twice")) == 1
