"""Fixtures shared by every test directory: private redis-server instances."""

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from hetu.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole test session (flushed per test)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, flushed before the test."""
    import redis

    with redis.Redis(port=redis_server.port) as r:
        r.flushall()
        r.script_flush()
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An async client on the flushed session server (bytes responses)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start extra redis-servers (to kill and restart); all stopped after the test."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
