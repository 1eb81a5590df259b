"""Run calls taken from the streams: Systems in transactions, endpoints, replies.

运行从流中取出的调用：事务中的 System、Endpoint，以及回复。

Exactly-once for Systems: the System's writes, the XACK of its stream entry, the
change event, the cached reply and the PUBLISH of the reply are one commit script
call. A call whose ``rid`` already has a cached reply is not run again: the script
acks it and returns the cached reply, which is re-sent to the caller.

Endpoints are at-most-once: their entry is acked before the body runs. See
docs/architecture.md "Logic worker".
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from msgspec.structs import replace

from hetu.context import EndpointContext, SystemContext
from hetu.errors import ClientReject, RaceCondition, UniqueViolation
from hetu.fastredis import FastRedis
from hetu.keys import ClusterKeys, Keys
from hetu.registry import DISCONNECT_SYSTEM, AppLayout
from hetu.storage.commit import CommitExtras, CommitResult
from hetu.storage.session import Session
from hetu.system import SystemDefinition
from hetu.wire import CallMsg, KickMsg, call_encoder
from hetu_logic import replies
from hetu_logic.config import LogicConfig
from hetu_logic.streams import GROUP, Entry

logger = logging.getLogger(__name__)
access_log = logging.getLogger("hetu_logic.access")

LOCK_TTL_S = 30 * 24 * 3600
"""How long a ``call_lock`` uuid is remembered."""


class CallFailed(Exception):
    """A call ends in an error reply ``code``/``message`` (internal to the worker)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Executor:
    """Runs stream entries; implements ``hetu.context.SystemRunner``."""

    def __init__(
        self, redis: FastRedis, keys: Keys, layout: AppLayout, cfg: LogicConfig
    ) -> None:
        # FastRedis: every command of the hot path, auto-pipelined across tasks.
        self.redis: Any = redis
        self.keys = keys
        self.cfg = cfg
        self.systems = layout.systems
        by_id = {c.id: keys.cluster(c.tag) for c in layout.clusters}
        self._keys_of: dict[str, ClusterKeys] = {
            name: by_id[c.id] for name, c in layout.cluster_of_sys.items()
        }
        self._stream_keys = {
            keys.cluster(c.tag).calls(): by_id[c.id] for c in layout.clusters
        }
        self.rate = replies.RateLimiter()

    # -- one call ------------------------------------------------------------------

    async def run(self, entry: Entry) -> None:
        """Run one stream entry and reply to its gateway."""
        msg = entry.msg
        ckeys = self._stream_keys[entry.stream]
        if msg is None:
            await asyncio.gather(
                self.redis.execute_command("XACK", entry.stream, GROUP, entry.entry_id),
                self.redis.execute_command("XDEL", entry.stream, entry.entry_id),
            )
            return
        d = self.systems.get(msg.sys)
        extras = CommitExtras(
            ack_stream=entry.stream,
            ack_group=GROUP,
            ack_id=entry.entry_id.decode(),
            # gw "": a FutureCall (hetu_logic.future_calls), nobody to reply to
            reply_channel=self.keys.gateway(msg.gw) if msg.gw else "",
            reply_cache_key=ckeys.reply_cache(msg.rid),
            reply_cache_ttl_s=self.cfg.reply_ttl_s,
            changes_stream=ckeys.changes(),
            changes_maxlen=self.cfg.changes_maxlen,
        )
        try:
            if d is None or ":" in msg.sys:
                raise CallFailed("unknown_system", f"no System or endpoint {msg.sys!r}")
            if msg.sys != DISCONNECT_SYSTEM and msg.gw:  # FutureCalls: trusted
                self._check(d, msg)
            if d.endpoint:
                await self._run_endpoint(entry, d, msg, extras)
            else:
                await self._run_system(entry, d, msg, extras)
        except CallFailed as e:
            reply = replies.error_reply(msg, e.code, e.message, extras.ack_id)
            await self._reply_only(entry, msg, extras, reply)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s:%s %s", msg.sys, msg.gw, msg.conn, msg.rid)

    def _check(self, d: SystemDefinition, msg: CallMsg) -> None:
        refused = replies.check_call(d, msg)
        if refused is not None:
            raise CallFailed(*refused)
        if d.rate_limits and not self.rate.allow(d, msg):
            raise CallFailed("rate_limited", f"{msg.sys}: too many calls")

    def _context(
        self, cls: type[SystemContext], session: Any, msg: CallMsg, race_count: int
    ) -> SystemContext:
        return cls(
            self,
            session,
            caller=msg.caller,
            connection_id=msg.conn,
            address=msg.addr,
            group=msg.group,
            user_data=dict(msg.ud),
            timestamp=msg.ts or time.time(),
            race_count=race_count,
            gateway=msg.gw,
            request_id=msg.rid,
        )

    async def _guards(
        self, d: SystemDefinition, ctx: SystemContext, args: list[Any]
    ) -> None:
        for check in d.guards:
            result = check(ctx, *args)
            if asyncio.iscoroutine(result):
                await result

    async def _run_system(
        self, entry: Entry, d: SystemDefinition, msg: CallMsg, extras: CommitExtras
    ) -> None:
        skeys = self._keys_of[d.name]
        ctx = self._context(SystemContext, Session(self.redis, skeys), msg, 0)
        ctx, result = await self._transaction(d, ctx, msg.args, extras, msg)
        if result.duplicate_reply is not None:
            await self._resend(entry, msg, result.duplicate_reply)
        elif ctx._login is not None:
            await self._login_swap(ctx)

    async def _transaction(
        self,
        d: SystemDefinition,
        ctx: SystemContext,
        args: list[Any] | tuple[Any, ...],
        extras: CommitExtras,
        msg: CallMsg,
    ) -> tuple[SystemContext, CommitResult]:
        """Guards, then the body with retries, then the commit with ``extras`` and
        the reply to ``msg``. Returns the context of the run that committed (its
        ``value`` attribute is not kept: see ``call_system``) and the result.

        Raises:
            CallFailed: a client-visible failure (rejected, unique_violation,
                internal), nothing applied.
        """
        skeys = self._keys_of[d.name]
        try:
            if d.guards:
                await self._guards(d, ctx, list(args))
            for attempt in range(d.retry + 1):
                if attempt:
                    ctx = self._retry_context(ctx, skeys, attempt, msg)
                value = await d.func(ctx, *args)
                reply = replies.ok_reply(msg, ctx, value, extras.ack_id)
                try:
                    result = await ctx._session.commit(replace(extras, reply=reply))
                except RaceCondition:
                    continue
                ctx._value = value
                return ctx, result
        except ClientReject as e:
            logger.info("%s rejected %s: %s", d.name, e.code, e.reason)
            raise CallFailed("rejected", e.code) from e
        except UniqueViolation as e:
            raise CallFailed("unique_violation", str(e)) from e
        except CallFailed:
            raise
        except Exception as e:
            logger.exception("System %s failed", d.name)
            raise CallFailed("internal", "the server failed; see its log") from e
        logger.warning("%s gave up after %d conflicts", d.name, d.retry + 1)
        raise CallFailed("internal", f"{d.name} conflicted {d.retry + 1} times")

    def _retry_context(
        self, old: SystemContext, skeys: ClusterKeys, attempt: int, msg: CallMsg
    ) -> SystemContext:
        ctx = self._context(SystemContext, Session(self.redis, skeys), msg, attempt)
        ctx.timestamp = old.timestamp
        return ctx

    async def _reply_only(
        self, entry: Entry, msg: CallMsg, extras: CommitExtras, reply: bytes
    ) -> None:
        """Ack, cache and publish ``reply`` in one script call (no data)."""
        session = Session(self.redis, self._stream_keys[extras.ack_stream])
        result = await session.commit(replace(extras, reply=reply))
        if result.duplicate_reply is not None:
            await self._resend(entry, msg, result.duplicate_reply)

    async def _resend(self, entry: Entry, msg: CallMsg, cached: bytes) -> None:
        """Answer a repeated request id from the cache, unless this very entry
        produced the cached reply (re-delivered after a claim: already answered)."""
        reply = replies.resend(cached, msg, entry.entry_id.decode())
        if reply is not None:
            await self._publish(msg, reply)

    async def _publish(self, msg: CallMsg, reply: bytes) -> None:
        await self.redis.execute_command("PUBLISH", self.keys.gateway(msg.gw), reply)

    # -- endpoints -----------------------------------------------------------------

    async def _run_endpoint(
        self, entry: Entry, d: SystemDefinition, msg: CallMsg, extras: CommitExtras
    ) -> None:
        # At-most-once: ack first, so a crash below never runs the body again from
        # this entry; a client retry (same rid) re-runs it, but Systems it called
        # carry derived rids and are answered from their cache.
        run = self.redis.execute_command
        _, _, cached = await asyncio.gather(
            run("XACK", entry.stream, GROUP, entry.entry_id),
            run("XDEL", entry.stream, entry.entry_id),
            run("GET", extras.reply_cache_key),
        )
        if cached is not None:
            await self._resend(entry, msg, cached)
            return
        ctx = self._context(EndpointContext, None, msg, 0)
        try:
            if d.guards:
                await self._guards(d, ctx, msg.args)
            value = await d.func(ctx, *msg.args)
            reply = replies.ok_reply(msg, ctx, value, extras.ack_id)
        except ClientReject as e:
            logger.info("%s rejected %s: %s", d.name, e.code, e.reason)
            reply = replies.error_reply(msg, "rejected", e.code, extras.ack_id)
        except UniqueViolation as e:
            reply = replies.error_reply(msg, "unique_violation", str(e), extras.ack_id)
        except CallFailed as e:
            reply = replies.error_reply(msg, e.code, e.message, extras.ack_id)
        except Exception:
            logger.exception("endpoint %s failed", d.name)
            reply = replies.error_reply(
                msg, "internal", "the server failed; see its log", extras.ack_id
            )
        ttl = self.cfg.reply_ttl_s
        await asyncio.gather(
            run("SET", extras.reply_cache_key, reply, "EX", ttl),
            run("PUBLISH", extras.reply_channel, reply),
        )
        if ctx._login is not None:
            await self._login_swap(ctx)

    # -- SystemRunner ---------------------------------------------------------------

    def repository(self, session: Any, comp: Any) -> Any:
        if session is None:
            raise RuntimeError(
                "an endpoint has no transaction: use ctx.systems.call(...) to run "
                "a System that reads or writes tables"
            )
        return session.repo(comp)

    async def restart_session(self, ctx: SystemContext, commit: bool) -> None:
        if commit:
            await ctx._session.commit()
        else:
            ctx._session.discard()
        ctx._session = Session(self.redis, ctx._session.keys)

    async def login_holder(self, user_id: int) -> str | None:
        raw = await self.redis.execute_command("GET", self.keys.login(user_id))
        return None if raw is None else raw.decode()

    async def call_system(
        self,
        ctx: SystemContext,
        name: str,
        args: tuple[Any, ...],
        uuid: str | None,
        *,
        once_rid: str | None = None,
    ) -> Any:
        """Run System ``name`` in its own transaction for ``ctx``. Its request id is
        ``<ctx.request_id>/<n>`` for the n-th call of ``ctx``; ``lock:<name>:<uuid>``
        for a ``call_lock`` System given ``uuid``; ``once_rid`` if given (engine
        use: on_start, FutureCalls). The last two are remembered 30 days and a
        repeat returns None.

        Raises:
            ValueError: no such System.
            Exception: what the System raised (ClientReject, UniqueViolation, ...).
        """
        d = self.systems.get(name)
        if d is None or d.endpoint:
            raise ValueError(f"ctx.systems.call: no System named {name!r}")
        skeys = self._keys_of[d.name]
        ctx._call_seq += 1
        lock = bool(uuid and d.call_lock) or once_rid is not None
        rid = once_rid or (
            f"lock:{name}:{uuid}" if lock else f"{ctx.request_id}/{ctx._call_seq}"
        )
        extras = CommitExtras(
            reply_cache_key=skeys.reply_cache(rid),
            reply_cache_ttl_s=LOCK_TTL_S if lock else self.cfg.reply_ttl_s,
            changes_stream=skeys.changes(),
            changes_maxlen=self.cfg.changes_maxlen,
        )
        # The inner call's own message: same connection state, a derived rid.
        msg = CallMsg(
            ctx.gateway,
            ctx.connection_id,
            rid,
            name,
            list(args),
            ctx.caller,
            ctx.group,
            dict(ctx.user_data),
            ctx.address,
            ctx.timestamp,
        )
        inner = self._context(SystemContext, Session(self.redis, skeys), msg, 0)
        try:
            inner, result = await self._transaction(d, inner, args, extras, msg)
        except CallFailed as e:
            cause = e.__cause__
            raise (cause if isinstance(cause, Exception) else e) from None
        if result.duplicate_reply is not None:
            return None if lock else replies.cached_result(result.duplicate_reply)
        ctx.caller, ctx.group = inner.caller, inner.group
        if inner.user_data != ctx.user_data:
            ctx.user_data.clear()
            ctx.user_data.update(inner.user_data)
        if inner._login is not None:
            ctx._login = inner._login
        return inner._value

    async def run_on_start(self, version: int) -> None:
        """Run each ``on_start`` System once per registry version, however many
        workers start (the commit's reply cache deduplicates)."""
        for name, d in self.systems.items():
            if not d.on_start or d.endpoint:
                continue
            ctx = EndpointContext(self, None, timestamp=time.time())
            try:
                rid = f"on_start:{version}:{name}"
                await self.call_system(ctx, name, (), None, once_rid=rid)
            except Exception:
                logger.exception("on_start System %s failed", name)

    # -- logins --------------------------------------------------------------------

    async def _login_swap(self, ctx: SystemContext) -> None:
        """Point the user's login at this connection and kick the previous one."""
        assert ctx._login is not None
        user_id, _ = ctx._login
        ref = ctx.connection_ref
        raw = await self.redis.execute_command(
            "SET", self.keys.login(user_id), ref, "GET"
        )
        old = None if raw is None else raw.decode()
        if old is None or old == ref:
            return
        gw, _, conn = old.rpartition(":")
        logger.info("user %d logged in again: kicking %s", user_id, old)
        await self.redis.execute_command(
            "PUBLISH", self.keys.gateway(gw), call_encoder.encode(KickMsg(int(conn)))
        )
