"""The hetu-gateway command: help, version, bad config, a real process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

import hetu.client
from hetu.redis_server import free_port

from .conftest import url_of

EXE = os.path.join(os.path.dirname(sys.executable), "hetu-gateway")


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_names_every_option_and_env_var() -> None:
    out = run("--help").stdout
    for opt, env in [("--port", "HETU_PORT"), ("--host", "HETU_HOST"),
                     ("--redis", "HETU_REDIS"), ("--auth-key", "HETU_AUTH_KEY"),
                     ("--max-frame", "HETU_MAX_FRAME"),
                     ("--log-level", "HETU_LOG_LEVEL")]:  # fmt: skip
        assert opt in out and env in out


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("hetu-gateway ")


def test_unreachable_redis_exits_2_with_one_paragraph() -> None:
    result = run("--port", "0", "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2
    assert "cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_log_level_exits_2() -> None:
    result = run("--log-level", "loud")
    assert result.returncode == 2 and "--log-level" in result.stderr


@pytest.mark.usefixtures("fake_logic")
async def test_real_process_serves_calls(redis_url: str) -> None:
    port = free_port()
    env = {**os.environ, "HETU_PORT": str(port), "HETU_REDIS": redis_url}
    proc = subprocess.Popen([EXE], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10

        while True:
            try:
                async with hetu.client.connect(url_of(port)) as c:
                    assert await c.call("hello") == "hello"
                break
            except OSError:
                assert time.monotonic() < deadline, "gateway did not start"
                await asyncio.sleep(0.05)
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
