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
        "cid", "closed", "conn", "desc", "encode", "field", "id", "lex", "pending",
        "refill", "table", "visible", "window",
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
