"""`locust -f loadtests/` runs against a real engine: every request succeeds and
the watcher receives the players' chat messages."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .gateway_procs import chat_logic, start_gateway_proc, url

__all__ = ["chat_logic", "start_gateway_proc"]

ROOT = Path(__file__).resolve().parents[1]
LOCUST = Path(sys.executable).parent / "locust"


@pytest.mark.usefixtures("chat_logic")
def test_locust_two_users_no_failures(
    start_gateway_proc: Callable[..., int], tmp_path: Path
) -> None:
    port = start_gateway_proc("--auth-key", "load-secret")
    result = subprocess.run(
        [LOCUST, "-f", "loadtests/", "--headless", "-u", "2", "-r", "2", "-t", "5s",
         "--host", url(port), "--hetu-auth-key", "load-secret",
         "--csv", str(tmp_path / "lt"), "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    with (tmp_path / "lt_stats.csv").open() as f:
        stats = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    total = stats[("", "Aggregated")]
    assert int(total["Failure Count"]) == 0, report
    # One ChatWatcher (--hetu-watchers 1) and one player.
    assert int(stats[("ws", "connect")]["Request Count"]) == 2, report
    assert int(stats[("call", "login")]["Request Count"]) == 1, report
    assert int(stats[("watch", "ChatMessage")]["Request Count"]) == 1, report
    for name in ("hello", "user_chat", "add", "get"):
        assert int(stats[("call", name)]["Request Count"]) > 0, (name, report)
    assert int(stats[("push", "ChatMessage")]["Request Count"]) > 0, report
