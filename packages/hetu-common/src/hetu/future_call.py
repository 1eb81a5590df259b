"""FutureCalls: durable scheduled calls of Systems, as built-in Systems.

FutureCalls：持久化的定时 System 调用，以内置 System 的形式提供。

An app lists ``depends=("create_future_call:<tag>",)`` (likewise
``ensure_future_call``, ``cancel_future_call``) and calls
``await ctx.depend["create_future_call:<tag>"](ctx, at, "system", *args)``. The
``:tag`` copy keeps its rows in the table ``FutureCalls:<tag>``, which joins the
calling System's cluster, so the row commits with the caller's transaction. A logic
worker moves due rows into the target System's ``calls`` stream (see
``hetu_logic.future_calls`` and docs/architecture.md "FutureCalls").
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
from apscheduler.triggers.cron import CronTrigger

from hetu.component import BaseComponent, define_component
from hetu.context import SystemContext
from hetu.permission import Permission
from hetu.property import property_field
from hetu.system import BUILTIN_NAMESPACE, define_system

MAX_ARGS_BYTES = 1023
"""Largest msgpack encoding of a FutureCall's arguments (the field is S1024)."""

# NumPy's S<n> drops trailing NUL bytes, and msgpack often ends in one (0, 1.0):
# a marker byte (0xc1, never used by msgpack) after the arguments keeps them whole.
_ARGS_END = b"\xc1"
_AUTO_KEY = "#"


@define_component(namespace=BUILTIN_NAMESPACE, permission=Permission.ADMIN, force=True)
class FutureCalls(BaseComponent):
    """One scheduled call: run ``system(*args)`` at ``due_ms`` (POSIX ms).

    ``key`` is unique (``ensure_future_call``; ``"#<id>"`` when created without
    one); ``owner`` the caller that scheduled it, who the call runs as;
    ``interval_s`` > 0 repeats it at that period, ``cron`` by a cron schedule;
    ``last_run_ms`` the due time of the last firing.
    """

    owner: np.int64 = property_field(0, index=True)
    key: str = property_field("", unique=True, dtype="U64")
    due_ms: np.int64 = property_field(0, index=True)
    system: str = property_field("", dtype="U64")
    args: bytes = property_field(b"", dtype="S1024")
    timeout_s: np.float64 = property_field(60.0)
    interval_s: np.float64 = property_field(0.0)
    cron: str = property_field("", dtype="U128")
    last_run_ms: np.int64 = property_field(0)


def is_future_calls(comp: type[BaseComponent]) -> bool:
    """Whether ``comp`` is the FutureCalls table or a ``:tag`` copy of it."""
    return comp.name_.partition(":")[0] == FutureCalls.name_ and (
        comp.properties_ == FutureCalls.properties_
    )


def due_ms_of(at: float, now_s: float) -> int:
    """POSIX ms a call given ``at`` is due: ``at > 0`` is a POSIX time, ``at <= 0``
    means in ``|at|`` seconds from ``now_s``. Rounded up: never early.

    Raises:
        ValueError: ``at`` is not a finite number.
    """
    at = float(at)
    if not math.isfinite(at):
        raise ValueError(f"FutureCall at={at!r} must be a finite number of seconds")
    when = at if at > 0 else now_s - at
    return math.ceil(round(when * 1000, 3))


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"a {type(obj).__name__} cannot be a FutureCall arg")


_args_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_args_decoder = msgspec.msgpack.Decoder(list)


def pack_args(args: tuple[Any, ...] | list[Any]) -> bytes:
    """``args`` as stored in ``FutureCalls.args``.

    Raises:
        TypeError: an argument msgpack cannot carry.
        ValueError: the packed arguments exceed ``MAX_ARGS_BYTES``.
    """
    try:
        packed = _args_encoder.encode(list(args))
    except (msgspec.EncodeError, NotImplementedError, OverflowError) as e:
        raise TypeError(f"FutureCall arguments cannot be stored: {e}") from e
    if len(packed) > MAX_ARGS_BYTES:
        raise ValueError(
            f"FutureCall arguments take {len(packed)} bytes packed, the limit is "
            f"{MAX_ARGS_BYTES}; store large data in a component row and pass its id"
        )
    return packed + _ARGS_END


def unpack_args(stored: bytes) -> list[Any]:
    """The argument list of a stored ``FutureCalls.args`` value."""
    return _args_decoder.decode(stored[: -len(_ARGS_END)]) if stored else []


def parse_cron(expr: str) -> CronTrigger:
    """A trigger for ``expr``: 5 crontab fields (minute first) or 6 with seconds
    first; an optional ``CRON_TZ=<zone>`` prefix sets the zone (default UTC).

    Raises:
        ValueError: the expression or zone is invalid.
    """
    zone: Any = UTC
    text = expr.strip()
    if text.startswith("CRON_TZ="):
        name, _, text = text[len("CRON_TZ=") :].partition(" ")
        try:
            zone = ZoneInfo(name)
        except (KeyError, ValueError) as e:
            raise ValueError(f"cron {expr!r}: unknown time zone {name!r}") from e
    fields = text.split()
    try:
        if len(fields) == 6:
            sec, minute, hour, day, month, dow = fields
            return CronTrigger(
                second=sec,
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=dow,
                timezone=zone,
            )
        return CronTrigger.from_crontab(text, timezone=zone)
    except ValueError as e:
        raise ValueError(
            f"cron {expr!r}: {e}; give 5 crontab fields ('*/5 * * * *') or 6 with "
            "seconds first ('*/10 * * * * *')"
        ) from e


