"""Real hetu-logic and hetu-gateway processes for the end-to-end gateway tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hetu.keys import Keys
from hetu.redis_server import free_port, wait_listening

BIN = Path(sys.executable).parent
CHAT_APP = Path(__file__).parent.parent / "examples" / "chat.py"


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def logic_proc(
    app: Path, redis_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """One ``hetu-logic --cluster all <app>`` worker, running once its registry is
    published; its log goes to ``log``."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [BIN / "hetu-logic", "--cluster", "all", str(app), "--redis",
             redis_url, "--log-level", "warning"],
            stderr=stderr,
        )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        _wait(
            lambda: bool(client.exists(Keys("default").registry())), "hetu-logic", proc
        )
        yield proc
    finally:
        client.close()
        _stop(proc)


@pytest.fixture
def chat_logic(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The chat example's worker (System failures of fuzzed calls are expected)."""
    with logic_proc(CHAT_APP, redis_url, tmp_path / "logic.log") as proc:
        yield proc


class GatewayProcs:
    """``port = start(*extra_args)`` runs a real hetu-gateway; ``kill(port)``
    SIGKILLs one."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.procs: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
        self.killed: set[int] = set()

    def __call__(self, *args: str) -> int:
        port = free_port()
        env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
        log = self.tmp_path / f"gateway-{port}.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [BIN / "hetu-gateway", "--port", str(port), "--redis",
                 self.redis_url, *args],
                env=env,
                stderr=stderr,
            )  # fmt: skip
        self.procs[port] = (proc, log)
        wait_listening(port, proc)
        return port

    def kill(self, port: int) -> None:
        proc, _ = self.procs[port]
        proc.kill()
        proc.wait()
        self.killed.add(port)

    def stop_all(self) -> None:
        for port, (proc, log) in self.procs.items():
            _stop(proc)
            if port in self.killed:
                continue
            text = log.read_text(errors="replace")
            assert proc.returncode == 0, f"gateway exited badly:\n{text[-3000:]}"
            assert "Traceback" not in text, text[-3000:]


@pytest.fixture
def start_gateway_proc(redis_url: str, tmp_path: Path) -> Iterator[GatewayProcs]:
    """Real hetu-gateway processes (see GatewayProcs); all stopped after the test."""
    procs = GatewayProcs(redis_url, tmp_path)
    yield procs
    procs.stop_all()


def url(port: int, instance: str = "default") -> str:
    return f"ws://127.0.0.1:{port}/hetu/{instance}"
