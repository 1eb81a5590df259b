"""Bad input gets an error reply or a close with a reason; others carry on."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import hetu.client
from hetu.errors import ProtocolError
from hetu.pipeline import ClientHandshake, Pipeline
from hetu.protocol import Call, Err, Ok, encoder, server_msg_decoder

from .conftest import url_of

pytestmark = pytest.mark.usefixtures("fake_logic")


async def raw_open(url: str, **hs: Any) -> tuple[ClientConnection, Pipeline]:
    ws = await connect(url, compression=None, max_size=None)
    handshake = ClientHandshake(**hs)
    await ws.send(handshake.hello_frame())
    frame = await ws.recv()
    assert isinstance(frame, bytes)
    _, pipeline = handshake.finish(frame)
    return ws, pipeline


async def recv_msg(ws: ClientConnection, pipeline: Pipeline) -> Any:
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, bytes)
    return server_msg_decoder.decode(pipeline.decode(frame))


async def wait_closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xc1", "bad_request"),
        (b"", "bad_request"),
        (msgspec.msgpack.encode(["nope", 4, 1]), "bad_request"),
        (msgspec.msgpack.encode(["call", 5, 3, []]), "bad_request"),
        (msgspec.msgpack.encode(["call", 6, "echo", "notalist"]), "bad_request"),
        (msgspec.msgpack.encode({"a": 1}), "bad_request"),
        (msgspec.msgpack.encode(["wrow", 8, "C", "id", 1]), "bad_request"),
    ],
)
async def test_malformed_messages_get_error_replies(
    start_gateway: Any, payload: bytes, code: str
) -> None:
    gw = await start_gateway()
    ws, pipe = await raw_open(url_of(gw))
    await ws.send(pipe.encode(payload))
    reply = await recv_msg(ws, pipe)
    assert isinstance(reply, Err) and reply.code == code
    obj = msgspec.msgpack.decode(payload) if payload not in (b"", b"\xc1") else None
    if isinstance(obj, list) and obj[0] != "nope" and obj[0] != "call":
        assert reply.id == obj[1]
    await ws.send(pipe.encode(encoder.encode(Call(9, "hello", []))))
    assert await recv_msg(ws, pipe) == Ok(9, "hello")
    await ws.close()


async def test_text_frame_gets_error(start_gateway: Any) -> None:
    gw = await start_gateway()
    ws, pipe = await raw_open(url_of(gw))
    await ws.send("hi")
    reply = await recv_msg(ws, pipe)
    assert isinstance(reply, Err) and reply.code == "bad_request"
    await ws.close()


async def test_tampered_and_replayed_frames_close(start_gateway: Any) -> None:
    gw = await start_gateway()
    ws, pipe = await raw_open(url_of(gw))
    frame = pipe.encode(encoder.encode(Call(1, "hello", [])))
    await ws.send(frame)
    assert await recv_msg(ws, pipe) == Ok(1, "hello")
    await ws.send(frame)  # replayed
    assert await wait_closed(ws) == (4002, "frame failed authentication "
                                     "(tampered, replayed or reordered)")  # fmt: skip


async def test_oversized_frame_closes_1009(start_gateway: Any) -> None:
    gw = await start_gateway(max_frame_bytes=1000)
    async with hetu.client.connect(url_of(gw)) as healthy:
        ws, pipe = await raw_open(url_of(gw), compression="none", encrypt=False)
        await ws.send(pipe.encode(encoder.encode(Call(1, "echo", ["x" * 2000]))))
        code, _ = await wait_closed(ws)
        assert code == 1009
        assert await healthy.call("hello") == "hello"


async def test_slow_handshake_times_out(start_gateway: Any) -> None:
    gw = await start_gateway(handshake_timeout_s=0.2)
    ws = await connect(url_of(gw), compression=None)
    assert await wait_closed(ws) == (4008, "handshake timeout")


async def test_bad_hello_closes(start_gateway: Any) -> None:
    gw = await start_gateway()
    ws = await connect(url_of(gw), compression=None)
    await ws.send(b"\x93\x01\x02\x03")
    assert await wait_closed(ws) == (4000, "bad hello")


async def test_bad_path_is_404(start_gateway: Any) -> None:
    gw = await start_gateway()
    for path in ("/", "/hetu/", "/hetu/a/b", "/other/x"):
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{gw.port}{path}")
        assert info.value.response.status_code == 404


async def test_auth_key(start_gateway: Any) -> None:
    gw = await start_gateway(auth_key="k3y")
    async with hetu.client.connect(url_of(gw), auth_key="k3y") as c:
        assert await c.call("hello") == "hello"
    for key in (None, "wrong"):
        with pytest.raises(ProtocolError, match="auth failed"):
            async with hetu.client.connect(url_of(gw), auth_key=key):
                pass
    # A captured hello replayed verbatim is refused.
    hs = ClientHandshake(auth_key=b"k3y")
    for expect in ("ok", "replayed hello"):
        ws = await connect(url_of(gw), compression=None)
        await ws.send(hs.hello_frame())
        if expect == "ok":
            assert isinstance(await ws.recv(), bytes)
            await ws.close()
        else:
            assert await wait_closed(ws) == (4001, "replayed hello")


async def test_hello_replayed_to_another_gateway_is_refused(
    start_gateway: Any,
) -> None:
    gw1 = await start_gateway(auth_key="k3y")
    gw2 = await start_gateway(auth_key="k3y")
    frame = ClientHandshake(auth_key=b"k3y").hello_frame()
    ws = await connect(url_of(gw1), compression=None)
    await ws.send(frame)
    assert isinstance(await ws.recv(), bytes)
    replay = await connect(url_of(gw2), compression=None)
    await replay.send(frame)
    assert await wait_closed(replay) == (4001, "replayed hello")
    await ws.close()


async def test_flood_is_limited_then_closed(start_gateway: Any) -> None:
    gw = await start_gateway(max_msgs_per_s=50)
    async with hetu.client.connect(url_of(gw)) as healthy:
        ws, pipe = await raw_open(url_of(gw))
        frames = [pipe.encode(encoder.encode(Call(i, "hello", []))) for i in range(200)]
        for frame in frames:
            await ws.send(frame)
        codes: list[str] = []
        with pytest.raises(ConnectionClosed):
            while True:
                msg = await recv_msg(ws, pipe)
                codes.append("ok" if isinstance(msg, Ok) else msg.code)
        assert ws.close_code == 4029
        assert "rate_limited" in codes
        assert await healthy.call("hello") == "hello"


async def test_a_bug_closes_only_that_connection(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start_gateway()
    async with hetu.client.connect(url_of(gw)) as healthy:
        assert await healthy.call("hello") == "hello"
        calls = gw.instances["test"].calls
        original = calls.submit

        def buggy(conn: Any, call: Any) -> None:
            if call.sys == "boom":
                raise RuntimeError("injected bug")
            original(conn, call)

        monkeypatch.setattr(calls, "submit", buggy)
        ws, pipe = await raw_open(url_of(gw))
        await ws.send(pipe.encode(encoder.encode(Call(1, "boom", []))))
        assert await wait_closed(ws) == (1011, "internal error")
        assert await healthy.call("hello") == "hello"