def next_cron_ms(expr: str, after_ms: int) -> int:
    """The first fire time of cron ``expr`` strictly after ``after_ms``.

    Raises:
        ValueError: invalid expression, or it never fires again.
    """
    trigger = parse_cron(expr)
    start = datetime.fromtimestamp(after_ms / 1000, UTC)
    fire = trigger.get_next_fire_time(None, start + timedelta(milliseconds=1))
    if fire is None:
        raise ValueError(f"cron {expr!r} never fires after {start.isoformat()}")
    return math.ceil(round(fire.timestamp() * 1000, 3))


def next_due_ms(row: Any, now_ms: int) -> int | None:
    """When a fired row fires next (after ``now_ms``, missed periods skipped), or
    None when it does not repeat. ``row`` has ``due_ms``, ``interval_s``,
    ``cron``."""
    due = int(row.due_ms)
    if row.cron:
        return next_cron_ms(str(row.cron), max(due, now_ms))
    period = float(row.interval_s)
    if period <= 0:
        return None
    step = max(math.ceil(period * 1000), 1)
    return due + step * max((now_ms - due) // step + 1, 1)


def _new_row(
    ctx: SystemContext,
    at: float,
    system: Any,
    args: tuple[Any, ...],
    timeout: float,
    recurring: bool | float,
    cron: str,
) -> Any:
    if not isinstance(system, str):  # the System's function itself
        system = str(getattr(system, "__name__", system))
    target = ctx._runner.systems.get(system)
    if target is None or target.endpoint or ":" in system or len(system) > 64:
        raise ValueError(
            f"FutureCall target {system!r} is not a System of this app; give the "
            "name of an `async def` decorated by hetu.define_system"
        )
    n = len(args)
    if n < target.min_args or (target.max_args is not None and n > target.max_args):
        most = "any" if target.max_args is None else target.max_args
        raise ValueError(
            f"FutureCall target {system} takes {target.min_args} to {most} "
            f"arguments, got {n}"
        )
    row = FutureCalls.new_row()
    row.owner = ctx.caller
    row.key = f"{_AUTO_KEY}{row.id}"
    row.system = system
    row.args = pack_args(args)
    row.timeout_s = float(timeout)
    now_s = time.time()
    row.due_ms = due_ms_of(at, now_s)
    if recurring is True:
        if at > 0:
            raise ValueError(
                "recurring=True repeats every |at| seconds, so at must be <= 0 "
                "(relative); for a fixed start pass recurring=<period seconds>"
            )
        row.interval_s = -float(at)
    elif recurring:
        row.interval_s = float(recurring)
    if recurring and row.interval_s <= 0:
        raise ValueError("a recurring FutureCall needs a period > 0 seconds")
    if cron:
        if recurring or len(cron) > 128:
            raise ValueError(
                f"cron {cron!r}: give recurring or cron, not both, and at most "
                "128 characters"
            )
        row.cron = cron
        row.due_ms = next_cron_ms(cron, int(row.due_ms) - 1)
    return row


@define_system(namespace=BUILTIN_NAMESPACE, components=(FutureCalls,), force=True)
async def create_future_call(
    ctx: SystemContext,
    at: float,
    system: str,
    *args: Any,
    timeout: float = 60,
    recurring: bool | float = False,
    cron: str = "",
) -> int:
    """Schedule ``system(*args)`` and return the call's id; the row commits with
    the calling transaction. 安排一次定时调用，返回其 id。

    Args:
        at: POSIX time, or ``<= 0`` for "in ``|at|`` seconds".
        system: a System of the app (not an endpoint); it runs as the caller
            (``ctx.caller``) with group ``""``, in its own transaction.
        timeout: kept for apps of the original engine; redelivery after a worker
            dies is the stream's (``--idle-ms``).
        recurring: ``True`` repeats every ``|at|`` seconds, a number every that
            many seconds.
        cron: a cron schedule (see ``parse_cron``); the first run is its first
            time at or after ``at``.

    Raises:
        ValueError: unknown target, wrong argument count, bad ``at``/``cron``/
            ``recurring``, or arguments over ``MAX_ARGS_BYTES``.
        TypeError: an argument msgpack cannot carry.
    """
    row = _new_row(ctx, at, system, args, timeout, recurring, cron)
    await ctx.repo[FutureCalls].insert(row)
    return int(row.id)


@define_system(namespace=BUILTIN_NAMESPACE, components=(FutureCalls,), force=True)
async def ensure_future_call(
    ctx: SystemContext,
    key: str,
    at: float,
    system: str,
    *args: Any,
    timeout: float = 60,
    recurring: bool | float = False,
    cron: str = "",
) -> int:
    """Like ``create_future_call`` unless a pending call with ``key`` exists; the
    id of the call for ``key`` either way. 按 ``key`` 幂等地安排定时调用。

    Raises:
        ValueError: as ``create_future_call``, or ``key`` is empty, starts with
            ``"#"`` or is longer than 64 characters.
        TypeError: an argument msgpack cannot carry.
    """
    if not key or key.startswith(_AUTO_KEY) or len(key) > 64:
        raise ValueError(
            f"FutureCall key {key!r} must be 1-64 characters, not starting with '#'"
        )
    repo = ctx.repo[FutureCalls]
    found = await repo.get(key=key)
    if found is not None:
        return int(found.id)
    row = _new_row(ctx, at, system, args, timeout, recurring, cron)
    row.key = key
    await repo.insert(row)
    return int(row.id)


@define_system(namespace=BUILTIN_NAMESPACE, components=(FutureCalls,), force=True)
async def cancel_future_call(ctx: SystemContext, key: str | int) -> bool:
    """Cancel the pending call with ``key`` (or id, when an int); True when one was
    cancelled. 取消尚未触发的定时调用。"""
    repo = ctx.repo[FutureCalls]
    found = await (repo.get(key=key) if isinstance(key, str) else repo.get(id=key))
    if found is None:
        return False
    repo.delete(found.id)
    return True
