"""Check, forward and answer client calls for one instance.

为一个实例检查、转发并回复客户端调用。

A connection has at most one call in flight: the next queued call is forwarded
only after the reply (or the timeout) of the previous one, so calls of one
connection never run concurrently. XADDs of all connections go out in one write
per loop iteration (see :mod:`hetu.fastredis`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from hetu.fastredis import FastRedis, pack_command
from hetu.keys import Keys
from hetu.protocol import Call, Ok
from hetu.wire import CallMsg, ReplyMsg, call_encoder
from hetu_gateway.config import GatewayConfig
from hetu_gateway.connection import Connection
from hetu_gateway.registry import RegistryView, Route
from hetu_gateway.sweeper import ConnRecord, disconnect_commands

logger = logging.getLogger(__name__)
access_log = logging.getLogger("hetu_gateway.access")


class Calls:
    """The call path of one instance; ``redis`` is the hot-path command connection.

    一个实例的调用路径。
    """

    def __init__(
        self,
        gw_id: str,
        keys: Keys,
        config: GatewayConfig,
        redis: FastRedis,
    ) -> None:
        self.gw_id = gw_id
        self.keys = keys
        self.registry: RegistryView | None = None
        self._redis = redis
        self._timeout_s = config.call_timeout_s
        self._max_queued = config.max_queued_calls
        #: rid -> connection waiting for that reply.
        self.waiting: dict[str, Connection] = {}

    # --- client side ---------------------------------------------------------

    def submit(self, conn: Connection, call: Call) -> None:
        """Check ``call`` and forward it now, or queue it behind the one in flight."""
        if conn.inflight:
            if len(conn.queue) >= self._max_queued:
                conn.error(call.id, "quota_exceeded", "too many calls queued")
                return
            conn.queue.append(call)
            return
        self._start(conn, call)

    def _start(self, conn: Connection, call: Call) -> None:
        # Loop: a call refused by a check is answered at once; go on to the next.
        while True:
            route = self._check(conn, call)
            if route is not None:
                self._forward(conn, call, route)
                return
            if not conn.queue:
                return
            call = conn.queue.popleft()

    def _check(self, conn: Connection, call: Call) -> Route | None:
        registry = self.registry
        route = registry.routes.get(call.sys) if registry is not None else None
        if route is None or route.permission is None:
            conn.error(call.id, "unknown_system", f"no callable System {call.sys!r}")
            return None
        perm = route.permission
        if perm == "USER" and not conn.caller:
            conn.error(call.id, "permission_denied", f"{call.sys} needs a login")
            return None
        if perm == "ADMIN" and not conn.group.startswith("admin"):
            conn.error(call.id, "permission_denied", f"{call.sys} is for admins")
            return None
        info = route.info
        n = len(call.args)
        if n < info.min_args or (info.max_args is not None and n > info.max_args):
            most = "any" if info.max_args is None else info.max_args
            conn.error(
                call.id,
                "bad_arguments",
                f"{call.sys} takes {info.min_args}..{most} arguments, got {n}",
            )
            return None
        if info.rate_limits and not _within_rate_limits(conn, call.sys, info):
            conn.error(call.id, "rate_limited", f"{call.sys} called too often")
            return None
        return route

    def _forward(self, conn: Connection, call: Call, route: Route) -> None:
        rid = f"{conn.token}:{call.id}"
        msg = CallMsg(
            gw=self.gw_id,
            conn=conn.id,
            rid=rid,
            sys=call.sys,
            args=call.args,
            caller=conn.caller,
            group=conn.group,
            ud=conn.ud,
            addr=conn.addr,
            ts=time.time(),
        )
        conn.inflight = rid
        conn.inflight_id = call.id
        self.waiting[rid] = conn
        # One lazy timer per connection, re-armed when it fires before the
        # deadline of the call then in flight: no timer per call.
        loop = asyncio.get_running_loop()
        conn.deadline = loop.time() + self._timeout_s
        if conn.timer is None:
            conn.timer = loop.call_at(conn.deadline, self._on_timer, conn)
        payload = call_encoder.encode(msg)
        cmd = b"%s$%d\r\n%s\r\n" % (route.xadd_prefix, len(payload), payload)

        def on_added(reply: Any) -> None:
            if not isinstance(reply, Exception) or self.waiting.get(rid) is not conn:
                return
            logger.error("XADD for %s failed: %s", call.sys, reply)
            if isinstance(reply, RedisConnectionError):  # it may have been written
                self._answer(conn, rid, None, "timeout", "lost the Redis connection; "
                             "the outcome is unknown")  # fmt: skip
            else:
                self._answer(conn, rid, None, "internal", "call could not be queued")

        self._redis.send(cmd, on_added)
        access_log.debug("call %s conn=%d rid=%s", call.sys, conn.id, rid)

    def _on_timer(self, conn: Connection) -> None:
        conn.timer = None
        rid = conn.inflight
        if not rid or conn.closed or self.waiting.get(rid) is not conn:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < conn.deadline:
            conn.timer = loop.call_at(conn.deadline, self._on_timer, conn)
        else:
            self._answer(
                conn,
                rid,
                None,
                "timeout",
                f"no reply within {self._timeout_s:g} s; the outcome is unknown "
                "(retry with the same request id to learn it)",
            )

    def _answer(
        self, conn: Connection, rid: str, data: Any, code: str, message: str
    ) -> None:
        del self.waiting[rid]
        conn.inflight = ""
        req_id = conn.inflight_id
        if code:
            conn.error(req_id, code, message)  # type: ignore[arg-type]
        else:
            conn.send(Ok(req_id, data))
        if conn.queue and not conn.closed:
            self._start(conn, conn.queue.popleft())

    # --- logic side ----------------------------------------------------------

    def on_reply(self, reply: ReplyMsg) -> Connection | None:
        """Deliver a worker's reply; return the connection if its state changed."""
        conn = self.waiting.get(reply.rid)
        if conn is None:
            return None  # late (after a timeout) or the connection is gone
        changed = False
        if reply.caller is not None and reply.caller != conn.caller:
            conn.caller = reply.caller
            conn.login = f"{self.gw_id}:{conn.id}" if reply.caller else ""
            changed = True
        if reply.group is not None and reply.group != conn.group:
            conn.group = reply.group
            changed = True
        if reply.ud is not None:
            conn.ud = reply.ud
            changed = True
        if reply.ok:
            self._answer(conn, reply.rid, reply.data, "", "")
        else:
            self._answer(conn, reply.rid, None, reply.code or "internal", reply.message)
        return conn if changed else None

    def on_close(self, conn: Connection) -> None:
        """Forget the connection; run ``on_disconnect`` (not for a kicked one: its
        user is online elsewhere) and release its login if still held."""
        if conn.inflight:
            self.waiting.pop(conn.inflight, None)
        conn.queue.clear()
        rec = ConnRecord(conn.token, conn.caller, conn.group, conn.ud, conn.addr)
        registry = None if conn.kicked else self.registry
        redis = self._redis
        for command in disconnect_commands(
            self.keys, registry, self.gw_id, conn.id, rec
        ):
            redis.send(pack_command(*command))


def _within_rate_limits(conn: Connection, name: str, info: Any) -> bool:
    """Sliding windows of the app's ``@rate_limit(times, per)`` for this call."""
    now = time.monotonic()
    hits = conn.rate_hits.get(name)
    if hits is None:
        most = max(times for times, _ in info.rate_limits)
        hits = conn.rate_hits[name] = deque(maxlen=most)
    for times, per in info.rate_limits:
        if len(hits) >= times and now - hits[-times] < per:
            return False
    hits.append(now)
    return True
