"""64-bit Snowflake ids with worker ids leased in Redis.

64 位 Snowflake id；worker id 在 Redis 中租用。

An id is a positive int64: 41 bits of milliseconds since ``EPOCH_MS``, 10 bits of
worker id, 12 bits of sequence. ``new_id()`` works at once with a random worker id
(for tests and tools); a process that writes rows calls ``lease_worker_id`` first,
which leases a worker id no live process holds (``hetu:<inst>:sf:<worker_id>``, SET
NX PX with a random token), renews it in the background, and hands it back on
``release()``. A lease that is not renewed expires and another process may take
the id over.

If the clock steps back, the generator keeps its last timestamp and continues from
it, so ids stay unique and increasing; when the 4096 ids of one millisecond are used
up it moves on to the next millisecond, ahead of a clock that stepped back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hetu.errors import ConfigError
from hetu.keys import Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
_MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SnowflakeGenerator:
    """Makes unique, increasing ids for one worker id. 为一个 worker id 生成 id。

    Thread-safe. ``clock_ms`` returns POSIX milliseconds (injectable for tests).

    Raises:
        ConfigError: ``worker_id`` is outside 0..1023.
    """

    def __init__(self, worker_id: int, clock_ms: Callable[[], int] = _now_ms) -> None:
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._last_ms = 0
        self._sequence = 0
        self._worker_bits = 0
        self.worker_id = worker_id

    @property
    def worker_id(self) -> int:
        return self._worker_bits >> SEQUENCE_BITS

    @worker_id.setter
    def worker_id(self, worker_id: int) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ConfigError(f"Snowflake worker id {worker_id} is not in 0..1023")
        self._worker_bits = worker_id << SEQUENCE_BITS

    def next_id(self) -> int:
        """A new id, greater than every id this generator made before."""
        with self._lock:
            now = self._clock_ms() - EPOCH_MS
            if now > self._last_ms:
                self._last_ms = now
                self._sequence = 0
            elif self._sequence < _MAX_SEQUENCE:
                self._sequence += 1
            else:  # this millisecond is used up: borrow the next one
                self._last_ms += 1
                self._sequence = 0
            return (self._last_ms << 22) | self._worker_bits | self._sequence


default_generator = SnowflakeGenerator(random.randrange(MAX_WORKER_ID + 1))
"""The process-wide generator behind ``new_id``; ``lease_worker_id`` sets its id."""


def new_id() -> int:
    """A new unique Snowflake id from the process-wide generator. 新的 Snowflake id。"""
    return default_generator.next_id()


_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WorkerIdLease:
    """A Snowflake worker id held in Redis and renewed in the background.

    在 Redis 中持有并在后台续期的 Snowflake worker id。

    ``await acquire()`` takes a free id (SET NX PX) and sets it on ``generator``;
    ``start_renewal()`` renews every ``ttl_ms / 3``; when a renewal finds the lease
    lost (expired and taken over), a new id is acquired. ``await release()`` stops
    renewing and deletes the lease only if it is still ours.
    """

    def __init__(
        self,
        redis: Redis,
        instance: str,
        *,
        ttl_ms: int = 30_000,
        generator: SnowflakeGenerator | None = None,
    ) -> None:
        self._redis = redis
        self._keys = Keys(instance)
        self.ttl_ms = ttl_ms
        self.generator = default_generator if generator is None else generator
        self.token = os.urandom(16).hex()
        self.worker_id: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> int:
        """Lease a worker id nobody holds and use it. 租用一个空闲的 worker id。

        Raises:
            ConfigError: all 1024 worker ids are leased.
        """
        start = random.randrange(MAX_WORKER_ID + 1)
        for i in range(MAX_WORKER_ID + 1):
            worker_id = (start + i) % (MAX_WORKER_ID + 1)
            key = self._keys.snowflake(worker_id)
            if await self._redis.set(key, self.token, nx=True, px=self.ttl_ms):
                self.worker_id = worker_id
                self.generator.worker_id = worker_id
                return worker_id
        raise ConfigError(
            "all 1024 Snowflake worker ids are leased; stop some processes or wait "
            f"{self.ttl_ms} ms for dead ones' leases to expire"
        )

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        if self.worker_id is None:
            return False
        key = self._keys.snowflake(self.worker_id)
        ok = await self._redis.eval(_RENEW_LUA, 1, key, self.token, self.ttl_ms)  # type: ignore[misc]
        return bool(ok)

    def start_renewal(self) -> None:
        """Renew in a background task until ``release()``."""
        if self._task is None:
            self._task = asyncio.create_task(self._renew_loop(), name="snowflake-lease")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.renew():
                    logger.warning(
                        "Snowflake worker id %s lease was lost; leasing another",
                        self.worker_id,
                    )
                    await self.acquire()
            except Exception:
                logger.exception("renewing the Snowflake worker id lease failed")

    async def release(self) -> None:
        """Stop renewing; delete the lease if it is still ours."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.worker_id is not None:
            key = self._keys.snowflake(self.worker_id)
            await self._redis.eval(_RELEASE_LUA, 1, key, self.token)  # type: ignore[misc]
            self.worker_id = None


async def lease_worker_id(
    redis: Redis, instance: str, *, ttl_ms: int = 30_000
) -> WorkerIdLease:
    """Lease a worker id for ``new_id`` and keep renewing it; ``await
    lease.release()`` on shutdown. 为 ``new_id`` 租用 worker id 并自动续期。

    Raises:
        ConfigError: all 1024 worker ids are leased.
    """
    lease = WorkerIdLease(redis, instance, ttl_ms=ttl_ms)
    await lease.acquire()
    lease.start_renewal()
    return lease
