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
def chat_logic(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """One ``hetu-logic --cluster all examples/chat.py`` worker, registry ready."""
    proc = subprocess.Popen(
        [BIN / "hetu-logic", "--cluster", "all", str(CHAT_APP), "--redis", redis_url,
         "--log-level", "warning"],
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
def start_gateway_proc(redis_url: str) -> Iterator[Callable[..., int]]:
    """``port = start_gateway_proc(*extra_args)`` runs a real hetu-gateway."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        env = {**os.environ, "HETU_LOG_LEVEL": "warning"}
        proc = subprocess.Popen(
            [BIN / "hetu-gateway", "--port", str(port), "--redis", redis_url, *args],
            env=env,
        )
        procs.append(proc)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        _wait(listening, "hetu-gateway", proc)
        return port

    yield start
    for proc in procs:
        _stop(proc)
        assert proc.returncode == 0, "gateway did not exit cleanly"


def url(port: int, instance: str = "default") -> str:
    return f"ws://127.0.0.1:{port}/hetu/{instance}"
