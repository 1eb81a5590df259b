"""Schema changes: the worker refuses stored data of another schema, and
``hetu-logic migrate`` converts it (real redis-server, real CLI processes)."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from hetu.keys import Keys
from hetu.storage import codec
from hetu.wire import CallMsg, Registry, call_encoder, registry_decoder
from hetu_logic.migrate import convert, is_widening

APP = """
import numpy as np
import hetu

EVERYBODY = hetu.Permission.EVERYBODY


@hetu.define_component(namespace="Mig", permission=EVERYBODY)
class Item(hetu.BaseComponent):
    name: str = hetu.property_field("", unique=True, dtype="U16")
    qty: {qty} = hetu.property_field(0{qty_index})
{more_fields}

@hetu.define_component(namespace="Mig", permission=EVERYBODY)
class Aaa(hetu.BaseComponent):
    x: np.int8 = hetu.property_field(0)


@hetu.define_system(namespace="Mig", components=(Item,), permission=EVERYBODY)
async def put(ctx, name, qty):
    row = Item.new_row()
    row.name = name
    row.qty = qty
    await ctx.repo[Item].insert(row)


@hetu.define_system(namespace="Mig", components=({join}), permission=EVERYBODY)
async def touch(ctx):
    pass
"""
V1 = {"qty": "np.int16", "qty_index": "", "more_fields": "", "join": "Aaa,"}
ROWS = [("a", 5), ("b", -7), ("c", 300)]


def write_app(path: Path, **changes: str) -> str:
    path.write_text(APP.format(**{**V1, **changes}))
    return str(path)


def hetu_logic(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hetu_logic", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def registry(r: redis.Redis) -> Registry:
    raw = r.get(Keys("default").registry())
    assert isinstance(raw, bytes)
    return registry_decoder.decode(raw)


def tag_of(reg: Registry, comp: str) -> str:
    cid = reg.components[comp].cluster
    return next(c.tag for c in reg.clusters if c.id == cid)


def members(r: redis.Redis, key: str) -> list[bytes]:
    got: Any = r.zrange(key, 0, -1)
    return list(got)


def rows(r: redis.Redis, tag: str) -> dict[str, dict[str, str]]:
    """Item rows under hash tag ``tag``, by name, values decoded."""
    ckeys = Keys("default").cluster(tag)
    out = {}
    for member in members(r, ckeys.index("Item", "id")):
        got: Any = r.hgetall(ckeys.row("Item", codec.decode_id(member)))
        row = {k.decode(): v.decode() for k, v in got.items()}
        out[row["name"]] = row
    return out


@pytest.fixture
def stored_v1(tmp_path: Path, redis_url: str, r: redis.Redis) -> str:
    """Data of app v1 in Redis (3 Item rows); returns the app path."""
    app = write_app(tmp_path / "mig_app.py")
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0
    stream = Keys("default").cluster(tag_of(registry(r), "Item")).calls()
    for i, (name, qty) in enumerate(ROWS):
        msg = CallMsg("t", 1, f"r{i}", "put", [name, qty])
        r.xadd(stream, {"m": call_encoder.encode(msg)})
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0
    assert len(rows(r, tag_of(registry(r), "Item"))) == 3
    return app


def test_changed_type_is_refused_then_migrated(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    app = write_app(tmp_path / "mig_app.py", qty="np.int64")
    refused = hetu_logic(app, "--redis", redis_url, "--drain")
    assert refused.returncode == 2
    assert "component Item" in refused.stderr
    assert f"hetu-logic migrate {app}" in refused.stderr
    done = hetu_logic("migrate", app, "--redis", redis_url)
    assert done.returncode == 0, done.stderr
    assert "Item: widen qty: <i2 -> <i8" in done.stdout
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0
    got = rows(r, tag_of(registry(r), "Item"))
    assert {n: got[n]["qty"] for n in got} == {"a": "5", "b": "-7", "c": "300"}
    assert registry(r).version == 2


def test_lossy_change_needs_drop_data(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    app = write_app(tmp_path / "mig_app.py", qty="np.int8")
    refused = hetu_logic("migrate", app, "--redis", redis_url)
    assert refused.returncode == 2
    assert "refusing lossy changes: Item.qty: <i2 -> |i1 is not a widening" in (
        refused.stderr
    )
    tag = tag_of(registry(r), "Item")
    assert rows(r, tag)["c"]["qty"] == "300"  # untouched
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 2
    done = hetu_logic("migrate", app, "--redis", redis_url, "--drop-data")
    assert done.returncode == 0, done.stderr
    got = rows(r, tag)
    assert {n: got[n]["qty"] for n in got} == {"a": "5", "b": "-7", "c": "0"}
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0


def test_added_field_and_indexes_removed_field(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    more = "    level: np.int32 = hetu.property_field(3, index=True)\n"
    app = write_app(tmp_path / "mig_app.py", qty_index=", index=True", more_fields=more)
    done = hetu_logic("migrate", app, "--redis", redis_url)
    assert done.returncode == 0, done.stderr
    assert "add field level" in done.stdout and "build index qty" in done.stdout
    ckeys = Keys("default").cluster(tag_of(registry(r), "Item"))
    assert {row["level"] for row in rows(r, ckeys.tag).values()} == {"3"}
    qty_index = members(r, ckeys.index("Item", "qty"))
    assert [codec.decode_id(m) for m in qty_index] == [
        int(rows(r, ckeys.tag)[n]["id"]) for n in ("b", "a", "c")
    ]
    assert r.zcard(ckeys.index("Item", "level")) == 3
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0
    # Back to v1: qty loses its index, level is removed (lossy).
    app = write_app(tmp_path / "mig_app.py")
    assert hetu_logic("migrate", app, "--redis", redis_url).returncode == 2
    done = hetu_logic("migrate", app, "--redis", redis_url, "--drop-data")
    assert done.returncode == 0, done.stderr
    assert all("level" not in row for row in rows(r, ckeys.tag).values())
    assert not r.exists(ckeys.index("Item", "qty"), ckeys.index("Item", "level"))
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0


def test_cluster_move_keeps_data(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    before = registry(r)
    old_tag = tag_of(before, "Item")
    old = rows(r, old_tag)
    app = write_app(tmp_path / "mig_app.py", join="Item, Aaa")  # joins clusters
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 2
    # A call queued on the old cluster's stream while no worker could start:
    old_stream = Keys("default").cluster(old_tag).calls()
    r.xadd(
        old_stream, {"m": call_encoder.encode(CallMsg("t", 1, "rd", "put", ["d", 1]))}
    )
    done = hetu_logic("migrate", app, "--redis", redis_url)
    assert done.returncode == 0, done.stderr
    new_tag = tag_of(registry(r), "Item")
    assert new_tag != old_tag and f"to {new_tag}" in done.stdout
    assert f"calls stream of tag {old_tag}: move unserved calls" in done.stdout
    assert "forwarded 1 unserved call(s)" in done.stdout  # not the 3 served ones
    assert rows(r, new_tag) == old
    assert not r.exists(old_stream)
    assert r.keys(f"*{{{old_tag}}}:*Item*") == []
    assert r.zcard(Keys("default").cluster(new_tag).index("Item", "name")) == 3
    assert hetu_logic(app, "--redis", redis_url, "--drain").returncode == 0
    assert rows(r, new_tag)["d"]["qty"] == "1"  # the queued call ran, once


def test_refuses_while_a_worker_runs(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    r.set(Keys("default").snowflake(7), "lease", px=5000)
    app = write_app(tmp_path / "mig_app.py", qty="np.int64")
    refused = hetu_logic("migrate", app, "--redis", redis_url)
    assert refused.returncode == 2 and "are running; stop them" in refused.stderr
    assert rows(r, tag_of(registry(r), "Item"))["a"]["qty"] == "5"
    assert registry(r).version == 1


def spec(dtype: str, is_bool: bool = False) -> dict[str, Any]:
    return {"dtype": dtype, "is_bool": is_bool}


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        ("|i1", "<i2", True),
        ("|u1", "<i2", True),
        ("<i2", "|u1", False),
        ("<i8", "<i4", False),
        ("<u4", "<i4", False),
        ("<i2", "<f4", True),
        ("<i4", "<f4", False),
        ("<i4", "<f8", True),
        ("<i8", "<f8", False),
        ("<f4", "<f8", True),
        ("<f8", "<f4", False),
        ("<f4", "<i8", False),
        ("<U16", "<U32", True),
        ("<U32", "<U16", False),
        ("|S4", "|S8", True),
        ("<U8", "|S32", False),
    ],
)
def test_widening_rules(old: str, new: str, widening: bool) -> None:
    assert is_widening(spec(old), spec(new)) is widening


def test_bool_widens_to_int_but_not_back() -> None:
    assert is_widening(spec("|i1", True), spec("<i4"))
    assert not is_widening(spec("|i1"), spec("|i1", True))


def test_convert_keeps_what_fits_else_default() -> None:
    assert convert(300, "|i1", False, 0) == 0
    assert convert(-7, "|i1", False, 0) == -7
    assert convert(2.9, "<i4", False, 0) == 2
    assert convert(float("nan"), "<i4", False, 5) == 5
    assert convert("12", "<i8", False, 0) == 12
    assert convert("x", "<i8", False, 9) == 9
    assert convert(1 / 3, "<f4", False, 0.0) == float(np.float32(1 / 3))
    assert convert("héllo", "<U2", False, "") == "hé"
    assert convert(b"abc", "<U8", False, "") == "abc"
    assert convert("abc", "|S2", False, b"") == b"ab"
    assert convert(5, "|i1", True, 0) == 1


def test_field_made_unique_is_checked(
    tmp_path: Path, redis_url: str, r: redis.Redis, stored_v1: str
) -> None:
    more = '    color: "<U8" = hetu.property_field("red", unique=True)\n'
    app = write_app(tmp_path / "mig_app.py", more_fields=more)
    refused = hetu_logic("migrate", app, "--redis", redis_url)
    assert refused.returncode == 2
    assert "Item.color must be unique but several rows would hold 'red'" in (
        refused.stderr
    )
    assert registry(r).version == 1
    app = write_app(tmp_path / "mig_app.py", qty_index=", unique=True")
    done = hetu_logic("migrate", app, "--redis", redis_url)
    assert done.returncode == 0, done.stderr
    assert "check qty is unique" in done.stdout
