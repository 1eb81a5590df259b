"""Client-side subscriptions: a live view of an index range (or one row).

客户端订阅：索引范围（或单行）的实时视图。

```python
sub = await client.watch_range("ChatMessage", "id", 0, 2**62, limit=100)
sub.rows                                # {id: row dict}, kept current
ev = await sub.next_event(timeout=1.0)  # .kind insert/update/delete, .id, .row
await sub.close()
```

The snapshot fills :attr:`Subscription.rows` without events; every later change
arrives as events in commit order. With ``connect(..., reconnect=True)`` each
subscription resumes from its last change id after a reconnect (any gateway):
the missed changes arrive as usual, or, when the change log no longer holds
them, a fresh snapshot that produces the events turning the old view into the
new one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from hetu.errors import HeTuError
from hetu.protocol import ClientMsg, Push, Subscribed, Unwatch, WatchRange, WatchRow

if TYPE_CHECKING:
    from hetu.client import Client

logger = logging.getLogger(__name__)

Row = dict[str, Any]
MakeWatch = Callable[[int, str, list[Row]], ClientMsg]


class Event(msgspec.Struct, frozen=True):
    """One change of a subscription's view. 订阅视图的一次变化。

    ``kind`` is ``insert`` (the row entered the view), ``update`` or ``delete``
    (it left: deleted, out of range, out of the limit or hidden); ``row`` is
    None for ``delete``; ``cid`` is the change id it came with.
    """

    kind: Literal["insert", "update", "delete"]
    id: int
    row: Row | None
    cid: str


def _cid_key(cid: str) -> tuple[int, int]:
    ms, _, seq = cid.partition("-")
    return int(ms or 0), int(seq or 0)


class Subscription:
    """A live view of rows (use ``Client.watch_range`` / ``Client.watch_row``).

    实时行视图（通过 ``Client.watch_range`` / ``Client.watch_row`` 创建）。
    """

    def __init__(self, client: Client, make: MakeWatch, timeout_s: float) -> None:
        self._client = client
        self._make = make
        self._timeout_s = timeout_s
        #: The current view: row id -> row (without ``_version``).
        self.rows: dict[int, Row] = {}
        #: The last change id applied ("" before the snapshot).
        self.cid = ""
        #: The server's id of this subscription on the current connection.
        self.sub_id = 0
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._waiting_id = 0  # request id of the watch whose reply is awaited
        self._held: list[Push] = []
        self._gen = 0
        self._closed = False

    @property
    def row(self) -> Row | None:
        """The one row of a ``watch_row`` subscription, or None."""
        return next(iter(self.rows.values()), None)

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when none comes within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        """Stop the subscription (no more events). 停止订阅。"""
        if self._closed:
            return
        self._closed = True
        _registry(self._client).discard(self)
        sub_id, self.sub_id = self.sub_id, 0
        self._client.on_push(sub_id, None)
        if sub_id and self._client.closed is None:
            await self._unwatch(sub_id)

    # --- internals -----------------------------------------------------------

    async def _watch(self, since: str) -> None:
        """Send the watch request (``since``: resume) and apply its reply.

        Raises:
            CallError: the gateway refused the watch.
            ClosedError: the connection is closed for good.
        """
        self._gen += 1
        gen = self._gen
        view = list(self.rows.values()) if since else []
        sent: list[int] = []

        def make(rid: int) -> ClientMsg:
            sent.append(rid)
            self._waiting_id, self._held = rid, []
            self._client.on_push(rid, lambda push: self._on_push(rid, push))
            return self._make(rid, since, view)

        reply = await self._client.request(make, self._timeout_s)
        rid = sent[0]
        if gen != self._gen or self._closed or not isinstance(reply, Subscribed):
            # a newer watch (or close) replaced this one: stop it on the server too
            self._client.on_push(rid, None)
            task = asyncio.ensure_future(self._unwatch(rid))
            _background.add(task)
            task.add_done_callback(_background.discard)
            return
        if self.sub_id:
            self._client.on_push(self.sub_id, None)
        self.sub_id, self._waiting_id = rid, 0
        if reply.fresh:
            new = {row["id"]: row for row in reply.rows}
            if since:
                self._emit_diff(new, reply.cid)
            self.rows = new
        self.cid = reply.cid
        held, self._held = self._held, []
        for push in held:
            self._apply(push)

    async def _unwatch(self, sub_id: int) -> None:
        try:
            await self._client.request(lambda rid: Unwatch(rid, sub_id), 5.0)
        except HeTuError as exc:  # gone already: nothing more will arrive
            logger.debug("unwatch %d: %s", sub_id, exc)

    def _on_push(self, rid: int, push: Push) -> None:
        if rid == self.sub_id:
            self._apply(push)
        elif rid == self._waiting_id:
            self._held.append(push)

    def _apply(self, push: Push) -> None:
        if self._closed or (self.cid and _cid_key(push.cid) < _cid_key(self.cid)):
            return
        rows, put = self.rows, self._events.put_nowait
        for ev in push.events:
            if ev.kind == "delete":
                rows.pop(ev.id, None)
            else:
                rows[ev.id] = ev.row  # type: ignore[assignment]
            put(Event(ev.kind, ev.id, ev.row, push.cid))
        self.cid = push.cid

    def _emit_diff(self, new: dict[int, Row], cid: str) -> None:
        put = self._events.put_nowait
        for rid in self.rows:
            if rid not in new:
                put(Event("delete", rid, None, cid))
        for rid, row in new.items():
            old = self.rows.get(rid)
            if old is None:
                put(Event("insert", rid, row, cid))
            elif old != row:
                put(Event("update", rid, row, cid))

    async def _resume(self) -> None:
        if self._closed or not self.cid:
            return  # not subscribed yet: the pending watch request is resent
        try:
            await self._watch(self.cid)
        except HeTuError as exc:
            logger.warning("resuming subscription failed: %s", exc)


class _ClientSubscriptions:
    """The subscriptions of one client; resumes them after a reconnect."""

    def __init__(self, client: Client) -> None:
        self.subs: set[Subscription] = set()
        client.reconnect_hooks.append(self.resume)

    async def resume(self) -> None:
        await asyncio.gather(*(s._resume() for s in list(self.subs)))


_background: set[asyncio.Future[None]] = set()
_by_client: weakref.WeakKeyDictionary[Client, _ClientSubscriptions] = (
    weakref.WeakKeyDictionary()
)


def _registry(client: Client) -> set[Subscription]:
    subs = _by_client.get(client)
    if subs is None:
        subs = _by_client[client] = _ClientSubscriptions(client)
    return subs.subs


async def watch_range(
    client: Client,
    component: str,
    index: str,
    left: Any,
    right: Any,
    limit: int = 10,
    desc: bool = False,
    timeout_s: float = 30.0,
) -> Subscription:
    """Subscribe to ``left <= component.index <= right`` (first ``limit`` rows).

    Raises:
        CallError: ``bad_request`` (unknown component/index, bad bound) or
            ``quota_exceeded`` (too many subscriptions, limit too large).
    """

    def make(rid: int, since: str, view: list[Row]) -> ClientMsg:
        return WatchRange(rid, component, index, left, right, limit, desc, since, view)

    return await _open(client, make, timeout_s)


async def watch_row(
    client: Client, component: str, index: str, value: Any, timeout_s: float = 30.0
) -> Subscription:
    """Subscribe to the row whose ``index`` equals ``value`` (0 or 1 row).

    Raises:
        CallError: as for :func:`watch_range`.
    """

    def make(rid: int, since: str, view: list[Row]) -> ClientMsg:
        return WatchRow(rid, component, index, value, since, view)

    return await _open(client, make, timeout_s)


async def _open(client: Client, make: MakeWatch, timeout_s: float) -> Subscription:
    sub = Subscription(client, make, timeout_s)
    subs = _registry(client)
    subs.add(sub)
    try:
        await sub._watch("")
    except BaseException:
        subs.discard(sub)
        raise
    return sub
