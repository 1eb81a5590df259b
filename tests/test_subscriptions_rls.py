"""Row-level security on subscriptions, randomized (issue 4 "Must show").

Five users watch an OWNER table and an RLS table through a real gateway while a
writer inserts, updates (the rule's field too, and across the range bounds) and
deletes rows, sometimes several in one transaction, and users' clearances
change. After every step each view must equal what a direct Redis read
filtered by the rule gives, and no event may ever carry a row the rule hides.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

import hetu.client
from hetu.client import Client
from hetu.subscription import Subscription

from .gateway_procs import start_gateway_proc, url
from .test_subscriptions import StartGateway, watch_logic

__all__ = ["start_gateway_proc", "watch_logic"]

pytestmark = pytest.mark.usefixtures("watch_logic")

USERS = (1, 2, 3, 4, 5)
LIMIT = 4
LO, HI = 20, 80


async def table(redis: aioredis.Redis, comp: str) -> dict[int, dict[str, Any]]:
    """Every row of ``comp`` read straight from Redis."""
    rows = {}
    async for key in redis.scan_iter(match=f"hetu:default:*:r:{comp}:*", count=1000):
        raw: Any = await redis.hgetall(key)
        row: dict[str, Any] = {"id": int(raw[b"id"])}
        if comp == "Item":
            row |= {"owner": int(raw[b"owner"]), "value": int(raw[b"value"])}
            row["note"] = raw[b"note"].decode()
        else:
            row |= {"pos": float(raw[b"pos"]), "level": int(raw[b"level"])}
            row["title"] = raw[b"title"].decode()
        rows[row["id"]] = row
    return rows


def item_rule(user: int, row: dict[str, Any]) -> bool:
    return row["owner"] == user


def doc_rule(clearance: int, row: dict[str, Any]) -> bool:
    return row["level"] <= clearance


def expected(
    rows: dict[int, dict[str, Any]], field: str, desc: bool, rule: Any
) -> dict[int, dict[str, Any]]:
    inside = [r for r in rows.values() if LO <= r[field] <= HI and rule(r)]
    inside.sort(key=lambda r: (r[field], r["id"]), reverse=desc)
    return {r["id"]: r for r in inside[:LIMIT]}


class Watcher:
    """One user's two subscriptions and the checks on every event."""

    def __init__(self, user: int, client: Client) -> None:
        self.user = user
        self.clearance = user
        self.client = client
        self.items: Subscription
        self.docs: Subscription
        self.shadow: dict[str, dict[int, dict[str, Any]]] = {"Item": {}, "Doc": {}}

    async def start(self) -> None:
        assert (await self.client.call("login", self.user, self.clearance))[0]
        self.items = await self.client.watch_range("Item", "value", LO, HI, LIMIT)
        self.docs = await self.client.watch_range(
            "Doc", "pos", float(LO), float(HI), LIMIT, desc=True
        )
        self.shadow = {"Item": dict(self.items.rows), "Doc": dict(self.docs.rows)}

    def drain(self) -> None:
        """Check every event received so far (no hidden row, consistent kinds)."""
        for name, sub, allowed in (
            ("Item", self.items, lambda r: item_rule(self.user, r)),
            ("Doc", self.docs, lambda r: doc_rule(self.clearance, r)),
        ):
            shadow = self.shadow[name]
            while not sub._events.empty():
                ev = sub._events.get_nowait()
                if ev.kind == "delete":
                    assert ev.row is None and ev.id in shadow, (self.user, ev)
                    del shadow[ev.id]
                    continue
                assert ev.row is not None and allowed(ev.row), (self.user, ev)
                assert (ev.id in shadow) == (ev.kind == "update"), (self.user, ev)
                shadow[ev.id] = ev.row

    def matches(self, items: dict[int, Any], docs: dict[int, Any]) -> bool:
        want_items = expected(items, "value", False, lambda r: item_rule(self.user, r))
        want_docs = expected(docs, "pos", True, lambda r: doc_rule(self.clearance, r))
        return self.items.rows == want_items and self.docs.rows == want_docs


