"""Reading the clusters' change logs: one blocking XREAD loop per gateway
instance, plus the atomic "rows and log position" reads subscriptions start from.

读取各系统簇的变更日志：每个网关实例一个阻塞 XREAD 循环，以及订阅起点所需的
“行与日志位置”原子读取。

Every committed transaction is one entry of its cluster's ``changes`` stream
(field ``m``: msgpack ``list[RowChange]``); the entry id is the change id. The
reader decodes each entry once and hands it to ``dispatch(stream, id, changes)``
in stream order, whatever the number of subscribers.

A window's rows and the stream position are read in one MULTI (the storage
range script, then XINFO STREAM), so applying exactly the entries after that
position gives the current window: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from hetu.fastredis import FastRedis
from hetu.storage.commit import RANGE
from hetu.wire import RowChange, change_event_decoder

logger = logging.getLogger(__name__)

Dispatch = Callable[[str, str, list[RowChange]], None]
ZERO = "0-0"


def parse_id(cid: str) -> tuple[int, int]:
    """A stream id as a comparable pair.

    Raises:
        ValueError: ``cid`` is not ``<ms>-<seq>``.
    """
    ms, _, seq = cid.partition("-")
    return int(ms), int(seq)


class LogInfo(msgspec.Struct, frozen=True):
    """A change stream's position: last id, first id held, and whether it was
    ever trimmed."""

    last: str = ZERO
    first: str = ZERO
    trimmed: bool = False

    def holds_after(self, cid: str) -> bool:
        """Whether every entry after ``cid`` is still in the stream."""
        try:
            since = parse_id(cid)
        except ValueError:
            return False
        if since > parse_id(self.last):
            return False  # an id this stream never gave out
        return not self.trimmed or since >= parse_id(self.first)


def _log_info(reply: Any) -> LogInfo:
    if isinstance(reply, Exception):  # no such key: nothing written yet
        return LogInfo()
    first = reply.get(b"first-entry")
    added = reply.get(b"entries-added")  # Redis >= 7.0; unknown: assume trimmed
    return LogInfo(
        last=reply[b"last-generated-id"].decode(),
        first=first[0].decode() if first else ZERO,
        trimmed=added is None or int(added) != int(reply[b"length"]),
    )


async def read_window(
    redis: aioredis.Redis,
    index_key: str,
    lex: tuple[bytes, bytes],
    desc: bool,
    fetch: int,
    row_prefix: str,
    changes_key: str,
) -> tuple[list[tuple[bytes, list[bytes]]], LogInfo]:
    """Up to ``fetch`` ``(member, HGETALL reply)`` of a range and the change log
    position they are consistent with, in one atomic MULTI."""
    for attempt in (0, 1):
        pipe = redis.pipeline(transaction=True)
        pipe.evalsha(
            RANGE.sha, 1, index_key, lex[0], lex[1], "1" if desc else "0",
            fetch, row_prefix,
        )  # fmt: skip
        pipe.execute_command("XINFO", "STREAM", changes_key)
        rows, info = await pipe.execute(raise_on_error=False)
        if isinstance(rows, NoScriptError) and attempt == 0:
            await redis.script_load(RANGE.source)  # type: ignore[misc]
            continue
        if isinstance(rows, Exception):
            raise rows
        return rows, _log_info(info)
    raise AssertionError("unreachable")


async def read_log(
    redis: aioredis.Redis, changes_key: str, after: str, count: int
) -> tuple[list[tuple[str, list[RowChange]]], LogInfo]:
    """Up to ``count`` entries after ``after`` and the stream's position, atomically
    (so a trim between them cannot hide a gap)."""
    pipe = redis.pipeline(transaction=True)
    pipe.execute_command("XINFO", "STREAM", changes_key)
    pipe.execute_command("XRANGE", changes_key, "(" + after, "+", "COUNT", count)
    info, entries = await pipe.execute(raise_on_error=False)
    if isinstance(entries, Exception):
        raise entries
    return [_decode(e) for e in entries], _log_info(info)


def _decode(entry: Any) -> tuple[str, list[RowChange]]:
    entry_id, fields = entry
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return entry_id.decode(), change_event_decoder.decode(fields[b"m"])


class ChangeLogReader:
    """One blocking XREAD over the change streams of an instance's clusters.

    每个实例一个：对各簇变更流做一次阻塞 XREAD，按序分发。

    ``streams()`` names the streams to follow (re-asked every loop, so clusters
    added by a registry change join within ``block_ms``). :attr:`positions`
    holds the last id dispatched per stream: every entry up to it has been
    handed to ``dispatch``. The XREAD runs on its own :class:`FastRedis`
    connection (a fraction of redis-py's cost per reply).
    """

    def __init__(
        self,
        redis_url: str,
        streams: Callable[[], list[str]],
        dispatch: Dispatch,
        block_ms: int = 1000,
        count: int = 512,
    ) -> None:
        self._url = redis_url
        self._streams = streams
        self._dispatch = dispatch
        self._block_ms = block_ms
        self._count = count
        self.positions: dict[str, str] = {}
        self._redis: aioredis.Redis | None = None
        self._conn: FastRedis | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self._url, socket_connect_timeout=5)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def ensure(self, stream: str) -> None:
        """Follow ``stream`` from its current end (no-op when already followed)."""
        if stream in self.positions:
            return
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        pipe.execute_command("XINFO", "STREAM", stream)
        (info,) = await pipe.execute(raise_on_error=False)
        if stream not in self.positions:
            self.positions[stream] = _log_info(info).last

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            self._conn.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _run(self) -> None:
        delay_s = 0.1
        while True:
            try:
                if self._conn is None:
                    self._conn = await FastRedis.from_url(self._url)
                await self._read_once(self._conn)
                delay_s = 0.1
            except (OSError, RedisError) as exc:
                logger.warning("change log read failed (%s); retrying", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    async def _read_once(self, conn: FastRedis) -> None:
        for stream in self._streams():
            await self.ensure(stream)
        if not self.positions:
            await asyncio.sleep(self._block_ms / 1000)
            return
        streams = list(self.positions)
        got: Any = await conn.execute_command(
            "XREAD", "COUNT", self._count, "BLOCK", self._block_ms, "STREAMS",
            *streams, *(self.positions[s] for s in streams),
        )  # fmt: skip
        for key, entries in got or ():
            stream = key.decode()
            for entry in entries:
                try:
                    cid, changes = _decode(entry)
                except (msgspec.DecodeError, msgspec.ValidationError, KeyError) as exc:
                    logger.error(
                        "unreadable change %s in %s: %s", entry[0], stream, exc
                    )
                    self.positions[stream] = entry[0].decode()
                    continue
                self.positions[stream] = cid
                try:
                    self._dispatch(stream, cid, changes)
                except Exception:  # one bad subscriber must not stop the log
                    logger.exception("dispatching change %s failed", cid)
