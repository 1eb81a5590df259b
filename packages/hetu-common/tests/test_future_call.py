"""FutureCalls without Redis: due times, argument packing, schedules, the table."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest

import hetu
from hetu.future_call import (
    MAX_ARGS_BYTES,
    FutureCalls,
    due_ms_of,
    is_future_calls,
    next_cron_ms,
    next_due_ms,
    pack_args,
    parse_cron,
    unpack_args,
)
from hetu.system import BUILTIN_NAMESPACE, SystemDefines


def test_at_positive_is_posix_time_and_never_rounded_down() -> None:
    assert due_ms_of(1_700_000_000.0, now_s=5.0) == 1_700_000_000_000
    assert due_ms_of(1_700_000_000.0001, now_s=5.0) == 1_700_000_000_001
    assert due_ms_of(12.3456, now_s=0.0) == 12346


def test_at_zero_or_negative_is_relative_to_now() -> None:
    assert due_ms_of(0, now_s=100.0) == 100_000
    assert due_ms_of(-2.5, now_s=100.0) == 102_500
    assert due_ms_of(-0.0001, now_s=100.0) == 100_001
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            due_ms_of(bad, now_s=0.0)


@pytest.mark.parametrize(
    "args",
    [[], [0], [1.0], [b"\x00\x00"], ["x\x00"], [1, "a", None, [2, 3], {"k": -1}]],
)
def test_args_round_trip_through_the_numpy_field(args: list) -> None:
    # NumPy's S<n> drops trailing NULs; what the table holds must still decode.
    row = FutureCalls.new_row()
    row.args = pack_args(args)
    assert unpack_args(bytes(row.args)) == args


def test_numpy_scalars_become_plain_values() -> None:
    assert unpack_args(pack_args([np.int64(7), np.float32(0.5)])) == [7, 0.5]


def test_oversized_or_unpackable_args_are_refused_clearly() -> None:
    assert len(pack_args(["x" * (MAX_ARGS_BYTES - 4)])) == MAX_ARGS_BYTES + 1
    with pytest.raises(ValueError, match=r"limit is 1023.*component row"):
        pack_args(["x" * MAX_ARGS_BYTES])
    with pytest.raises(TypeError, match="cannot be stored"):
        pack_args([object()])


def _utc_ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # pyright: ignore[reportArgumentType]


def test_cron_five_fields_six_fields_and_zone() -> None:
    t0 = _utc_ms(2030, 1, 1, 0, 0, 0)
    assert next_cron_ms("*/5 * * * *", t0) == t0 + 5 * 60_000  # strictly after
    assert next_cron_ms("*/10 * * * * *", t0 + 1) == t0 + 10_000
    assert next_cron_ms("0 4 * * *", t0) == _utc_ms(2030, 1, 1, 4, 0, 0)
    shanghai = next_cron_ms("CRON_TZ=Asia/Shanghai 0 4 * * *", t0)
    assert shanghai == _utc_ms(2030, 1, 1, 20, 0, 0)


def test_bad_cron_names_the_expression() -> None:
    with pytest.raises(ValueError, match=r"cron '61 \* \* \* \*'"):
        parse_cron("61 * * * *")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_cron("CRON_TZ=Mars/Base 0 4 * * *")


def test_next_due_skips_missed_periods_and_one_shots_end() -> None:
    row = FutureCalls.new_row()
    row.due_ms = 10_000
    assert next_due_ms(row, 10_000) is None
    row.interval_s = 2.0
    assert next_due_ms(row, 10_000) == 12_000
    assert next_due_ms(row, 15_500) == 16_000  # missed 12 s and 14 s: fire once
    row.interval_s = 0.0
    row.cron = "* * * * * *"
    assert next_due_ms(row, 10_000) == 11_000
    assert next_due_ms(row, 20_500) == 21_000


def test_builtins_are_registered_and_copies_recognised() -> None:
    names = SystemDefines.systems(BUILTIN_NAMESPACE)
    for name in ("create_future_call", "ensure_future_call", "cancel_future_call"):
        assert names[name].permission is None  # not callable by clients
    assert FutureCalls.permission_ is hetu.Permission.ADMIN
    copy = FutureCalls.duplicate("TcFutureCall", "t")
    assert copy.name_ == "FutureCalls:t"
    assert is_future_calls(FutureCalls)
    assert is_future_calls(copy)

    @hetu.define_component(namespace="TcFutureCall", force=True)
    class FutureCallsLookalike(hetu.BaseComponent):
        due_ms: np.int64 = hetu.property_field(0, index=True)

    assert not is_future_calls(FutureCallsLookalike)
