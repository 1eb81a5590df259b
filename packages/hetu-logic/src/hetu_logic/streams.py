"""Reading the clusters' ``calls`` streams as consumer group ``logic``.

以消费者组 ``logic`` 读取各系统簇的 ``calls`` 流。
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from hetu.cluster import SystemCluster
from hetu.fastredis import FastRedis
from hetu.keys import Keys
from hetu.wire import CallMsg, call_decoder

logger = logging.getLogger(__name__)

GROUP = "logic"


@dataclass(slots=True)
class Entry:
    """One stream entry; ``msg`` is None when it could not be decoded."""

    cluster: SystemCluster
    stream: str
    entry_id: bytes
    msg: CallMsg | None


class CallStreams:
    """The ``calls`` streams of the clusters one worker serves, read on a
    connection of their own (XREADGROUP blocks it)."""

    def __init__(
        self,
        reader: FastRedis,
        keys: Keys,
        clusters: list[SystemCluster],
        consumer: str,
        *,
        block_ms: int,
        idle_ms: int,
    ) -> None:
        self.reader = reader
        self.consumer = consumer
        self.block_ms = block_ms
        self.idle_ms = idle_ms
        self.by_stream = {keys.cluster(c.tag).calls(): c for c in clusters}
        names = list(self.by_stream)
        self._streams_args = ("STREAMS", *names, *([">"] * len(names)))

    async def ensure_groups(self) -> None:
        """Create group ``logic`` on every stream (and the stream), from the start
        of the stream, so calls queued before the first worker are served."""
        for stream in self.by_stream:
            try:
                await self.reader.execute_command(
                    "XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"
                )
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _entries(self, stream: str, raw: list[Any]) -> list[Entry]:
        cluster = self.by_stream[stream]
        out: list[Entry] = []
        for entry_id, fields in raw:
            if fields is None:  # deleted while pending
                continue
            try:
                msg = call_decoder.decode(fields[fields.index(b"m") + 1])
            except (msgspec.DecodeError, ValueError, IndexError):
                logger.warning("undecodable call %s on %s", entry_id, stream)
                msg = None
            out.append(Entry(cluster, stream, entry_id, msg))
        return out

    async def read(self, count: int, block: bool = True) -> list[Entry]:
        """Up to ``count`` new entries across all streams; waits up to
        ``block_ms`` for the first one when ``block``."""
        wait = ("BLOCK", self.block_ms) if block else ()
        got = await self.reader.execute_command(
            "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count,
            *wait, *self._streams_args,
        )  # fmt: skip
        out: list[Entry] = []
        for stream, raw in got or ():
            out.extend(self._entries(stream.decode(), raw))
        return out

    async def claim(self, count: int) -> list[Entry]:
        """Take over entries other consumers left pending longer than ``idle_ms``."""
        out: list[Entry] = []
        for stream in self.by_stream:
            start: Any = "0-0"
            while len(out) < count:
                got = await self.reader.execute_command(
                    "XAUTOCLAIM", stream, GROUP, self.consumer, self.idle_ms, start,
                    "COUNT", count - len(out),
                )  # fmt: skip
                start = got[0]
                out.extend(self._entries(stream, got[1]))
                if start == b"0-0":
                    break
        if out:
            logger.info("claimed %d pending calls from idle consumers", len(out))
        return out
