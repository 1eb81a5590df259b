"""Gateway test fixtures: an in-process gateway on port 0 and a tiny stand-in for
hetu-logic that answers calls from the streams (the end-to-end tests under
tests/ use the real worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from hetu.keys import Keys
from hetu.wire import (
    CallMsg,
    ClusterInfo,
    KickMsg,
    Registry,
    ReplyMsg,
    SystemInfo,
    call_decoder,
    registry_encoder,
)
from hetu_gateway.config import GatewayConfig
from hetu_gateway.server import Server

INSTANCE = "test"
TAG = "t1"


def _sys(name: str, perm: str | None, lo: int = 0, hi: int | None = 0, **kw: Any):
    return SystemInfo(name, 1, perm, lo, hi, **kw)


REGISTRY = Registry(
    namespace="Test",
    components={},
    systems={
        s.name: s
        for s in (
            _sys("hello", "EVERYBODY", endpoint=True),
            _sys("echo", "EVERYBODY", 0, None),
            _sys("login", "EVERYBODY", 1, 1),
            _sys("whoami", "USER"),
            _sys("admin_only", "ADMIN"),
            _sys("limited", "EVERYBODY", rate_limits=[(2, 60.0)]),
            _sys("slow", "EVERYBODY"),
            _sys("fail", "EVERYBODY"),
            _sys("once", "EVERYBODY"),
            _sys("on_disconnect", None),
        )
    },
    clusters=[ClusterInfo(1, TAG, [], [])],
    version=1,
)


class FakeLogic:
    """Answers calls like a logic worker would, for gateway-only tests."""

    def __init__(self, redis: aioredis.Redis, redis_url: str = "") -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.keys = Keys(INSTANCE)
        self.calls: list[CallMsg] = []
        self.disconnects: list[CallMsg] = []
        self.unanswered = asyncio.Event()

    async def run(self) -> None:
        stream = self.keys.cluster(TAG).calls()
        last = "0"
        while True:
            got: Any = await self.redis.xread({stream: last}, block=1000, count=100)
            for _, entries in got:
                for entry_id, fields in entries:
                    last = entry_id
                    await self.answer(call_decoder.decode(fields[b"m"]))

    async def answer(self, call: CallMsg) -> None:
        self.calls.append(call)
        reply = ReplyMsg(rid=call.rid, conn=call.conn, ok=True, data="ok")
        if call.sys == "hello":
            reply.data = "hello"
        elif call.sys == "echo":
            reply.data = call.args
        elif call.sys == "whoami":
            reply.data = [call.caller, call.group, call.ud]
        elif call.sys == "login":
            await self.login(call, int(call.args[0]))
            reply.caller, reply.ud = int(call.args[0]), {"n": 1}
            if call.args[0] == 99:
                reply.group = "admin"
        elif call.sys == "slow":
            return
        elif call.sys == "once":
            if sum(c.rid == call.rid for c in self.calls) == 1:
                self.unanswered.set()
                return  # the first delivery is "lost"
            reply.data = "again"
        elif call.sys == "fail":
            reply = ReplyMsg(call.rid, call.conn, False, code="internal", message="x")
        elif call.sys == "on_disconnect":
            self.disconnects.append(call)
            return
        await self.redis.publish(
            self.keys.gateway(call.gw), msgspec.msgpack.encode(reply)
        )

    async def login(self, call: CallMsg, user: int) -> None:
        key = self.keys.login(user)
        old: Any = await self.redis.getset(key, f"{call.gw}:{call.conn}")
        if old is not None:
            gw, conn = old.decode().rsplit(":", 1)
            kick = msgspec.msgpack.encode(KickMsg(int(conn)))
            await self.redis.publish(self.keys.gateway(gw), kick)


@pytest.fixture
async def fake_logic(
    redis_client: aioredis.Redis, redis_url: str
) -> AsyncIterator[FakeLogic]:
    await redis_client.set(Keys(INSTANCE).registry(), registry_encoder.encode(REGISTRY))
    logic = FakeLogic(redis_client, redis_url)
    task = asyncio.create_task(logic.run())
    # Retrieve its end (the client closing under it): left to the garbage
    # collector, the error is logged at a random later moment.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    yield logic
    task.cancel()


@pytest.fixture
async def start_gateway(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process gateways on port 0: ``await start_gateway(**config)``."""
    running: list[tuple[Server, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Server:
        config = GatewayConfig(**{"port": 0, "redis_url": redis_url, **overrides})
        server = Server(config)
        task = asyncio.create_task(server.serve())
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()
        running.append((server, task))
        return server

    yield start
    for server, task in running:
        server.stop()
        await task


def url_of(server: Server | int, instance: str = INSTANCE) -> str:
    port = server if isinstance(server, int) else server.port
    return f"ws://127.0.0.1:{port}/hetu/{instance}"
