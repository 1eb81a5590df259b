"""Running stream entries concurrently, one connection's calls in order.

并发运行流中的调用，同一连接的调用按顺序执行。
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hetu_logic.streams import Entry

logger = logging.getLogger(__name__)


class Scheduler:
    """Runs ``run(entry)`` for submitted entries: the entries of one gateway
    connection one after another (also across batches), others concurrently."""

    def __init__(self, run: Callable[[Entry], Awaitable[None]]) -> None:
        self._run = run
        self.in_flight = 0
        self._tails: dict[tuple[str, int], asyncio.Task[None]] = {}
        # set whenever a call ends; an Event (not a Condition) so that ending a
        # call costs no lock round trip when nobody waits
        self._changed = asyncio.Event()

    def submit(self, entries: list[Entry]) -> None:
        """Start running ``entries`` (returns at once)."""
        groups: dict[tuple[str, int], list[Entry]] = {}
        for e in entries:
            key = (e.msg.gw, e.msg.conn) if e.msg is not None else ("", -len(groups))
            groups.setdefault(key, []).append(e)
        self.in_flight += len(entries)
        for key, group in groups.items():
            prev = self._tails.get(key)
            task = asyncio.create_task(self._run_group(prev, group))
            self._tails[key] = task
            task.add_done_callback(lambda t, k=key: self._done(k, t))

    def _done(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _run_group(
        self, prev: asyncio.Task[None] | None, group: list[Entry]
    ) -> None:
        if prev is not None:
            await asyncio.wait([prev])
        for entry in group:
            try:
                await self._run(entry)
            except Exception:
                # The entry stays pending; another worker claims it after idle_ms.
                logger.exception("call %s failed outside the System", entry.entry_id)
            finally:
                self.in_flight -= 1
                self._changed.set()

    async def wait_below(self, n: int) -> None:
        """Return once fewer than ``n`` calls are in flight."""
        while self.in_flight >= n:
            self._changed.clear()
            await self._changed.wait()

    async def wait_idle(self) -> None:
        """Return once no call is in flight."""
        await self.wait_below(1)
