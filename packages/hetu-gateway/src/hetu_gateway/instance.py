"""One instance (data partition, ``/hetu/<instance>``) as served by a gateway.

网关所服务的一个实例（数据分区，``/hetu/<instance>``）。
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import msgspec
import redis.asyncio as aioredis

from hetu.fastredis import FastRedis, pack_command
from hetu.keys import Keys
from hetu.protocol import Call, ClientMsg
from hetu.wire import KickMsg, ReplyMsg, gateway_msg_decoder
from hetu_gateway.calls import Calls
from hetu_gateway.config import GatewayConfig
from hetu_gateway.connection import CLOSE_KICKED, Connection
from hetu_gateway.registry import load_registry
from hetu_gateway.session import Sessions
from hetu_gateway.sweeper import ConnRecord

logger = logging.getLogger(__name__)
record_encoder = msgspec.msgpack.Encoder()


class SubscriptionService(Protocol):
    """What the gateway needs from the subscription layer (one per instance).

    订阅层需要为网关提供的接口（每个实例一个）。
    """

    def handle(self, conn: Connection, msg: ClientMsg) -> None:
        """Answer a ``WatchRow``/``WatchRange``/``Unwatch`` request."""
        ...

    def on_close(self, conn: Connection) -> None:
        """Drop the subscriptions of a closed connection."""
        ...

    def on_state_change(self, conn: Connection) -> None:
        """The connection's caller, group or user data changed (row visibility)."""
        ...

    async def aclose(self) -> None:
        """Stop background work (change-log readers)."""
        ...


class Instance:
    """Connections, call path, sessions and registry of one instance."""

    def __init__(
        self,
        name: str,
        gw_id: str,
        config: GatewayConfig,
        redis: FastRedis,
    ) -> None:
        self.name = name
        self._wait_s = config.call_timeout_s
        self.keys = Keys(name)
        self.calls = Calls(gw_id, self.keys, config, redis)
        self.sessions = Sessions(self.keys, gw_id, config.session_ttl_s, redis)
        self.connections: dict[int, Connection] = {}
        self.channel = self.keys.gateway(gw_id).encode()
        self.registry_channel = self.keys.registry_changed().encode()
        self.alive_key = self.keys.gateway_alive(gw_id)
        self.conns_key = self.keys.gateway_conns(gw_id)
        self._redis = redis
        self.subscriptions: SubscriptionService | None = None
        #: Calls that arrived before any worker published a registry.
        self._before_registry: list[tuple[Connection, Call]] = []

    def submit(self, conn: Connection, call: Call) -> None:
        """Hand ``call`` to the call path; before the first registry, hold it
        until a worker publishes one (the call's timeout still applies)."""
        if self.calls.registry is not None:
            self.calls.submit(conn, call)
            return
        if not self._before_registry:
            loop = asyncio.get_running_loop()
            loop.call_later(self._wait_s, self._flush_before_registry)
        self._before_registry.append((conn, call))

    def _flush_before_registry(self) -> None:
        held, self._before_registry = self._before_registry, []
        for conn, call in held:
            if not conn.closed:
                self.calls.submit(conn, call)  # unknown_system if still none

    async def reload_registry(self, redis: aioredis.Redis) -> None:
        view = await load_registry(redis, self.keys)
        if view is not None:
            old = self.calls.registry
            if old is None or view.version != old.version:
                logger.info("instance %s: registry version %d", self.name, view.version)
            self.calls.registry = view
            if self._before_registry:
                self._flush_before_registry()

    def on_gateway_message(self, data: bytes) -> None:
        """A reply or control message published on this gateway's channel."""
        try:
            msg = gateway_msg_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.error("unreadable message on %s: %s", self.channel, exc)
            return
        if isinstance(msg, ReplyMsg):
            conn = self.calls.on_reply(msg)
            if conn is not None and not conn.closed:
                self.sessions.save(conn)
                self.record(conn)
                if self.subscriptions is not None:
                    self.subscriptions.on_state_change(conn)
        elif isinstance(msg, KickMsg):
            conn = self.connections.get(msg.conn)
            if conn is not None:
                logger.info(
                    "kick conn %d (user %d): %s", conn.id, conn.caller, msg.reason
                )
                conn.kicked = True
                conn.close(CLOSE_KICKED, msg.reason)

    def record(self, conn: Connection) -> None:
        """Keep the connection's state where a sweeper finds it if we die."""
        rec = ConnRecord(conn.token, conn.caller, conn.group, conn.ud, conn.addr)
        self._redis.send(
            pack_command(b"HSET", self.conns_key, conn.id, record_encoder.encode(rec))
        )

    def on_open(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self.record(conn)

    def on_close(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.pop(conn.id, None)
        self._redis.send(pack_command(b"HDEL", self.conns_key, conn.id))
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if self.subscriptions is not None:
            self.subscriptions.on_close(conn)
        self.calls.on_close(conn)
