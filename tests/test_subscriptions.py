"""Subscriptions end to end: redis-server, hetu-logic on tests/apps/watch.py and
hetu-gateway processes, hetu.client over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import CallError, Client
from hetu.protocol import Subscribed, WatchRange
from hetu.subscription import Subscription

from .gateway_procs import logic_proc, start_gateway_proc, url

__all__ = ["start_gateway_proc"]

WATCH_APP = Path(__file__).parent / "apps" / "watch.py"
StartGateway = Callable[..., int]


@pytest.fixture
def watch_logic(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One ``hetu-logic --cluster all tests/apps/watch.py`` worker, registry ready."""
    with logic_proc(WATCH_APP, redis_url, tmp_path / "logic.log") as proc:
        yield proc


pytestmark = pytest.mark.usefixtures("watch_logic")


async def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


async def events(sub: Subscription, n: int) -> list[tuple[str, int, Any]]:
    out = []
    for _ in range(n):
        ev = await sub.next_event(timeout=5)
        assert ev is not None, f"got only {out}"
        out.append((ev.kind, ev.id, ev.row))
    assert await sub.next_event(timeout=0.05) is None
    return out


async def put(c: Client, comp: str, row_id: int, **fields: Any) -> int:
    return await c.call("write", comp, row_id, fields)


async def test_range_snapshot_then_deltas(start_gateway_proc: StartGateway) -> None:
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:
        a = await put(c, "Point", 0, x=5, label="a")
        b = await put(c, "Point", 0, x=15, label="b")
        sub = await c.watch_range("Point", "x", 0, 10)
        assert sub.rows == {a: {"id": a, "x": 5, "label": "a"}}
        assert await sub.next_event(timeout=0.05) is None  # snapshot: no events
        await put(c, "Point", b, x=7)  # moves into the range
        await put(c, "Point", a, label="A")
        await put(c, "Point", a, x=11)  # moves out
        await c.call("remove", "Point", b)
        assert await events(sub, 4) == [
            ("insert", b, {"id": b, "x": 7, "label": "b"}),
            ("update", a, {"id": a, "x": 5, "label": "A"}),
            ("delete", a, None),
            ("delete", b, None),
        ]
        assert sub.rows == {}
        await sub.close()
        await put(c, "Point", a, x=1)
        assert await sub.next_event(timeout=0.1) is None


async def test_limited_window_desc_and_refill(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:
        ids = [await put(c, "Point", 0, x=x) for x in range(10)]
        sub = await c.watch_range("Point", "x", 2, float("inf"), limit=3, desc=True)
        assert [r["x"] for r in sub.rows.values()] == [9, 8, 7]
        await put(c, "Point", 0, x=100)  # enters at the top, 7 leaves
        await c.call("remove", "Point", ids[9])  # 9 leaves, 7 comes back
        got = await events(sub, 4)
        assert [(k, r and r["x"]) for k, _, r in got] == [
            ("delete", None), ("insert", 100), ("delete", None), ("insert", 7),
        ]  # fmt: skip
        # remove everything above 2 but one, in one transaction: the margin runs
        # out and the window is re-read
        ops = [["remove", "Point", i] for i in ids[3:9]]
        await c.call("batch", ops)
        await wait_for(lambda: sorted(r["x"] for r in sub.rows.values()) == [2, 100])
        assert sorted(r["x"] for r in sub.rows.values()) == [2, 100]


async def test_watch_row_picks_up_a_later_insert(
    start_gateway_proc: StartGateway,
) -> None:
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:
        sub = await c.watch_row("Point", "x", 42)
        assert sub.row is None
        pid = await put(c, "Point", 0, x=42, label="hi")
        ev = await sub.next_event(timeout=5)
        assert ev is not None and (ev.kind, ev.id) == ("insert", pid)
        assert sub.row == {"id": pid, "x": 42, "label": "hi"}
        await put(c, "Point", 0, x=42, label="second")  # limit 1: not shown
        await put(c, "Point", pid, x=43)
        ev = await sub.next_event(timeout=5)
        assert ev is not None and ev.kind == "delete"
        ev = await sub.next_event(timeout=5)
        assert ev is not None and ev.kind == "insert"
        assert sub.row is not None and sub.row["label"] == "second"


async def test_quota_and_bad_requests(start_gateway_proc: StartGateway) -> None:
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:

        async def code_of(coro: Any) -> str:
            with pytest.raises(CallError) as info:
                await coro
            return info.value.code

        assert await code_of(c.watch_range("Nope", "x", 0, 1)) == "bad_request"
        assert await code_of(c.watch_range("Point", "label", 0, 1)) == "bad_request"
        assert await code_of(c.watch_range("Point", "x", "a", 1)) == "bad_request"
        assert await code_of(c.watch_range("Point", "x", 0, 1, limit=0)) == (
            "bad_request"
        )
        assert await code_of(c.watch_range("Point", "x", 0, 1, limit=10**6)) == (
            "quota_exceeded"
        )
        subs = [await c.watch_range("Point", "x", i, i) for i in range(100)]
        assert await code_of(c.watch_row("Point", "x", 1)) == "quota_exceeded"
        await subs[0].close()
        await c.watch_row("Point", "x", 1)
        assert await c.call("write", "Point", 0, {"x": 1}) > 0


async def test_owner_rows_and_login(start_gateway_proc: StartGateway) -> None:
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port)) as alice,
        hetu.client.connect(url(port)) as writer,
    ):
        mine = await put(writer, "Item", 0, owner=1, value=5)
        other = await put(writer, "Item", 0, owner=2, value=6)
        sub = await alice.watch_range("Item", "value", 0, 100)
        assert sub.rows == {}  # not logged in: no OWNER rows
        await alice.call("login", 1, 0)
        await wait_for(lambda: set(sub.rows) == {mine})
        await put(writer, "Item", other, value=7)  # hidden: no event
        await put(writer, "Item", other, owner=1)  # becomes visible
        ev = await sub.next_event(timeout=5)
        assert ev is not None and ev.kind == "insert"  # the login's refill
        ev = await sub.next_event(timeout=5)
        assert ev is not None and (ev.kind, ev.id) == ("insert", other)
        await put(writer, "Item", mine, owner=3)  # leaves visibility
        ev = await sub.next_event(timeout=5)
        assert ev is not None and (ev.kind, ev.id, ev.row) == ("delete", mine, None)
        assert set(sub.rows) == {other}


