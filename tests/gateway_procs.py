"""Real hetu-logic and hetu-gateway processes for the end-to-end gateway tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hetu.keys import Keys
from hetu.redis_server import free_port

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


@pytest.fixture
def chat_logic(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One ``hetu-logic --cluster all examples/chat.py`` worker, registry ready.

    Its log (System failures of fuzzed calls are expected) goes to tmp_path.
    """
    with (tmp_path / "logic.log").open("wb") as stderr:
        proc = subprocess.Popen(
            [BIN / "hetu-logic", "--cluster", "all", str(CHAT_APP), "--redis",
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
def start_gateway_proc(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., int]]:
    """``port = start_gateway_proc(*extra_args)`` runs a real hetu-gateway."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*args: str) -> int:
        port = free_port()
        env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
        log = tmp_path / f"gateway-{port}.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [BIN / "hetu-gateway", "--port", str(port), "--redis", redis_url,
                 *args],
                env=env,
                stderr=stderr,
            )  # fmt: skip
        procs.append((proc, log))

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        _wait(listening, "hetu-gateway", proc)
        return port

    yield start
    for proc, log in procs:
        _stop(proc)
        text = log.read_text(errors="replace")
        assert proc.returncode == 0, f"gateway did not exit cleanly:\n{text[-3000:]}"
        assert "Traceback" not in text, text[-3000:]


def url(port: int, instance: str = "default") -> str:
    return f"ws://127.0.0.1:{port}/hetu/{instance}"
