"""System execution in an in-process worker: checks, replies, errors, depends."""

import asyncio
import logging

import numpy as np
import pytest

import hetu
from hetu.testing import AppTester, CallError

NS = "LogicExec"
EVERYBODY = hetu.Permission.EVERYBODY


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Score(hetu.BaseComponent):
    name: str = hetu.property_field("", unique=True, dtype="U16")
    points: np.int32 = hetu.property_field(0, index=True)


def only_positive(ctx, name, points):
    if points <= 0:
        raise hetu.ClientReject("not_positive", f"{name} sent {points}")


@hetu.define_system(namespace=NS, components=(Score,), permission=EVERYBODY, force=True)
@hetu.guard(only_positive)
async def put(ctx, name, points):
    row = Score.new_row()
    row.name = name
    row.points = points
    await ctx.repo[Score].insert(row)
    return hetu.ResponseToClient(row.points)  # a NumPy scalar


@hetu.define_system(namespace=NS, components=(Score,), permission=EVERYBODY, force=True)
async def scores(ctx, lo, hi):
    return hetu.ResponseToClient(await ctx.repo[Score].range("points", lo, hi))


@hetu.define_system(namespace=NS, components=(Score,), permission=EVERYBODY, force=True)
async def one(ctx, name):
    return hetu.ResponseToClient(await ctx.repo[Score].get(name=name))


@hetu.define_system(namespace=NS, permission=EVERYBODY, force=True)
@hetu.rate_limit(2, 60)
async def limited(ctx):
    return hetu.ResponseToClient(ctx.race_count)


@hetu.define_system(namespace=NS, permission=EVERYBODY, force=True)
async def broken(ctx):
    raise RuntimeError("secret detail")


@hetu.define_system(namespace=NS, permission=hetu.Permission.ADMIN, force=True)
async def admin_only(ctx):
    return hetu.ResponseToClient(ctx.is_admin())


@hetu.define_system(namespace=NS, components=(Score,), force=True)
async def bump(ctx, name):
    row = await ctx.repo[Score].get(name=name)
    if row is None:
        row = Score.new_row()
        row.name = name
        row.points = 1
        await ctx.repo[Score].insert(row)
        return hetu.ResponseToClient(1)
    row.points += 1
    await ctx.repo[Score].update(row)
    return hetu.ResponseToClient(int(row.points))


@hetu.define_system(namespace=NS, permission=EVERYBODY, force=True,
                   depends=("bump:copy",))  # fmt: skip
async def bump_copy(ctx, name):
    return await ctx.depend["bump:copy"](ctx, name)


@hetu.define_system(namespace=NS, components=(Score,), call_lock=True, force=True)
async def once(ctx, name):
    return await bump(ctx, name)


@hetu.define_endpoint(namespace=NS, permission=EVERYBODY, force=True)
async def twice_once(ctx, name, uuid):
    first = await ctx.systems.call("once", name, uuid=uuid)
    second = await ctx.systems.call("once", name, uuid=uuid)
    return hetu.ResponseToClient([first.data, second])


@hetu.define_system(namespace=NS, components=(Score,), permission=EVERYBODY, force=True)
async def racy(ctx, name):
    """Read-modify-write with a yield in between: concurrent calls conflict."""
    row = await ctx.repo[Score].get(name=name)
    await asyncio.sleep(0.01)
    row.points += 1
    await ctx.repo[Score].update(row)


@hetu.define_system(namespace=NS, components=(Score,), permission=EVERYBODY, force=True)
async def put_some(ctx):
    for name, keep in [("dropped", False), ("early", True), ("last", True)]:
        row = Score.new_row()
        row.name = name
        await ctx.repo[Score].insert(row)
        if not keep:
            await ctx.session_discard()
        elif name == "early":
            await ctx.session_commit()


@pytest.fixture
async def tester(redis_url):
    async with AppTester(redis_url, namespace=NS) as t:
        yield t


