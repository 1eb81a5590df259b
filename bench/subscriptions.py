"""Subscriptions: change -> client latency and fan-out to many watchers.

Starts a private redis-server, one hetu-logic (examples/chat.py, for the
registry and the ``add`` System) and one hetu-gateway process; clients use zstd +
encryption. Measures:

- latency, commit -> client: this process commits an update of one ``Counter``
  row with the storage layer's own commit script (the one logic workers run)
  and times until a client watching that row has the event;
- latency, call -> client: a second client calls ``add`` (gateway -> logic ->
  commit) and times until the watcher has the event (includes the call path);
- fan-out: ``--watchers`` connections (all in this process) watch one row;
  one commit; time until half and all of them have the event (this process
  decrypts, decompresses and decodes every copy, so it shares the time), and
  the gateway's CPU time per change; then each watches a row of its own and one
  more watches the changed row: the gateway's CPU per change (dispatch by value).

Usage:

    .venv/bin/python bench/subscriptions.py [--changes 2000] [--watchers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

import hetu.client
from hetu.keys import Keys
from hetu.redis_server import RedisServer, free_port, wait_listening
from hetu.storage import CommitExtras, Session
from hetu.subscription import Subscription
from hetu.wire import registry_decoder

BIN = Path(sys.executable).parent
APP = Path(__file__).parent.parent / "examples" / "chat.py"


def start_processes(
    redis_url: str, profile: str | None
) -> tuple[int, list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
    logic = subprocess.Popen(
        [BIN / "hetu-logic", "--cluster", "all", str(APP), "--redis", redis_url],
        env=env,
    )
    port = free_port()
    gw = [BIN / "hetu-gateway", "--port", str(port), "--redis", redis_url]
    if profile:  # cProfile the gateway; stats written when it exits
        gw = [sys.executable, "-m", "cProfile", "-o", profile, *gw]
    gateway = subprocess.Popen(gw, env=env)
    wait_listening(port, gateway)
    return port, [logic, gateway]


class Committer:
    """Updates one Counter row through the storage commit script, like a worker."""

    def __init__(self, redis: aioredis.Redis, counter: Any, tag: str) -> None:
        self.redis = redis
        self.counter = counter
        self.keys = Keys("default").cluster(tag)
        self.extras = CommitExtras(changes_stream=self.keys.changes())

    async def bump(self, key: int) -> None:
        session = Session(self.redis, self.keys)
        repo = session[self.counter]
        row = await repo.get(key=key)
        assert row is not None
        row.value += 1
        await repo.update(row)
        await session.commit(self.extras)


async def wait_registry(redis: aioredis.Redis) -> tuple[Any, str]:
    """The chat app's Counter class and its cluster's hash tag."""
    spec = importlib.util.spec_from_file_location("chat_app", APP)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    raw: Any = None
    while raw is None:
        raw = await redis.get(Keys("default").registry())
        await asyncio.sleep(0.05)
    registry = registry_decoder.decode(raw)
    cluster = registry.components["Counter"].cluster
    tag = next(c.tag for c in registry.clusters if c.id == cluster)
    return app.Counter, tag


def summary(name: str, samples: list[float]) -> str:
    samples.sort()
    n = len(samples)
    p50 = samples[n // 2] * 1000
    p99 = samples[min(n - 1, int(n * 0.99))] * 1000
    return f"| {name} | {n} | {p50:.2f} | {p99:.2f} | {samples[-1] * 1000:.2f} |"


async def latency(url: str, committer: Committer, changes: int) -> list[str]:
    async with (
        hetu.client.connect(url) as watcher,
        hetu.client.connect(url) as caller,
    ):
        await caller.call("add", 1, 1)
        sub = await watcher.watch_row("Counter", "key", 1)
        perf = time.perf_counter
        direct, via_call = [], []
        for i in range(changes):
            t0 = perf()
            if i % 2:
                await committer.bump(1)
            else:
                await caller.call("add", 1, 1)
            ev = await sub.next_event(timeout=5)
            assert ev is not None
            (direct if i % 2 else via_call).append(perf() - t0)
        await sub.close()
    return [
        summary("commit -> client", direct),
        summary("call -> client (incl. call path)", via_call),
    ]


async def fanout(
    url: str, committer: Committer, watchers: int, rounds: int, gateway_pid: int
) -> tuple[str, str]:
    async with contextlib.AsyncExitStack() as stack:
        clients: list[hetu.client.Client] = []
        while len(clients) < watchers:  # in batches: handshakes read Redis
            batch = min(50, watchers - len(clients))
            clients += await asyncio.gather(
                *(
                    stack.enter_async_context(hetu.client.connect(url))
                    for _ in range(batch)
                )
            )
        await clients[0].call("add", 2, 1)
        subs: list[Subscription] = [
            await c.watch_row("Counter", "key", 2) for c in clients
        ]
        mids, lasts = [], []
        cpu_before = cpu_s(gateway_pid)
        for _ in range(rounds):
            t0 = time.perf_counter()
            await committer.bump(2)
            times = sorted(await asyncio.gather(*(_arrival(s) for s in subs)))
            mids.append(times[len(times) // 2] - t0)
            lasts.append(times[-1] - t0)
        gw_ms = (cpu_s(gateway_pid) - cpu_before) / rounds * 1000
        line = (
            f"| {watchers} | {rounds} | {statistics.median(mids) * 1000:.1f} "
            f"| {statistics.median(lasts) * 1000:.1f} | {max(lasts) * 1000:.1f} "
            f"| {gw_ms:.1f} |"
        )
        for sub in subs:
            await sub.close()
        # Each watcher now watches a row of its own; one more watches row 2.
        for i, c in enumerate(clients):
            await c.watch_row("Counter", "key", 10_000 + i)
        pacer = await clients[0].watch_row("Counter", "key", 2)
        cpu_before = cpu_s(gateway_pid)
        for _ in range(rounds * 20):
            await committer.bump(2)
            assert await pacer.next_event(timeout=5) is not None
        per_change = (cpu_s(gateway_pid) - cpu_before) / (rounds * 20) * 1e6
        other = f"| {watchers} other rows + 1 | {rounds * 20} | {per_change:.0f} |"
        return line, other


async def _arrival(sub: Subscription) -> float:
    ev = await sub.next_event(timeout=30)
    assert ev is not None
    return time.perf_counter()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> None:
    with RedisServer() as server:
        port, procs = start_processes(server.url, args.profile_gateway)
        url = f"ws://127.0.0.1:{port}/hetu/default"
        redis = aioredis.Redis.from_url(server.url)
        try:
            counter, tag = await wait_registry(redis)
            committer = Committer(redis, counter, tag)
            print("| path | changes | p50 ms | p99 ms | max ms |")
            print("|---|---|---|---|---|")
            for line in await latency(url, committer, args.changes):
                print(line, flush=True)
            print()
            print("| watchers | rounds | half received ms | all received ms "
                  "| worst all ms | gateway CPU ms/change |")  # fmt: skip
            print("|---|---|---|---|---|---|")
            line, other = await fanout(
                url, committer, args.watchers, args.rounds, procs[1].pid
            )
            print(line)
            print()
            print("| watch_rows | changes | gateway CPU µs/change |")
            print("|---|---|---|")
            print(other)
        finally:
            await redis.aclose()
            for proc in procs:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Subscription benchmark.")
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--profile-gateway", metavar="FILE")
    uvloop.run(main(parser.parse_args()))
