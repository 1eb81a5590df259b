"""One logic worker process: load the app, publish the registry, consume calls.

一个逻辑进程：加载应用、发布注册表、消费调用。

Lifecycle (like uvicorn's ``Server``): ``run()`` for the CLI, ``await serve()`` for
tests and embedding; ``startup()`` connects and publishes, the main loop reads the
streams, ``shutdown()`` finishes in-flight calls and releases the Snowflake worker
id. ``ready`` is set once the worker consumes; ``request_exit()`` (SIGTERM, SIGINT)
stops reading. Background tasks (``add_task``, or ``BUILTIN_TASKS`` for engine
features like FutureCalls) run in the same TaskGroup and must return once
``worker.stopping`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from hetu import snowflake
from hetu.errors import ConfigError
from hetu.fastredis import FastRedis
from hetu.keys import Keys
from hetu.registry import AppLayout, build_layout, default_namespace
from hetu_logic.config import LogicConfig
from hetu_logic.executor import Executor
from hetu_logic.future_calls import run_future_calls
from hetu_logic.publish import publish_registry
from hetu_logic.scheduler import Scheduler
from hetu_logic.streams import CallStreams, Entry

logger = logging.getLogger(__name__)

TaskFactory = Callable[["Worker"], Coroutine[Any, Any, None]]
BUILTIN_TASKS: list[TaskFactory] = [run_future_calls]
"""Background tasks every worker runs (engine features register here)."""


def load_app(path: str) -> None:
    """Import the app file so its components and Systems register.

    Raises:
        ConfigError: the file is missing or fails to import.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"app file {path!r} does not exist; pass the path of your app.py"
        )
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"app file {path!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(file.stem, module)
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(
            f"app file {path!r} failed to import: {type(e).__name__}: {e}. Fix the "
            f"app (run `python {path}` to see the traceback)"
        ) from e


class Worker:
    """A logic worker serving some clusters of one app. 一个逻辑进程。"""

    def __init__(self, config: LogicConfig) -> None:
        self.config = config
        self.keys = Keys(config.instance)
        self.consumer = config.consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.tasks: list[TaskFactory] = list(BUILTIN_TASKS)
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.redis: aioredis.Redis | None = None  # registry, leases, stream reads
        self.fast: FastRedis | None = None  # the hot path (Sessions, replies)
        self._reader: FastRedis | None = None  # blocking stream reads
        self.layout: AppLayout | None = None
        self.executor: Executor | None = None
        self.scheduler: Scheduler | None = None
        self.streams: CallStreams | None = None
        self.registry_version = 0
        self._lease: snowflake.WorkerIdLease | None = None

    def add_task(self, factory: TaskFactory) -> None:
        """Run ``await factory(worker)`` beside the stream loop (before serve)."""
        self.tasks.append(factory)

    def request_exit(self) -> None:
        """Stop reading; in-flight calls finish, then serve() returns."""
        if not self.stopping.is_set():
            logger.info("stopping: finishing in-flight calls")
        self.stopping.set()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (the CLI's entry)."""
        import uvloop

        uvloop.run(self.serve(handle_signals=True))

    async def serve(self, handle_signals: bool = False) -> None:
        """Start up, consume until asked to exit (or drained), shut down.
        ``handle_signals``: SIGTERM/SIGINT call ``request_exit`` (the CLI's case;
        embedders and tests call ``request_exit`` themselves)."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_exit)
        try:
            await self.startup()
            async with asyncio.TaskGroup() as tg:
                for factory in self.tasks:
                    tg.create_task(factory(self))
                self.ready.set()
                await self._consume()
                self.stopping.set()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Load the layout, connect, check schemas, publish, lease an id.

        Raises:
            ConfigError: bad namespace or clusters, Redis unreachable, or stored
                data under another schema (run ``hetu-logic migrate``).
        """
        cfg = self.config
        if self.layout is None:
            self.layout = build_layout(default_namespace(cfg.namespace))
        layout = self.layout
        clusters = (
            layout.clusters
            if cfg.clusters is None
            else [layout.cluster(i) for i in cfg.clusters]
        )
        self.redis = aioredis.Redis.from_url(cfg.redis_url)
        try:
            await self.redis.ping()  # pyright: ignore[reportGeneralTypeIssues]
        except (RedisError, OSError) as e:
            raise ConfigError(
                f"cannot reach Redis at {cfg.redis_url}: {str(e).rstrip('.')}. "
                "Start redis-server or "
                "pass --redis URL (env HETU_REDIS)"
            ) from e
        self.registry_version = await publish_registry(
            self.redis, self.keys, layout.registry, cfg.app or "app.py"
        )
        self._lease = await snowflake.lease_worker_id(self.redis, cfg.instance)
        self._reader = await FastRedis.from_url(cfg.redis_url)
        self.streams = CallStreams(
            self._reader,
            self.keys,
            clusters,
            self.consumer,
            block_ms=cfg.block_ms,
            idle_ms=cfg.idle_ms,
        )
        await self.streams.ensure_groups()
        self.fast = await FastRedis.from_url(cfg.redis_url)
        self.executor = Executor(self.fast, self.keys, layout, cfg)
        await self.executor.run_on_start(self.registry_version)
        self.scheduler = Scheduler(self.executor.run)
        logger.info(
            "serving namespace %s, clusters %s, registry version %d as %s",
            layout.namespace,
            ",".join(str(c.id) for c in clusters),
            self.registry_version,
            self.consumer,
        )

    async def _consume(self) -> None:
        assert self.streams is not None and self.scheduler is not None
        streams, scheduler = self.streams, self.scheduler
        capacity = self.config.batch_size
        claim_every_s = max(self.config.idle_ms / 2000, 0.05)
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        drain = self.config.drain
        while not self.stopping.is_set():
            room = capacity - scheduler.in_flight
            if room <= 0:
                await scheduler.wait_below(capacity)
                continue
            try:
                entries: list[Entry] = []
                if loop.time() >= next_claim:
                    next_claim = loop.time() + claim_every_s
                    entries = await streams.claim(room)
                if len(entries) < room:
                    block = not (drain or entries)
                    entries += await streams.read(room - len(entries), block)
            except (RedisConnectionError, OSError) as e:
                # Redis restarting: calls stay in the streams; read again shortly.
                logger.warning("reading the call streams failed (%s); retrying", e)
                await asyncio.sleep(1)
                continue
            if entries:
                scheduler.submit(entries)
            elif drain:
                # Drain mode: once nothing is in flight and nothing new came, stop.
                await scheduler.wait_idle()
                entries = await streams.read(capacity, False)
                entries += await streams.claim(capacity)
                if not entries:
                    return
                scheduler.submit(entries)
        await scheduler.wait_idle()

    async def shutdown(self) -> None:
        """Finish in-flight calls, release the Snowflake id, close Redis."""
        if self.scheduler is not None:
            await self.scheduler.wait_idle()
        if self.redis is not None:
            if self._lease is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._lease.release()
                self._lease = None
            await self.redis.aclose()
            self.redis = None
        for client in (self.fast, self._reader):
            if client is not None:
                await client.aclose()
        self.fast = self._reader = None
        if self.ready.is_set():
            logger.info("stopped")
