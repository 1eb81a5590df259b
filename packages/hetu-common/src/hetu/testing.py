"""Test an app's Systems against a real Redis, the way a client would.

在真实 Redis 上像客户端一样测试应用的 System。

``AppTester`` runs a logic worker in-process (it needs ``hetu-logic`` installed)
and calls Systems through the same stream a gateway uses, so permissions, guards,
argument counts and rate limits apply::

    import hetu.testing

    async def test_add(redis_url):
        import app  # defines the components and Systems
        async with hetu.testing.AppTester(redis_url) as t:
            assert await t.call("add", 7, 2) == 2
            with pytest.raises(hetu.testing.CallError) as e:
                await t.call("user_chat", "hi")   # needs a login
            assert e.value.code == "permission_denied"
            row = await t.read(app.Counter).get(key=7)

``FakeGateway`` is the gateway half alone: it XADDs ``CallMsg`` entries to the
cluster streams and collects the replies and kicks published for it; tests that
run worker processes (``WorkerProcess``: the real ``hetu-logic`` command) use it
as the test producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Self

import redis.asyncio as aioredis

from hetu.errors import HeTuError
from hetu.keys import Keys
from hetu.storage.session import Session
from hetu.wire import (
    CallMsg,
    KickMsg,
    Registry,
    ReplyMsg,
    call_encoder,
    gateway_msg_decoder,
    registry_decoder,
)


class CallError(HeTuError):
    """A call got an error reply; ``code`` and ``message`` as a client sees them."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class FakeGateway:
    """Sends calls as gateway ``gw`` and collects what workers publish for it.

    ``replies`` maps request id to every ``ReplyMsg`` received (a list, so tests can
    see duplicates); ``kicks`` lists the ``KickMsg`` received.
    """

    def __init__(
        self, redis: aioredis.Redis, instance: str = "default", gw: str = ""
    ) -> None:
        self.redis = redis
        self.keys = Keys(instance)
        self.gw = gw or f"test-{uuid.uuid4().hex[:8]}"
        self.replies: dict[str, list[ReplyMsg]] = {}
        self.kicks: list[KickMsg] = []
        self.registry: Registry | None = None
        self._waiters: dict[str, asyncio.Future[ReplyMsg]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._rids = itertools.count(1)

    async def start(self) -> None:
        """Subscribe to the gateway channel (before any call is sent)."""
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(self.keys.gateway(self.gw))
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            await self._pubsub.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        async for item in self._pubsub.listen():
            if item["type"] != "message":
                continue
            msg = gateway_msg_decoder.decode(item["data"])
            if isinstance(msg, KickMsg):
                self.kicks.append(msg)
                continue
            self.replies.setdefault(msg.rid, []).append(msg)
            waiter = self._waiters.pop(msg.rid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)

    async def load_registry(self) -> Registry:
        """Read the registry the workers published.

        Raises:
            LookupError: no worker has published one yet.
        """
        raw: Any = await self.redis.get(self.keys.registry())
        if raw is None:
            raise LookupError("no registry published yet: start a logic worker first")
        self.registry = registry_decoder.decode(raw)
        return self.registry

    def stream_of(self, sys: str) -> str:
        """The calls stream of System ``sys`` per the loaded registry."""
        assert self.registry is not None, "call load_registry() first"
        info = self.registry.systems.get(sys)
        cid = info.cluster if info is not None else 0  # unknown: the endpoint cluster
        tag = next(c.tag for c in self.registry.clusters if c.id == cid)
        return self.keys.cluster(tag).calls()

    def message(self, sys: str, *args: Any, conn: int = 1, rid: str = "", **state: Any
                ) -> CallMsg:  # fmt: skip
        """A ``CallMsg`` from this gateway; ``state``: caller, group, ud, addr, ts."""
        rid = rid or f"{self.gw}-{next(self._rids)}"
        return CallMsg(self.gw, conn, rid, sys, list(args), **state)

    async def send(self, *msgs: CallMsg) -> None:
        """XADD ``msgs`` (pipelined) to their Systems' streams."""
        if self.registry is None:
            await self.load_registry()
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in msgs:
                pipe.xadd(self.stream_of(m.sys), {"m": call_encoder.encode(m)})
            await pipe.execute()

    async def call(self, sys: str, *args: Any, timeout_s: float = 10.0, **kw: Any
                   ) -> Any:  # fmt: skip
        """Send one call and return its data (``"ok"`` without a response).

        Raises:
            CallError: an error reply (``code`` as the client would see it), or
                ``timeout``.
        """
        msg = self.message(sys, *args, **kw)
        reply = await self.wait_reply(msg, timeout_s)
        if not reply.ok:
            raise CallError(reply.code, reply.message)
        return reply.data

    async def wait_reply(self, msg: CallMsg, timeout_s: float = 10.0) -> ReplyMsg:
        """Send ``msg`` and wait for its reply.

        Raises:
            CallError: no reply within ``timeout_s`` (code ``timeout``).
        """
        return (await self.wait_replies([msg], timeout_s))[0]

    async def wait_replies(
        self, msgs: list[CallMsg], timeout_s: float = 10.0
    ) -> list[ReplyMsg]:
        """Send ``msgs`` in order in one pipeline and wait for all their replies.

        Raises:
            CallError: a reply did not come within ``timeout_s`` (code ``timeout``).
        """
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[ReplyMsg]] = []
        for m in msgs:
            waiters.append(loop.create_future())
            self._waiters[m.rid] = waiters[-1]
        await self.send(*msgs)
        try:
            async with asyncio.timeout(timeout_s):
                return [await w for w in waiters]
        except TimeoutError:
            missing = [
                m.rid for m, w in zip(msgs, waiters, strict=True) if not w.done()
            ]
            raise CallError(
                "timeout", f"no reply to {missing[:5]} in {timeout_s} s"
            ) from None


