"""Component definition: attributes, dtypes, rows, schema hash, duplicates."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import hetu
from hetu.component import BaseComponent, ComponentDefines, Property
from hetu.errors import ConfigError


def make(
    namespace: str, name: str, /, *, force: bool = False, **fields: tuple[object, Any]
) -> type[BaseComponent]:
    """Define component ``name`` with ``fields`` given as ``(hint, spec)`` pairs."""
    body: dict[str, Any] = {"__annotations__": {}, "__module__": __name__}
    for fname, (hint, spec) in fields.items():
        body["__annotations__"][fname] = hint
        body[fname] = spec
    cls = type(name, (BaseComponent,), body)
    return hetu.define_component(namespace=namespace, force=force)(cls)


def test_public_names() -> None:
    assert hetu.__all__ == sorted(hetu.__all__)
    for name in (
        "BaseComponent",
        "ClientReject",
        "Permission",
        "RaceCondition",
        "UniqueViolation",
        "define_component",
        "property_field",
    ):
        assert name in hetu.__all__
        assert hasattr(hetu, name)
    assert [p.name for p in hetu.Permission] == [
        "EVERYBODY",
        "USER",
        "OWNER",
        "RLS",
        "ADMIN",
    ]


def test_app_api_example() -> None:
    @hetu.define_component(namespace="TcChat", permission=hetu.Permission.EVERYBODY)
    class ChatMessage(hetu.BaseComponent):
        owner: np.int64 = hetu.property_field(0, index=True)
        text: str = hetu.property_field("", dtype="U256")

    assert ChatMessage.name_ == "ChatMessage"
    assert ChatMessage.namespace_ == "TcChat"
    assert ChatMessage.permission_ is hetu.Permission.EVERYBODY
    assert ChatMessage.rls_compare_ is None
    assert ChatMessage.volatile_ is False
    assert ChatMessage.backend_ == "default"
    assert ChatMessage.properties_ == {
        "owner": Property(0, False, True, "<i8"),
        "text": Property("", False, False, "<U256"),
    }
    assert ChatMessage.indexes_ == {"id": True, "owner": False}
    assert ChatMessage.dtypes == np.dtype(
        [("id", "<i8"), ("owner", "<i8"), ("text", "<U256"), ("_version", "<i4")]
    )
    assert ComponentDefines.get("TcChat", "ChatMessage") is ChatMessage
    assert ChatMessage in ComponentDefines.components("TcChat")
    assert ChatMessage in ComponentDefines.components()


def test_bare_decorator_and_defaults() -> None:
    @hetu.define_component
    class TcBare(BaseComponent):
        hp: np.int32 = hetu.property_field(100, unique=True)
        alive: bool = hetu.property_field(True, index=True)

    assert TcBare.namespace_ == "default"
    assert TcBare.permission_ is hetu.Permission.USER
    assert TcBare.indexes_ == {"id": True, "hp": True, "alive": False}
    assert TcBare.properties_["alive"] == Property(True, False, True, "|i1", True)
    assert TcBare.dtypes["alive"] == np.dtype("i1")


def test_unique_implies_index() -> None:
    @hetu.define_component(namespace="TcIdx")
    class TcIdx(BaseComponent):
        a: int = hetu.property_field(0, unique=True, index=False)
        b: int = hetu.property_field(0, index=True)
        c: int = hetu.property_field(0)
        d: int = hetu.property_field(0, unique=True)

    props = TcIdx.properties_
    assert (props["a"].unique, props["a"].index) == (True, True)
    assert (props["b"].unique, props["b"].index) == (False, True)
    assert (props["c"].unique, props["c"].index) == (False, False)
    assert TcIdx.indexes_ == {"id": True, "a": True, "b": False, "d": True}


def test_new_row_and_new_rows() -> None:
    row_cls = make(
        "TcRows",
        "TcRow",
        x=(np.float32, hetu.property_field(1.5)),
        name=("U8", hetu.property_field("bob")),
        flag=(bool, hetu.property_field(True)),
        raw=(bytes, hetu.property_field(b"\x01\x02", dtype="S4")),
    )

    row = row_cls.new_row(id_=42)
    assert isinstance(row, np.record)
    assert (row.id, row.x, row.name, row.flag, row.raw, row._version) == (
        42,
        1.5,
        "bob",
        1,
        b"\x01\x02",
        0,
    )
    row.flag = False
    row.name = "alice"
    assert row.flag == 0
    assert row.name == "alice"
    # A second row is independent of the first.
    assert row_cls.new_row(id_=43).name == "bob"


def test_new_rows_fresh_ids() -> None:
    @hetu.define_component(namespace="TcRows")
    class TcRows(BaseComponent):
        v: np.uint16 = hetu.property_field(7)

    rows = TcRows.new_rows(5)
    assert isinstance(rows, np.recarray)
    assert len(rows) == 5
    assert list(rows.v) == [7] * 5
    assert len(set(rows.id.tolist())) == 5
    assert TcRows.new_row().id not in set(rows.id.tolist())
    assert (rows._version == 0).all()


def test_schema_hash_ignores_field_order() -> None:
    a = (np.int32, hetu.property_field(0))
    b = ("U4", hetu.property_field("x"))
    first = make("TcHash1", "TcHash", a=a, b=b)
    h1, j1 = first.schema_hash(), first.schema_json()
    second = make("TcHash1", "TcHash", force=True, b=b, a=a)
    assert list(second.properties_) == ["b", "a"]
    assert second.schema_hash() == h1
    assert second.schema_json() == j1
    doc = json.loads(j1)
    assert doc["namespace"] == "TcHash1"
    assert doc["name"] == "TcHash"
    assert doc["permission"] == "USER"
    assert doc["fields"]["a"] == {
        "dtype": "<i4",
        "default": 0,
        "unique": False,
        "index": False,
        "is_bool": False,
    }


@pytest.mark.parametrize(
    "field_args",
    [
        (np.int64, {"default": 0}),
        (np.int32, {"default": 1}),
        (np.int32, {"default": 0, "index": True}),
        (np.int32, {"default": 0, "unique": True}),
        (np.int32, {"default": 0, "dtype": "<i8"}),
        (np.float32, {"default": 0}),
        (bool, {"default": False}),
    ],
)
def test_schema_hash_changes(field_args: tuple[object, dict[str, Any]]) -> None:
    hint, kwargs = field_args

    @hetu.define_component(namespace="TcHash2", force=True)
    class TcHashBase(BaseComponent):
        a: np.int32 = hetu.property_field(0)

    base = TcHashBase.schema_hash()
    make("TcHash2", "TcHashBase", force=True, a=(hint, hetu.property_field(**kwargs)))
    changed = ComponentDefines.get("TcHash2", "TcHashBase")
    assert changed is not None
    assert changed.schema_hash() != base


def test_duplicate() -> None:
    @hetu.define_component(namespace="TcDup", permission=hetu.Permission.OWNER)
    class TcDup(BaseComponent):
        owner: np.int64 = hetu.property_field(0, unique=True)

    copy = TcDup.duplicate("TcDup", "tag1")
    assert copy is TcDup.duplicate("TcDup", "tag1")
    assert copy is not TcDup
    assert copy.name_ == "TcDup:tag1"
    assert copy.namespace_ == "TcDup"
    assert copy.permission_ is hetu.Permission.OWNER
    assert copy.properties_ == TcDup.properties_
    assert copy.dtypes == TcDup.dtypes
    assert copy.indexes_ == TcDup.indexes_
    assert ComponentDefines.get("TcDup", "TcDup:tag1") is copy
    assert ComponentDefines.get("TcDup", "TcDup") is TcDup
    assert copy.new_row(id_=1).owner == 0
    other = TcDup.duplicate("TcDup", "tag2")
    assert other.name_ == "TcDup:tag2"
    assert other.schema_hash() != copy.schema_hash()
    with pytest.raises(ConfigError, match="already a copy"):
        copy.duplicate("TcDup", "x")
    with pytest.raises(ConfigError, match="tag"):
        TcDup.duplicate("TcDup", "a:b")


def test_redefine_needs_force_and_namespaces_are_distinct() -> None:
    first = make("TcRedefA", "TcSame", a=(int, hetu.property_field(0)))
    other = make("TcRedefB", "TcSame", b=(int, hetu.property_field(0)))
    assert ComponentDefines.get("TcRedefA", "TcSame") is first
    assert ComponentDefines.get("TcRedefB", "TcSame") is other
    assert list(first.properties_) == ["a"]
    assert list(other.properties_) == ["b"]

    with pytest.raises(ConfigError, match=r"TcSame.*already defined"):
        make("TcRedefA", "TcSame", c=(int, hetu.property_field(0)))
    assert ComponentDefines.get("TcRedefA", "TcSame") is first

    forced = make("TcRedefA", "TcSame", force=True, c=(int, hetu.property_field(0)))
    assert ComponentDefines.get("TcRedefA", "TcSame") is forced
    # Decorating the same class again is not a redefinition.
    assert hetu.define_component(namespace="TcRedefA")(forced) is forced


def test_clear_forgets_components_and_copies_register_again() -> None:
    saved = dict(ComponentDefines._by_key)  # pyright: ignore[reportPrivateUsage]
    try:
        comp = make("TcClear", "TcClear", a=(int, hetu.property_field(0)))
        copy = comp.duplicate("TcClear", "t")
        ComponentDefines.clear()
        assert ComponentDefines.components() == []
        assert comp.duplicate("TcClear", "t") is copy
        assert ComponentDefines.components() == [copy]
    finally:
        ComponentDefines.clear()
        for c in saved.values():
            ComponentDefines.add(c)
