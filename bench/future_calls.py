"""FutureCalls lateness: how long after its due time a scheduled System runs.

Starts a private redis-server and ``--workers`` ``hetu-logic`` processes on
tests/apps/timers.py, schedules ``--calls`` FutureCalls of ``fire`` due evenly over
``--spread`` seconds (starting 1 s later), waits until all ran, and prints the
lateness (``ran - due``: ``time.time()`` inside ``fire`` minus the due time) p50,
p99 and max, plus how many ran more than once (must be 0). Usage:

    .venv/bin/python bench/future_calls.py [--calls 2000] [--spread 5] [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

from hetu.keys import Keys
from hetu.redis_server import RedisServer
from hetu.testing import FakeGateway, WorkerProcess

APP = str(Path(__file__).parent.parent / "tests" / "apps" / "timers.py")
BATCH = 100


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(int(len(sorted_ms) * q), len(sorted_ms) - 1)]


async def measure(url: str, calls: int, spread_s: float) -> list[dict]:
    redis = aioredis.Redis.from_url(url)
    try:
        async with FakeGateway(redis) as gw:
            begin = time.time() + 1.0
            per_batch_s = spread_s * BATCH / calls
            for b, first in enumerate(range(0, calls, BATCH)):
                n = min(BATCH, calls - first)
                await gw.call("schedule_many", first, n, begin + b * per_batch_s,
                              per_batch_s)  # fmt: skip
            # Reading thousands of rows stalls a worker: only once all are due.
            await asyncio.sleep(begin + spread_s + 1.0 - time.time())
            rows: list[dict] = []
            for _ in range(60):
                rows = await gw.call("fired", 0, calls - 1, timeout_s=30)
                if len(rows) >= calls:
                    return rows
                await asyncio.sleep(0.5)
            raise RuntimeError(f"only {len(rows)} of {calls} calls ran")
    finally:
        await redis.aclose()


def wait_leases(url: str, n: int, timeout_s: float = 30) -> None:
    """Wait until ``n`` workers hold Snowflake leases (the end of their start-up)."""
    pattern = Keys("default").snowflake(0).rpartition(":")[0] + ":*"
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(url) as r:
        while len(r.keys(pattern)) < n:  # pyright: ignore[reportArgumentType]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} workers did not start in {timeout_s} s")
            time.sleep(0.05)
    time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description="FutureCalls lateness")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds")
    parser.add_argument("--workers", type=int, default=3)
    opts = parser.parse_args()
    with RedisServer() as server:
        workers = [WorkerProcess(APP, server.url, "--log-level", "warning").start()
                   for _ in range(opts.workers)]  # fmt: skip
        try:
            wait_leases(server.url, len(workers))  # info logs off: no ready line
            rows = asyncio.run(measure(server.url, opts.calls, opts.spread))
        finally:
            for w in workers:
                w.stop()
    late = sorted((r["ran"] - r["due_ms"] / 1000) * 1000 for r in rows)
    twice = sum(r["count"] != 1 for r in rows)
    print(
        f"{opts.calls} FutureCalls over {opts.spread} s, {opts.workers} workers: "
        f"lateness p50 {percentile(late, 0.5):.1f} ms, p99 "
        f"{percentile(late, 0.99):.1f} ms, max {late[-1]:.1f} ms, "
        f"min {late[0]:.1f} ms; ran more than once: {twice}"
    )


if __name__ == "__main__":
    main()
