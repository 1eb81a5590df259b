"""The gateway's one typed configuration. 网关的唯一类型化配置。"""

from __future__ import annotations

from typing import Literal

import msgspec

LogLevel = Literal["debug", "info", "warning", "error"]


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything a gateway process needs; built by the CLI or by tests.

    网关进程所需的全部配置；由命令行或测试构造。
    """

    host: str = "127.0.0.1"
    port: int = 2466
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Shared secret clients prove by HMAC at the handshake; empty = no auth.
    auth_key: str = ""
    #: Largest WebSocket message accepted, in bytes (also caps decompression x4).
    max_frame_bytes: int = 1 << 20
    log_level: LogLevel = "info"
    #: Time a client has to send its hello after the WebSocket opens.
    handshake_timeout_s: float = 5.0
    #: A call with no reply after this long gets error ``timeout``.
    call_timeout_s: float = 10.0
    #: Messages per second a connection may send (token bucket, burst = one
    #: second's worth); past that, calls get ``rate_limited``, and a connection
    #: sending over twice the rate is closed.
    max_msgs_per_s: float = 5000.0
    #: Calls a connection may queue behind the one in flight.
    max_queued_calls: int = 64
    #: Heartbeat key TTL; other processes treat the gateway as dead after it.
    heartbeat_ttl_s: float = 5.0
    #: A client whose unsent data exceeds this is closed (too slow to read).
    max_send_buffer_bytes: int = 8 << 20
    #: How long a session (login state for reconnect) is kept after a change.
    session_ttl_s: int = 600
    #: Subscriptions one connection may hold (more get ``quota_exceeded``).
    max_subscriptions: int = 100
    #: Largest ``limit`` of a watched range (larger gets ``quota_exceeded``).
    max_watch_limit: int = 1000
