"""Every dtype APP_API lists, from NumPy types, Python types and dtype strings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import hetu
from hetu.component import BaseComponent


def define(hint: Any, default: Any, dtype: Any = "") -> type[BaseComponent]:
    cls = type(
        "TcDtype",
        (BaseComponent,),
        {
            "__annotations__": {"v": hint},
            "__module__": __name__,
            "v": hetu.property_field(default, dtype=dtype),
        },
    )
    return hetu.define_component(namespace="TcDtypes", force=True)(cls)


@pytest.mark.parametrize(
    ("hint", "dtype", "default"),
    [
        (np.int8, "|i1", -128),
        (np.int16, "<i2", 32767),
        (np.int32, "<i4", -(2**31)),
        (np.int64, "<i8", 2**63 - 1),
        (np.uint8, "|u1", 255),
        (np.uint16, "<u2", 65535),
        (np.uint32, "<u4", 2**32 - 1),
        (np.uint64, "<u8", 2**64 - 1),
        (np.float16, "<f2", 65504.0),
        (np.float32, "<f4", -1.5),
        (np.float64, "<f8", 1e300),
        (np.float64, "<f8", float("inf")),
        (int, "<i8", 7),
        (float, "<f8", 2),
        ("int32", "<i4", 3.0),
        ("<i4", "<i4", np.int16(5)),
        (">i4", "<i4", 5),
        ("uint16", "<u2", 1),
        ("float16", "<f2", 0.5),
        ("U16", "<U16", "x" * 16),
        ("<U16", "<U16", "héllo"),
        ("S8", "|S8", b"12345678"),
        ("|S8", "|S8", b"\x00\xff"),
        ("np.int32", "<i4", 1),
        ("np.float32", "<f4", 1),
        ("int", "<i8", 1),
        ("float", "<f8", 1),
    ],
)
def test_dtype_from_hint(hint: Any, dtype: str, default: Any) -> None:
    comp = define(hint, default)
    prop = comp.properties_["v"]
    assert prop.dtype == dtype
    assert prop.is_bool is False
    assert comp.dtypes["v"] == np.dtype(dtype)
    row = comp.new_row(id_=1)
    assert row.v == prop.default == default
    assert type(prop.default) in (int, float, str, bytes)


@pytest.mark.parametrize(
    ("dtype_arg", "dtype", "default"),
    [
        ("U256", "<U256", ""),
        ("S16", "|S16", b""),
        ("int8", "|i1", 0),
        ("<u4", "<u4", 0),
        (np.int16, "<i2", 0),
        (np.dtype("f4"), "<f4", 0.0),
    ],
)
def test_dtype_argument_overrides_hint(
    dtype_arg: Any, dtype: str, default: Any
) -> None:
    comp = define(str, default, dtype=dtype_arg)
    assert comp.properties_["v"].dtype == dtype


@pytest.mark.parametrize("hint", [bool, np.bool_, "bool", "?"])
def test_bool_is_stored_as_int8(hint: Any) -> None:
    comp = define(hint, True)
    prop = comp.properties_["v"]
    assert (prop.dtype, prop.is_bool, prop.default) == ("|i1", True, True)
    assert comp.dtypes["v"] == np.dtype("i1")
    row = comp.new_row(id_=1)
    assert row.v == 1
    row.v = False
    assert row.v == 0
    row.v = True
    assert bool(row.v) is True


def test_defaults_are_normalized() -> None:
    assert define(np.int32, 3.0).properties_["v"].default == 3
    assert type(define(np.int32, np.int64(3)).properties_["v"].default) is int
    assert type(define(np.float32, 1).properties_["v"].default) is float
    assert define("S4", "ab").properties_["v"].default == b"ab"
    assert define(bool, 1).properties_["v"].default is True
    # Equal defaults written differently give the same schema.
    assert define(np.float32, 0).schema_hash() == define(np.float32, 0.0).schema_hash()


def test_non_finite_float_defaults_in_schema_json() -> None:
    assert '"default":"inf"' in define(np.float32, float("inf")).schema_json()
    assert '"default":"nan"' in define(np.float64, float("nan")).schema_json()


def test_string_hints_resolve_module_names() -> None:
    # This module uses `from __future__ import annotations`: hints arrive as strings.
    @hetu.define_component(namespace="TcDtypes", force=True)
    class TcFuture(BaseComponent):
        a: np.uint32 = hetu.property_field(1)
        b: bool = hetu.property_field(False)
        c: str = hetu.property_field("", dtype="U4")

    assert TcFuture.__annotations__["a"] == "np.uint32"
    assert [p.dtype for p in TcFuture.properties_.values()] == ["<u4", "|i1", "<U4"]
