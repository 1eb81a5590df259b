"""Locust load test of the example app (examples/chat.py) through a HeTu gateway.

对示例应用（examples/chat.py）经由网关进行 locust 负载测试。

    locust -f loadtests/ --headless -u 50 -r 10 -t 30s \
        --host ws://127.0.0.1:2466/hetu/default

Each simulated player (``HeTuPlayer``) opens one connection (zstd + encryption),
logs in as a random user id, then runs a weighted mix of calls with a think time
between them. Every call is reported to locust with its latency; error replies are
failures named by their code (``CallError: rate_limited: ...``). ``ChatWatcher``
users (``--hetu-watchers``, default 1) subscribe to the newest chat messages and
report each push with its commit-to-arrival latency. See loadtests/README.md.
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
    group.add_argument(
        "--hetu-watchers", type=int, default=1,
        help="ChatWatcher users (part of -u) subscribed to the newest messages.",
    )  # fmt: skip


@events.init.add_listener
def _watchers(environment: Any, **_kw: Any) -> None:
    n = environment.parsed_options.hetu_watchers if environment.parsed_options else 1
    if n > 0:
        ChatWatcher.fixed_count = n
    else:
        environment.user_classes[:] = [
            c for c in environment.user_classes if c is not ChatWatcher
        ]


class _HeTuUser(User):
    """A user with one connection and locust reporting. 带上报的单连接用户。"""

    abstract = True
    host = "ws://127.0.0.1:2466/hetu/default"

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.client: SyncClient | None = None
        self.user_id = random.getrandbits(48) + 1  # random: no two players kick

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        assert self.host is not None
        client = SyncClient(self.host, opts.hetu_compression, True, opts.hetu_auth_key)
        if not self._timed("ws", "connect", client.open):
            raise StopUser()
        self.client = client

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
        self._report(kind, name, (time.perf_counter() - start) * 1000.0, error)
        return error is None

    def _report(
        self, kind: str, name: str, ms: float, error: Exception | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=ms,
            response_length=self.client.last_reply_bytes if self.client else 0,
            exception=error,
            context={"user_id": self.user_id},
        )

    def _call(self, name: str, *args: Any) -> bool:
        assert self.client is not None
        return self._timed("call", name, self.client.call, name, *args)


class HeTuPlayer(_HeTuUser):
    """One logged-in player of the chat example. 聊天示例的一个已登录玩家。"""

    def wait_time(self) -> float:
        think_s = self.environment.parsed_options.hetu_think_ms / 1000.0
        return random.uniform(0.5 * think_s, 1.5 * think_s)

    def on_start(self) -> None:
        super().on_start()
        assert self.client is not None
        if not self._timed("call", "login", self.client.call, "login", self.user_id):
            raise StopUser()

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


class ChatWatcher(_HeTuUser):
    """Watches the newest chat messages and reports each push: its latency is
    the time from the commit (the change id is the commit's Redis time in ms) to
    its arrival, so run locust on the Redis host or with synced clocks.

    订阅最新聊天消息；每次推送的延迟 = 到达时间 − 提交时间（变更 id 即提交时的毫秒）。
    """

    fixed_count = 1  # set by --hetu-watchers

    def wait_time(self) -> float:
        return 0.0

    def on_start(self) -> None:
        super().on_start()
        assert self.client is not None
        watch = self.client.watch_range
        args = ("ChatMessage", "id", 0, 2**63 - 1, 10, True)
        if not self._timed("watch", "ChatMessage", watch, *args):
            raise StopUser()

    @task
    def receive(self) -> None:
        assert self.client is not None
        try:
            push = self.client.next_push(1.0)
        except HeTuError as exc:
            self._report("push", "ChatMessage", 0.0, exc)
            raise StopUser() from None
        if push is not None:
            commit_ms = int(push.cid.partition("-")[0])
            self._report("push", "ChatMessage", time.time() * 1000.0 - commit_ms)
