"""Index encoding preserves Python's order; range bounds select what Python would."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetu.storage import codec


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


INT_DTYPES = ["|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8"]


@pytest.mark.parametrize("dtype", INT_DTYPES)
@given(data=st.data())
def test_int_order(dtype: str, data) -> None:
    info = np.iinfo(dtype)
    ints = st.integers(int(info.min), int(info.max))
    a, b = data.draw(ints), data.draw(ints)
    enc = codec.value_encoder(dtype)
    assert len(enc(a)) == np.dtype(dtype).itemsize
    assert _cmp(enc(a), enc(b)) == _cmp(a, b)


@given(a=st.floats(allow_nan=False), b=st.floats(allow_nan=False))
def test_float_order(a: float, b: float) -> None:
    assert _cmp(codec.encode_float(a), codec.encode_float(b)) == _cmp(a, b)


def test_float_specials() -> None:
    enc = codec.encode_float
    assert enc(-0.0) == enc(0.0)
    ordered = [-math.inf, -1e308, -1.0, -5e-324, 0.0, 5e-324, 1.0, 1e308, math.inf]
    assert sorted(ordered, key=enc) == ordered
    assert enc(np.float16(1.5)) == enc(np.float32(1.5)) == enc(1.5)
    with pytest.raises(ValueError, match="NaN"):
        enc(math.nan)


@given(a=st.text(), b=st.text())
def test_str_order(a: str, b: str) -> None:
    assert _cmp(codec.encode_str(a), codec.encode_str(b)) == _cmp(a, b)


def test_str_order_with_surrogates_and_nul() -> None:
    values = [
        "",
        "\0",
        "\0\0",
        "a",
        "a\0",
        "a\0b",
        "a\x01",
        "\ud7ff",
        "\ud800",
        "\ue000",
    ]
    values += ["\U0010ffff", "é", "中文", "日本"]
    assert sorted(values, key=codec.encode_str) == sorted(values)


@given(a=st.binary(), b=st.binary())
def test_bytes_order(a: bytes, b: bytes) -> None:
    assert _cmp(codec.encode_bytes(a), codec.encode_bytes(b)) == _cmp(a, b)


def test_bool_is_int8() -> None:
    enc = codec.value_encoder("?")
    assert enc(False) < enc(True)
    assert enc(True) == codec.value_encoder("|i1")(1)


_ids = st.integers(-(2**63), 2**63 - 1)


@given(a=st.tuples(st.text(), _ids), b=st.tuples(st.text(), _ids), dtype=st.just("<U8"))
def test_member_orders_by_value_then_id(a: tuple, b: tuple, dtype: str) -> None:
    enc = codec.value_encoder(dtype)

    def member(v: tuple) -> bytes:
        return enc(v[0]) + codec.encode_id(v[1])

    assert _cmp(member(a), member(b)) == _cmp(a, b)
    assert codec.decode_id(member(a)) == a[1]


def _inside(v: Any, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool) -> bool:
    return (v >= lo if lo_incl else v > lo) and (v <= hi if hi_incl else v < hi)


_int_bounds = st.one_of(
    st.integers(-200, 200),
    st.floats(-300, 300).filter(lambda f: f == f),
    st.sampled_from([math.inf, -math.inf, 127, -128, 126.5, -127.5]),
)


@given(
    v=st.integers(-128, 127),
    row_id=_ids,
    lo=_int_bounds,
    hi=_int_bounds,
    lo_incl=st.booleans(),
    hi_incl=st.booleans(),
)
def test_int_bounds_clamp_and_prefixes(v, row_id, lo, hi, lo_incl, hi_incl) -> None:
    def arg(x: Any, incl: bool) -> Any:
        return x if incl and isinstance(x, int) else ("[" if incl else "(") + repr(x)

    lex = codec.lex_range("|i1", arg(lo, lo_incl), arg(hi, hi_incl))
    member = codec.value_encoder("|i1")(v) + codec.encode_id(row_id)
    expected = _inside(v, lo, lo_incl, hi, hi_incl)
    assert (lex is not None and codec.lex_contains(lex, member)) == expected


@given(
    v=st.floats(allow_nan=False),
    lo=st.floats(allow_nan=False),
    hi=st.floats(allow_nan=False),
    lo_incl=st.booleans(),
    hi_incl=st.booleans(),
)
def test_float_bounds(v, lo, hi, lo_incl, hi_incl) -> None:
    lex = codec.lex_range(
        "<f8",
        ("[" if lo_incl else "(") + repr(lo),
        ("[" if hi_incl else "(") + repr(hi),
    )
    assert lex is not None
    member = codec.encode_float(v) + codec.encode_id(1)
    assert codec.lex_contains(lex, member) == _inside(v, lo, lo_incl, hi, hi_incl)


def test_bound_errors() -> None:
    with pytest.raises(ValueError, match="not a number"):
        codec.lex_range("<i8", "(abc", 5)
    with pytest.raises(ValueError, match="NaN"):
        codec.lex_range("<f8", math.nan, 5)
    with pytest.raises(ValueError, match="NaN"):
        codec.lex_range("<i8", math.nan, 5)
    with pytest.raises(TypeError, match="cannot be indexed"):
        codec.value_encoder("<c16")


def test_row_field_round_trip() -> None:
    cases: list[tuple[str, Any]] = [
        ("<i8", -(2**63)),
        ("<u8", 2**64 - 1),
        ("<f4", float(np.float32(1.1))),
        ("<f8", -math.inf),
        ("<f8", 5e-324),
        ("<U8", "héllo中"),
        ("|S4", b"\0\xff\x01"),
        ("|i1", 1),
    ]
    for dtype, value in cases:
        raw = codec.field_to_redis(dtype)(value)
        raw_bytes = raw.encode() if isinstance(raw, str) else raw
        assert codec.field_from_redis(dtype)(raw_bytes) == value
