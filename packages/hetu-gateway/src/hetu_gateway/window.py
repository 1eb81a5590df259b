"""The ordered rows of one subscription and the client events their changes make.

一个订阅的有序行集合，以及其变化产生的客户端事件。

A window keeps the visible rows of its index range in index order (ties by id),
up to ``cap`` of them: the client sees the first ``limit`` (the view); the rest
is a margin that refills the view without a Redis read when a row leaves.
``more`` says visible rows beyond the kept ones may exist; when the kept rows
drop below ``limit`` while ``more`` is set, the caller must re-read the window
(:attr:`needs_refill`).

Changes of one commit are applied one row at a time; :meth:`events` then gives
the net client events of the commit (a row pushed out and back in within one
commit produces nothing).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from hetu.protocol import RowEvent

_INVERT = bytes(255 - i for i in range(256))

Row = dict[str, Any]


def order_key(member: bytes, desc: bool) -> bytes:
    """Sort key of an index member: ascending order equals the window's order.

    Members are prefix-free, so inverting every byte reverses their order."""
    return member.translate(_INVERT) if desc else member


class Window:
    """Visible rows of one range in order. 一个范围内按序排列的可见行。"""

    __slots__ = ("cap", "limit", "more", "order", "rows")

    def __init__(self, limit: int, cap: int) -> None:
        assert cap > limit > 0
        self.limit = limit
        self.cap = cap
        self.more = False
        self.order: list[tuple[bytes, int]] = []
        self.rows: dict[int, tuple[bytes, Row]] = {}

    def load(self, items: list[tuple[bytes, Row]], more: bool) -> None:
        """Replace the content with ``(key, row)`` pairs already in order."""
        del items[self.cap :]
        self.order = [(key, row["id"]) for key, row in items]
        self.rows = {row["id"]: (key, row) for key, row in items}
        self.more = more

    def view(self) -> dict[int, Row]:
        """What the client sees: the first ``limit`` rows by id."""
        rows = self.rows
        return {i: rows[i][1] for _, i in self.order[: self.limit]}

    @property
    def needs_refill(self) -> bool:
        return self.more and len(self.order) < self.limit

    def _in_view(self, row_id: int) -> bool:
        entry = self.rows.get(row_id)
        if entry is None:
            return False
        return bisect_left(self.order, (entry[0], row_id)) < self.limit

    def apply(
        self, row_id: int, key: bytes | None, row: Row | None, touched: dict[int, bool]
    ) -> None:
        """Row ``row_id`` is now ``row`` at ``key``, or gone from the range or from
        sight (``key`` None). ``touched`` collects, for every row whose place in
        the view may change, whether it was in the view before (first time only).
        """
        order, limit = self.order, self.limit
        for pos in (limit - 1, limit):  # rows that may cross the view's edge
            if pos < len(order):
                rid = order[pos][1]
                if rid not in touched:
                    touched[rid] = pos < limit
        if row_id not in touched:
            touched[row_id] = self._in_view(row_id)
        # With ``more``, the kept rows are all visible rows up to the last kept
        # one; that stays true of its key while the row itself moves.
        known = order[-1] if order else None
        old = self.rows.pop(row_id, None)
        if old is not None:
            del order[bisect_left(order, (old[0], row_id))]
        if key is None or row is None:
            return
        item = (key, row_id)
        if self.more and (known is None or item > known):
            return  # beyond the kept rows: unknown rows may lie in between
        insort(order, item)
        self.rows[row_id] = (key, row)
        if len(order) > self.cap:
            _, dropped = order.pop()
            del self.rows[dropped]
            self.more = True

    def events(self, touched: dict[int, bool], changed: set[int]) -> list[RowEvent]:
        """Net client events for ``touched`` rows (deletes first); ``changed``
        rows have new data."""
        out: list[RowEvent] = []
        gone: list[RowEvent] = []
        for rid, was in touched.items():
            now = self._in_view(rid)
            if was and not now:
                gone.append(RowEvent("delete", rid, None))
            elif now and (not was or rid in changed):
                kind = "update" if was else "insert"
                out.append(RowEvent(kind, rid, self.rows[rid][1]))
        return gone + out if gone else out


def diff(old: dict[int, Row], new: dict[int, Row]) -> list[RowEvent]:
    """Events turning view ``old`` into view ``new``."""
    out = [RowEvent("delete", rid, None) for rid in old if rid not in new]
    for rid, row in new.items():
        before = old.get(rid)
        if before is None:
            out.append(RowEvent("insert", rid, row))
        elif before != row:
            out.append(RowEvent("update", rid, row))
    return out
