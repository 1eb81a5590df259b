"""Transactions on a real redis-server: isolation, uniqueness, own writes, extras."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

import hetu
from hetu.errors import RaceCondition, UniqueViolation
from hetu.fastredis import FastRedis
from hetu.keys import ClusterKeys
from hetu.storage import CommitExtras, Session
from hetu.wire import ReplyMsg, RowChange, call_encoder, change_event_decoder

KEYS = ClusterKeys("test", "c1")


@hetu.define_component(namespace="StorageTest", force=True)
class Account(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    name: str = hetu.property_field("", unique=True, dtype="U16")
    gold: np.int64 = hetu.property_field(0)
    score: np.float32 = hetu.property_field(0.0, index=True)


def _s(value: Any) -> str:
    return value.decode()


@pytest.fixture(params=["redis-py", "FastRedis"])
async def db(request: Any, redis_client: aioredis.Redis, redis_url: str):
    """The client Sessions run on: redis-py's, or hetu's FastRedis."""
    if request.param == "redis-py":
        yield redis_client
    else:
        fast = await FastRedis.from_url(redis_url)
        yield fast
        await fast.aclose()


def session(r: Any) -> Session:
    return Session(r, KEYS)


async def add(r: Any, **values: Any) -> int:
    row = Account.new_row()
    for k, v in values.items():
        row[k] = v
    async with session(r) as s:
        await s[Account].insert(row)
    return int(row.id)


async def test_concurrent_increments_lose_no_update(
    db: Any, redis_client: aioredis.Redis
):
    row_id = await add(db, name="counter")

    async def increment() -> None:
        for attempt in range(10_000):
            s = session(db)
            row = await s[Account].get(id=row_id)
            assert row is not None
            row.gold += 1
            await s[Account].update(row)
            try:
                await s.commit()
                return
            except RaceCondition:
                await asyncio.sleep(random.random() * 0.001 * min(attempt, 20))
        raise AssertionError("too many retries")

    async def task() -> None:
        for _ in range(20):
            await increment()

    await asyncio.gather(*(task() for _ in range(100)))
    row = await session(db)[Account].get(id=row_id)
    assert row is not None
    assert row.gold == 2000
    assert row._version == 2001


async def test_concurrent_unique_inserts_one_wins(
    db: Any, redis_client: aioredis.Redis
):
    index = KEYS.index("Account", "name")
    for i in range(20):
        name = f"bob{i}"
        s1, s2 = session(db), session(db)
        for s in (s1, s2):
            assert await s[Account].get(name=name) is None
            row = Account.new_row()
            row.name = name
            await s[Account].insert(row)
        results = await asyncio.gather(s1.commit(), s2.commit(), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1
        # the loser read "no bob" first: a phantom (race) or the unique check
        assert isinstance(errors[0], RaceCondition | UniqueViolation)
        members: list[Any] = list(await redis_client.zrange(index, 0, -1))
        assert len([m for m in members if m.startswith(name.encode() + b"\0\0")]) == 1

    # without the read, the unique check itself must reject the second insert
    a, b = Account.new_row(), Account.new_row()
    a.name = b.name = "carol"
    s1, s2 = session(db), session(db)
    await s1[Account].insert(a)
    await s2[Account].insert(b)
    results = await asyncio.gather(s1.commit(), s2.commit(), return_exceptions=True)
    assert sum(isinstance(r, UniqueViolation) for r in results) == 1
    assert len(await redis_client.keys(KEYS.row_prefix("Account") + "*")) == 21


async def test_stale_read_aborts_write_elsewhere(db: Any, redis_client: aioredis.Redis):
    a_id = await add(db, name="a", gold=1)
    b_id = await add(db, name="b", gold=1)
    s = session(db)
    a = await s[Account].get(id=a_id)
    b = await s[Account].get(id=b_id)
    assert a is not None and b is not None
    b.gold = a.gold + 10
    await s[Account].update(b)

    other = session(db)
    a2 = await other[Account].get(id=a_id)
    assert a2 is not None
    a2.gold = 5
    await other[Account].update(a2)
    await other.commit()

    with pytest.raises(RaceCondition):
        await s.commit()
    b_now = await session(db)[Account].get(id=b_id)
    assert b_now is not None and b_now.gold == 1


async def test_phantom_after_absent_get_aborts(db: Any, redis_client: aioredis.Redis):
    s = session(db)
    assert await s[Account].get(owner=7) is None
    row = Account.new_row()
    row.name = "x"
    await s[Account].insert(row)
    await add(db, name="y", owner=7)
    with pytest.raises(RaceCondition):
        await s.commit()


async def test_range_sees_own_writes(db: Any, redis_client: aioredis.Redis):
    ids = [await add(db, name=f"n{i}", owner=i) for i in range(6)]
    s = session(db)
    repo = s[Account]
    assert list((await repo.range(owner=(0, 9), limit=3)).owner) == [0, 1, 2]
    row1 = await repo.get(id=ids[1])
    row3 = await repo.get(id=ids[3])
    assert row1 is not None and row3 is not None
    row1.owner = 8  # moves out of the first three
    await repo.update(row1)
    repo.delete(row3.id)
    new = Account.new_row()
    new.owner, new.name = 2, "new"
    await repo.insert(new)

    got = await repo.range(owner=(0, 9), limit=4)
    assert list(got.owner) == [0, 2, 2, 4]
    assert list(got.name) == ["n0", "n2", "new", "n4"]
    got = await repo.range("owner", 0, 9, limit=-1, desc=True)
    assert list(got.owner) == [8, 5, 4, 2, 2, 0]
    assert list((await repo.range("owner", 3)).id) == []
    assert list((await repo.range("owner", "(2", "[8")).owner) == [4, 5, 8]
    assert (await repo.get(id=ids[3])) is None
    assert (await repo.get(owner=8)).name == "n1"  # type: ignore[union-attr]
    await s.commit()
    committed = await session(db)[Account].range(owner=(0, 9), limit=-1)
    assert list(committed.name) == ["n0", "n2", "new", "n4", "n5", "n1"]


async def test_delete_and_reinsert_unique_value(db: Any, redis_client: aioredis.Redis):
    old_id = await add(db, name="dora")
    s = session(db)
    old = await s[Account].get(name="dora")
    assert old is not None
    s[Account].delete(old.id)
    new = Account.new_row()
    new.name = "dora"
    await s[Account].insert(new)
    await s.commit()
    got = await session(db)[Account].range("name", "dora", limit=-1)
    assert list(got.id) == [new.id] and new.id != old_id
    assert await redis_client.exists(KEYS.row("Account", old_id)) == 0


async def test_unique_violation_inside_one_transaction(
    db: Any, redis_client: aioredis.Redis
):
    await add(db, name="eve")
    s = session(db)
    a, b = Account.new_row(), Account.new_row()
    a.name = b.name = "fred"
    await s[Account].insert(a)
    with pytest.raises(UniqueViolation, match="fred"):
        await s[Account].insert(b)
    c = Account.new_row()
    c.name = "eve"  # taken in Redis, not read here: the commit script decides
    await s[Account].insert(c)
    with pytest.raises(UniqueViolation, match="eve"):
        await s.commit()
    assert await session(db)[Account].get(name="fred") is None


async def test_upsert_inserts_then_updates(db: Any, redis_client: aioredis.Redis):
    for gold in (1, 2):
        s = session(db)
        async with s[Account].upsert(name="gus") as row:
            row.gold += gold
        await s.commit()
    rows = await session(db)[Account].range("name", "gus")
    assert len(rows) == 1 and rows[0].gold == 3 and rows[0]._version == 2


async def test_misuse_errors(db: Any, redis_client: aioredis.Redis):
    row_id = await add(db, name="h")
    s = session(db)
    row = Account.new_row(row_id)
    with pytest.raises(ValueError, match="not read"):
        await s[Account].update(row)
    with pytest.raises(ValueError, match="not read"):
        s[Account].delete(row_id)
    with pytest.raises(ValueError, match="gold is not indexed"):
        await s[Account].get(gold=1)
    with pytest.raises(ValueError, match="not unique"):
        async with s[Account].upsert(owner=1):
            pass


async def test_read_only_commit_makes_no_call(db: Any, redis_client: aioredis.Redis):
    row_id = await add(db, name="i")
    await session(db)[Account].range(owner=(0, 5))  # loads the script
    await redis_client.config_resetstat()
    s = session(db)
    assert await s[Account].get(id=row_id) is not None
    await s[Account].range(owner=(0, 5))
    result = await s.commit()
    assert not result.called
    stats = await redis_client.info("commandstats")
    assert "cmdstat_evalsha" in stats  # the range read
    assert stats["cmdstat_evalsha"]["calls"] == 1


async def test_commit_extras(db: Any, redis_client: aioredis.Redis):
    calls, group = KEYS.calls(), "logic"
    await redis_client.xgroup_create(calls, group, id="0", mkstream=True)
    entry = await redis_client.xadd(calls, {"m": b"call"})
    await redis_client.xreadgroup(group, "w1", {calls: ">"})
    pubsub = redis_client.pubsub()
    await pubsub.subscribe("gw:test")
    await pubsub.get_message(timeout=1)  # subscribe confirmation

    reply = call_encoder.encode(ReplyMsg(rid="r1", conn=1, ok=True, data="ok"))
    extras = CommitExtras(
        ack_stream=calls,
        ack_group=group,
        ack_id=_s(entry),
        reply_channel="gw:test",
        reply=reply,
        reply_cache_key=KEYS.reply_cache("r1"),
        reply_cache_ttl_s=60,
        changes_stream=KEYS.changes(),
        changes_maxlen=1000,
    )
    row = Account.new_row()
    row.name, row.gold, row.score = "jo", 7, 1.5
    s = session(db)
    await s[Account].insert(row)
    result = await s.commit(extras)

    assert result.called and result.duplicate_reply is None
    assert (await redis_client.xpending(calls, group))["pending"] == 0
    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert msg is not None and msg["data"] == reply
    assert await redis_client.get(KEYS.reply_cache("r1")) == reply
    assert 0 < await redis_client.ttl(KEYS.reply_cache("r1")) <= 60
    fields: Any
    [(change_id, fields)] = await redis_client.xrange(KEYS.changes())  # type: ignore[misc]
    assert _s(change_id) == result.change_id
    values = {"id": int(row.id), "owner": 0, "name": "jo", "gold": 7, "score": 1.5}
    assert change_event_decoder.decode(fields[b"m"]) == [
        RowChange("Account", "insert", int(row.id), {**values, "_version": 1})
    ]

    # the same request again: nothing applied, the cached reply comes back
    entry2 = await redis_client.xadd(calls, {"m": b"call"})
    await redis_client.xreadgroup(group, "w1", {calls: ">"})
    s = session(db)
    again = await s[Account].get(id=row.id)
    assert again is not None
    again.gold = 100
    await s[Account].update(again)
    dup = await s.commit(
        CommitExtras(
            ack_stream=calls,
            ack_group=group,
            ack_id=_s(entry2),
            reply_channel="gw:test",
            reply=b"other",
            reply_cache_key=KEYS.reply_cache("r1"),
            reply_cache_ttl_s=60,
            changes_stream=KEYS.changes(),
        )
    )
    assert dup.duplicate_reply == reply and dup.change_id == ""
    assert (await session(db)[Account].get(id=row.id)).gold == 7  # type: ignore[union-attr]
    assert (await redis_client.xpending(calls, group))["pending"] == 0
    assert await redis_client.xlen(KEYS.changes()) == 1
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    await pubsub.aclose()


async def test_failed_commit_with_extras_neither_acks_nor_replies(
    db: Any, redis_client: aioredis.Redis
):
    calls, group = KEYS.calls(), "logic"
    await redis_client.xgroup_create(calls, group, id="0", mkstream=True)
    entry = await redis_client.xadd(calls, {"m": b"call"})
    await redis_client.xreadgroup(group, "w1", {calls: ">"})
    row_id = await add(db, name="k")
    s = session(db)
    row = await s[Account].get(id=row_id)
    assert row is not None
    row.gold = 1
    await s[Account].update(row)
    await add(db, name="k2")  # unrelated
    other = session(db)
    r2 = await other[Account].get(id=row_id)
    r2.gold = 2  # type: ignore[union-attr]
    await other[Account].update(r2)
    await other.commit()
    extras = CommitExtras(
        ack_stream=calls,
        ack_group=group,
        ack_id=_s(entry),
        reply_channel="gw:test",
        reply=b"r",
        reply_cache_key=KEYS.reply_cache("r9"),
        reply_cache_ttl_s=60,
        changes_stream=KEYS.changes(),
    )
    with pytest.raises(RaceCondition):
        await s.commit(extras)
    assert (await redis_client.xpending(calls, group))["pending"] == 1
    assert await redis_client.exists(KEYS.reply_cache("r9"), KEYS.changes()) == 0


async def test_extras_without_writes_still_ack_and_reply(
    db: Any, redis_client: aioredis.Redis
):
    calls, group = KEYS.calls(), "logic"
    await redis_client.xgroup_create(calls, group, id="0", mkstream=True)
    entry = await redis_client.xadd(calls, {"m": b"call"})
    await redis_client.xreadgroup(group, "w1", {calls: ">"})
    result = await session(db).commit(
        CommitExtras(
            ack_stream=calls,
            ack_group=group,
            ack_id=_s(entry),
            reply=b"r",
            reply_cache_key=KEYS.reply_cache("r2"),
            reply_cache_ttl_s=5,
            changes_stream=KEYS.changes(),
        )
    )
    assert result.called and result.change_id == ""
    assert (await redis_client.xpending(calls, group))["pending"] == 0
    assert await redis_client.get(KEYS.reply_cache("r2")) == b"r"
    assert await redis_client.exists(KEYS.changes()) == 0


async def test_update_to_a_taken_unique_value(db: Any, redis_client: aioredis.Redis):
    await add(db, name="taken")
    row_id = await add(db, name="free")
    s = session(db)
    row = await s[Account].get(id=row_id)
    assert row is not None
    row.name = "taken"  # the other row was not read: the commit script decides
    await s[Account].update(row)
    with pytest.raises(UniqueViolation, match="taken"):
        await s.commit()
    s = session(db)
    row = await s[Account].get(id=row_id)
    other = await s[Account].get(name="taken")
    assert row is not None and other is not None
    row.name = "taken"  # now it was read: rejected at once
    with pytest.raises(UniqueViolation, match="taken"):
        await s[Account].update(row)
    row.name = "renamed"
    await s[Account].update(row)
    await s.commit()
    names = await session(db)[Account].range("name", "[a", "[z", limit=-1)
    assert sorted(names.name) == ["renamed", "taken"]


def test_extras_reject_what_would_fail_halfway() -> None:
    with pytest.raises(ValueError, match="ttl"):
        CommitExtras(reply_cache_key="k")
    with pytest.raises(ValueError, match="ack_group"):
        CommitExtras(ack_stream="s", ack_id="1-0")


async def test_range_reads_rows_of_any_int64_id(db: Any, redis_client: aioredis.Redis):
    ids = [-(2**63), -(2**32) - 7, -1, 0, 1, 65535, 2**53 + 1, 2**63 - 1]
    async with session(db) as s:
        for k, i in enumerate(ids):
            row = Account.new_row(i)
            row.name, row.owner = f"n{k}", 3
            await s[Account].insert(row)
    got = await session(db)[Account].range("owner", 3, limit=-1)
    assert list(got.id) == ids  # range.lua found each row hash from the member
    assert list(got.name) == [f"n{k}" for k in range(len(ids))]