class AppTester(FakeGateway):
    """A ``FakeGateway`` plus an in-process logic worker for the loaded app.

    Raises (on enter):
        ConfigError: as the worker's start-up (namespace, schema, Redis).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str | None = None,
        instance: str = "default",
    ) -> None:
        super().__init__(aioredis.Redis.from_url(redis_url), instance)
        self.redis_url = redis_url
        self.namespace = namespace
        self._worker: Any = None
        self._serve: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from hetu_logic.config import LogicConfig  # hetu-logic is a test dependency
        from hetu_logic.worker import Worker

        await super().start()
        cfg = LogicConfig(
            app="", redis_url=self.redis_url, instance=self.keys.instance,
            namespace=self.namespace, block_ms=100, idle_ms=1000,
        )  # fmt: skip
        self._worker = Worker(cfg)
        self._serve = asyncio.create_task(self._worker.serve())
        ready = asyncio.create_task(self._worker.ready.wait())
        await asyncio.wait([ready, self._serve], return_when=asyncio.FIRST_COMPLETED)
        if self._serve.done():
            ready.cancel()
            await self._serve  # raises the start-up error
        await self.load_registry()

    async def stop(self) -> None:
        if self._worker is not None and self._serve is not None:
            self._worker.request_exit()
            await self._serve
        await super().stop()
        await self.redis.aclose()

    def read(self, comp: Any) -> Any:
        """A read-only repository of ``comp`` (a fresh transaction per call)."""
        assert self.registry is not None and self._worker is not None
        cluster = self._worker.layout.cluster_of_comp[comp]
        return Session(self.redis, self.keys.cluster(cluster.tag)).repo(comp)


class WorkerProcess:
    """``python -m hetu_logic APP --redis URL ARGS...`` as a child process, its
    output in ``log_path``. ``wait_ready()`` returns once it consumes."""

    def __init__(self, app: str, redis_url: str, *args: str) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "hetu_logic",
            app,
            "--redis",
            redis_url,
            *args,
        ]
        fd, name = tempfile.mkstemp(prefix="hetu-logic-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Wait for the start-up log line.

        Raises:
            RuntimeError: the process exited or did not start in time.
        """
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "serving namespace" in self.output:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"worker did not start:\n{self.output[-3000:]}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        """SIGKILL if still running, and forget the log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_path.unlink(missing_ok=True)
