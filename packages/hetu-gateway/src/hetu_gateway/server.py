"""The gateway process: WebSocket server, handshake, frames, lifecycle.

网关进程：WebSocket 服务、握手、帧处理与生命周期。

Lifecycle as in uvicorn: :meth:`Server.run` for the CLI, ``await serve()`` for
tests and embedding, explicit :meth:`startup` / main loop / :meth:`shutdown`, and
:attr:`Server.ready` set once listening (:attr:`Server.port` is then the bound
port, also when started on port 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import signal
from collections.abc import Callable
from http import HTTPStatus

import msgspec
import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hetu.errors import ConfigError, ProtocolError
from hetu.fastredis import FastRedis, pack_command
from hetu.pipeline import ReplayGuard, accept_hello, encode_welcome
from hetu.pipeline.frames import FastFrames
from hetu.protocol import Call, client_msg_decoder
from hetu_gateway.config import GatewayConfig
from hetu_gateway.connection import (
    CLOSE_AUTH_FAILED,
    CLOSE_BAD_FRAME,
    CLOSE_BAD_HANDSHAKE,
    CLOSE_FLOOD,
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSE_INTERNAL,
    Connection,
)
from hetu_gateway.instance import Instance, SubscriptionService
from hetu_gateway.sweeper import sweep_dead_gateways

logger = logging.getLogger(__name__)

PATH_PREFIX = "/hetu/"
_INSTANCE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_AUTH_REASONS = ("auth failed", "stale hello", "replayed hello")

SubscriptionFactory = Callable[["Server", Instance], SubscriptionService]


class _FastConnection(FastFrames, ServerConnection):
    """Hands complete binary frames straight to ``on_frame`` once set, skipping
    websockets' parser, receive queue and a task wake-up per message (the hot
    path). Other frames and fragmented messages still take websockets' path."""

    masked_frames = True


