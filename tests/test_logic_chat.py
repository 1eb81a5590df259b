"""The chat example served by a real hetu-logic process; calls come from a test
producer that writes CallMsgs into the cluster streams like a gateway."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hetu.keys import Keys
from hetu.testing import CallError, FakeGateway, WorkerProcess
from hetu.wire import KickMsg, change_event_decoder

CHAT = str(Path(__file__).parents[1] / "examples" / "chat.py")


@pytest.fixture
def worker(redis_url: str) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(CHAT, redis_url, "--idle-ms", "1000").start()
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
async def gateways(
    redis_client: aioredis.Redis, worker: WorkerProcess
) -> AsyncIterator[tuple[FakeGateway, FakeGateway]]:
    async with (
        FakeGateway(redis_client, gw="gw-a") as a,
        FakeGateway(redis_client, gw="gw-b") as b,
    ):
        await a.load_registry()
        await b.load_registry()
        yield a, b


async def test_replies_reach_the_calling_gateway_and_request(gateways) -> None:
    a, b = gateways
    assert a.registry.namespace == "Chat"
    assert {"add", "get", "hello", "user_chat", "login"} <= set(a.registry.systems)
    msgs_a = [a.message("add", 1, 1, conn=i) for i in range(20)]
    msgs_b = [b.message("add", 2, 10, conn=i) for i in range(20)]
    got = await asyncio.gather(
        *(a.wait_reply(m) for m in msgs_a), *(b.wait_reply(m) for m in msgs_b)
    )
    assert all(r.ok for r in got)
    for m, r in zip(msgs_a + msgs_b, got, strict=True):
        assert (r.rid, r.conn) == (m.rid, m.conn)
    assert sorted(r.data for r in got[:20]) == list(range(1, 21))
    assert sorted(r.data for r in got[20:]) == list(range(10, 201, 10))
    assert set(a.replies) == {m.rid for m in msgs_a}  # nothing of b's reached a
    assert set(b.replies) == {m.rid for m in msgs_b}
    assert await a.call("hello", "ann") == "hello ann"
    assert (await a.call("get", 2))["value"] == 200
    with pytest.raises(CallError) as e:
        await a.call("user_chat", "hi")
    assert e.value.code == "permission_denied"


async def test_repeated_request_id_is_answered_from_the_first_run(gateways) -> None:
    a, _ = gateways
    first = await a.wait_reply(a.message("add", 5, 1, rid="retry-1", conn=1))
    again = await a.wait_reply(a.message("add", 5, 1, rid="retry-1", conn=2))
    assert first.data == again.data == 1
    assert again.conn == 2  # re-addressed to the connection that retried
    assert (await a.call("get", 5))["value"] == 1


async def test_elevate_kicks_the_older_connection(gateways) -> None:
    a, b = gateways
    assert await a.call("login", 42, conn=7) == {"ok": True, "reason": None}
    reply = await b.wait_reply(b.message("login", 42, conn=9))
    assert reply.ok and reply.caller == 42 and reply.ud == {"logins": 1}
    for _ in range(100):
        if a.kicks:
            break
        await asyncio.sleep(0.02)
    assert a.kicks == [KickMsg(7)]
    assert await a.redis.get("hetu:default:login:42") == b"gw-b:9"
    # kick_logged_in=False refuses instead; a second elevate on one connection too
    refused = await a.call("login", 42, False, conn=8)
    assert refused == {"ok": False, "reason": "USER_ALREADY_LOGGED_IN"}
    again = await b.call("login", 43, conn=9, caller=42)
    assert again == {"ok": False, "reason": "CURRENT_CONNECTION_ALREADY_ELEVATED"}
    assert b.kicks == []


async def test_calls_of_one_connection_run_in_order(gateways) -> None:
    a, _ = gateways
    # 15 calls queued at once (user_chat allows 20 per second per connection)
    msgs = [a.message("user_chat", f"m{i}", conn=3, caller=8) for i in range(15)]
    replies = await a.wait_replies(msgs)
    assert all(r.ok for r in replies)
    tag = next(c.tag for c in a.registry.clusters if "ChatMessage" in c.components)
    raw = await a.redis.xrange(Keys("default").cluster(tag).changes())
    texts = [
        (change_event_decoder.decode(f[b"m"])[0].row or {})["text"] for _, f in raw
    ]
    assert texts == [f"m{i}" for i in range(15)]


async def test_elevate_refuses_a_user_id_outside_int64(gateways) -> None:
    a, _ = gateways
    with pytest.raises(CallError) as e:
        await a.call("login", 2**63, conn=3)
    assert e.value.code == "internal"  # the app passed a bad id: logged, not sent
    assert await a.call("login", 2**63 - 1, conn=3) == {"ok": True, "reason": None}


async def test_applied_calls_leave_the_stream(
    gateways, redis_client: aioredis.Redis
) -> None:
    a, _ = gateways
    for i in range(30):
        await a.call("add", 9, 1, conn=i)
    await a.call("hello", "x")
    streams = [k async for k in redis_client.scan_iter(match="hetu:*:calls")]
    assert streams
    assert [await redis_client.xlen(s) for s in streams] == [0] * len(streams)


async def test_wrong_argument_type_is_bad_arguments(gateways) -> None:
    a, _ = gateways
    with pytest.raises(CallError) as e:
        await a.call("add", 1, "x")
    assert e.value.code == "bad_arguments"
    assert "argument 2 (n)" in e.value.message
    assert await a.call("add", 1, 2.0) == 2  # a whole float fits an int
