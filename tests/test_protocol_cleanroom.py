"""docs/protocol.md is enough to write a client: a clean-room client
(tests/cleanroom_client.py, no hetu imports) against real hetu-logic and
hetu-gateway processes, for every compression × encryption, with and without
an auth key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis

from hetu.keys import Keys
from hetu.redis_server import RedisServer

from .cleanroom_client import CallFailed, Client, HandshakeRefused, Sub
from .gateway_procs import BIN, CHAT_APP, GatewayProcs

AUTH_KEY = "cleanroom-secret"


@pytest.fixture(scope="module")
def gateways(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One chat worker and two gateways (plain, --auth-key) for the whole module:
    URLs by name. Tests use their own users and counter keys."""
    with redis.Redis(port=redis_server.port) as r:
        r.flushall()
    tmp = tmp_path_factory.mktemp("cleanroom")
    with (tmp / "logic.log").open("wb") as stderr:
        logic = subprocess.Popen(
            [BIN / "hetu-logic", "--cluster", "all", str(CHAT_APP), "--redis",
             redis_server.url, "--log-level", "warning"],
            stderr=stderr,
        )  # fmt: skip
    procs = GatewayProcs(redis_server.url, tmp)
    try:
        with redis.Redis(port=redis_server.port) as r:
            deadline = time.monotonic() + 20
            while not r.exists(Keys("default").registry()):
                assert logic.poll() is None, "hetu-logic exited"
                assert time.monotonic() < deadline, "hetu-logic did not start"
                time.sleep(0.02)
        plain, auth = procs(), procs("--auth-key", AUTH_KEY)
        yield {
            "plain": f"ws://127.0.0.1:{plain}/hetu/default",
            "auth": f"ws://127.0.0.1:{auth}/hetu/default",
        }
    finally:
        procs.stop_all()
        logic.terminate()
        logic.wait(10)


def test_doc_example_bytes() -> None:
    """The byte example of §4 is msgpack of the array it names."""
    example = "94 a4 63 61 6c 6c 01 a5 68 65 6c 6c 6f 91 a3 62 6f 62"
    assert msgspec.msgpack.encode(["call", 1, "hello", ["bob"]]) == bytes.fromhex(
        example
    )


async def expect_code(coro: Any, code: str) -> str:
    with pytest.raises(CallFailed) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value.message


def cid_order(cid: str) -> tuple[int, int]:
    """A change id ``"<ms>-<seq>"`` as a sortable pair."""
    ms, seq = cid.split("-")
    return int(ms), int(seq)


COMBOS = [
    (comp, encrypt, auth)
    for comp in ("none", "zlib", "zstd")
    for encrypt in (False, True)
    for auth in (False,)
] + [("zstd", True, True), ("none", False, True)]


@pytest.mark.parametrize(("comp", "encrypt", "auth"), COMBOS)
async def test_calls_errors_and_watches(
    gateways: dict[str, str], comp: str, encrypt: bool, auth: bool
) -> None:
    n = COMBOS.index((comp, encrypt, auth))
    user, key = 1000 + n, 1000 * (n + 1)
    c = await Client.connect(
        gateways["auth" if auth else "plain"],
        comp=[comp],
        encrypt=encrypt,
        auth_key=AUTH_KEY if auth else "",
    )
    async with c:
        w = c.welcome
        assert (w["v"], w["comp"], w["max_frame"]) == (1, comp, 1 << 20)
        assert len(w["pub"]) == (32 if encrypt else 0)
        assert isinstance(w["token"], str) and w["token"]
        assert isinstance(w["conn"], int)

        assert await c.call("hello", "bob") == "hello bob"
        assert await c.call("login", user) == {"ok": True, "reason": None}
        assert await c.call("add", key, 2) == 2
        assert await c.call("get", key + 99) is None  # ResponseToClient(None)
        await expect_code(c.call("no_such_system"), "unknown_system")
        await expect_code(c.call("hello", "a", "b"), "bad_arguments")
        await expect_code(c.call("login"), "bad_arguments")
        assert await c.call("add", key, 1) == 3  # still usable after errors

        counters = await c.watch_range("Counter", "key", key, key + 9, limit=5)
        assert counters.fresh and counters.cid
        [row] = counters.rows
        assert (row["key"], row["value"]) == (key, 3)
        assert await c.call("add", key, 1) == 4
        push = await counters.next_push()
        assert push == ["push", counters.sub, push[2], [["update", row["id"], {
            "id": row["id"], "key": key, "value": 4}]]]  # fmt: skip
        assert cid_order(push[2]) > cid_order(counters.cid)

        chat = await c.watch_range("ChatMessage", "owner", user, user, limit=3)
        assert chat.rows == []
        text = ("long enough to be compressed " * 9)[:250]  # U256; msgs > 256 B
        assert await c.call("user_chat", text) == "ok"
        [_, _, _, [[kind, row_id, row]]] = await chat.next_push()
        assert (kind, row) == ("insert", {"id": row_id, "owner": user, "text": text})
        if comp != "none":
            assert 0 in c.codec.flags and 1 in c.codec.flags

        one = await c.watch_row("Counter", "key", key + 5)
        assert one.rows == []
        assert await c.call("add", key + 5, 7) == 7
        [[kind, row_id, row]] = (await one.next_push())[3]
        assert (kind, row) == ("insert", {"id": row_id, "key": key + 5, "value": 7})
        [[kind, _, _]] = (await counters.next_push())[3]
        assert kind == "insert"

        assert await c.unwatch(one) == "ok"
        assert await c.call("add", key + 5, 1) == 8
        [[kind, _, row]] = (await counters.next_push())[3]
        assert (kind, row["value"]) == ("update", 8)
        assert one.pushes.empty()  # the unwatched one got nothing