class Server:
    """One gateway. ``subscriptions`` builds the subscription service of each
    instance (None: watch requests get ``bad_request``).

    一个网关进程。
    """

    def __init__(
        self, config: GatewayConfig, subscriptions: SubscriptionFactory | None = None
    ) -> None:
        self.config = config
        self.gw_id = secrets.token_hex(6)
        self.port = config.port
        self.instances: dict[str, Instance] = {}
        self.redis: aioredis.Redis | None = None
        self._subscriptions = subscriptions
        self._auth_key = config.auth_key.encode()
        self._guard = ReplayGuard()
        self._conn_ids = itertools.count(1)
        self._cmd: FastRedis | None = None
        self._sub: FastRedis | None = None
        self._channels: dict[bytes, Callable[[bytes], None]] = {}
        self._ws_server: WsServer | None = None
        self._instance_lock: asyncio.Lock | None = None
        self._ready: asyncio.Event | None = None
        self._should_exit: asyncio.Event | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------

    @property
    def ready(self) -> asyncio.Event:
        """Set once the server listens; :attr:`port` is then the bound port."""
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (the CLI entry)."""
        uvloop.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        await self.serve()

    async def serve(self) -> None:
        """Start, serve until :meth:`stop`, shut down."""
        await self.startup()
        try:
            await self._main_loop()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        if self._should_exit is not None:
            self._should_exit.set()

    async def startup(self) -> None:
        """Connect to Redis and listen.

        Raises:
            ConfigError: Redis is unreachable or the port cannot be bound.
        """
        self._should_exit = asyncio.Event()
        self._instance_lock = asyncio.Lock()
        url = self.config.redis_url
        try:
            self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=5)
            await self.redis.ping()  # type: ignore[misc]
            self._cmd = await FastRedis.from_url(url)
            self._sub = await FastRedis.from_url(url, self._on_message)
        except (OSError, TimeoutError, aioredis.RedisError) as exc:
            raise ConfigError(
                f"cannot reach Redis at {url} ({exc}). Start redis-server or pass "
                "--redis URL (env HETU_REDIS) naming a running server."
            ) from None
        try:
            self._ws_server = await serve(
                self._handle,
                self.config.host,
                self.config.port,
                process_request=self._check_path,
                max_size=self.config.max_frame_bytes,
                compression=None,
                open_timeout=self.config.handshake_timeout_s,
                ping_interval=20,
                ping_timeout=20,
                create_connection=_FastConnection,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port} ({exc}); "
                "pick another --port or stop the process using it."
            ) from None
        self.port = next(iter(self._ws_server.sockets)).getsockname()[1]
        logger.info(
            "gateway %s listening on ws://%s:%d%s<instance>",
            self.gw_id,
            self.config.host,
            self.port,
            PATH_PREFIX,
        )
        self.ready.set()

    async def _main_loop(self) -> None:
        assert self._should_exit is not None
        async with asyncio.TaskGroup() as tg:
            beat = tg.create_task(self._heartbeat())
            keeper = tg.create_task(self._keep_redis())
            await self._should_exit.wait()
            beat.cancel()
            keeper.cancel()

    async def shutdown(self) -> None:
        """Close every connection (1001), run their ``on_disconnect``, drop keys."""
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        for inst in self.instances.values():
            if inst.subscriptions is not None:
                await inst.subscriptions.aclose()
        if self._cmd is not None and self._cmd.connected:
            with contextlib.suppress(Exception):
                for inst in self.instances.values():
                    cmd = self._cmd.execute_command
                    await cmd("DEL", inst.alive_key, inst.conns_key)
                    await cmd("SREM", inst.keys.gateways(), self.gw_id)
            self._cmd.close()
        if self._sub is not None:
            self._sub.close()
        if self.redis is not None:
            await self.redis.aclose()
        logger.info("gateway %s stopped", self.gw_id)

    # --- redis ---------------------------------------------------------------

    def cmd(self) -> FastRedis:
        """The hot-path command connection."""
        assert self._cmd is not None
        return self._cmd

    def _on_message(self, channel: bytes, data: bytes) -> None:
        handler = self._channels.get(channel)
        if handler is not None:
            handler(data)

    async def _heartbeat(self) -> None:
        """Renew our alive keys; close the connections of gateways that died."""
        ttl_ms = int(self.config.heartbeat_ttl_s * 1000)
        while True:
            for inst in list(self.instances.values()):
                self.cmd().send(_set_px(inst.alive_key, self.gw_id, ttl_ms))
                assert self.redis is not None
                try:
                    await sweep_dead_gateways(
                        self.redis, inst.keys, self.gw_id, inst.calls.registry
                    )
                except (OSError, ConnectionError, aioredis.RedisError) as exc:
                    logger.warning("sweeping dead gateways failed: %s", exc)
            await asyncio.sleep(self.config.heartbeat_ttl_s / 3)

    async def _keep_redis(self) -> None:
        """Reconnect the hot-path connections when Redis drops them."""
        while True:
            assert self._cmd is not None and self._sub is not None
            cmd, sub = self._cmd, self._sub
            lost = [asyncio.ensure_future(r.wait_lost()) for r in (cmd, sub)]
            try:
                await asyncio.wait(lost, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in lost:
                    fut.cancel()
            logger.warning("lost the Redis connection; reconnecting")
            while True:
                try:
                    await cmd.ensure()
                    await sub.ensure()  # re-subscribes its channels
                    break
                except (OSError, TimeoutError, aioredis.RedisError) as exc:
                    logger.warning("Redis still unreachable: %s", exc)
                    await asyncio.sleep(0.5)
            assert self.redis is not None
            for inst in self.instances.values():
                await inst.reload_registry(self.redis)

    async def instance(self, name: str) -> Instance:
        """The instance called ``name``, subscribed and loaded on first use."""
        inst = self.instances.get(name)
        if inst is not None:
            return inst
        assert self._instance_lock is not None and self.redis is not None
        async with self._instance_lock:
            inst = self.instances.get(name)
            if inst is not None:
                return inst
            inst = Instance(name, self.gw_id, self.config, self.cmd())
            redis = self.redis
            self._channels[inst.channel] = inst.on_gateway_message
            self._channels[inst.registry_channel] = lambda _data: self._spawn(
                inst.reload_registry(redis)
            )
            assert self._sub is not None
            await self._sub.subscribe(
                inst.channel.decode(), inst.registry_channel.decode()
            )
            await inst.reload_registry(redis)
            if self._subscriptions is not None:
                inst.subscriptions = self._subscriptions(self, inst)
            ttl_ms = int(self.config.heartbeat_ttl_s * 1000)
            self.cmd().send(_set_px(inst.alive_key, self.gw_id, ttl_ms))
            self.cmd().send(pack_command(b"SADD", inst.keys.gateways(), self.gw_id))
            self.instances[name] = inst
            return inst

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- connections ---------------------------------------------------------

    def _check_path(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path
        if not path.startswith(PATH_PREFIX) or not _INSTANCE_RE.fullmatch(
            path[len(PATH_PREFIX) :]
        ):
            return conn.respond(
                HTTPStatus.NOT_FOUND, "use ws://host:port/hetu/<instance>\n"
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            hello_frame = await asyncio.wait_for(
                ws.recv(), self.config.handshake_timeout_s
            )
        except TimeoutError:
            await ws.close(CLOSE_HANDSHAKE_TIMEOUT, "handshake timeout")
            return
        except ConnectionClosed:
            return
        conn_id = next(self._conn_ids)
        try:
            if isinstance(hello_frame, str):
                raise ProtocolError("bad hello")
            hello, welcome, pipeline, secret = accept_hello(
                hello_frame,
                auth_key=self._auth_key,
                guard=self._guard,
                max_frame_bytes=self.config.max_frame_bytes,
                new_token=secrets.token_urlsafe(16),
                conn=conn_id,
            )
        except ProtocolError as exc:
            reason = str(exc)
            code = CLOSE_AUTH_FAILED if reason in _AUTH_REASONS else CLOSE_BAD_HANDSHAKE
            logger.info("refused handshake from %s: %s", ws.remote_address, reason)
            await ws.close(code, reason)
            return
        conn = Connection(
            ws, conn_id, welcome.token, pipeline, self.config.max_send_buffer_bytes
        )
        conn.tokens = self.config.max_msgs_per_s
        conn.tokens_at = asyncio.get_running_loop().time()
        assert self.redis is not None and ws.request is not None
        try:
            inst = await self.instance(ws.request.path[len(PATH_PREFIX) :])
            # The local guard saw this nonce first; Redis covers the other gateways
            # (always for a resume: a replayed resume must not reach a session).
            if (self._auth_key or hello.proof) and not await inst.sessions.claim_hello(
                hello.nonce, self.redis
            ):
                await ws.close(CLOSE_AUTH_FAILED, "replayed hello")
                return
            if await inst.sessions.open(conn, hello, secret, self.redis):
                welcome.token, welcome.secret = conn.token, b""
        except (OSError, ConnectionError, aioredis.RedisError) as exc:
            logger.error("Redis unavailable while opening conn %d: %s", conn_id, exc)
            await ws.close(CLOSE_INTERNAL, "gateway cannot reach Redis")
            return
        inst.on_open(conn)
        try:
            await ws.send(encode_welcome(welcome))
            on_frame = self._frame_handler(ws, inst, conn)
            if isinstance(ws, _FastConnection):
                ws.on_frame = on_frame
            async for frame in ws:  # what the fast path leaves to websockets
                on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            inst.on_close(conn)

    def _frame_handler(
        self, ws: ServerConnection, inst: Instance, conn: Connection
    ) -> Callable[[bytes | str], None]:
        def on_frame(frame: bytes | str) -> None:
            try:
                self._on_frame(inst, conn, frame)
            except Exception:
                # The one catch-and-log point per connection: a bug in handling
                # one message closes that connection only.
                logger.exception("error handling a frame; closing the connection")
                ws.protocol.fail(CLOSE_INTERNAL, "internal error")
                ws.send_data()

        return on_frame

    def _on_frame(self, inst: Instance, conn: Connection, frame: bytes | str) -> None:
        if conn.closed:
            return
        rate = self.config.max_msgs_per_s
        now = asyncio.get_running_loop().time()
        tokens = min(rate, conn.tokens + (now - conn.tokens_at) * rate) - 1.0
        conn.tokens, conn.tokens_at = tokens, now
        if tokens < -rate:
            conn.close(CLOSE_FLOOD, "flood: too many messages")
            return
        if isinstance(frame, str):
            conn.error(0, "bad_request", "text frames are not part of the protocol")
            return
        try:
            data = conn.pipeline.decode(frame)
        except ProtocolError as exc:
            conn.close(CLOSE_BAD_FRAME, str(exc)[:120])
            return
        try:
            msg = client_msg_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            conn.error(_guess_id(data), "bad_request", f"bad message: {exc}"[:200])
            return
        if tokens < 0:
            conn.error(msg.id, "rate_limited", "too many messages; slow down")
        elif isinstance(msg, Call):
            inst.submit(conn, msg)
        elif inst.subscriptions is not None:
            inst.subscriptions.handle(conn, msg)
        else:
            conn.error(msg.id, "bad_request", "subscriptions are not served here")


def _guess_id(data: bytes) -> int:
    """The request id of a message that failed validation, or 0."""
    try:
        obj = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return 0
    if isinstance(obj, list) and len(obj) > 1 and type(obj[1]) is int:
        return obj[1] if -(2**63) <= obj[1] < 2**64 else 0
    return 0


def _set_px(key: str, value: str, ttl_ms: int) -> bytes:
    return pack_command(b"SET", key, value, b"PX", ttl_ms)
