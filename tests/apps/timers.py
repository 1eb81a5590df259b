"""FutureCalls test app: every firing of a scheduled call records one row.

FutureCalls 测试应用：每次定时调用触发都记录一行。

``fire(tag)`` upserts the ``Fired`` row of its request id (``fc:<id>:<due_ms>``), so
a call that ran twice shows ``count == 2`` and lateness is ``ran - due_ms / 1000``.
"""

import time

import numpy as np

import hetu

NS = "Timers"
EVERYBODY = hetu.Permission.EVERYBODY
FC = "create_future_call:timers"


@hetu.define_component(namespace=NS, permission=EVERYBODY)
class Fired(hetu.BaseComponent):
    rid: str = hetu.property_field("", unique=True, dtype="U48")
    tag: np.int64 = hetu.property_field(0, index=True)
    count: np.int64 = hetu.property_field(0)
    due_ms: np.int64 = hetu.property_field(0)
    ran: np.float64 = hetu.property_field(0.0)
    ts: np.float64 = hetu.property_field(0.0)
    caller: np.int64 = hetu.property_field(0)


@hetu.define_system(namespace=NS, components=(Fired,))
async def fire(ctx: hetu.SystemContext, tag: int) -> None:
    repo = ctx.repo[Fired]
    row = await repo.get(rid=ctx.request_id)
    if row is None:
        row = Fired.new_row()
        row.rid = ctx.request_id
        row.tag = tag
        row.count = 1
        row.due_ms = int(ctx.request_id.rsplit(":", 1)[1])
        row.ran = time.time()
        row.ts = ctx.timestamp
        row.caller = ctx.caller
        await repo.insert(row)
    else:
        row.count += 1
        await repo.update(row)


@hetu.define_system(namespace=NS, permission=EVERYBODY, depends=(FC,))
async def schedule_many(
    ctx: hetu.SystemContext, first_tag: int, n: int, start: float, spread_s: float
):
    """``n`` calls of ``fire(tag)``, tags from ``first_tag``, due evenly over
    ``spread_s`` seconds from POSIX time ``start``."""
    ids = []
    for i in range(n):
        at = start + spread_s * i / max(n, 1)
        ids.append(await ctx.depend[FC](ctx, at, "fire", first_tag + i))
    return hetu.ResponseToClient(ids)


@hetu.define_system(namespace=NS, permission=EVERYBODY, depends=(FC,))
async def schedule(ctx: hetu.SystemContext, tag: int, at: float, recurring=False):
    call_id = await ctx.depend[FC](ctx, at, "fire", tag, recurring=recurring)
    return hetu.ResponseToClient(call_id)


@hetu.define_system(namespace=NS, permission=EVERYBODY, depends=(FC,))
async def schedule_cron(ctx: hetu.SystemContext, tag: int, expr: str):
    return hetu.ResponseToClient(await ctx.depend[FC](ctx, 0, "fire", tag, cron=expr))


@hetu.define_system(
    namespace=NS, permission=EVERYBODY, depends=("ensure_future_call:timers",)
)
async def ensure(ctx: hetu.SystemContext, key: str, tag: int, at: float):
    ensure_fc = ctx.depend["ensure_future_call:timers"]
    return hetu.ResponseToClient(await ensure_fc(ctx, key, at, "fire", tag))


@hetu.define_system(
    namespace=NS, permission=EVERYBODY, depends=("cancel_future_call:timers",)
)
async def cancel(ctx: hetu.SystemContext, key: str | int):
    return hetu.ResponseToClient(
        await ctx.depend["cancel_future_call:timers"](ctx, key)
    )


@hetu.define_system(namespace=NS, permission=EVERYBODY, components=(Fired,))
async def fired(ctx: hetu.SystemContext, lo: int, hi: int):
    """Rows of tags ``lo..hi`` as dicts."""
    return hetu.ResponseToClient(await ctx.repo[Fired].range("tag", lo, hi, limit=-1))


@hetu.define_system(namespace=NS, permission=EVERYBODY, depends=(FC,))
async def schedule_to(ctx: hetu.SystemContext, target: str, *args):
    """Schedule any ``target`` (to test the refusals)."""
    return hetu.ResponseToClient(await ctx.depend[FC](ctx, -60, target, *args))


@hetu.define_system(namespace=NS, permission=EVERYBODY, depends=(FC,))
async def schedule_fn(ctx: hetu.SystemContext, tag: int):
    """Name the target by its function, as apps of the original engine may."""
    return hetu.ResponseToClient(await ctx.depend[FC](ctx, -0.1, fire, tag))