async def test_request_id_is_idempotent(gateways: dict[str, str]) -> None:
    """§4: a repeated request id in one session is answered from the first run."""
    async with await Client.connect(gateways["plain"], encrypt=False) as c:
        first = await c.request("call", "add", [77, 1])
        c.next_id -= 1  # the same id again, even with other arguments
        again = await c.request("call", "add", [77, 5])
        assert first == again == ["ok", first[1], 1]
        assert (await c.call("get", 77))["value"] == 1
        # §5: an argument that does not fit the System's type hint
        await expect_code(c.call("add", 77, "x"), "bad_arguments")


def hello_args(**kw: Any) -> dict[str, Any]:
    return {"comp": ["none"], "encrypt": False, **kw}


async def refused(url: str, **kw: Any) -> tuple[int | None, str]:
    with pytest.raises(HandshakeRefused) as info:
        await Client.connect(url, **hello_args(**kw))
    return info.value.code, info.value.reason


async def test_handshake_refusals(gateways: dict[str, str]) -> None:
    plain, auth = gateways["plain"], gateways["auth"]
    now = int(time.time() * 1000)
    assert await refused(plain, version=2) == (4000, "unsupported protocol version")
    assert await refused(plain, comp=["lz4"]) == (4000, "no common compression")
    assert await refused(plain, ts=now - 31_000) == (4001, "stale hello")
    nonce = os.urandom(16)
    await (await Client.connect(plain, **hello_args(nonce=nonce))).close()
    assert await refused(plain, nonce=nonce) == (4001, "replayed hello")

    assert await refused(auth) == (4001, "auth failed")
    assert await refused(auth, auth_key="wrong") == (4001, "auth failed")
    # the MAC is checked before the clock
    assert await refused(auth, auth_key="wrong", ts=now - 60_000) == (
        4001,
        "auth failed",
    )
    assert await refused(auth, auth_key=AUTH_KEY, ts=now - 60_000) == (
        4001,
        "stale hello",
    )
    # the MAC covers the token: a resumed session with the key is accepted
    first = await Client.connect(auth, **hello_args(auth_key=AUTH_KEY))
    sid = first.welcome["token"]
    c = await Client.connect(
        auth, **hello_args(auth_key=AUTH_KEY, token=sid, secret=first.secret)
    )
    assert c.welcome["token"] == sid
    await c.close()
    await first.close()


async def test_frame_errors(gateways: dict[str, str]) -> None:
    url = gateways["plain"]
    for comp in ("none", "zstd"):
        async with await Client.connect(url, comp=[comp], encrypt=True) as c:
            c.replies[0] = reply = asyncio.get_running_loop().create_future()
            await c.ws.send("not binary")
            assert (await reply)[:3] == ["err", 0, "bad_request"]
            c.replies[9] = reply = asyncio.get_running_loop().create_future()
            await c.send(["nope", 9])
            assert (await reply)[:3] == ["err", 9, "bad_request"]
            assert await c.call("hello") == "hello world"
    for comp in ("zlib", "zstd"):  # flag 0x01 on a small message is accepted
        async with await Client.connect(url, comp=[comp], force_compress=True) as c:
            assert await c.call("hello", "z") == "hello z"
        async with await Client.connect(url, comp=[comp], encrypt=False) as c:
            await c.ws.send(b"\x02" + msgspec.msgpack.encode(["call", 1, "hello", []]))
            code, _ = await asyncio.wait_for(c.closed, 5)
            assert code == 4002
    async with await Client.connect(url, comp=["zstd"], encrypt=False) as c:
        c.replies[1] = reply = asyncio.get_running_loop().create_future()
        frame = c.codec.encode(["call", 1, "hello", ["frag"]])
        await c.ws.send([frame[:4], frame[4:]])  # §1: fragments are reassembled
        assert await reply == ["ok", 1, "hello frag"]
    async with await Client.connect(url, comp=["none"], encrypt=True) as c:
        c.codec.sent += 1  # a skipped counter fails to decrypt
        await c.send(["call", 1, "hello", []])
        code, _ = await asyncio.wait_for(c.closed, 5)
        assert code == 4002


