"""10,000 random and mutated frames against a real gateway: no crash, and a healthy
client on the same gateway keeps getting correct replies throughout."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import hetu.client
from hetu.pipeline import ClientHandshake, Pipeline
from hetu.protocol import Call, Unwatch, WatchRange, WatchRow, encoder

from .gateway_procs import chat_logic, start_gateway_proc, url

__all__ = ["chat_logic", "start_gateway_proc"]

FRAMES = 10_000
SYSTEMS = ["hello", "add", "get", "top", "login", "user_chat", "add_twice",
           "on_disconnect", "nope", ""]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.choice([0, 1, -1, 2**31, rng.randint(-100, 100)])
    if kind == 2:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if kind == 3:
        return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 40)))
    if kind == 4:
        return rng.randbytes(rng.randint(0, 40))
    if kind == 5:
        return rng.choice([None, True, False, float("inf"), float("nan")])
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if kind == 7:
        return {str(random_value(rng, 2)): random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}  # fmt: skip
    return rng.randbytes(rng.randint(0, 2000))


def valid_message(rng: random.Random) -> bytes:
    req = rng.randint(0, 2**40)
    choice = rng.randrange(5)
    if choice < 3:
        args = [random_value(rng) for _ in range(rng.randint(0, 3))]
        msg: Any = Call(req, rng.choice(SYSTEMS), args)
    elif choice == 3:
        msg = WatchRow(req, "Counter", "key", random_value(rng))
    else:
        msg = rng.choice([
            WatchRange(req, "ChatMessage", "id", random_value(rng), random_value(rng)),
            Unwatch(req, rng.randint(0, 9)),
        ])  # fmt: skip
    return encoder.encode(msg)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf = buf[:pos]
        elif op == 4 and buf:
            buf[pos % len(buf)] = rng.choice([0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF, 0x00])
        else:
            buf += buf[: rng.randint(0, len(buf))]
    return bytes(buf)


def random_payload(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.35:
        return valid_message(rng)
    if roll < 0.8:
        return mutate(rng, valid_message(rng))
    if roll < 0.9:
        return msgspec.msgpack.encode(random_value(rng))
    return rng.randbytes(rng.randint(0, 300))


class Fuzzer:
    def __init__(self, target: str, rng: random.Random) -> None:
        self.url = target
        self.rng = rng
        self.ws: ClientConnection | None = None
        self.pipe: Pipeline | None = None
        self.drain: asyncio.Task[None] | None = None
        self.sent = 0
        self.closes: dict[int | None, int] = {}

    async def reopen(self) -> None:
        await self.close()
        comp = self.rng.choice(["none", "none", "zstd", "zlib"])
        encrypt = self.rng.random() < 0.2
        hs = ClientHandshake(comp, encrypt)
        ws = await connect(self.url, compression=None, max_size=None)
        if self.rng.random() < 0.05:  # a fuzzed hello
            await ws.send(mutate(self.rng, hs.hello_frame()))
            self.sent += 1
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(ws.recv(), 2)
            await ws.close()
            return
        await ws.send(hs.hello_frame())
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        _, self.pipe = hs.finish(frame)
        self.ws = ws
        self.drain = asyncio.create_task(self._drain(ws))

    async def _drain(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        self.closes[ws.close_code] = self.closes.get(ws.close_code, 0) + 1

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            if self.drain is not None:
                await self.drain
        self.ws = None

    async def send_one(self) -> None:
        stale = self.drain is None or self.drain.done() or self.rng.random() < 0.02
        if self.ws is None or stale:
            await self.reopen()
            return
        assert self.pipe is not None
        payload = random_payload(self.rng)
        roll = self.rng.random()
        if roll < 0.9:
            frame = self.pipe.encode(payload)
        elif roll < 0.97:
            frame = mutate(self.rng, self.pipe.encode(payload))
        else:
            frame = payload
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            return
        self.sent += 1


async def healthy_client(target: str, stop: asyncio.Event, counts: list[int]) -> None:
    async with hetu.client.connect(target) as c:
        expected = 0
        while not stop.is_set():
            value = await c.call("add", 777, 1, timeout_s=10)
            expected = value if expected == 0 else expected + 1
            assert value == expected, "healthy client got a wrong reply"
            assert await c.call("hello", "ok", timeout_s=10) == "hello ok"
            counts[0] += 1


@pytest.mark.usefixtures("chat_logic")
@pytest.mark.slow
async def test_fuzzed_frames_do_not_hurt_the_gateway(
    start_gateway_proc: Callable[..., int],
) -> None:
    port = start_gateway_proc("--max-frame", "65536")
    target = url(port)
    stop = asyncio.Event()
    counts = [0]
    healthy = asyncio.create_task(healthy_client(target, stop, counts))
    rng = random.Random(20261204)
    fuzzers = [Fuzzer(target, rng) for _ in range(4)]
    checkpoints = []
    while sum(f.sent for f in fuzzers) < FRAMES:
        await asyncio.gather(*(f.send_one() for f in fuzzers))
        if sum(f.sent for f in fuzzers) % 500 < len(fuzzers):
            await asyncio.sleep(0.01)
            checkpoints.append(counts[0])
            assert not healthy.done(), healthy.exception()
    await asyncio.sleep(0.2)
    stop.set()
    await healthy
    for f in fuzzers:
        await f.close()
    assert counts[0] > 20
    # The healthy client made progress across the whole run, not only at the end.
    assert checkpoints[len(checkpoints) // 2] > 0