async def test_resume_after_trim_is_a_fresh_snapshot(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    ports = [start_gateway_proc(), start_gateway_proc()]
    async with (
        hetu.client.connect([url(p) for p in ports], reconnect=True) as c,
        hetu.client.connect(url(ports[1])) as writer,
    ):
        a = await put(writer, "Point", 0, x=1)
        sub = await c.watch_range("Point", "x", 0, 10)
        old_cid = sub.cid
        await put(writer, "Point", a, x=2)
        ev = await sub.next_event(timeout=5)
        assert ev is not None and ev.kind == "update"
        b = await put(writer, "Point", 0, x=3)
        ev = await sub.next_event(timeout=5)
        assert ev is not None and ev.kind == "insert"
        assert sub.cid > old_cid
        # the change log loses everything; the view diffs to a fresh snapshot
        (stream,) = await redis_client.keys("*:changes")
        await c._ws.close(1011)  # type: ignore[union-attr]  (a dropped socket)
        await redis_client.xtrim(stream, maxlen=0)
        await c.call("write", "Point", b, {"x": 50})  # resumes first
        ev = await sub.next_event(timeout=5)
        assert ev is not None and (ev.kind, ev.id) == ("delete", b)
        assert set(sub.rows) == {a}


async def test_a_kicked_connection_gets_nothing_more(
    start_gateway_proc: StartGateway,
) -> None:
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port)) as first,
        hetu.client.connect(url(port)) as second,
    ):
        await first.call("login", 7, 0)
        sub = await first.watch_range("Point", "x", 0, 100)
        await second.call("login", 7, 0)  # kicks the first
        await wait_for(lambda: first.closed is not None)
        await put(second, "Point", 0, x=1)
        assert await sub.next_event(timeout=0.3) is None
        assert sub.rows == {}


async def test_one_log_read_per_change_however_many_watch(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    """100 subscriptions on 20 connections: each change costs the gateway one
    XREAD reply and no Redis read per subscriber (no XRANGE, no XINFO)."""
    port = start_gateway_proc()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(hetu.client.connect(url(port)))
            for _ in range(20)
        ]
        pid = await put(clients[0], "Point", 0, x=500)
        subs = [await c.watch_row("Point", "x", 500) for c in clients for _ in range(5)]

        async def calls(cmd: str) -> int:
            stats: Any = await redis_client.info("commandstats")
            return int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0))

        before = {cmd: await calls(cmd) for cmd in ("xread", "xrange", "xinfo")}
        for i in range(20):
            await put(clients[0], "Point", pid, label=f"v{i}")
            for sub in subs:
                ev = await sub.next_event(timeout=5)
                assert ev is not None and ev.row is not None
                assert ev.row["label"] == f"v{i}"
        after = {cmd: await calls(cmd) for cmd in before}
        assert after["xrange"] == before["xrange"]
        assert after["xinfo"] == before["xinfo"]
        assert after["xread"] - before["xread"] <= 20 + 5  # + idle 1 s timeouts


