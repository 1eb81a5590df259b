"""End-to-end RPC: calls/s and latency through hetu.client -> hetu-gateway ->
hetu-logic on examples/chat.py, zstd + encryption on.

Starts a private redis-server, ``--logic-workers`` hetu-logic processes and one
hetu-gateway process, then drives hello (endpoint), get (by a unique field) and
get+update (``add``: get by a unique field, then insert or update) with 1 and 64
connections, each with one call in flight. Usage:

    .venv/bin/python bench/rpc.py [--seconds 5] [--logic-workers 1] [--only hello]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis as sync_redis
import uvloop

import hetu.client
from hetu.redis_server import RedisServer, free_port, wait_listening

BIN = Path(sys.executable).parent
APP = Path(__file__).parent.parent / "examples" / "chat.py"
# Wall-clock profiles mislead on 2 shared cores (a socket write that wakes Redis
# gets preempted), so profiles count CPU time.
PROFILED = """
import atexit, cProfile, importlib, sys, time
out, module, name = sys.argv[1:4]
main = importlib.import_module(module).main
sys.argv = [name, *sys.argv[4:]]
prof = cProfile.Profile(time.process_time)
atexit.register(lambda: (prof.disable(), prof.dump_stats(out)))
prof.enable()
main()
"""


def profiled(command: list[Any], module: str, out: str | None) -> list[Any]:
    """``command`` run under a CPU-time cProfile written to ``out`` at exit."""
    if not out:
        return command
    return [sys.executable, "-c", PROFILED, out, module, *command]


WORKLOADS = {
    "hello": lambda i: ("hello", "bench"),
    "get": lambda i: ("get", i),
    "get+update": lambda i: ("add", i, 1),
}


def start_processes(
    redis_url: str, logic_workers: int, args: argparse.Namespace
) -> tuple[int, dict[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
    logic = [BIN / "hetu-logic", "--cluster", "all", str(APP), "--redis", redis_url,
             "--workers", str(logic_workers)]  # fmt: skip
    logic = profiled(logic, "hetu_logic.cli", args.profile_logic)
    gw = [BIN / "hetu-gateway", "--port", str(port), "--redis", redis_url]
    gw = profiled(gw, "hetu_gateway.cli", args.profile_gateway)
    procs = {
        "logic": subprocess.Popen(logic, env=env),
        "gateway": subprocess.Popen(gw, env=env),
    }
    wait_listening(port, procs["gateway"])
    return port, procs


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (Linux);
    for this process, only its own."""
    if pid == os.getpid():
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return total + sum(cpu_s(int(child)) for child in children)


async def run_one(
    url: str,
    workload: str,
    conns: int,
    seconds: float,
    pids: dict[str, int],
    profile_client: str | None = None,
) -> str:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(hetu.client.connect(url))
            for _ in range(conns)
        ]
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        prof = cProfile.Profile(time.process_time) if profile_client else None
        if prof is not None:
            prof.enable()
        row, calls = await measure(clients, workload, seconds)
        if prof is not None and profile_client:
            prof.disable()
            prof.dump_stats(profile_client)
        used = {name: cpu_s(pid) - before[name] for name, pid in pids.items()}
        cpu = " | ".join(f"{used[name] / calls * 1e6:.0f}" for name in pids)
        return f"{row} {cpu} |"


async def measure(
    clients: list[hetu.client.Client], workload: str, seconds: float
) -> tuple[str, int]:
    make = WORKLOADS[workload]
    for i, c in enumerate(clients):  # warm up: rows exist, registry loaded
        await c.call(*make(i), timeout_s=30)
        await c.call("add", i, 1, timeout_s=30)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def drive(c: hetu.client.Client, i: int) -> None:
        args = make(i)
        perf = time.perf_counter
        while (t0 := perf()) < stop_at:
            await c.call(*args)
            latencies.append(perf() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(drive(c, i) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1000
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000
    rate = n / elapsed
    return f"| {workload} | {len(clients)} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |", n


async def main(args: argparse.Namespace) -> None:
    with RedisServer() as redis:
        port, procs = start_processes(redis.url, args.logic_workers, args)
        url = f"ws://127.0.0.1:{port}/hetu/default"
        pids = {name: proc.pid for name, proc in procs.items()}
        info = sync_redis.Redis(port=redis.port).info("server")
        pids["redis"] = int(info["process_id"])
        pids["client"] = os.getpid()
        try:
            print("load average at start:", *(f"{x:.2f}" for x in os.getloadavg()))
            print("| workload | conns | calls/s | p50 ms | p99 ms | CPU µs/call: "
                  + " | ".join(pids) + " |")  # fmt: skip
            print("|---" * (5 + len(pids)) + "|")
            for workload in args.only or list(WORKLOADS):
                for conns in args.conns or (1, 64):
                    line = await run_one(
                        url, workload, conns, args.seconds, pids, args.profile_client
                    )
                    print(line, flush=True)
            print("load average at end:", *(f"{x:.2f}" for x in os.getloadavg()))
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="End-to-end RPC benchmark.")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--logic-workers", type=int, default=1)
    parser.add_argument("--only", action="append", choices=list(WORKLOADS))
    parser.add_argument("--conns", type=int, action="append")
    parser.add_argument("--profile-gateway", metavar="FILE")
    parser.add_argument("--profile-client", metavar="FILE")
    parser.add_argument("--profile-logic", metavar="FILE")
    uvloop.run(main(parser.parse_args()))
