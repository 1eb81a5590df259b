"""One subscription's state and how a committed change updates its view.

一个订阅的状态，以及一次已提交变更如何更新其视图。

:class:`Change` wraps one ``RowChange`` with what every subscriber derives from it
(client row, index members), computed once per change however many subscribe;
:meth:`Sub.apply` runs one entry's changes through the subscription's range,
visibility rule and :class:`~hetu_gateway.window.Window`, and pushes the net
events.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hetu.protocol import Push
from hetu.storage import codec
from hetu.wire import RowChange
from hetu_gateway.connection import Connection
from hetu_gateway.rls import Visible, visibility
from hetu_gateway.tables import Table
from hetu_gateway.window import Window, order_key


class Change:
    """One RowChange, with what every subscriber derives from it computed once."""

    __slots__ = ("_client", "_members", "id", "row")

    def __init__(self, ch: RowChange) -> None:
        self.id = ch.id
        self.row = ch.row  # None for a delete
        self._client: dict[str, Any] | None = None
        self._members: dict[str, bytes] = {}

    def client_row(self) -> dict[str, Any]:
        if self._client is None:
            assert self.row is not None
            self._client = {k: v for k, v in self.row.items() if k != "_version"}
        return self._client

    def member(self, field: str, encode: codec.Encoder) -> bytes | None:
        got = self._members.get(field)
        if got is None:
            try:
                got = encode(self.row[field]) + codec.encode_id(self.id)  # type: ignore[index]
            except (KeyError, ValueError, TypeError, OverflowError):
                got = b""
            self._members[field] = got
        return got or None


Entry = tuple[str, list[Change]]


class Sub:
    """One subscription of one connection. 一个连接的一个订阅。"""

    __slots__ = (
        "cid", "closed", "comp", "conn", "desc", "encode", "eq", "field", "held_ids",
        "id", "lex", "pending", "refill", "table", "visible", "window",
    )  # fmt: skip

    def __init__(
        self,
        sub_id: int,
        conn: Connection,
        table: Table,
        field: str,
        lex: codec.LexRange,
        limit: int,
        desc: bool,
        eq: bytes | None = None,
    ) -> None:
        self.id = sub_id
        self.conn = conn
        self.table = table
        self.field = field
        self.encode = table.encoders[field]
        self.lex = lex
        self.desc = desc
        self.window = Window(limit, limit + max(2, min(limit, 64)))
        self.visible: Visible = visibility(table.info, conn)
        self.cid = "0-0"
        #: Entries held while catching up; None once live.
        self.pending: deque[Entry] | None = deque()
        self.refill = False
        self.closed = False
        #: The encoded value of an equality subscription (watch_row), else None.
        self.eq = eq
        #: The dispatch table it is registered in, and the row ids it indexed there.
        self.comp: CompSubs | None = None
        self.held_ids: set[int] = set()

    def start_pending(self) -> None:
        """Hold live entries from now on (catching up or re-reading)."""
        self.pending = deque()
        if self.comp is not None and self.eq is not None:
            self.comp.scan[self] = None

    def go_live(self) -> None:
        self.pending = None
        if self.comp is not None and self.eq is not None:
            self.comp.scan.pop(self, None)

    def rows_changed(self) -> None:
        """Keep the dispatch index in step with the window's rows."""
        if self.comp is not None and self.eq is not None:
            self.comp.reindex(self)

    def apply(self, cid: str, changes: list[Change]) -> None:
        """Apply one committed entry's changes of this component; push the net
        events of the view."""
        window, lex, field, encode = self.window, self.lex, self.field, self.encode
        touched: dict[int, bool] = {}
        changed: set[int] = set()
        for ch in changes:
            key = None
            if ch.row is not None:
                member = ch.member(field, encode)
                if (
                    member is not None
                    and codec.lex_contains(lex, member)
                    and self.visible(ch.row)
                ):
                    key = order_key(member, self.desc)
            if key is None:
                if ch.id in window.rows:
                    window.apply(ch.id, None, None, touched)
                continue
            window.apply(ch.id, key, ch.client_row(), touched)
            changed.add(ch.id)
        self.cid = cid
        if touched:
            events = window.events(touched, changed)
            if events:
                self.conn.send(Push(self.id, cid, events))
        if window.needs_refill:
            self.refill = True
        self.rows_changed()


class CompSubs:
    """The subscriptions of one component, indexed for dispatch.

    Range subscriptions see every entry of the component (``scan``). Equality
    subscriptions (watch_row) are found by the value a change writes
    (``by_value``) or by a row id their window holds (``held``), so a change
    costs them nothing unless it concerns them; while one is catching up it
    sees every entry (its window is behind the entries being dispatched).
    """

    __slots__ = ("by_value", "encoders", "held", "scan")

    def __init__(self) -> None:
        self.scan: dict[Sub, None] = {}
        self.by_value: dict[tuple[str, bytes], dict[Sub, None]] = {}
        self.held: dict[int, dict[Sub, None]] = {}
        self.encoders: dict[str, tuple[codec.Encoder, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.scan or self.by_value)

    def add(self, sub: Sub) -> None:
        sub.comp = self
        if sub.eq is None or sub.pending is not None:
            self.scan[sub] = None
        if sub.eq is not None:
            self.by_value.setdefault((sub.field, sub.eq), {})[sub] = None
            _, n = self.encoders.get(sub.field, (sub.encode, 0))
            self.encoders[sub.field] = (sub.encode, n + 1)
            self.reindex(sub)

    def remove(self, sub: Sub) -> None:
        self.scan.pop(sub, None)
        if sub.eq is None or sub.comp is not self:
            return
        subs = self.by_value[(sub.field, sub.eq)]
        del subs[sub]
        if not subs:
            del self.by_value[(sub.field, sub.eq)]
        enc, n = self.encoders[sub.field]
        if n > 1:
            self.encoders[sub.field] = (enc, n - 1)
        else:
            del self.encoders[sub.field]
        for rid in sub.held_ids:
            self._unhold(rid, sub)
        sub.held_ids = set()

    def reindex(self, sub: Sub) -> None:
        now = set(sub.window.rows)
        if now == sub.held_ids:
            return
        for rid in sub.held_ids - now:
            self._unhold(rid, sub)
        for rid in now - sub.held_ids:
            self.held.setdefault(rid, {})[sub] = None
        sub.held_ids = now

    def _unhold(self, rid: int, sub: Sub) -> None:
        subs = self.held.get(rid)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self.held[rid]

    def targets(self, changes: list[Change]) -> dict[Sub, None]:
        """The subscriptions one entry's ``changes`` may concern."""
        if not self.by_value:
            return dict(self.scan)
        out = dict(self.scan)
        held, by_value = self.held, self.by_value
        for ch in changes:
            subs = held.get(ch.id)
            if subs:
                out.update(subs)
            if ch.row is None:
                continue
            for field, (encode, _) in self.encoders.items():
                member = ch.member(field, encode)
                if member is not None:
                    subs = by_value.get((field, member[: -codec.ID_BYTES]))
                    if subs:
                        out.update(subs)
        return out
