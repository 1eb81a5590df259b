"""Window edge cases: rows moving at the edge of what the gateway knows."""

from hetu.protocol import RowEvent
from hetu_gateway.window import Window


def row(i: int, v: int) -> dict[str, int]:
    return {"id": i, "v": v}


def test_update_of_the_last_known_row_stays_an_update() -> None:
    # A resumed watch_row: one row known, more rows may exist beyond it.
    w = Window(limit=1, cap=3)
    w.load([(b"\x05", row(1, 0))], more=True)
    touched: dict[int, bool] = {}
    w.apply(1, b"\x05", row(1, 1), touched)
    assert w.events(touched, {1}) == [RowEvent("update", 1, row(1, 1))]
    assert not w.needs_refill


def test_row_moving_past_the_known_edge_leaves_and_asks_for_a_refill() -> None:
    w = Window(limit=1, cap=3)
    w.load([(b"\x05", row(1, 0))], more=True)
    touched: dict[int, bool] = {}
    w.apply(1, b"\x09", row(1, 1), touched)  # unknown rows may lie in 05..09
    assert w.events(touched, {1}) == [RowEvent("delete", 1, None)]
    assert w.needs_refill
