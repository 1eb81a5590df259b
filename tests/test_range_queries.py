"""Range queries return what sorting the same data in Python returns (hypothesis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

import hetu
from hetu.keys import ClusterKeys
from hetu.redis_server import RedisServer
from hetu.storage import Session

KEYS = ClusterKeys("test", "range")
NS = "RangeTest"


@hetu.define_component(namespace=NS, force=True)
class IntRow(hetu.BaseComponent):
    v: np.int16 = hetu.property_field(0, index=True)


@hetu.define_component(namespace=NS, force=True)
class FloatRow(hetu.BaseComponent):
    v: np.float32 = hetu.property_field(0.0, index=True)


@hetu.define_component(namespace=NS, force=True)
class StrRow(hetu.BaseComponent):
    v: str = hetu.property_field("", index=True, dtype="U8")


@hetu.define_component(namespace=NS, force=True)
class BytesRow(hetu.BaseComponent):
    v: bytes = hetu.property_field(b"", index=True, dtype="S8")


def _f32(x: float) -> float:
    return float(np.float32(x))


_numbers = st.one_of(
    st.integers(-40_000, 40_000),
    st.floats(allow_nan=False),
    st.sampled_from([0.5, -1.5, float("inf"), float("-inf")]),
)
_text = st.text(max_size=8).filter(lambda s: not s.endswith("\0"))
_binary = st.binary(max_size=8).filter(lambda b: not b.endswith(b"\0"))

# component, strategy of stored values, strategy of bound values
CASES: dict[str, tuple[Any, st.SearchStrategy, st.SearchStrategy]] = {
    "int": (IntRow, st.integers(-32768, 32767), _numbers),
    "float": (FloatRow, st.floats(allow_nan=False, width=32).map(_f32), _numbers),
    "unicode": (StrRow, _text, _text),
    "bytes": (BytesRow, _binary, _binary),
}


def _bound_arg(value: Any, inclusive: bool) -> Any:
    """How a caller writes the bound: a plain value or a "(" / "[" string."""
    if isinstance(value, bytes):
        return value if inclusive else "(" + value.decode("ascii")
    if isinstance(value, str) or not inclusive:
        return ("[" if inclusive else "(") + (
            value if isinstance(value, str) else repr(value)
        )
    return value


def _draw_bound(data: st.DataObject, values: list[Any], bounds: st.SearchStrategy):
    value = data.draw(st.one_of(st.sampled_from(values), bounds) if values else bounds)
    inclusive = data.draw(st.booleans())
    if isinstance(value, bytes) and not value.isascii():
        inclusive = True
    return value, inclusive, _bound_arg(value, inclusive)


def _expected(
    rows: list[tuple[Any, int]],
    lo: tuple[Any, bool],
    hi: tuple[Any, bool],
    limit: int,
    desc: bool,
) -> list[int]:
    def inside(v: Any) -> bool:
        (lv, li), (hv, hi_) = lo, hi
        return (v >= lv if li else v > lv) and (v <= hv if hi_ else v < hv)

    got = sorted((r for r in rows if inside(r[0])), reverse=desc)
    return [row_id for _, row_id in (got if limit < 0 else got[:limit])]


def _run(server: RedisServer, job: Callable[[aioredis.Redis], Any]) -> None:
    async def main() -> None:
        r = aioredis.Redis(port=server.port)
        try:
            await r.flushdb()
            await job(r)
        finally:
            await r.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_range_matches_python_sort(redis_server: RedisServer, case: str, data) -> None:
    comp, values_st, bounds_st = CASES[case]
    values = data.draw(st.lists(values_st, max_size=25))
    queries = []
    for _ in range(data.draw(st.integers(1, 4))):
        lv, li, larg = _draw_bound(data, values, bounds_st)
        if data.draw(st.booleans()):
            hv, hi, harg = _draw_bound(data, values, bounds_st)
        else:  # right=None: equality, i.e. right = left
            hv, hi, harg = lv, li, None
        queries.append(
            (
                larg,
                harg,
                (lv, li),
                (hv, hi),
                data.draw(st.integers(-1, 30)),
                data.draw(st.booleans()),
            )
        )

    async def job(r: aioredis.Redis) -> None:
        rows = []
        async with Session(r, KEYS) as s:
            for v in values:
                row = comp.new_row()
                row.v = v
                await s[comp].insert(row)
                rows.append((v, int(row.id)))
        repo = Session(r, KEYS)[comp]
        for larg, harg, lo, hi, limit, desc in queries:
            got = await repo.range("v", larg, harg, limit=limit, desc=desc)
            assert list(got.id) == _expected(rows, lo, hi, limit, desc), (larg, harg)
            if limit > 0:
                kw = await repo.range(v=(larg, harg), limit=limit, desc=desc)
                assert list(kw.id) == list(got.id)

    _run(redis_server, job)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_range_in_transaction_sees_own_writes(redis_server: RedisServer, data) -> None:
    small = st.integers(-5, 5)
    committed = data.draw(st.lists(small, max_size=12))
    ops = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(["insert", "update", "delete"]),
                st.integers(0, 99),
                small,
            ),
            max_size=10,
        )
    )
    queries = data.draw(
        st.lists(
            st.tuples(
                st.integers(-6, 6),
                st.integers(-6, 6),
                st.integers(-1, 8),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )
    )

    async def job(r: aioredis.Redis) -> None:
        async with Session(r, KEYS) as s:
            for v in committed:
                row = IntRow.new_row()
                row.v = v
                await s[IntRow].insert(row)
        s = Session(r, KEYS)
        repo = s[IntRow]
        model = {
            int(row.id): int(row.v) for row in await repo.range("v", -9, 9, limit=-1)
        }
        for op, pick, v in ops:
            ids = sorted(model)
            if op == "insert" or not ids:
                row = IntRow.new_row()
                row.v = v
                await repo.insert(row)
                model[int(row.id)] = v
            elif op == "update":
                row = await repo.get(id=ids[pick % len(ids)])
                assert row is not None
                row.v = v
                await repo.update(row)
                model[int(row.id)] = v
            else:
                repo.delete(ids[pick % len(ids)])
                del model[ids[pick % len(ids)]]
        rows = [(v, i) for i, v in model.items()]
        for lo, hi, limit, desc in queries:
            got = await repo.range("v", lo, hi, limit=limit, desc=desc)
            assert list(got.id) == _expected(rows, (lo, True), (hi, True), limit, desc)
        await s.commit()
        fresh = Session(r, KEYS)[IntRow]
        for lo, hi, limit, desc in queries:
            got = await fresh.range("v", lo, hi, limit=limit, desc=desc)
            assert list(got.id) == _expected(rows, (lo, True), (hi, True), limit, desc)

    _run(redis_server, job)
