"""Sessions: a connection's login state kept in Redis so a reconnect restores it.

会话：连接的登录状态保存在 Redis 中，断线重连时恢复。

The handshake gives each client a session token; a reconnecting client presents
it again. When a call changes the caller, group or user data, the gateway stores
``[caller, group, ud, login]`` under the token (with a TTL). On reconnect it
re-takes the login key if that is free or still names the old connection (a
newer login elsewhere wins: the client continues logged out).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis

from hetu.fastredis import FastRedis, pack_command
from hetu.keys import Keys
from hetu.pipeline import MAX_CLOCK_SKEW_S
from hetu_gateway.connection import Connection

logger = logging.getLogger(__name__)

_RETAKE_LOGIN = (
    "local v = redis.call('GET', KEYS[1]) "
    "if (not v) or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end "
    "return 0"
)
_state_decoder = msgspec.msgpack.Decoder(tuple[int, str, dict[str, Any], str])


class Sessions:
    """Save and restore connection state by session token. 按会话令牌保存与恢复。"""

    def __init__(
        self,
        keys: Keys,
        gw_id: str,
        ttl_s: int,
        redis: FastRedis,
    ) -> None:
        self.keys = keys
        self.gw_id = gw_id
        self.ttl_s = ttl_s
        self._redis = redis

    def save(self, conn: Connection) -> None:
        state = msgspec.msgpack.encode([conn.caller, conn.group, conn.ud, conn.login])
        key = self.keys.session(conn.token)
        self._redis.send(pack_command(b"SET", key, state, b"EX", self.ttl_s))

    async def claim_hello(self, nonce: bytes, redis: aioredis.Redis) -> bool:
        """Record a hello nonce for all gateways; False if one was seen already."""
        key = self.keys.hello_nonce(nonce)
        ttl_ms = int(2 * MAX_CLOCK_SKEW_S * 1000)
        return bool(await redis.set(key, b"1", nx=True, px=ttl_ms))

    async def restore(self, conn: Connection, redis: aioredis.Redis) -> None:
        raw = await redis.get(self.keys.session(conn.token))
        if not isinstance(raw, bytes):
            return
        try:
            caller, group, ud, old_login = _state_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("session %s unreadable, starting fresh", conn.token)
            return
        login = ""
        if caller:
            login = f"{self.gw_id}:{conn.id}"
            took = await redis.eval(  # type: ignore[misc]
                _RETAKE_LOGIN, 1, self.keys.login(caller), old_login, login
            )
            if not took:
                logger.info(
                    "session %s: user %d logged in elsewhere", conn.token, caller
                )
                return
        conn.caller, conn.group, conn.ud, conn.login = caller, group, ud, login
        self.save(conn)
