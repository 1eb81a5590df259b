"""``hetu-logic migrate``: convert stored data to the app's schemas and clusters.

``hetu-logic migrate``：把已存储的数据转换为应用当前的结构与系统簇布局。

Compares the registry stored in Redis (what the data was written under) with the
app's layout, prints a plan, applies it, and publishes the app's registry so
workers start. Automatic: added fields (rows get the default), widened types
(int8 -> int16, U16 -> U32, int16 -> float32, ...), added/removed indexes, and
cluster moves (keys copied to the new hash tag with DUMP/RESTORE, which also works
across Redis Cluster slots). Lossy (removed fields, narrowed or changed types,
removed tables) only with ``--drop-data``: values are converted where they fit,
else set to the default. Volatile tables with any change are flushed. Workers must
be stopped: the command refuses while any holds a Snowflake lease.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import redis.asyncio as aioredis
import typer
from msgspec.structs import replace
from redis.exceptions import RedisError

from hetu.cluster import ENDPOINT_CLUSTER_TAG
from hetu.component import BaseComponent
from hetu.errors import ConfigError
from hetu.keys import ClusterKeys, Keys
from hetu.registry import AppLayout, build_layout, default_namespace
from hetu.storage import codec
from hetu.wire import ComponentInfo, Registry, call_decoder, registry_encoder
from hetu_logic.publish import stored_registry
from hetu_logic.worker import load_app

EXIT_CONFIG = 2
_BATCH = 500
_MANTISSA_BITS = {2: 11, 4: 24, 8: 53}
_MISSING: Any = object()

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def is_widening(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether every value of field spec ``old`` fits ``new`` unchanged (specs as in
    the schema JSON: ``dtype``, ``is_bool``)."""
    o, n = np.dtype(old["dtype"]), np.dtype(new["dtype"])
    if new["is_bool"] and not old["is_bool"]:
        return False
    if o == n:
        return True
    if o.kind in "iu" and n.kind in "iu":
        return bool(np.can_cast(o, n, "safe"))
    if o.kind in "iu" and n.kind == "f":
        return o.itemsize * 8 - (o.kind == "i") <= _MANTISSA_BITS[n.itemsize]
    if o.kind == "f" and n.kind == "f":
        return n.itemsize >= o.itemsize
    return o.kind == n.kind and o.kind in "US" and n.itemsize >= o.itemsize


