"""Exactly-once under SIGKILL: 3 worker processes, one killed every 2 s and
restarted, 20,000 increments over 50 rows; every call is replied exactly once and
the counters sum to 20,000."""

import asyncio
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hetu.testing import FakeGateway, WorkerProcess

CHAT = str(Path(__file__).parents[1] / "examples" / "chat.py")
CALLS = 20_000
ROWS = 50


def start_worker(redis_url: str) -> WorkerProcess:
    # 20,000 access log lines would only cost CPU here
    return WorkerProcess(
        CHAT, redis_url, "--idle-ms", "1000", "--no-access-log"
    ).start()


def is_ready(worker: WorkerProcess) -> bool:
    return "serving namespace" in worker.output


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigkill_loses_no_call_and_applies_none_twice(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    workers = [start_worker(redis_url) for _ in range(3)]
    try:
        for w in workers:
            await asyncio.to_thread(w.wait_ready)
        async with FakeGateway(redis_client, gw="gw-kill") as gw:
            await gw.load_registry()
            # conn = key: one connection's calls run in order, as a gateway sends them
            msgs = [gw.message("add", i % ROWS, 1, conn=i % ROWS) for i in range(CALLS)]
            for i in range(0, CALLS, 2000):
                await gw.send(*msgs[i : i + 2000])
            kills = 0
            deadline = time.monotonic() + 90
            next_kill = time.monotonic() + 2
            while len(gw.replies) < CALLS and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                # Every 2 s kill a worker that is serving (a restarted one may
                # still be importing on a busy machine) and start another.
                ready = [i for i, w in enumerate(workers) if is_ready(w)]
                if time.monotonic() >= next_kill and ready:
                    victim = ready[kills % len(ready)]
                    workers[victim].signal(signal.SIGKILL)
                    await asyncio.to_thread(workers[victim].wait, 10)
                    workers[victim].stop()
                    workers[victim] = start_worker(redis_url)
                    kills += 1
                    next_kill = time.monotonic() + 2
            await asyncio.sleep(0.5)  # a duplicate reply would arrive by now
            missing = [m.rid for m in msgs if m.rid not in gw.replies]
            assert not missing, f"{len(missing)} calls never replied ({kills} kills)"
            twice = [rid for rid, r in gw.replies.items() if len(r) != 1]
            assert not twice, f"{len(twice)} calls replied more than once"
            assert all(r[0].ok for r in gw.replies.values())
            rows = await gw.call("top", 100)
            assert len(rows) == ROWS
            assert sum(r["value"] for r in rows) == CALLS
            assert kills >= 1
    finally:
        for w in workers:
            w.stop()
