"""Row visibility rules and the ordered window, without Redis or processes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hetu.storage import codec
from hetu.wire import ComponentInfo
from hetu_gateway.rls import visibility
from hetu_gateway.tables import check_value
from hetu_gateway.window import Window, diff, order_key


class Conn:
    def __init__(
        self, caller: int = 0, group: str = "", ud: dict[str, Any] | None = None
    ) -> None:
        self.caller = caller
        self.group = group
        self.id = 7
        self.addr = "1.2.3.4:5"
        self.ud = ud or {}


def info(permission: str, rls: tuple[str, str, str] | None = None) -> ComponentInfo:
    return ComponentInfo("T", "NS", "{}", "h", permission, 1, {"id": True}, rls)


ROW = {"id": 1, "owner": 5, "level": 3, "team": "red"}


@pytest.mark.parametrize(
    ("perm", "rls", "conn", "visible"),
    [
        ("EVERYBODY", None, Conn(), True),
        ("USER", None, Conn(), False),
        ("USER", None, Conn(5), True),
        ("OWNER", None, Conn(5), True),
        ("OWNER", None, Conn(6), False),
        ("OWNER", None, Conn(0), False),
        ("OWNER", None, Conn(6, "admin"), True),
        ("ADMIN", None, Conn(5), False),
        ("ADMIN", None, Conn(5, "admin:ops"), True),
        ("RLS", ("le", "level", "clearance"), Conn(1, ud={"clearance": 3}), True),
        ("RLS", ("le", "level", "clearance"), Conn(1, ud={"clearance": 2}), False),
        ("RLS", ("le", "level", "clearance"), Conn(1), False),  # no such attribute
        ("RLS", ("eq", "owner", "caller"), Conn(5), True),
        ("RLS", ("eq", "team", "group"), Conn(1, "red"), True),
        ("RLS", ("eq", "team", "group"), Conn(1, "blue"), False),
        ("RLS", ("lt", "team", "clearance"), Conn(1, ud={"clearance": 3}), False),
        ("RLS", ("eq", "nofield", "caller"), Conn(5), False),
    ],
)
def test_visibility(
    perm: str, rls: tuple[str, str, str] | None, conn: Conn, visible: bool
) -> None:
    assert visibility(info(perm, rls), conn)(ROW) is visible


def test_window_matches_a_sorted_list_under_random_changes() -> None:
    """Every commit's net events turn the old view into the new one, and the view
    always equals the first ``limit`` visible rows of the full table in order
    (a refill, when asked for, re-reads from the full table)."""
    rng = random.Random(4)
    for trial in range(300):
        WindowModel(rng).run(trial)


Row = dict[str, Any]


class WindowModel:
    """A Window next to the full table it should mirror."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.limit = rng.randint(1, 5)
        self.desc = rng.random() < 0.5
        lex = codec.lex_range("<i8", 10, 60)
        assert lex is not None
        self.lex = lex
        self.enc = codec.value_encoder("<i8")
        self.table: dict[int, Row] = {}
        self.window = Window(self.limit, self.limit + rng.randint(1, 4))

    def key(self, row: Row) -> bytes | None:
        member = self.enc(row["x"]) + codec.encode_id(row["id"])
        if not codec.lex_contains(self.lex, member) or not row["ok"]:
            return None
        return order_key(member, self.desc)

    def truth(self) -> list[tuple[bytes, Row]]:
        items = [(k, r) for r in self.table.values() if (k := self.key(r)) is not None]
        return sorted(items, key=lambda item: item[0])

    def commit(self) -> None:
        rng, window, table = self.rng, self.window, self.table
        before = window.view()
        touched: dict[int, bool] = {}
        changed: set[int] = set()
        for _ in range(rng.randint(1, 3)):
            rid = rng.randint(1, 25)
            if rid in table and rng.random() < 0.3:
                del table[rid]
                window.apply(rid, None, None, touched)
                continue
            row = {"id": rid, "x": rng.randint(0, 70), "ok": rng.random() < 0.8}
            table[rid] = row
            k = self.key(row)
            window.apply(rid, k, row if k else None, touched)
            if k:
                changed.add(rid)
        for ev in window.events(touched, changed):
            if ev.kind == "delete":
                del before[ev.id]
            else:
                assert (ev.id in before) == (ev.kind == "update")
                before[ev.id] = ev.row  # type: ignore[assignment]
        assert before == window.view()

    def refill(self) -> None:
        items = self.truth()
        old = self.window.view()
        self.window.load(items, len(items) > self.window.cap)
        for ev in diff(old, self.window.view()):
            if ev.kind == "delete":
                del old[ev.id]
            else:
                old[ev.id] = ev.row  # type: ignore[assignment]
        assert old == self.window.view()

    def run(self, trial: int) -> None:
        self.window.load(self.truth(), more=False)
        for _ in range(60):
            self.commit()
            if self.window.needs_refill:
                self.refill()
            want = {r["id"]: r for _, r in self.truth()[: self.limit]}
            assert self.window.view() == want, trial


@pytest.mark.parametrize(
    ("dtype", "value", "bound", "ok"),
    [
        ("<i8", 5, False, True),
        ("<i8", 5.5, False, False),
        ("<i8", float("inf"), True, True),
        ("<i8", "(3", True, True),
        ("<i8", "3", True, False),
        ("<f8", 2, False, True),
        ("<U8", "x", False, True),
        ("<U8", 3, False, False),
        ("|S8", b"x", False, True),
        ("|S8", 10**9, True, False),  # bytes(int) would allocate
        ("|S8", [1], True, False),
    ],
)
def test_watch_values_must_fit_the_index(
    dtype: str, value: Any, bound: bool, ok: bool
) -> None:
    if ok:
        check_value(dtype, value, bound)
    else:
        with pytest.raises(TypeError):
            check_value(dtype, value, bound)