def convert(value: Any, dtype: str, is_bool: bool, default: Any) -> Any:
    """``value`` as a value of ``dtype``, or ``default`` when it does not fit."""
    dt = np.dtype(dtype)
    try:
        if is_bool:
            return int(bool(value))
        if dt.kind in "iu":
            v = int(value)
            info = np.iinfo(dt)
            return v if info.min <= v <= info.max else default
        if dt.kind == "f":
            return dt.type(float(value)).item()
        if dt.kind == "U":
            s = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return str(s)[: dt.itemsize // 4]
        b = value if isinstance(value, bytes) else str(value).encode()
        return b[: dt.itemsize]
    except (ValueError, TypeError, OverflowError):
        return default


@dataclass
class TableStep:
    """What migrate does to one stored table (component)."""

    name: str
    old_keys: ClusterKeys
    new_keys: ClusterKeys
    old_fields: dict[str, dict[str, Any]]
    old_indexes: dict[str, bool]
    comp: type[BaseComponent] | None  # None: the app no longer defines it
    volatile: bool = False
    actions: list[str] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    retype: list[str] = field(default_factory=list)
    build_indexes: list[str] = field(default_factory=list)
    drop_indexes: list[str] = field(default_factory=list)
    check_unique: list[str] = field(default_factory=list)

    @property
    def moves(self) -> bool:
        return self.old_keys.tag != self.new_keys.tag

    @property
    def rewrites(self) -> bool:
        return bool(self.add or self.remove or self.retype)


def _table_step(
    info: ComponentInfo, cur: ComponentInfo | None, old: ClusterKeys, new: ClusterKeys,
    comp: type[BaseComponent] | None,
) -> TableStep:  # fmt: skip
    old_fields = json.loads(info.schema)["fields"]
    step = TableStep(info.name, old, new, old_fields, info.indexes, comp)
    if cur is None or comp is None:
        step.lossy.append(f"{info.name}: the app no longer defines it; delete its rows")
        return step
    new_fields = json.loads(cur.schema)["fields"]
    step.volatile = cur.volatile
    if step.moves:
        step.actions.append(f"move rows and indexes from tag {old.tag} to {new.tag}")
    for name, spec in new_fields.items():
        prev = old_fields.get(name)
        if prev is None:
            step.add.append(name)
            step.actions.append(f"add field {name} ({spec['dtype']}), rows get default")
        elif (prev["dtype"], prev["is_bool"]) != (spec["dtype"], spec["is_bool"]):
            step.retype.append(name)
            what = f"{name}: {prev['dtype']} -> {spec['dtype']}"
            if is_widening(prev, spec):
                step.actions.append(f"widen {what}")
            else:
                step.lossy.append(f"{info.name}.{what} is not a widening")
                step.actions.append(f"convert {what} (values that do not fit: default)")
    for name in old_fields.keys() - new_fields.keys():
        step.remove.append(name)
        step.lossy.append(f"{info.name}.{name} is removed from the app")
        step.actions.append(f"remove field {name}")
    for name, unique in cur.indexes.items():
        if name not in info.indexes or name in step.retype:
            step.build_indexes.append(name)
            step.actions.append(f"build index {name}")
        if unique and (not info.indexes.get(name) or name in step.retype):
            step.check_unique.append(name)
            step.actions.append(f"check {name} is unique")
    for name in info.indexes.keys() - cur.indexes.keys():
        step.drop_indexes.append(name)
        step.actions.append(f"drop index {name}")
    return step


@dataclass
class Plan:
    """Every table step, and the registry to publish afterwards."""

    stored: Registry
    new: Registry
    steps: list[TableStep]

    def lines(self) -> list[str]:
        out = [
            f"stored registry version {self.stored.version} -> "
            f"{self.stored.version + 1} (namespace {self.new.namespace})"
        ]
        for s in self.steps:
            if s.comp is None:
                out.append(f"  {s.name}: no longer defined; rows deleted (lossy)")
            elif s.volatile and (s.rewrites or s.moves or s.build_indexes):
                out.append(f"  {s.name}: volatile, flushed ({'; '.join(s.actions)})")
            else:
                out += [f"  {s.name}: {a}" for a in s.actions]
        new_tags = {c.tag for c in self.new.clusters}
        for c in self.stored.clusters:
            if c.tag not in new_tags:
                out.append(
                    f"  calls stream of tag {c.tag}: move unserved calls to their "
                    "Systems' new clusters"
                )
        if len(out) == 1:
            out.append("  no data to change; publish the app's registry")
        return out

    @property
    def lossy(self) -> list[str]:
        return [x for s in self.steps if not s.volatile for x in s.lossy]


def make_plan(stored: Registry, layout: AppLayout, keys: Keys) -> Plan:
    """Compare ``stored`` with ``layout``.

    Raises:
        ConfigError: the instance holds another namespace.
    """
    new = layout.registry
    if stored.namespace != new.namespace:
        raise ConfigError(
            f"this instance holds namespace {stored.namespace!r}, the app is "
            f"{new.namespace!r}; pass --namespace or use another --instance"
        )
    old_tags = {c.id: c.tag for c in stored.clusters}
    new_tags = {c.id: c.tag for c in new.clusters}
    comps = {c.name_: c for c in layout.cluster_of_comp}
    steps = []
    for name, info in stored.components.items():
        cur = new.components.get(name)
        old = keys.cluster(old_tags[info.cluster])
        now = keys.cluster(new_tags[cur.cluster]) if cur is not None else old
        step = _table_step(info, cur, old, now, comps.get(name))
        if step.comp is None or step.moves or step.actions:
            steps.append(step)
    return Plan(stored, new, steps)


async def _delete(redis: aioredis.Redis, keys: list[str]) -> None:
    if keys:
        await redis.delete(*keys)


async def _ids(redis: aioredis.Redis, ckeys: ClusterKeys, comp: str) -> list[int]:
    members: Any = await redis.zrange(ckeys.index(comp, "id"), 0, -1)
    return [codec.decode_id(m) for m in members]


async def _row_batches(
    redis: aioredis.Redis, ckeys: ClusterKeys, comp: str
) -> AsyncIterator[list[tuple[int, dict[bytes, bytes]]]]:
    ids = await _ids(redis, ckeys, comp)
    for i in range(0, len(ids), _BATCH):
        chunk = ids[i : i + _BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for row_id in chunk:
                pipe.hgetall(ckeys.row(comp, row_id))
            got = await pipe.execute()
        yield [(r, g) for r, g in zip(chunk, got, strict=True) if g]


def _converter(step: TableStep, name: str) -> Callable[[bytes | None], Any]:
    """Raw stored value (None: missing) -> value of the app's field ``name``."""
    assert step.comp is not None
    prop = step.comp.properties_[name]
    old = step.old_fields.get(name)
    read = codec.field_from_redis(old["dtype"]) if old else None

    def conv(raw: bytes | None) -> Any:
        if raw is None or read is None:
            return prop.default
        return convert(read(raw), prop.dtype, prop.is_bool, prop.default)

    return conv


async def _delete_table(redis: aioredis.Redis, step: TableStep) -> None:
    ckeys, name = step.old_keys, step.name
    ids = await _ids(redis, ckeys, name)
    for i in range(0, len(ids), _BATCH):
        await _delete(redis, [ckeys.row(name, r) for r in ids[i : i + _BATCH]])
    await _delete(redis, [ckeys.index(name, f) for f in step.old_indexes])


async def _move(redis: aioredis.Redis, step: TableStep) -> None:
    """Copy rows and indexes to the new tag (DUMP/RESTORE), then delete the old."""
    old, new, name = step.old_keys, step.new_keys, step.name
    pairs = [(old.row(name, r), new.row(name, r)) for r in await _ids(redis, old, name)]
    pairs += [(old.index(name, f), new.index(name, f)) for f in step.old_indexes]
    for i in range(0, len(pairs), _BATCH):
        chunk = pairs[i : i + _BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for src, _ in chunk:
                pipe.dump(src)
            dumps = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for (src, dst), blob in zip(chunk, dumps, strict=True):
                if blob is not None:
                    pipe.restore(dst, 0, blob, replace=True)
                    pipe.delete(src)
            await pipe.execute()


async def _check_unique(redis: aioredis.Redis, step: TableStep) -> None:
    """Refuse before writing when converted values of a unique field collide."""
    convs = {f: _converter(step, f) for f in step.check_unique}
    seen: dict[str, set[Any]] = {f: set() for f in convs}
    async for batch in _row_batches(redis, step.old_keys, step.name):
        for _, row in batch:
            for f, conv in convs.items():
                value = conv(row.get(f.encode()))
                if value in seen[f]:
                    raise ConfigError(
                        f"{step.name}.{f} must be unique but several rows would hold "
                        f"{value!r}; fix the data first or make the field non-unique"
                    )
                seen[f].add(value)


async def _rewrite(redis: aioredis.Redis, step: TableStep) -> None:
    """Convert rows in place (at the new tag) and rebuild/drop indexes."""
    assert step.comp is not None
    ckeys, name, comp = step.new_keys, step.name, step.comp
    convs = {f: _converter(step, f) for f in (*step.add, *step.retype)}
    to_redis = {f: codec.field_to_redis(comp.properties_[f].dtype) for f in convs}
    encoders = {
        f: codec.value_encoder(comp.dtypes.fields[f][0])  # type: ignore[index]
        for f in step.build_indexes
        if f != "id"
    }
    index_convs = {f: convs.get(f) or _converter(step, f) for f in encoders}
    await _delete(redis, [ckeys.index(name, f) for f in step.drop_indexes])
    await _delete(redis, [ckeys.index(name, f) for f in encoders])
    async for batch in _row_batches(redis, ckeys, name):
        async with redis.pipeline(transaction=False) as pipe:
            for row_id, row in batch:
                values = {f: conv(row.get(f.encode())) for f, conv in convs.items()}
                if values:
                    mapping = {f: to_redis[f](v) for f, v in values.items()}
                    pipe.hset(ckeys.row(name, row_id), mapping=mapping)  # pyright: ignore[reportArgumentType]
                if step.remove:
                    pipe.hdel(ckeys.row(name, row_id), *step.remove)
                for f, enc in encoders.items():
                    value = values.get(f, _MISSING)
                    if value is _MISSING:
                        value = index_convs[f](row.get(f.encode()))
                    member = enc(value) + codec.encode_id(row_id)
                    pipe.zadd(ckeys.index(name, f), {member: 0})
            await pipe.execute()


async def _unserved(redis: aioredis.Redis, stream: str) -> list[tuple[Any, Any]]:
    """Entries of ``stream`` group ``logic`` has not acknowledged (all without it)."""
    entries: Any = await redis.xrange(stream)
    groups: Any = await redis.xinfo_groups(stream)
    group = next((g for g in groups if g["name"] in (b"logic", "logic")), None)
    if group is None:
        return entries
    last = _entry_id(group["last-delivered-id"])
    pending: Any = await redis.xpending_range(stream, "logic", "-", "+", 1 << 30)
    waiting = {_entry_id(p["message_id"]) for p in pending}
    return [e for e in entries if _entry_id(e[0]) > last or _entry_id(e[0]) in waiting]


def _entry_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id as a comparable ``(ms, seq)``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def forward_calls(redis: aioredis.Redis, keys: Keys, plan: Plan) -> int:
    """Move calls not yet served from the streams of clusters the app no longer
    has to the stream of their System's new cluster; how many were moved."""
    new_tags = {c.tag for c in plan.new.clusters}
    tag_of = {name: c.tag for c in plan.new.clusters for name in c.systems}
    moved = 0
    for cluster in plan.stored.clusters:
        stream = keys.cluster(cluster.tag).calls()
        if cluster.tag in new_tags or not await redis.exists(stream):
            continue
        for _, fields in await _unserved(redis, stream):
            msg = call_decoder.decode(fields[b"m"])
            tag = tag_of.get(msg.sys, ENDPOINT_CLUSTER_TAG)
            await redis.xadd(keys.cluster(tag).calls(), {"m": fields[b"m"]})
            moved += 1
        await redis.delete(stream)
    return moved


async def apply_plan(redis: aioredis.Redis, keys: Keys, plan: Plan) -> tuple[int, int]:
    """Carry out ``plan`` (data, then calls left in streams of clusters that no
    longer exist) and publish the new registry; returns its version and how many
    calls were forwarded."""
    for step in plan.steps:
        if step.comp is not None and not step.volatile:
            await _check_unique(redis, step)
    for step in plan.steps:
        if step.comp is None or (step.volatile and step.actions):
            await _delete_table(redis, step)
            continue
        if step.moves:
            await _move(redis, step)
        if step.rewrites or step.build_indexes or step.drop_indexes:
            await _rewrite(redis, step)
    forwarded = await forward_calls(redis, keys, plan)
    version = plan.stored.version + 1
    await redis.set(
        keys.registry(), registry_encoder.encode(replace(plan.new, version=version))
    )
    await redis.publish(keys.registry_changed(), str(version))
    return version, forwarded


async def _running_workers(redis: aioredis.Redis, keys: Keys) -> int:
    pattern = keys.snowflake_pattern()
    return len([k async for k in redis.scan_iter(match=pattern)])


async def migrate(
    redis_url: str, instance: str, namespace: str | None, *,
    drop_data: bool, dry_run: bool, echo: Callable[[str], None],
) -> None:  # fmt: skip
    """Plan, check and apply a migration of ``instance`` to the loaded app.

    Raises:
        ConfigError: Redis unreachable, workers running, a lossy change without
            ``drop_data``, or a unique field that would hold duplicates.
    """
    layout = build_layout(default_namespace(namespace))
    keys = Keys(instance)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        try:
            stored = await stored_registry(redis, keys)
        except (RedisError, OSError) as e:
            raise ConfigError(
                f"cannot reach Redis at {redis_url}: {e}; pass --redis URL"
            ) from e
        if stored is None:
            echo("nothing stored yet: no migration needed; start the workers")
            return
        plan = make_plan(stored, layout, keys)
        echo("hetu-logic migrate plan:")
        for line in plan.lines():
            echo(line)
        if plan.lossy and not drop_data:
            raise ConfigError(
                "refusing lossy changes: " + "; ".join(plan.lossy) + ". Pass "
                "--drop-data to apply them (removed data is deleted, values that "
                "do not fit the new type get the field's default)"
            )
        if dry_run:
            return
        n = await _running_workers(redis, keys)
        if n:
            raise ConfigError(
                f"{n} logic worker(s) of instance {instance!r} are running; stop "
                "them first (a killed worker's lease expires after 30 s)"
            )
        version, forwarded = await apply_plan(redis, keys, plan)
        if forwarded:
            echo(f"forwarded {forwarded} unserved call(s) to their new clusters")
        echo(f"done: published registry version {version}; start the workers")
    finally:
        await redis.aclose()


@app.command()
def main(
    app_file: Annotated[str, typer.Argument(help="The app's Python file.")],
    redis: Annotated[
        str, typer.Option(help="Redis URL holding the instance.", envvar="HETU_REDIS")
    ] = "redis://127.0.0.1:6379/0",
    instance: Annotated[
        str, typer.Option(help="Data partition to migrate.", envvar="HETU_INSTANCE")
    ] = "default",
    namespace: Annotated[
        str | None,
        typer.Option(
            help="App namespace; default: the app's only one.",
            envvar="HETU_NAMESPACE",
        ),
    ] = None,
    drop_data: Annotated[
        bool,
        typer.Option(
            "--drop-data",
            help="Apply lossy changes: delete removed fields and tables, convert "
            "narrowed types (values that do not fit get the default).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, change nothing.")
    ] = False,
) -> None:
    """Convert the data stored in Redis to APP_FILE's schemas and clusters.

    Stop every logic worker of the instance first; start them again afterwards.
    """
    try:
        load_app(app_file)
        job = migrate(
            redis, instance, namespace, drop_data=drop_data, dry_run=dry_run,
            echo=typer.echo,
        )  # fmt: skip
        asyncio.run(job)
    except ConfigError as e:
        typer.echo(f"hetu-logic migrate: error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def run(args: list[str]) -> None:
    """``hetu-logic migrate ARGS``: the subcommand's entry (from ``cli.main``)."""
    app(args=args, prog_name="hetu-logic migrate")