def random_op(rng: random.Random, ids: dict[str, list[int]]) -> list[Any]:
    comp = rng.choice(("Item", "Doc"))
    known = ids[comp]
    roll = rng.random()
    if roll < 0.35 or len(known) < 6:
        if comp == "Item":
            fields = {"owner": rng.choice(USERS), "value": rng.randint(0, 100)}
        else:
            fields = {"pos": rng.uniform(0, 100), "level": rng.randint(1, 6)}
        return ["write", comp, 0, fields]
    row_id = rng.choice(known)
    if roll < 0.85:
        if comp == "Item":
            field = rng.choice(("owner", "value", "note"))
            value = {
                "owner": rng.choice(USERS),
                "value": rng.randint(0, 100),
                "note": f"n{rng.randint(0, 9)}",
            }[field]
        else:
            field = rng.choice(("pos", "level", "title"))
            value = {
                "pos": rng.uniform(0, 100),
                "level": rng.randint(1, 6),
                "title": f"t{rng.randint(0, 9)}",
            }[field]
        return ["write", comp, row_id, {field: value}]
    known.remove(row_id)
    return ["remove", comp, row_id]


async def run_op(writer: Client, op: list[Any], ids: dict[str, list[int]]) -> None:
    got = await writer.call(op[0], *op[1:])
    if op[0] == "write" and op[2] == 0:
        ids[op[1]].append(got)


async def test_rls_randomized(
    start_gateway_proc: StartGateway, redis_client: aioredis.Redis
) -> None:
    seed = int(os.environ.get("HETU_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    port = start_gateway_proc()
    async with (
        hetu.client.connect(url(port)) as writer,
        hetu.client.connect(url(port)) as c1,
        hetu.client.connect(url(port)) as c2,
        hetu.client.connect(url(port)) as c3,
        hetu.client.connect(url(port)) as c4,
        hetu.client.connect(url(port)) as c5,
    ):
        ids: dict[str, list[int]] = {"Item": [], "Doc": []}
        for _ in range(50):  # some rows before anyone watches
            await run_op(writer, random_op(rng, ids), ids)
        watchers = [
            Watcher(u, c) for u, c in zip(USERS, (c1, c2, c3, c4, c5), strict=True)
        ]
        for w in watchers:
            await w.start()
        for step in range(120):
            if rng.random() < 0.06:  # a user's clearance changes (user_data)
                w = rng.choice(watchers)
                w.drain()
                w.clearance = rng.randint(0, 6)
                await w.client.call("set_clearance", w.clearance)
            elif rng.random() < 0.15:  # several changes in one transaction
                ops = [random_op(rng, ids) for _ in range(rng.randint(2, 4))]
                ops = [op for op in ops if op[0] == "write" or op[2] not in (
                    o[2] for o in ops if o is not op and o[0] == "write"
                )]  # fmt: skip
                new = await writer.call("batch", ops)
                for op in ops:
                    if op[0] == "write" and op[2] == 0:
                        ids[op[1]].append(new.pop(0))
                    elif op[0] == "write":
                        new.pop(0)
            else:
                await run_op(writer, random_op(rng, ids), ids)
            items, docs = (
                await table(redis_client, "Item"),
                await table(redis_client, "Doc"),
            )
            deadline = asyncio.get_running_loop().time() + 5
            for w in watchers:
                while not w.matches(items, docs):
                    w.drain()
                    assert asyncio.get_running_loop().time() < deadline, (
                        f"seed {seed} step {step}: user {w.user} sees "
                        f"{w.items.rows} / {w.docs.rows}"
                    )
                    await asyncio.sleep(0.003)
                w.drain()
        await asyncio.sleep(0.1)
        items, docs = (
            await table(redis_client, "Item"),
            await table(redis_client, "Doc"),
        )
        for w in watchers:
            w.drain()
            assert w.shadow == {"Item": w.items.rows, "Doc": w.docs.rows}
            assert w.matches(items, docs), f"seed {seed}: a late event changed a view"
