"""Logic worker throughput and CPU per call, feeding the streams directly.

Starts a private redis-server and one ``hetu-logic`` process on examples/chat.py,
then acts as a gateway (``hetu.testing.FakeGateway``: XADD ``CallMsg``, wait for
the ``ReplyMsg`` on the gateway channel) for hello (endpoint), get (``get``: one
read by a unique field) and get+update (``add``: read by a unique field, then
update) with 1 and 64 calls in flight. Prints calls/s and the worker process's
CPU time per call (psutil, else /proc/<pid>/stat). Usage:

    .venv/bin/python bench/logic.py [--seconds 3] [--only get+update]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

from hetu.redis_server import RedisServer
from hetu.testing import FakeGateway

APP = Path(__file__).parent.parent / "examples" / "chat.py"
ROWS = 64
WORKLOADS = {
    "hello": lambda i: ("hello", "bench"),
    "get": lambda i: ("get", i % ROWS),
    "get+update": lambda i: ("add", i % ROWS, 1),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(gw: FakeGateway, name: str, in_flight: int, seconds: float) -> int:
    """Keep ``in_flight`` calls outstanding for ``seconds``; return calls done."""
    make = WORKLOADS[name]
    done = 0
    deadline = time.monotonic() + seconds

    async def one_connection(conn: int) -> None:
        nonlocal done
        i = conn
        while time.monotonic() < deadline:
            sys_name, *args = make(i)
            reply = await gw.wait_reply(gw.message(sys_name, *args, conn=conn))
            assert reply.ok, reply
            done += 1
            i += in_flight

    await asyncio.gather(*(one_connection(c) for c in range(in_flight)))
    return done


async def bench(redis_url: str, pid: int, seconds: float, only: str | None) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    async with FakeGateway(redis, gw="bench") as gw:
        for _ in range(200):
            try:
                await gw.load_registry()
                break
            except LookupError:
                await asyncio.sleep(0.05)
        await asyncio.gather(*(gw.call("add", i, 0, conn=i) for i in range(ROWS)))
        await drive(gw, "get+update", 64, 0.5)  # warm up
        print(f"{'workload':<12} {'in flight':>9} {'calls/s':>9} {'CPU/call':>16}")
        for name in WORKLOADS:
            if only and name != only:
                continue
            for in_flight in (1, 64):
                cpu0, t0 = cpu_seconds(pid), time.perf_counter()
                n = await drive(gw, name, in_flight, seconds)
                cpu1, t1 = cpu_seconds(pid), time.perf_counter()
                per_call_us = (cpu1 - cpu0) / n * 1e6
                print(
                    f"{name:<12} {in_flight:>9} {n / (t1 - t0):>9.0f} "
                    f"{per_call_us:>13.0f} µs"
                )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Logic worker calls/s and CPU per call"
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    with RedisServer() as server:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hetu_logic", str(APP), "--redis", server.url,
             "--log-level", "warning"],
        )  # fmt: skip
        try:
            uvloop.run(bench(server.url, worker.pid, args.seconds, args.only))
        finally:
            worker.terminate()
            worker.wait(10)


if __name__ == "__main__":
    main()
