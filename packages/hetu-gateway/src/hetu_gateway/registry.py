"""The gateway's view of an instance's registry (published by logic workers).

网关对实例注册表（由逻辑进程发布）的视图。
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis

from hetu.fastredis import pack_command
from hetu.keys import Keys
from hetu.wire import Registry, SystemInfo, registry_decoder

logger = logging.getLogger(__name__)

ON_DISCONNECT = "on_disconnect"


@dataclass(frozen=True, slots=True)
class Route:
    """Where and under which rules a client may call one System or endpoint."""

    info: SystemInfo
    stream: bytes  # the cluster's ``calls`` stream key
    permission: str | None  # "EVERYBODY" / "USER" / "ADMIN"; None: not callable
    #: ``XADD <stream> MAXLEN ~ n * m`` packed, waiting for the payload bulk string.
    xadd_prefix: bytes


#: Cap of a ``calls`` stream. Workers delete the calls they apply, so the stream
#: holds only a backlog; the cap bounds it (and Redis's memory) when no worker
#: serves the cluster for long: past it the oldest calls, whose clients got
#: ``timeout`` long ago, are dropped.
CALLS_STREAM_MAXLEN = 1_000_000


def _xadd_prefix(stream: bytes) -> bytes:
    packed = pack_command(
        b"XADD", stream, b"MAXLEN", b"~", CALLS_STREAM_MAXLEN, b"*", b"m"
    )
    # One more argument (the payload) follows: rewrite the array length.
    return b"*8" + packed[packed.index(b"\r\n") :]


class RegistryView:
    """Calls routes derived once from a :class:`hetu.wire.Registry`."""

    def __init__(self, keys: Keys, registry: Registry) -> None:
        self.registry = registry
        self.version = registry.version
        tags = {c.id: c.tag for c in registry.clusters}
        self.routes: dict[str, Route] = {}
        for name, info in registry.systems.items():
            tag = tags.get(info.cluster)
            if tag is None:
                logger.warning("registry: system %s names unknown cluster", name)
                continue
            stream = keys.cluster(tag).calls().encode()
            prefix = _xadd_prefix(stream)
            self.routes[name] = Route(info, stream, info.permission, prefix)


async def load_registry(redis: aioredis.Redis, keys: Keys) -> RegistryView | None:
    """Read the registry, or ``None`` when no worker has published one yet."""
    raw = await redis.get(keys.registry())
    if not isinstance(raw, bytes):
        return None
    try:
        return RegistryView(keys, registry_decoder.decode(raw))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        logger.error("registry of %s is unreadable: %s", keys.instance, exc)
        return None
