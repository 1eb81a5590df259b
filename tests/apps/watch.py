"""Subscription test app: OWNER, RLS and EVERYBODY tables and generic writes.

订阅测试应用：OWNER、RLS 与 EVERYBODY 表以及通用写入。

``write(comp, id, fields)`` inserts (``id == 0``) or updates a row and returns its
id; ``remove(comp, id)`` deletes one; ``batch(ops)`` runs several writes and
removes in one transaction; ``login(user, clearance)`` logs the connection in
and sets ``user_data["clearance"]``, which the RLS rule of ``Doc`` compares.
"""

from typing import Any

import numpy as np

import hetu

NS = "Watch"
EVERYBODY = hetu.Permission.EVERYBODY


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER)
class Item(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    value: np.int64 = hetu.property_field(0, index=True)
    note: str = hetu.property_field("", dtype="U32")


@hetu.define_component(
    namespace=NS,
    permission=hetu.Permission.RLS,
    rls_compare=("le", "level", "clearance"),
)
class Doc(hetu.BaseComponent):
    pos: np.float64 = hetu.property_field(0.0, index=True)
    level: np.int32 = hetu.property_field(0)
    title: str = hetu.property_field("", dtype="U32")


@hetu.define_component(namespace=NS, permission=EVERYBODY)
class Point(hetu.BaseComponent):
    x: np.int64 = hetu.property_field(0, index=True)
    label: str = hetu.property_field("", dtype="U16")


TABLES: dict[str, Any] = {"Item": Item, "Doc": Doc, "Point": Point}


async def _write(ctx: hetu.SystemContext, comp: str, row_id: int, fields: dict) -> int:
    table = TABLES[comp]
    repo = ctx.repo[table]
    row = await repo.get(id=row_id) if row_id else table.new_row()
    if row is None:
        raise hetu.ClientReject("no_row", f"{comp} {row_id} does not exist")
    for name, value in fields.items():
        row[name] = value
    await (repo.update(row) if row_id else repo.insert(row))
    return int(row.id)


async def _remove(ctx: hetu.SystemContext, comp: str, row_id: int) -> None:
    repo = ctx.repo[TABLES[comp]]
    if await repo.get(id=row_id) is not None:
        repo.delete(row_id)


@hetu.define_system(namespace=NS, components=(Item, Doc, Point), permission=EVERYBODY)
async def write(ctx: hetu.SystemContext, comp: str, row_id: int, fields: dict):
    return hetu.ResponseToClient(await _write(ctx, comp, row_id, fields))


@hetu.define_system(namespace=NS, components=(Item, Doc, Point), permission=EVERYBODY)
async def remove(ctx: hetu.SystemContext, comp: str, row_id: int):
    await _remove(ctx, comp, row_id)


@hetu.define_system(namespace=NS, components=(Item, Doc, Point), permission=EVERYBODY)
async def batch(ctx: hetu.SystemContext, ops: list):
    """``ops``: ``["write", comp, id, fields]`` or ``["remove", comp, id]``."""
    ids = []
    for op in ops:
        if op[0] == "write":
            ids.append(await _write(ctx, op[1], op[2], op[3]))
        else:
            await _remove(ctx, op[1], op[2])
    return hetu.ResponseToClient(ids)


@hetu.define_system(namespace=NS, permission=EVERYBODY)
async def login(ctx: hetu.SystemContext, user_id: int, clearance: int):
    ok, reason = await hetu.elevate(ctx, user_id)
    ctx.user_data["clearance"] = clearance
    return hetu.ResponseToClient([ok, reason])


@hetu.define_system(namespace=NS, permission=EVERYBODY)
async def set_clearance(ctx: hetu.SystemContext, clearance: int):
    ctx.user_data["clearance"] = clearance
