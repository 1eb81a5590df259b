"""The logic worker's one typed configuration. 逻辑进程的唯一配置。

Built once by the CLI (defaults → ``HETU_*`` env vars → flags, via typer) or by tests
and embedders directly; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

LogLevel = Literal["debug", "info", "warning", "error"]


class LogicConfig(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True
):
    """Settings of one logic worker process.

    Attributes:
        app: path of the app's Python file.
        clusters: cluster ids to consume, or ``None`` for all.
        redis_url: the Redis holding the instance.
        instance: the data partition (clients name it in their URL).
        namespace: the app namespace to serve; ``None`` picks the only one.
        workers: processes to run (the CLI spawns them; a ``Worker`` is one).
        log_level: the CLI's logging level.
        batch_size: stream entries read per XREADGROUP.
        block_ms: how long one XREADGROUP waits for new entries.
        idle_ms: pending entries idle longer than this are claimed from their
            (presumably dead) consumer by XAUTOCLAIM.
        reply_ttl_s: how long a reply stays cached for retries with the same rid.
        changes_maxlen: approximate length cap of each change log stream.
        drain: process what is queued (including claimable entries), then return.
        consumer: consumer name in group ``logic``; empty: host-pid-random.
    """

    app: str
    clusters: tuple[int, ...] | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    instance: str = "default"
    namespace: str | None = None
    workers: int = 1
    log_level: LogLevel = "info"
    batch_size: int = 256
    block_ms: int = 1000
    idle_ms: int = 5000
    reply_ttl_s: int = 600
    changes_maxlen: int = 100_000
    drain: bool = False
    consumer: str = ""
