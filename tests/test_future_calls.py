"""FutureCalls through real redis-server and real hetu-logic worker processes."""

import asyncio
import itertools
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hetu.future_call import is_future_calls
from hetu.keys import Keys
from hetu.registry import build_layout
from hetu.testing import AppTester, CallError, FakeGateway, WorkerProcess
from hetu.wire import change_event_decoder
from hetu_logic.future_calls import Mover
from hetu_logic.worker import load_app

APP = str(Path(__file__).parent / "apps" / "timers.py")


def load_timers() -> None:
    """Define the timers app in this process (for in-process workers)."""
    if "timers" not in sys.modules:
        load_app(APP)


@pytest.fixture
def workers(redis_url: str) -> Iterator[list[WorkerProcess]]:
    """Start worker processes with ``workers.append(start(...))``; all stopped."""
    procs: list[WorkerProcess] = []
    yield procs
    for p in procs:
        p.stop()


def start(redis_url: str) -> WorkerProcess:
    return WorkerProcess(APP, redis_url, "--idle-ms", "1000").start()


async def wait_rows(
    gw: FakeGateway, lo: int, hi: int, n: int, timeout_s: float
) -> list[dict[str, Any]]:
    """The Fired rows of tags lo..hi once there are at least ``n`` (or at timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await gw.call("fired", lo, hi)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def pending_calls(redis: aioredis.Redis, gw: FakeGateway) -> int:
    """Rows left in the FutureCalls:timers table."""
    assert gw.registry is not None
    info = gw.registry.components["FutureCalls:timers"]
    tag = next(c.tag for c in gw.registry.clusters if c.id == info.cluster)
    return await redis.zcard(Keys("default").cluster(tag).index(info.name, "due_ms"))


async def moved_ids(redis: aioredis.Redis, gw: FakeGateway) -> list[int]:
    """Ids of FutureCalls rows the movers took off the table (one delete per move).

    Applied calls leave the calls stream, so the table's change log is the record.
    """
    changes = gw.stream_of("schedule_many").removesuffix("calls") + "changes"
    entries: Any = await redis.xrange(changes)
    return [
        c.id
        for _, fields in entries
        for c in change_event_decoder.decode(fields[b"m"])
        if c.kind == "delete" and c.comp.startswith("FutureCalls")
    ]


@pytest.mark.slow
async def test_1000_calls_fire_once_with_3_workers_one_killed(
    redis_client: aioredis.Redis, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers += [start(redis_url) for _ in range(3)]
    for w in workers:
        w.wait_ready()
    async with FakeGateway(redis_client) as gw:
        begin = time.time() + 1.0
        for b in range(10):  # 1,000 calls due evenly over 5 s
            await gw.call("schedule_many", b * 100, 100, begin + b * 0.5, 0.5)
        await asyncio.sleep(begin + 2.5 - time.time())
        workers[0].signal(signal.SIGKILL)
        workers.append(start(redis_url))
        rows = await wait_rows(gw, 0, 999, 1000, timeout_s=20)
        assert sorted(r["tag"] for r in rows) == list(range(1000))
        assert [r for r in rows if r["count"] != 1] == []
        early = [r for r in rows if r["ran"] < r["due_ms"] / 1000]
        assert early == []
        assert all(r["ts"] >= r["due_ms"] / 1000 and r["caller"] == 0 for r in rows)
        assert await pending_calls(redis_client, gw) == 0
        ids = await moved_ids(redis_client, gw)  # the movers: once per call
        assert len(ids) == len(set(ids)) == 1000
        await asyncio.sleep(1.5)  # nothing fires again once claims are done
        again = await gw.call("fired", 0, 999)
        assert len(again) == 1000 and all(r["count"] == 1 for r in again)


async def test_scheduled_call_survives_every_process_stopping(
    redis_client: aioredis.Redis, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers.append(start(redis_url))
    workers[0].wait_ready()
    async with FakeGateway(redis_client) as gw:
        await gw.call("schedule", 7, -1.0)
        workers[0].signal(signal.SIGTERM)
        assert workers[0].wait() == 0
        await asyncio.sleep(1.5)  # due while no worker runs
        assert await pending_calls(redis_client, gw) == 1
        workers.append(start(redis_url))
        rows = await wait_rows(gw, 7, 7, 1, timeout_s=10)
        assert [r["count"] for r in rows] == [1]


async def test_recurring_ensure_cancel_and_cron(
    redis_client: aioredis.Redis, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers += [start(redis_url), start(redis_url)]
    for w in workers:
        w.wait_ready()
    async with FakeGateway(redis_client) as gw:
        every = await gw.call("schedule", 1, -0.3, True)
        cron = await gw.call("schedule_cron", 4, "* * * * * *")
        first = await gw.call("ensure", "k1", 2, -0.5)
        assert await gw.call("ensure", "k1", 2, -0.5) == first
        racing = [gw.message("ensure", "k3", 5, -0.4, conn=c) for c in (11, 12)]
        replies = await gw.wait_replies(racing)  # concurrent: one re-runs
        assert replies[0].data == replies[1].data != first
        await gw.call("ensure", "k2", 3, -1.0)
        assert await gw.call("cancel", "k2") is True
        assert await gw.call("cancel", "k2") is False
        await asyncio.sleep(2.2)
        assert await gw.call("cancel", every) is True
        assert await gw.call("cancel", cron) is True
        await asyncio.sleep(0.6)  # anything already streamed has run by now
        rows = {t: await gw.call("fired", t, t) for t in (1, 2, 3, 4, 5)}
        await asyncio.sleep(0.7)
        assert rows == {t: await gw.call("fired", t, t) for t in (1, 2, 3, 4, 5)}
        assert all(r["count"] == 1 for t in rows for r in rows[t])
        dues = sorted(r["due_ms"] for r in rows[1])
        assert 5 <= len(dues) <= 8
        assert {b - a for a, b in itertools.pairwise(dues)} == {300}
        assert len(rows[2]) == len(rows[5]) == 1 and rows[3] == []
        assert 1 <= len(rows[4]) <= 3
        assert all(r["due_ms"] % 1000 == 0 for r in rows[4])
        assert await pending_calls(redis_client, gw) == 0
        # Rescheduling commits change events carrying the row's next due time.
        assert gw.registry is not None
        cid = gw.registry.components["FutureCalls:timers"].cluster
        tag = next(c.tag for c in gw.registry.clusters if c.id == cid)
        events: Any = await redis_client.xrange(Keys("default").cluster(tag).changes())
        nexts = [
            c.row["due_ms"]
            for _, fields in events
            for c in change_event_decoder.decode(fields[b"m"])
            if c.id == every and c.kind == "update" and c.row is not None
        ]
        assert nexts == [*dues[1:], dues[-1] + 300]


async def test_targets_are_checked_when_scheduling(
    redis_client: aioredis.Redis, redis_url: str, workers: list[WorkerProcess]
) -> None:
    workers.append(start(redis_url))
    workers[0].wait_ready()
    async with FakeGateway(redis_client) as gw:
        await gw.call("schedule_fn", 9)
        assert [r["count"] for r in await wait_rows(gw, 9, 9, 1, 10)] == [1]
        for args in (("nope",), ("fired", 1), ("fire",), ("fire", "x" * 2000)):
            with pytest.raises(CallError) as e:
                await gw.call("schedule_to", *args)
            assert e.value.code == "internal"
        assert await pending_calls(redis_client, gw) == 0
    log = workers[0].output
    assert "FutureCall target 'nope' is not a System" in log
    assert "takes 1 to 1 arguments, got 0" in log
    assert "limit is 1023" in log


async def test_concurrent_movers_stream_each_row_once(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    load_timers()
    layout = build_layout("Timers")
    comp = next(c for c in layout.cluster_of_comp if is_future_calls(c))
    by_id = {c.id: Keys("default").cluster(c.tag) for c in layout.clusters}
    ckeys = by_id[layout.cluster_of_comp[comp].id]
    # Hold the table's lease so the in-process worker's own mover stands by.
    await redis_client.set(ckeys.future_calls_mover(comp.name_), "test", px=60_000)
    movers = [
        Mover(redis_client, layout, comp, ckeys, by_id, 1000, f"m{i}") for i in range(4)
    ]
    async with AppTester(redis_url, namespace="Timers") as t:
        await t.call("schedule_many", 0, 300, time.time() - 1, 0.5)
        now_ms = int(time.time() * 1000)
        moved = 0
        while await pending_calls(redis_client, t):
            got = await asyncio.gather(*(m.move_due(now_ms) for m in movers))
            moved += sum(got)
        assert moved == 300
        events: Any = await redis_client.xrange(ckeys.changes())
        kinds = [
            (c.comp, c.kind)
            for _, fields in events
            for c in change_event_decoder.decode(fields[b"m"])
        ]
        assert kinds.count((comp.name_, "delete")) == 300  # one per row moved
        rows = await wait_rows(t, 0, 299, 300, timeout_s=10)
        assert len(rows) == 300 and all(r["count"] == 1 for r in rows)