async def test_response_conversion_and_tables(tester: AppTester) -> None:
    assert await tester.call("put", "ann", 5) == 5
    assert await tester.call("put", "bob", 7) == 7
    got = await tester.call("scores", 0, 100)
    assert [(r["name"], r["points"]) for r in got] == [("ann", 5), ("bob", 7)]
    assert "_version" not in got[0]
    assert (await tester.call("one", "bob"))["points"] == 7
    assert await tester.call("one", "nobody") is None
    row = await tester.read(Score).get(name="ann")
    assert row is not None and row.points == 5


async def test_error_codes(tester: AppTester, caplog) -> None:
    await tester.call("put", "ann", 5)
    with pytest.raises(CallError) as e:
        await tester.call("put", "ann", 6)
    assert e.value.code == "unique_violation"
    with pytest.raises(CallError) as e:
        await tester.call("put", "cat", -1)
    assert (e.value.code, e.value.message) == ("rejected", "not_positive")
    with caplog.at_level(logging.ERROR), pytest.raises(CallError) as e:
        await tester.call("broken")
    assert e.value.code == "internal" and "secret" not in e.value.message
    assert "secret detail" in caplog.text
    with pytest.raises(CallError) as e:
        await tester.call("nope")
    assert e.value.code == "unknown_system"
    with pytest.raises(CallError) as e:
        await tester.call("bump", "x")  # permission=None: server-side only
    assert e.value.code == "permission_denied"
    with pytest.raises(CallError) as e:
        await tester.call("admin_only", group="player")
    assert e.value.code == "permission_denied"
    assert await tester.call("admin_only", group="admin1") is True


async def test_argument_count_checked(tester: AppTester) -> None:
    for args in [(), ("a",), ("a", 1, 2)]:
        with pytest.raises(CallError) as e:
            await tester.call("put", *args)
        assert e.value.code == "bad_arguments"


async def test_rate_limit_per_connection(tester: AppTester) -> None:
    assert await tester.call("limited", conn=1) == 0
    assert await tester.call("limited", conn=1) == 0
    with pytest.raises(CallError) as e:
        await tester.call("limited", conn=1)
    assert e.value.code == "rate_limited"
    assert await tester.call("limited", conn=2) == 0


async def test_tagged_dependency_uses_copied_table(tester: AppTester) -> None:
    assert await tester.call("bump_copy", "z") == 1
    assert await tester.call("bump_copy", "z") == 2
    assert await tester.read(Score).get(name="z") is None
    copy = Score.duplicate(NS, "copy")
    row = await tester.read(copy).get(name="z")
    assert row is not None and row.points == 2


async def test_call_lock_runs_once_per_uuid(tester: AppTester) -> None:
    assert await tester.call("twice_once", "q", "u1") == [1, None]
    assert await tester.call("twice_once", "q", "u2") == [2, None]


async def test_conflicts_are_retried(tester: AppTester) -> None:
    await tester.call("put", "r", 1)
    msgs = [tester.message("racy", "r", conn=i) for i in range(20)]
    replies = await asyncio.gather(*(tester.wait_reply(m) for m in msgs))
    assert all(r.ok for r in replies)
    row = await tester.read(Score).get(name="r")
    assert row is not None and row.points == 21


async def test_same_request_id_is_answered_from_cache(tester: AppTester) -> None:
    await tester.call("put", "s", 1)
    first = await tester.wait_reply(tester.message("racy", "s", rid="fixed", conn=1))
    again = await tester.wait_reply(tester.message("racy", "s", rid="fixed", conn=2))
    assert first.ok and again.ok and again.conn == 2
    row = await tester.read(Score).get(name="s")
    assert row is not None and row.points == 2


async def test_session_commit_and_discard(tester: AppTester) -> None:
    await tester.call("put_some")
    names = [r["name"] for r in await tester.call("scores", -1, 1)]
    assert names == ["early", "last"]
