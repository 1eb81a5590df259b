"""Closing the connections of gateways that died (architecture guarantee 7).

关闭已死亡网关的连接（架构保证 7）。

Each gateway records its open connections in ``hetu:<inst>:gw:<gw>:conns`` (conn id ->
``ConnRecord``) and its id in ``hetu:<inst>:gateways``. Every live gateway looks, once
per heartbeat, for members whose ``alive`` key expired; the first to take the sweep
lock runs ``on_disconnect`` for each recorded connection and releases its login, just
as the dead gateway would have on a clean close.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from hetu.keys import Keys
from hetu.wire import CallMsg, call_encoder
from hetu_gateway.registry import ON_DISCONNECT, RegistryView

logger = logging.getLogger(__name__)

RELEASE_LOGIN = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0"
)
SWEEP_LOCK_MS = 30_000


class ConnRecord(msgspec.Struct, array_like=True):
    """What a sweeper needs to close a connection on a dead gateway's behalf."""

    token: str
    caller: int = 0
    group: str = ""
    ud: dict[str, Any] = {}
    addr: str = ""


record_decoder = msgspec.msgpack.Decoder(ConnRecord)


def disconnect_commands(
    keys: Keys, registry: RegistryView | None, gw: str, conn: int, rec: ConnRecord
) -> list[tuple[Any, ...]]:
    """Redis commands that close connection ``conn`` of gateway ``gw``: the
    ``on_disconnect`` call (when the app defines it) and the login release."""
    commands: list[tuple[Any, ...]] = []
    route = registry.routes.get(ON_DISCONNECT) if registry is not None else None
    if route is not None:
        msg = CallMsg(
            gw=gw,
            conn=conn,
            # A connection the gateway died before recording has no token.
            rid=f"{rec.token or gw}:disconnect:{conn}",
            sys=ON_DISCONNECT,
            args=[],
            caller=rec.caller,
            group=rec.group,
            ud=rec.ud,
            addr=rec.addr,
            ts=time.time(),
        )
        commands.append((b"XADD", route.stream, b"*", b"m", call_encoder.encode(msg)))
    if rec.caller:
        login = keys.login(rec.caller)
        commands.append((b"EVAL", RELEASE_LOGIN, 1, login, f"{gw}:{conn}"))
    return commands


async def _records(redis: aioredis.Redis, keys: Keys, gw: str) -> dict[int, ConnRecord]:
    """The connections gateway ``gw`` recorded, completed from the login keys.

    A worker sets ``login:<user>`` before the gateway records the new caller, so a
    gateway that died in between left a login its records do not show; the login
    keys naming ``gw`` are the authority on who was logged in where.
    """
    raw: Any = await redis.hgetall(keys.gateway_conns(gw))
    records: dict[int, ConnRecord] = {}
    for conn_id, value in raw.items():
        try:
            records[int(conn_id)] = record_decoder.decode(value)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("unreadable record of conn %s on %s", conn_id, gw)
    login_keys = [k async for k in redis.scan_iter(keys.login_pattern(), count=1000)]
    prefix = f"{gw}:".encode()
    for start in range(0, len(login_keys), 1000):
        chunk = login_keys[start : start + 1000]
        for key, holder in zip(chunk, await redis.mget(chunk), strict=True):
            if not isinstance(holder, bytes) or not holder.startswith(prefix):
                continue
            conn, user = int(holder[len(prefix) :]), int(key.rsplit(b":", 1)[1])
            rec = records.get(conn) or ConnRecord(token="")
            records[conn] = msgspec.structs.replace(rec, caller=user)
    return records


async def sweep_dead_gateways(
    redis: aioredis.Redis, keys: Keys, me: str, registry: RegistryView | None
) -> int:
    """Close the recorded connections of every dead gateway; return how many."""
    closed = 0
    members: Any = await redis.smembers(keys.gateways())
    for raw_gw in members:
        gw = raw_gw.decode()
        if gw == me or await redis.exists(keys.gateway_alive(gw)):
            continue
        if not await redis.set(keys.gateway_sweep(gw), me, nx=True, px=SWEEP_LOCK_MS):
            continue  # another gateway sweeps it
        records = await _records(redis, keys, gw)
        pipe = redis.pipeline(transaction=False)
        for conn_id, rec in records.items():
            for command in disconnect_commands(keys, registry, gw, conn_id, rec):
                pipe.execute_command(*command)
            closed += 1
        pipe.delete(keys.gateway_conns(gw))
        pipe.srem(keys.gateways(), gw)
        await pipe.execute()
        logger.warning("gateway %s is dead: closed its %d connections", gw, closed)
    return closed
