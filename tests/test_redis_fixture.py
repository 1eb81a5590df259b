"""The private redis-server fixtures work and are isolated from each other."""

import redis
import redis.asyncio as aioredis

from hetu.redis_server import RedisServer


async def test_flushed_between_tests_part1(redis_client: aioredis.Redis) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set("leftover", 1)


async def test_flushed_between_tests_part2(redis_client: aioredis.Redis) -> None:
    assert await redis_client.get("leftover") is None


def test_factory_server_can_be_killed_and_restarted(redis_factory) -> None:
    server: RedisServer = redis_factory()
    with redis.Redis(port=server.port) as r:
        r.set("k", 1)
    server.restart()
    with redis.Redis(port=server.port) as r:
        assert r.get("k") is None  # no persistence: a restart starts empty
