"""Storage throughput: get/s and get+update commits/s with 1 and 64 tasks.

Starts a private redis-server, runs ``redis-benchmark -q -t get,set`` against it for
reference, then HeTu's Session on the same server, once on hetu's FastRedis client
and once on redis-py's asyncio client. Usage:

    .venv/bin/python bench/storage.py [--seconds 3] [--rows 1000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import uvloop

import hetu
from hetu.errors import RaceCondition
from hetu.fastredis import FastRedis
from hetu.keys import ClusterKeys
from hetu.redis_server import RedisServer
from hetu.storage import Session

KEYS = ClusterKeys("bench", "c1")


@hetu.define_component(namespace="Bench")
class Player(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    name: str = hetu.property_field("", unique=True, dtype="U32")
    gold: np.int64 = hetu.property_field(0)
    x: np.float32 = hetu.property_field(0.0)
    y: np.float32 = hetu.property_field(0.0)


async def setup(r: Any, n: int) -> list[int]:
    ids = []
    async with Session(r, KEYS) as s:
        for i in range(n):
            row = Player.new_row()
            row.owner, row.name = i, f"player{i}"
            await s[Player].insert(row)
            ids.append(int(row.id))
    return ids


async def get_once(r: Any, ids: list[int]) -> None:
    s = Session(r, KEYS)
    await s[Player].get(id=random.choice(ids))
    await s.commit()


async def get_update_once(r: Any, ids: list[int]) -> None:
    while True:
        s = Session(r, KEYS)
        repo = s[Player]
        row = await repo.get(id=random.choice(ids))
        assert row is not None
        row.gold += 1
        await repo.update(row)
        try:
            await s.commit()
            return
        except RaceCondition:
            continue


async def measure(
    op: Callable[[], Awaitable[None]], tasks: int, seconds: float
) -> tuple[float, float]:
    """Operations per second, and Python CPU microseconds per operation."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await op()
            done += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return done / wall, cpu / done * 1e6


async def run(port: int, seconds: float, rows: int, profile: bool) -> None:
    fast = await FastRedis.connect(port=port)
    ids = await setup(fast, rows)
    clients: list[tuple[str, Any]] = [
        ("FastRedis", fast),
        ("redis-py", aioredis.Redis(port=port)),
    ]
    for client_name, r in clients:
        print(f"HeTu Session on {client_name} (uvloop, hiredis):")
        for name, fn in (("get", get_once), ("get+update commit", get_update_once)):
            for tasks in (1, 64):
                prof = cProfile.Profile() if profile and tasks == 64 else None
                if prof:
                    prof.enable()
                rate, cpu_us = await measure(
                    lambda fn=fn, r=r: fn(r, ids), tasks, seconds
                )
                if prof:
                    prof.disable()
                    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
                print(
                    f"  {name:>17} {tasks:>3} tasks: {rate:>8.0f}/s "
                    f"{cpu_us:>6.0f} us CPU/op"
                )
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with RedisServer() as server:
        out = subprocess.run(
            ["redis-benchmark", "-q", "-t", "get,set", "-p", str(server.port)],
            capture_output=True,
            text=True,
            check=True,
        )
        print("redis-benchmark -q -t get,set:")
        for line in out.stdout.replace("\r", "\n").splitlines():
            if "requests per second" in line:
                print("  " + line.strip())
        uvloop.run(run(server.port, args.seconds, args.rows, args.profile))


if __name__ == "__main__":
    main()
