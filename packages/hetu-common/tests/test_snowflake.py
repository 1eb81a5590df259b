"""Snowflake ids: unique, increasing through clock steps back; worker-id leases."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from hetu.errors import ConfigError
from hetu.keys import Keys
from hetu.snowflake import (
    EPOCH_MS,
    MAX_WORKER_ID,
    SnowflakeGenerator,
    WorkerIdLease,
    new_id,
)


def test_new_id_unique_increasing_positive() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert 0 < ids[0] < 2**63


def test_layout() -> None:
    gen = SnowflakeGenerator(5, clock_ms=lambda: EPOCH_MS + 1000)
    first, second = gen.next_id(), gen.next_id()
    assert first >> 22 == 1000
    assert (first >> 12) & MAX_WORKER_ID == 5
    assert second - first == 1
    with pytest.raises(ConfigError, match="worker id"):
        SnowflakeGenerator(1024)


def test_clock_step_back_never_reuses_ids() -> None:
    now = [EPOCH_MS + 10_000]
    gen = SnowflakeGenerator(7, clock_ms=lambda: now[0])
    ids = [gen.next_id() for _ in range(100)]
    now[0] -= 5_000  # the clock steps back 5 s
    ids += [gen.next_id() for _ in range(10_000)]  # also overflows the sequence
    now[0] += 20_000
    ids += [gen.next_id() for _ in range(100)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def _lease(r: aioredis.Redis, ttl_ms: int = 30_000) -> WorkerIdLease:
    return WorkerIdLease(r, "t", ttl_ms=ttl_ms, generator=SnowflakeGenerator(0))


async def test_leases_get_distinct_worker_ids(redis_client: aioredis.Redis) -> None:
    leases = [_lease(redis_client) for _ in range(50)]
    ids = await asyncio.gather(*(lease.acquire() for lease in leases))
    assert len(set(ids)) == 50
    assert [lease.generator.worker_id for lease in leases] == ids
    for lease in leases:
        await lease.release()
    assert await redis_client.keys("hetu:t:sf:*") == []


async def _occupy_all_but(r: aioredis.Redis, free: int) -> None:
    keys = Keys("t")
    async with r.pipeline(transaction=False) as pipe:
        for worker_id in range(MAX_WORKER_ID + 1):
            if worker_id != free:
                pipe.set(keys.snowflake(worker_id), "someone")
        await pipe.execute()


async def test_expired_lease_is_taken_over(redis_client: aioredis.Redis) -> None:
    old = _lease(redis_client)
    worker_id = await old.acquire()
    await _occupy_all_but(redis_client, worker_id)
    new = _lease(redis_client)
    with pytest.raises(ConfigError, match="all 1024"):
        await new.acquire()
    key = Keys("t").snowflake(worker_id)
    await redis_client.pexpire(key, 50)  # as if old stopped renewing long ago
    while await redis_client.exists(key):
        await asyncio.sleep(0.02)
    assert await new.acquire() == worker_id
    assert not await old.renew()
    await old.release()  # not ours any more: must not delete new's lease
    assert await redis_client.get(key) == new.token.encode()


async def test_renewal_keeps_the_lease(redis_client: aioredis.Redis) -> None:
    lease = _lease(redis_client, ttl_ms=600)
    worker_id = await lease.acquire()
    lease.start_renewal()
    key = Keys("t").snowflake(worker_id)
    await asyncio.sleep(1.9)  # over three TTLs
    assert await redis_client.get(key) == lease.token.encode()
    assert await redis_client.pttl(key) > 0
    await lease.release()
    assert not await redis_client.exists(key)