async def test_resume_replays_missed_changes_into_a_limited_window(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port), reconnect=True) as c,
        hetu.client.connect(url(port)) as writer,
    ):
        ids = [await put(writer, "Point", 0, x=x) for x in range(10, 20)]
        sub = await c.watch_range("Point", "x", 0, 100, limit=3)
        seen: list[str] = []
        await c._ws.close(1011)  # type: ignore[union-attr]  (a dropped socket)
        await writer.call("remove", "Point", ids[0])
        await put(writer, "Point", ids[1], x=50)
        await put(writer, "Point", 0, x=1)
        await writer.call("batch", [["remove", "Point", i] for i in ids[2:9]])
        await put(writer, "Point", 0, x=2)
        rows = [(r["x"], r["id"]) for r in (await _points(redis_client)).values()]
        want = {i for _, i in sorted(rows)[:3]}
        await wait_for(lambda: set(sub.rows) == want)
        while (ev := await sub.next_event(timeout=0.2)) is not None:
            seen.append(ev.cid)
        assert seen == sorted(seen)  # in commit order
        assert sorted(r["x"] for r in sub.rows.values()) == [1, 2, 19]


async def _points(redis: aioredis.Redis) -> dict[int, dict[str, Any]]:
    rows = {}
    async for key in redis.scan_iter(match="hetu:default:*:r:Point:*"):
        raw: Any = await redis.hgetall(key)
        rows[int(raw[b"id"])] = {"id": int(raw[b"id"]), "x": int(raw[b"x"])}
    return rows


async def test_watch_rows_under_random_writes(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    """Equality subscriptions are dispatched by value and by held row; each must
    still show the lowest-id row with its value, also when it subscribed while
    writes were going on."""

    rng = random.Random(11)
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port)) as c,
        hetu.client.connect(url(port)) as writer,
    ):
        alive: list[int] = []

        async def write(n: int) -> None:
            for _ in range(n):
                roll = rng.random()
                if roll < 0.4 or len(alive) < 5:
                    alive.append(await put(writer, "Point", 0, x=rng.randint(0, 11)))
                elif roll < 0.85:
                    await put(writer, "Point", rng.choice(alive), x=rng.randint(0, 11))
                else:
                    row_id = rng.choice(alive)
                    alive.remove(row_id)
                    await writer.call("remove", "Point", row_id)

        background = asyncio.create_task(write(60))
        subs = {v: await c.watch_row("Point", "x", v) for v in range(10)}
        await background
        await write(100)
        rows = await _points(redis_client)
        for v, sub in subs.items():
            ids = sorted(i for i, r in rows.items() if r["x"] == v)
            await wait_for(lambda: set(sub.rows) == set(ids[:1]))  # noqa: B023


async def test_a_forged_resume_view_gets_a_fresh_snapshot(
    start_gateway_proc: StartGateway,
) -> None:
    """A view the connection could not have had (hidden, out of range, wrong
    types) is not trusted: the reply is a fresh snapshot of visible rows."""
    port = start_gateway_proc()
    async with hetu.client.connect(url(port)) as c:
        mine = await put(c, "Item", 0, owner=1, value=5)
        other = await put(c, "Item", 0, owner=2, value=6)
        await c.call("login", 1, 0)
        since = (await c.watch_range("Item", "value", 0, 100)).cid
        forged = [
            [{"id": other, "owner": 2, "value": 6, "note": ""}],  # hidden
            [{"id": mine, "owner": 1, "value": 500, "note": ""}],  # out of range
            [{"id": mine, "owner": 1, "value": "5", "note": ""}],  # wrong type
            [{"owner": 1, "value": 5}],  # no id
            [{"id": mine, "owner": 1, "value": 5, "note": ""}] * 2,  # twice
        ]
        for view in forged:
            reply = await c.request(
                lambda rid, v=view: WatchRange(
                    rid, "Item", "value", 0, 100, 10, False, since, v
                )
            )
            assert isinstance(reply, Subscribed) and reply.fresh
            assert [r["id"] for r in reply.rows] == [mine]
        honest = [{"id": mine, "owner": 1, "value": 5, "note": ""}]
        reply = await c.request(
            lambda rid: WatchRange(
                rid, "Item", "value", 0, 100, 10, False, since, honest
            )
        )
        assert isinstance(reply, Subscribed) and not reply.fresh
