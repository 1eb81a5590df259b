"""Resume on another gateway after a SIGKILL (issue 4 "Must show").

Twenty clients watch ranges through two real gateways while a writer writes;
the first gateway is SIGKILLed mid-stream. Its clients reconnect to the second
one and resume from their last change ids. Every subscription must receive
exactly the change ids that touched its range, each once and in commit order,
and end with the rows Redis holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import Client
from hetu.redis_server import free_port, wait_listening
from hetu.subscription import Subscription
from hetu.wire import change_event_decoder

from .gateway_procs import BIN, _stop, url
from .test_subscriptions import watch_logic

__all__ = ["watch_logic"]

pytestmark = pytest.mark.usefixtures("watch_logic")
WIDTH = 30


@pytest.fixture
def gateways(redis_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two hetu-gateway processes; ``.port`` set on each (the test kills one)."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
    for i in range(2):
        port = free_port()
        with (tmp_path / f"gw{i}.log").open("wb") as log:
            proc = subprocess.Popen(
                [BIN / "hetu-gateway", "--port", str(port), "--redis", redis_url],
                env=env,
                stderr=log,
            )
        proc.port = port  # type: ignore[attr-defined]
        procs.append(proc)
    for proc in procs:
        wait_listening(proc.port, proc)  # type: ignore[attr-defined]
    yield procs
    for proc in procs:
        _stop(proc)
    text = (tmp_path / "gw1.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


async def points(redis: aioredis.Redis) -> dict[int, dict[str, Any]]:
    rows = {}
    async for key in redis.scan_iter(match="hetu:default:*:r:Point:*", count=1000):
        raw: Any = await redis.hgetall(key)
        row = {"id": int(raw[b"id"]), "x": int(raw[b"x"]), "label": raw[b"label"]}
        row["label"] = row["label"].decode()
        rows[row["id"]] = row
    return rows


async def write_randomly(writer: Client, rng: random.Random, n: int, alive: list[int],
                         kill_at: int, kill: Any) -> None:  # fmt: skip
    for i in range(n):
        if i == kill_at:
            kill()
        roll = rng.random()
        if roll < 0.3 or len(alive) < 10:
            x = rng.randint(0, 99)
            alive.append(await writer.call("write", "Point", 0, {"x": x}))
        elif roll < 0.75:
            fields = {"x": rng.randint(0, 99)} if rng.random() < 0.7 else {
                "label": f"l{i}"
            }  # fmt: skip
            await writer.call("write", "Point", rng.choice(alive), fields)
        elif roll < 0.9:
            row_id = rng.choice(alive)
            alive.remove(row_id)
            await writer.call("remove", "Point", row_id)
        else:  # two changes in one transaction
            row_id = rng.choice(alive)
            ops = [["write", "Point", row_id, {"x": rng.randint(0, 99)}],
                   ["write", "Point", 0, {"x": rng.randint(0, 99)}]]  # fmt: skip
            alive.append((await writer.call("batch", ops))[1])
        if i % 8 == 0:
            await asyncio.sleep(0.002)  # let the watchers interleave


def expected_cids(log: list[tuple[str, list[Any]]], lo: int, since: str) -> list[str]:
    """Change ids after ``since`` that touched ``lo <= x <= lo + WIDTH``."""
    xs: dict[int, int] = {}
    out = []
    for cid, changes in log:
        touched = False
        for ch in changes:
            old = xs.pop(ch.id, None)
            if ch.row is not None:
                xs[ch.id] = ch.row["x"]
            for x in (old, xs.get(ch.id)):
                if x is not None and lo <= x <= lo + WIDTH:
                    touched = True
        if touched and _key(cid) > _key(since):
            out.append(cid)
    return out


def _key(cid: str) -> tuple[int, int]:
    ms, seq = cid.split("-")
    return int(ms), int(seq)


def received_cids(sub: Subscription) -> list[str]:
    cids: list[str] = []
    while not sub._events.empty():
        ev = sub._events.get_nowait()
        if not cids or cids[-1] != ev.cid:
            cids.append(ev.cid)
    return cids


async def test_sigkill_a_gateway_clients_resume_on_the_other(
    gateways: list[subprocess.Popen[bytes]], redis_client: aioredis.Redis
) -> None:
    rng = random.Random(int(os.environ.get("HETU_TEST_SEED", "7")))
    g1, g2 = (url(p.port) for p in gateways)  # type: ignore[attr-defined]
    async with contextlib.AsyncExitStack() as stack:
        writer = await stack.enter_async_context(hetu.client.connect(g2))
        alive: list[int] = []
        for _ in range(30):
            alive.append(
                await writer.call("write", "Point", 0, {"x": rng.randint(0, 99)})
            )
        clients = [
            await stack.enter_async_context(
                hetu.client.connect([g1, g2] if i < 12 else [g2, g1], reconnect=True)
            )
            for i in range(20)
        ]
        watches: list[tuple[Client, int, Subscription, str]] = []
        for c in clients:
            for _ in range(2):
                lo = rng.randint(0, 99 - WIDTH)
                sub = await c.watch_range("Point", "x", lo, lo + WIDTH, limit=200)
                watches.append((c, lo, sub, sub.cid))
        # and a top-3 window each: rows pushed out and refilled across the kill
        tops = [await c.watch_range("Point", "x", 0, 99, limit=3, desc=True)
                for c in clients]  # fmt: skip

        def kill() -> None:
            gateways[0].send_signal(signal.SIGKILL)

        await write_randomly(writer, rng, 300, alive, 100, kill)
        want = await points(redis_client)
        deadline = asyncio.get_running_loop().time() + 20
        for _, lo, sub, _ in watches:
            in_range = {i: r for i, r in want.items() if lo <= r["x"] <= lo + WIDTH}
            while sub.rows != in_range:
                assert asyncio.get_running_loop().time() < deadline, (lo, sub.rows)
                await asyncio.sleep(0.01)
        top3 = {r["id"]: r for r in sorted(
            want.values(), key=lambda r: (r["x"], r["id"]), reverse=True
        )[:3]}  # fmt: skip
        for sub in tops:
            while sub.rows != top3:
                assert asyncio.get_running_loop().time() < deadline, sub.rows
                await asyncio.sleep(0.01)
            cids = received_cids(sub)
            assert cids == sorted(set(cids), key=_key)  # each once, in commit order
        raw: Any = await redis_client.xrange(
            next(iter(await redis_client.keys("*:changes")))
        )
        log = [(i.decode(), change_event_decoder.decode(f[b"m"])) for i, f in raw]
        for _, lo, sub, first in watches:
            assert received_cids(sub) == expected_cids(log, lo, first), lo
        moved = [c for c in clients[:12] if c._url_index % 2 == 1]
        assert len(moved) == 12  # every client of the killed gateway resumed
    assert gateways[0].wait(5) == -signal.SIGKILL
