"""Locust load test of the example app (examples/chat.py) through a HeTu gateway.

对示例应用（examples/chat.py）经由网关进行 locust 负载测试。

    locust -f loadtests/ --headless -u 50 -r 10 -t 30s \
        --host ws://127.0.0.1:2466/hetu/default

Each simulated player opens one connection (zstd + encryption), logs in as a
random user id, then runs a weighted mix of calls with a think time between
them. Every call is reported to locust with its latency; error replies are
failures named by their code (``CallError: rate_limited: ...``). See
loadtests/README.md.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from _hetu_sync import SyncClient
from locust import User, events, task
from locust.exception import StopUser

from hetu.errors import HeTuError


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("HeTu")
    group.add_argument(
        "--hetu-auth-key", default="", env_var="HETU_AUTH_KEY",
        help="The gateways' --auth-key (empty: none).",
    )  # fmt: skip
    group.add_argument(
        "--hetu-compression", default="zstd", choices=["zstd", "zlib", "none"],
        help="Compression to negotiate.",
    )  # fmt: skip
    group.add_argument(
        "--hetu-think-ms", type=float, default=100.0,
        help="Mean pause between a player's calls (uniform 0.5x..1.5x); 0: none.",
    )  # fmt: skip
    group.add_argument(
        "--hetu-keys", type=int, default=1000,
        help="Counter keys add/get pick from (fewer: more write conflicts).",
    )  # fmt: skip


class HeTuPlayer(User):
    """One logged-in player of the chat example. 聊天示例的一个已登录玩家。"""

    host = "ws://127.0.0.1:2466/hetu/default"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.client: SyncClient | None = None
        self.user_id = random.getrandbits(48) + 1

    def wait_time(self) -> float:
        think_s = self.environment.parsed_options.hetu_think_ms / 1000.0
        return random.uniform(0.5 * think_s, 1.5 * think_s)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        assert self.host is not None
        client = SyncClient(self.host, opts.hetu_compression, True, opts.hetu_auth_key)
        if not self._timed("ws", "connect", client.open):
            raise StopUser()
        self.client = client
        if not self._timed("call", "login", client.call, "login", self.user_id):
            raise StopUser()

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _timed(self, kind: str, name: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` and report it to locust; False if it failed (reported
        as a failure, not raised)."""
        start = time.perf_counter()
        error: Exception | None = None
        try:
            fn(*args)
        except (HeTuError, OSError) as exc:
            error = exc
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=self.client.last_reply_bytes if self.client else 0,
            exception=error,
            context={"user_id": self.user_id},
        )
        return error is None

    def _call(self, name: str, *args: Any) -> bool:
        assert self.client is not None
        return self._timed("call", name, self.client.call, name, *args)

    def _key(self) -> int:
        return random.randint(1, self.environment.parsed_options.hetu_keys)

    @task(4)
    def hello(self) -> None:
        """An endpoint: no storage, the pure gateway + worker round trip."""
        self._call("hello", "locust")

    @task(2)
    def chat(self) -> None:
        """An insert (rate limit 20/s per connection in the app)."""
        self._call("user_chat", "hi from locust")

    @task(3)
    def add(self) -> None:
        """A read-modify-write transaction on a shared counter."""
        self._call("add", self._key(), 1)

    @task(3)
    def get(self) -> None:
        """A read by a unique index."""
        self._call("get", self._key())
