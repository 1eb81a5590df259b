"""``hetu dev app.py``: run a whole engine on one machine for development.

``hetu dev app.py``：在一台机器上启动完整引擎，用于开发。

Starts a private ``redis-server`` (unless ``--redis`` names one), one ``hetu-logic``
worker on the app and one ``hetu-gateway``, and stops all of them on Ctrl-C.
Production runs the two servers separately against a real Redis.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import redis as redis_sync
import typer

from hetu.errors import ConfigError
from hetu.keys import Keys
from hetu.redis_server import RedisServer, wait_listening

EXIT_CONFIG = 2

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """HeTu command-line tools. HeTu 命令行工具。"""


def _executable(name: str) -> str:
    """The console script ``name`` installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} is not installed; install the hetu-logic and hetu-gateway "
            "packages (in this repository: uv sync)"
        )
    return found


def _wait_registry(
    redis_url: str, instance: str, proc: subprocess.Popen[bytes], timeout_s: float
) -> None:
    """Wait until the logic worker has published the app's registry."""
    key = Keys(instance).registry()
    deadline = time.monotonic() + timeout_s
    with redis_sync.Redis.from_url(redis_url) as r:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ConfigError(
                    f"hetu-logic exited with code {proc.returncode} (see its "
                    "message above)"
                )
            if r.exists(key):
                return
            time.sleep(0.05)
    raise ConfigError(f"hetu-logic did not publish the app in {timeout_s}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@app.command()
def dev(
    app_file: Annotated[str, typer.Argument(help="The app's Python file.")],
    port: Annotated[int, typer.Option(help="Gateway port.", envvar="HETU_PORT")] = 2466,
    host: Annotated[
        str, typer.Option(help="Gateway address.", envvar="HETU_HOST")
    ] = "127.0.0.1",
    redis: Annotated[
        str | None,
        typer.Option(
            help="Redis URL to use; default: start a private redis-server "
            "(nothing kept on disk).",
            envvar="HETU_REDIS",
        ),
    ] = None,
    instance: Annotated[
        str, typer.Option(help="Data partition name.", envvar="HETU_INSTANCE")
    ] = "default",
) -> None:
    """Run redis-server, one logic worker and one gateway on APP_FILE.

    在 APP_FILE 上启动 redis-server、一个逻辑进程和一个网关。
    """
    server: RedisServer | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not Path(app_file).is_file():
            raise ConfigError(f"app file {app_file!r} does not exist")
        if redis is None:
            server = RedisServer()
            server.start()
            redis = server.url
            typer.echo(f"hetu dev: started redis-server at {redis}")
        common = ["--redis", redis, "--instance", instance]
        logic = _executable("hetu-logic")
        gateway = _executable("hetu-gateway")
        procs.append(subprocess.Popen([logic, app_file, *common]))
        procs.append(
            subprocess.Popen(
                [gateway, "--port", str(port), "--host", host, "--redis", redis]
            )
        )
        _wait_registry(redis, instance, procs[0], 60.0)
        wait_listening(port, procs[1], 30.0, host)
        typer.echo(
            f"hetu dev: ready, clients connect to ws://{host}:{port}/hetu/{instance}"
        )
        signal.signal(signal.SIGTERM, lambda *_: _stop(procs))
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.2)
        code = max(proc.returncode or 0 for proc in procs)
        if code:
            raise typer.Exit(code)
    except ConfigError as e:
        typer.echo(f"hetu dev: error: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)
        if server is not None:
            server.stop()


def main() -> None:
    """Console entry point (``hetu``)."""
    app()
