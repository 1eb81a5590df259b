"""Per-connection state of the gateway. 网关的单个连接状态。"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from hetu.pipeline import Pipeline
from hetu.pipeline.frames import server_frame
from hetu.protocol import Call, Err, ErrorCode, ServerMsg, encoder

logger = logging.getLogger(__name__)

# Close codes (docs/protocol.md).
CLOSE_BAD_HANDSHAKE = 4000
CLOSE_AUTH_FAILED = 4001
CLOSE_BAD_FRAME = 4002
CLOSE_KICKED = 4003
#: Reason of a 4003 close when the connection's session was resumed elsewhere.
RESUMED_ELSEWHERE = "resumed elsewhere"
CLOSE_HANDSHAKE_TIMEOUT = 4008
CLOSE_TOO_SLOW = 4009
CLOSE_FLOOD = 4029
CLOSE_INTERNAL = 1011

#: Close tasks in progress (the loop keeps only weak references to tasks).
_closing: set[asyncio.Task[None]] = set()


class Connection:
    """One client socket after the handshake: who it is, what it waits for.

    The subscription service keeps its per-connection objects in :attr:`subs`
    and sends with :meth:`send`; :meth:`send` never blocks (a client that stops
    reading is closed once its send buffer passes the limit).

    单个完成握手的客户端连接：身份信息、排队的调用与订阅。
    """

    __slots__ = (
        "addr",
        "caller",
        "closed",
        "deadline",
        "group",
        "id",
        "inflight",
        "inflight_id",
        "kicked",
        "login",
        "max_send_buffer",
        "pipeline",
        "queue",
        "rate_hits",
        "secret",
        "subs",
        "timer",
        "token",
        "tokens",
        "tokens_at",
        "ud",
        "ws",
    )

    def __init__(
        self,
        ws: ServerConnection,
        conn_id: int,
        token: str,
        pipeline: Pipeline,
        max_send_buffer: int,
    ) -> None:
        self.ws = ws
        self.id = conn_id
        self.token = token
        #: The session's secret (proves a resume; see docs/protocol.md §8).
        self.secret = b""
        self.pipeline = pipeline
        self.max_send_buffer = max_send_buffer
        addr = ws.remote_address
        self.addr = f"{addr[0]}:{addr[1]}" if addr else ""
        self.caller = 0
        self.group = ""
        self.ud: dict[str, Any] = {}
        #: The login key value this connection holds once logged in.
        self.login = ""
        #: The call forwarded and not yet answered (its rid), or "".
        self.inflight = ""
        #: The client's request id of that call.
        self.inflight_id = 0
        #: Loop time when the call in flight times out; checked by ``timer``.
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.queue: deque[Call] = deque()
        #: Per-System call timestamps for the apps' rate limits.
        self.rate_hits: dict[str, deque[float]] = {}
        self.tokens = 0.0
        self.tokens_at = 0.0
        #: Subscriptions by id, owned by the subscription service.
        self.subs: dict[int, Any] = {}
        self.closed = False
        self.kicked = False

    def send(self, msg: ServerMsg) -> None:
        """Encode ``msg`` through the pipeline and write it without waiting."""
        self.send_frame(self.pipeline.encode(encoder.encode(msg)))

    def send_frame(self, frame: bytes) -> None:
        """Write one already-encoded frame without waiting.

        The WebSocket header is built here and written with the payload in one
        transport write: an unmasked, unfragmented binary message is all a server
        sends, and this skips websockets' per-frame objects on the hot path.
        """
        ws = self.ws
        if self.closed or ws.protocol.state is not State.OPEN:
            return
        transport = ws.transport
        transport.write(server_frame(frame))
        if transport.get_write_buffer_size() > self.max_send_buffer:
            self.close(CLOSE_TOO_SLOW, "too slow to read")

    def error(self, req_id: int, code: ErrorCode, message: str) -> None:
        self.send(Err(req_id, code, message))

    def close(self, code: int, reason: str) -> None:
        """Stop sending at once and close the socket with ``code``/``reason``."""
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task = asyncio.get_running_loop().create_task(self.ws.close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