async def test_watch_errors(gateways: dict[str, str]) -> None:
    async with await Client.connect(gateways["plain"], comp=["zlib"]) as c:
        await expect_code(c.watch_range("Counter", "value", 0, 1), "bad_request")
        await expect_code(c.watch_range("Nope", "key", 0, 1), "bad_request")
        await expect_code(c.watch_range("Counter", "key", 0, 1, limit=0), "bad_request")
        await expect_code(
            c.watch_range("Counter", "key", 0, 1, limit=1001), "quota_exceeded"
        )
        await expect_code(c.unwatch(Sub(12345)), "bad_request")
        sub = await c.watch_range(
            "Counter", "key", float("-inf"), float("inf"), limit=1000
        )
        c.next_id = sub.sub - 1  # the same request id = the same subscription id
        await expect_code(c.watch_row("Counter", "key", 1), "bad_request")
        assert await c.call("hello") == "hello world"


@pytest.mark.parametrize("encrypt", [True, False])
async def test_session_resume_needs_the_secret(
    gateways: dict[str, str], encrypt: bool
) -> None:
    """§8: a hello with the welcome's token and a proof of the session's secret
    continues the session's login and closes the previous connection; the token
    alone, a wrong proof or a replayed resume hello get nothing."""
    url, user = gateways["plain"], 4242 + encrypt
    c = await Client.connect(url, encrypt=encrypt)
    await expect_code(c.call("user_chat", "hi"), "permission_denied")
    assert (await c.call("login", user))["ok"]
    sid, secret = c.welcome["token"], c.secret
    assert len(secret) == 32 and (c.welcome["secret"] == b"") is encrypt
    for stolen in (b"", b"x" * 32):  # the id alone, or a guessed secret
        async with await Client.connect(url, token=sid, secret=stolen) as thief:
            assert thief.welcome["token"] != sid
            await expect_code(thief.call("user_chat", "i am you"), "permission_denied")
    assert await c.call("user_chat", "still me") == "ok"
    nonce, ts = os.urandom(16), int(time.time() * 1000)
    resume = {"token": sid, "secret": secret, "nonce": nonce, "ts": ts}
    async with await Client.connect(url, encrypt=encrypt, **resume) as again:
        assert again.welcome["token"] == sid and again.welcome["secret"] == b""
        assert again.secret == secret
        assert await asyncio.wait_for(c.closed, 5) == (4003, "resumed elsewhere")
        assert await again.call("user_chat", "back again") == "ok"
        with pytest.raises(HandshakeRefused) as info:
            await Client.connect(url, encrypt=encrypt, **resume)
        assert (info.value.code, info.value.reason) == (4001, "replayed hello")
    await c.close()


async def test_resume_with_since_and_view(gateways: dict[str, str]) -> None:
    """§6: a watch sent again with the last cid and the rows received gets
    fresh=false and then exactly the missed changes; a view without ids gets a
    fresh snapshot."""
    url, key = gateways["plain"], 50_000
    async with await Client.connect(url) as c:
        assert await c.call("add", key, 1) == 1
        old = await c.watch_range("Counter", "key", key, key + 9, limit=3)
        [row] = old.rows
        assert await c.call("add", key, 1) == 2  # the client drops before the push
    async with await Client.connect(url) as c:
        assert await c.call("add", key + 1, 5) == 5
    async with await Client.connect(url) as c:
        resumed = await c.watch_range(
            "Counter", "key", key, key + 9, limit=3, since=old.cid, view=old.rows
        )
        assert (resumed.fresh, resumed.cid, resumed.rows) == (False, old.cid, [])
        seen = [(await resumed.next_push())[3] for _ in range(2)]
        assert [[(kind, r["key"], r["value"]) for kind, _, r in events]
                for events in seen] == [
            [("update", key, 2)], [("insert", key + 1, 5)]]  # fmt: skip
        no_ids = [{"key": row["key"], "value": row["value"]}]
        again = await c.watch_range(
            "Counter", "key", key, key + 9, limit=3, since=old.cid, view=no_ids
        )
        assert again.fresh
        assert [r["key"] for r in again.rows] == [key, key + 1]
