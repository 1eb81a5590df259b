"""Start private ``redis-server`` processes, for tests and local development.

为测试和本地开发启动私有的 ``redis-server`` 进程。
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hetu.errors import ConfigError


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(
    port: int,
    proc: subprocess.Popen[Any] | None = None,
    timeout_s: float = 20.0,
    host: str = "127.0.0.1",
) -> None:
    """Return once something accepts TCP connections on ``host:port``.

    Raises:
        ConfigError: ``proc`` exited first, or nothing listened in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ConfigError(
                f"process {proc.pid} exited with code {proc.returncode} before "
                f"listening on {host}:{port}"
            )
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ConfigError(f"nothing listened on {host}:{port} within {timeout_s}s")


class RedisServer:
    """One ``redis-server`` child process on a free port, without disk persistence.

    一个监听随机空闲端口、不落盘的 ``redis-server`` 子进程。

    Raises:
        ConfigError: ``redis-server`` is not on PATH or did not start.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="hetu-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ConfigError(
                "redis-server is not on PATH; install it (apt-get install "
                "redis-server) or pass --redis URL of a running server"
            )
        log = Path(self._dir) / "redis.log"
        self._proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir,
             "--logfile", str(log), "--protected-mode", "no"],
            stdin=subprocess.DEVNULL,
            # Ctrl-C in a terminal must not stop Redis before the processes
            # using it have shut down; the owner stops it last.
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.stop()
        raise ConfigError(f"redis-server did not start on port {self.port}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the server (data is lost: it never persists)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        """Kill and start again on the same port (empty)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
