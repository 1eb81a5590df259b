"""Sessions: a connection's login state kept in Redis so a reconnect restores it.

会话：连接的登录状态保存在 Redis 中，断线重连时恢复。

A session is a public id (the welcome's ``token``, also the prefix of the request
ids the workers deduplicate) and a secret the client proves on resume (see
docs/protocol.md §8). The gateway stores ``[caller, group, ud, login, secret,
holder]`` under the id (with a TTL) when the session starts and whenever a call
changes the caller, group or user data; ``holder`` is ``"<gw>:<conn>"`` of the
connection using it. A resume with a valid proof closes the previous holder and
re-takes the login key if that is free or still names the old connection (a newer
login elsewhere wins: the client continues logged out).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
import redis.asyncio as aioredis

from hetu.fastredis import FastRedis, pack_command
from hetu.keys import Keys
from hetu.pipeline import MAX_CLOCK_SKEW_S, Hello, resume_proof
from hetu.wire import KickMsg
from hetu_gateway.connection import RESUMED_ELSEWHERE, Connection

logger = logging.getLogger(__name__)

_RETAKE_LOGIN = (
    "local v = redis.call('GET', KEYS[1]) "
    "if (not v) or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end "
    "return 0"
)
_State = tuple[int, str, dict[str, Any], str, bytes, str]
_state_decoder = msgspec.msgpack.Decoder(_State)


class Sessions:
    """Start, save and resume sessions. 开始、保存与恢复会话。"""

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
        holder = f"{self.gw_id}:{conn.id}"
        state = msgspec.msgpack.encode(
            [conn.caller, conn.group, conn.ud, conn.login, conn.secret, holder]
        )
        key = self.keys.session(conn.token)
        self._redis.send(pack_command(b"SET", key, state, b"EX", self.ttl_s))

    async def claim_hello(self, nonce: bytes, redis: aioredis.Redis) -> bool:
        """Record a hello nonce for all gateways; False if one was seen already."""
        key = self.keys.hello_nonce(nonce)
        ttl_ms = int(2 * MAX_CLOCK_SKEW_S * 1000)
        return bool(await redis.set(key, b"1", nx=True, px=ttl_ms))

    async def open(
        self, conn: Connection, hello: Hello, secret: bytes, redis: aioredis.Redis
    ) -> bool:
        """Resume the hello's session if its proof holds (True), else start a new
        one with ``secret`` under ``conn.token`` (False: logged out)."""
        state = await self._load(hello.token, redis) if hello.proof else None
        if state is None or not hmac.compare_digest(
            resume_proof(state[4], hello), hello.proof
        ):
            if hello.proof:
                logger.info("conn %d: no session to resume, starting anew", conn.id)
            conn.secret = secret
            self.save(conn)
            return False
        conn.token, conn.secret = hello.token, state[4]
        await self._resume(conn, state, redis)
        return True

    async def _load(self, token: str, redis: aioredis.Redis) -> _State | None:
        raw = await redis.get(self.keys.session(token))
        if not isinstance(raw, bytes):
            return None
        try:
            return _state_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("session %s unreadable, starting anew", token)
            return None

    async def _resume(
        self, conn: Connection, state: _State, redis: aioredis.Redis
    ) -> None:
        caller, group, ud, old_login, _, holder = state
        new_holder = f"{self.gw_id}:{conn.id}"
        if holder and holder != new_holder:
            # One connection per session: close the previous one (a no-op when
            # it is gone already).
            gw, _, old_conn = holder.rpartition(":")
            kick = msgspec.msgpack.encode(KickMsg(int(old_conn), RESUMED_ELSEWHERE))
            self._redis.send(pack_command(b"PUBLISH", self.keys.gateway(gw), kick))
        login = ""
        if caller:
            login = new_holder
            took = await redis.eval(  # type: ignore[misc]
                _RETAKE_LOGIN, 1, self.keys.login(caller), old_login, login
            )
            if not took:
                logger.info(
                    "session %s: user %d logged in elsewhere", conn.token, caller
                )
                caller, group, ud, login = 0, "", {}, ""
        conn.caller, conn.group, conn.ud, conn.login = caller, group, ud, login
        self.save(conn)
