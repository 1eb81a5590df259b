"""Reading the clusters' ``calls`` streams as consumer group ``logic``.

以消费者组 ``logic`` 读取各系统簇的 ``calls`` 流。
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from hetu.cluster import SystemCluster
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
    """The ``calls`` streams of the clusters one worker serves."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        clusters: list[SystemCluster],
        consumer: str,
        *,
        batch_size: int,
        block_ms: int,
        idle_ms: int,
    ) -> None:
        self.redis = redis
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.idle_ms = idle_ms
        self.by_stream = {keys.cluster(c.tag).calls(): c for c in clusters}
        self._read_ids = dict.fromkeys(self.by_stream, ">")

    async def ensure_groups(self) -> None:
        """Create group ``logic`` on every stream (and the stream), from the start
        of the stream, so calls queued before the first worker are served."""
        for stream in self.by_stream:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def _entries(
        self, stream: str, raw: list[Any], claimed: bool = False
    ) -> list[Entry]:
        cluster = self.by_stream[stream]
        out: list[Entry] = []
        for entry_id, fields in raw:
            if fields is None:  # deleted while pending
                continue
            try:
                msg = call_decoder.decode(fields[b"m"])
            except (msgspec.DecodeError, KeyError, TypeError):
                logger.warning("undecodable call %s on %s", entry_id, stream)
                msg = None
            out.append(Entry(cluster, stream, entry_id, msg))
        return out

    async def read(self, count: int, block: bool = True) -> list[Entry]:
        """Up to ``count`` new entries across all streams; waits up to
        ``block_ms`` for the first one when ``block``."""
        got: Any = await self.redis.xreadgroup(
            GROUP,
            self.consumer,
            self._read_ids,  # pyright: ignore[reportArgumentType]
            count=count,
            block=self.block_ms if block else None,
        )
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
                got = await self.redis.xautoclaim(
                    stream,
                    GROUP,
                    self.consumer,
                    self.idle_ms,
                    start_id=start,
                    count=count - len(out),
                )
                start, raw = got[0], got[1]
                out.extend(self._entries(stream, raw))
                if start in (b"0-0", "0-0"):
                    break
        if out:
            logger.info("claimed %d pending calls from idle consumers", len(out))
        return out

    async def delete_consumer(self) -> None:
        """Remove this consumer from every group (only once it has no pending)."""
        for stream in self.by_stream:
            await self.redis.xgroup_delconsumer(stream, GROUP, self.consumer)
