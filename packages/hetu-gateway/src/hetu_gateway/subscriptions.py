"""Live subscriptions of one instance: watch requests, snapshots, deltas, resume.

一个实例的实时订阅：订阅请求、快照、增量推送与断线续订。

A subscription starts from an atomic read of its window and the change log
position (:func:`read_window`), then applies every later change entry of its
cluster in order. Entries come from the instance's one :class:`ChangeLogReader`
and are dispatched by component; a subscription that is catching up (behind the
reader, resuming, or re-reading its window) buffers live entries in
``pending`` and applies them, skipping those it already has, when caught up.
See docs/architecture.md ("Subscriptions").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hetu.protocol import (
    ClientMsg,
    Ok,
    Push,
    Subscribed,
    Unwatch,
    WatchRange,
    WatchRow,
)
from hetu.storage import codec
from hetu.wire import RowChange
from hetu_gateway.changelog import ChangeLogReader, parse_id, read_log, read_window
from hetu_gateway.connection import CLOSE_INTERNAL, Connection
from hetu_gateway.rls import visibility
from hetu_gateway.tables import Table, build_tables, check_value
from hetu_gateway.watch import Change, CompSubs, Sub
from hetu_gateway.window import diff, order_key

if TYPE_CHECKING:
    from hetu_gateway.instance import Instance
    from hetu_gateway.server import Server

logger = logging.getLogger(__name__)

_LOG_PAGE = 256
_MAX_FETCH = 1 << 16
_POOL_SIZE = 16
_EMPTY = (b"[\xff", b"[\x00")  # a BYLEX range no member lies in


class Subscriptions:
    """The subscription service of one instance (plugs into the gateway as its
    ``SubscriptionService``). 一个实例的订阅服务。"""

    def __init__(self, server: Server, inst: Instance) -> None:
        # Own pool that waits for a free connection: a burst of watches must
        # queue for Redis, not fail.
        pool = aioredis.BlockingConnectionPool.from_url(
            server.config.redis_url, max_connections=_POOL_SIZE, timeout=30
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.inst = inst
        self.max_subs = server.config.max_subscriptions
        self.max_limit = server.config.max_watch_limit
        self._registry: Any = None
        self._tables: dict[str, Table] = {}
        self._by_comp: dict[str, CompSubs] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reader = ChangeLogReader(
            server.config.redis_url, self._streams, self._dispatch
        )
        self.reader.start()

    @classmethod
    def factory(cls, server: Server, inst: Instance) -> Subscriptions:
        return cls(server, inst)

    # --- registry -----------------------------------------------------------

    def tables(self) -> dict[str, Table]:
        view = self.inst.calls.registry
        if view is not None and view is not self._registry:
            self._tables = build_tables(self.inst.keys, view.registry)
            self._registry = view
        return self._tables

    def _streams(self) -> list[str]:
        return sorted({t.changes_key for t in self.tables().values()})

    # --- requests -----------------------------------------------------------

    def handle(self, conn: Connection, msg: ClientMsg) -> None:
        """Answer a WatchRow/WatchRange/Unwatch request."""
        if isinstance(msg, Unwatch):
            sub = conn.subs.pop(msg.sub, None)
            if sub is None:
                conn.error(msg.id, "bad_request", f"no subscription {msg.sub}")
                return
            self._drop(sub)
            conn.send(Ok(msg.id))
            return
        if not isinstance(msg, WatchRow | WatchRange):
            conn.error(msg.id, "bad_request", "not a subscription request")
            return
        sub = self._check(conn, msg)
        if sub is not None:
            conn.subs[sub.id] = sub
            self._spawn(self._open(sub, msg.since, msg.view))

    def _check(self, conn: Connection, msg: Any) -> Sub | None:
        if len(conn.subs) >= self.max_subs:
            conn.error(
                msg.id, "quota_exceeded", f"at most {self.max_subs} subscriptions"
            )
            return None
        if msg.id in conn.subs:
            conn.error(msg.id, "bad_request", f"subscription id {msg.id} in use")
            return None
        table = self.tables().get(msg.comp)
        if table is None or msg.index not in table.encoders:
            what = msg.comp if table is None else f"{msg.comp}.{msg.index}"
            conn.error(msg.id, "bad_request", f"no indexed component field {what}")
            return None
        limit, desc = (1, False) if isinstance(msg, WatchRow) else (msg.limit, msg.desc)
        if limit > self.max_limit:
            conn.error(msg.id, "quota_exceeded", f"limit is at most {self.max_limit}")
            return None
        try:
            if limit < 1:
                raise ValueError("limit must be at least 1")
            eq = None
            dtype = table.dtypes[msg.index]
            if isinstance(msg, WatchRow):
                check_value(dtype, msg.value, bound=False)
                eq = table.encoders[msg.index](msg.value)
                lex = codec.equal_range(eq)
            else:
                check_value(dtype, msg.left, bound=True)
                check_value(dtype, msg.right, bound=True)
                lex = codec.lex_range(dtype, msg.left, msg.right) or _EMPTY
        except (ValueError, TypeError, OverflowError) as exc:
            conn.error(msg.id, "bad_request", f"bad watch: {exc}"[:200])
            return None
        return Sub(msg.id, conn, table, msg.index, lex, limit, desc, eq)

    async def _open(self, sub: Sub, since: str, view: list[dict[str, Any]]) -> None:
        table, conn = sub.table, sub.conn
        try:
            await self.reader.ensure(table.changes_key)
            if since and await self._resumable(sub, since, view):
                if sub.closed:
                    return
                conn.send(Subscribed(sub.id, sub.id, since, [], fresh=False))
                self._register(sub, catch_up=True)
                return
            items, info_last, more = await self._read(sub)
            if sub.closed:
                return
            sub.window.load(items, more)
            sub.cid = info_last
            rows = list(sub.window.view().values())
            conn.send(Subscribed(sub.id, sub.id, info_last, rows))
            position = self.reader.positions.get(table.changes_key, "0-0")
            self._register(sub, catch_up=parse_id(position) > parse_id(info_last))
        except (OSError, RedisError) as exc:
            self._fail(sub, exc)
        except Exception:  # a bug: answer the request, keep the connection
            logger.exception("watch %d of conn %d failed", sub.id, conn.id)
            if conn.subs.pop(sub.id, None) is not None:
                self._drop(sub)
                conn.error(sub.id, "internal", "the watch failed; see the gateway log")

    async def _resumable(
        self, sub: Sub, since: str, view: list[dict[str, Any]]
    ) -> bool:
        """Load the client's view at ``since`` if the log still holds what came
        after it and the view is one this connection could have had."""
        try:
            parse_id(since)
        except ValueError:
            return False
        _, info = await read_log(self.redis, sub.table.changes_key, since, 1)
        if not info.holds_after(since) or len(view) > sub.window.limit:
            return False
        items = []
        dtype = sub.table.dtypes[sub.field]
        ids = [row.get("id") for row in view]
        if any(type(i) is not int for i in ids) or len(set(ids)) != len(ids):
            return False
        for row in view:
            try:
                check_value(dtype, row.get(sub.field), bound=False)
            except TypeError:
                return False
            ch = Change(RowChange(sub.table.name, "update", row.get("id", 0), row))
            member = ch.member(sub.field, sub.encode)
            if member is None or not codec.lex_contains(sub.lex, member):
                return False
            if not sub.visible(row):
                return False
            items.append((order_key(member, sub.desc), row))
        items.sort(key=_first)
        sub.window.load(items, more=len(items) >= sub.window.limit)
        sub.cid = since
        return True

    async def _read(
        self, sub: Sub
    ) -> tuple[list[tuple[bytes, dict[str, Any]]], str, bool]:
        """The visible rows of the window (up to its cap), the log position they
        are consistent with, and whether more may exist."""
        table, window = sub.table, sub.window
        index_key = table.index_key(sub.field)
        fetch = window.cap
        while True:
            reply, info = await read_window(
                self.redis, index_key, sub.lex, sub.desc, fetch, table.row_prefix,
                table.changes_key,
            )  # fmt: skip
            visible, decode = sub.visible, table.decode_row
            items = []
            for member, flat in reply:
                if flat and visible(row := decode(flat)):
                    items.append((order_key(member, sub.desc), row))
            exhausted = len(reply) < fetch
            if exhausted or len(items) >= window.cap or fetch >= _MAX_FETCH:
                return items, info.last, not exhausted or len(items) > window.cap
            fetch *= 4

    def _register(self, sub: Sub, catch_up: bool) -> None:
        if sub.closed:
            return
        comp = self._by_comp.get(sub.table.name)
        if comp is None:
            comp = self._by_comp[sub.table.name] = CompSubs()
        if catch_up or sub.refill:
            comp.add(sub)
            self._spawn(self._sync(sub, catch_up))
        else:
            sub.pending = None
            comp.add(sub)

    async def _sync(self, sub: Sub, catch_up: bool) -> None:
        """Bring a subscription from ``sub.cid`` to live: read the log after it,
        re-read the window when asked (or when the log lost entries), then apply
        the held live entries."""
        key, name = sub.table.changes_key, sub.table.name
        pending = sub.pending
        assert pending is not None
        try:
            while not sub.closed:
                if sub.refill:
                    await self._refill(sub)
                elif catch_up:
                    entries, info = await read_log(self.redis, key, sub.cid, _LOG_PAGE)
                    if not info.holds_after(sub.cid):
                        sub.refill = True
                        continue
                    for cid, changes in entries:
                        mine = [Change(c) for c in changes if c.comp == name]
                        sub.apply(cid, mine)
                        if sub.refill or sub.closed:
                            break
                    catch_up = len(entries) == _LOG_PAGE
                elif pending:
                    cid, changes = pending.popleft()
                    if parse_id(cid) > parse_id(sub.cid):
                        sub.apply(cid, changes)
                else:
                    sub.go_live()
                    return
        except (OSError, RedisError) as exc:
            self._fail(sub, exc)
        except Exception as exc:  # a bug: the client's resume starts it afresh
            logger.exception("subscription %d of conn %d failed", sub.id, sub.conn.id)
            self._fail(sub, exc)

    async def _refill(self, sub: Sub) -> None:
        """Re-read the window; push the difference under the position read."""
        sub.refill = False
        items, last, more = await self._read(sub)
        if sub.closed:
            return
        old = sub.window.view()
        sub.window.load(items, more)
        sub.rows_changed()
        events = diff(old, sub.window.view())
        if parse_id(last) > parse_id(sub.cid):
            sub.cid = last
        if events:
            sub.conn.send(Push(sub.id, sub.cid, events))

    def _fail(self, sub: Sub, exc: Exception) -> None:
        # The client's reconnect resumes every subscription from its change id.
        logger.error("subscription %d of conn %d failed: %s", sub.id, sub.conn.id, exc)
        sub.conn.close(CLOSE_INTERNAL, "subscription lost Redis; reconnect")

    # --- change log ---------------------------------------------------------

    def _dispatch(self, stream: str, cid: str, changes: list[RowChange]) -> None:
        by_comp = self._by_comp
        groups: dict[str, list[Change]] = {}
        for ch in changes:
            if ch.comp in by_comp:
                groups.setdefault(ch.comp, []).append(Change(ch))
        for comp, mine in groups.items():
            for sub in by_comp[comp].targets(mine):
                if sub.pending is not None:
                    sub.pending.append((cid, mine))
                    continue
                sub.apply(cid, mine)
                if sub.refill:
                    sub.start_pending()
                    self._spawn(self._sync(sub, catch_up=False))

    # --- connection events --------------------------------------------------

    def on_state_change(self, conn: Connection) -> None:
        """The connection's caller, group or user data changed: re-check rows."""
        for sub in conn.subs.values():
            if sub.table.info.permission == "EVERYBODY":
                continue
            sub.visible = visibility(sub.table.info, conn)
            sub.refill = True
            if sub.pending is None:
                sub.start_pending()
                self._spawn(self._sync(sub, catch_up=False))

    def on_close(self, conn: Connection) -> None:
        for sub in conn.subs.values():
            self._drop(sub)
        conn.subs.clear()

    def _drop(self, sub: Sub) -> None:
        sub.closed = True
        comp = self._by_comp.get(sub.table.name)
        if comp is not None:
            comp.remove(sub)
            if not comp:
                del self._by_comp[sub.table.name]

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.reader.aclose()
        await self.redis.aclose(close_connection_pool=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _first(item: tuple[bytes, Any]) -> bytes:
    return item[0]
