"""``hetu-logic``: serve an app's Systems from the cluster streams.

``hetu-logic``：从系统簇的流中为应用的 System 提供服务。

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad input or
configuration (missing app file, import error, unreachable Redis, schema change
that needs ``migrate``), 1 for anything unexpected.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from importlib.metadata import version
from typing import Annotated

import typer

from hetu.errors import ConfigError
from hetu_logic.config import LogicConfig, LogLevel
from hetu_logic.worker import Worker, load_app

EXIT_CONFIG = 2

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def parse_clusters(value: str) -> tuple[int, ...] | None:
    """``"all"`` -> None; ``"0,2"`` -> (0, 2).

    Raises:
        ConfigError: not ``all`` or a comma-separated list of integers.
    """
    if value.strip().lower() == "all":
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"--cluster {value!r}: give 'all' or cluster ids like 0,2 (see the "
            "registry or the worker's start-up log)"
        ) from None


def _version(show: bool) -> None:
    if show:
        typer.echo(f"hetu-logic {version('hetu-logic')}")
        raise typer.Exit()


def _fail(message: str) -> None:
    typer.echo(f"hetu-logic: error: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)


def _spawn(n: int) -> int:
    """Run ``n`` worker processes with this command line; forward SIGTERM/SIGINT."""
    args = [a for a in sys.argv[1:]]
    children = [
        subprocess.Popen([sys.executable, "-m", "hetu_logic", *args, "--workers", "1"])
        for _ in range(n)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


@app.command()
def serve(
    app_file: Annotated[
        str, typer.Argument(help="The app's Python file, e.g. app.py.")
    ],
    cluster: Annotated[
        str,
        typer.Option(
            help="Clusters to serve: 'all' or ids like 0,2 (0 = endpoints).",
            envvar="HETU_CLUSTER",
        ),
    ] = "all",
    redis: Annotated[
        str, typer.Option(help="Redis URL holding the instance.", envvar="HETU_REDIS")
    ] = "redis://127.0.0.1:6379/0",
    instance: Annotated[
        str,
        typer.Option(
            help="Data partition; clients name it in their URL.", envvar="HETU_INSTANCE"
        ),
    ] = "default",
    namespace: Annotated[
        str | None,
        typer.Option(
            help="App namespace to serve; default: the app's only one.",
            envvar="HETU_NAMESPACE",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes to run.", envvar="HETU_WORKERS"),
    ] = 1,
    idle_ms: Annotated[
        int,
        typer.Option(
            min=1,
            help="Claim calls a dead worker left pending after this many ms.",
            envvar="HETU_IDLE_MS",
        ),
    ] = 5000,
    drain: Annotated[
        bool,
        typer.Option(
            help="Process what is queued, then exit (tests, batch jobs).",
            envvar="HETU_DRAIN",
        ),
    ] = False,
    log_level: Annotated[
        LogLevel, typer.Option(help="Logging level.", envvar="HETU_LOG_LEVEL")
    ] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log one line per call (logger hetu_logic.access).",
            envvar="HETU_ACCESS_LOG",
        ),
    ] = True,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Serve the Systems and endpoints of APP_FILE from the cluster streams.

    After a schema change: `hetu-logic migrate APP_FILE` (see its --help).
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    if not access_log:
        logging.getLogger("hetu_logic.access").setLevel(logging.WARNING)
    try:
        config = LogicConfig(
            app=app_file,
            clusters=parse_clusters(cluster),
            redis_url=redis,
            instance=instance,
            namespace=namespace,
            workers=workers,
            log_level=log_level,
            idle_ms=idle_ms,
            drain=drain,
        )
        if workers > 1:
            raise typer.Exit(_spawn(workers))
        load_app(app_file)
        Worker(config).run()
    except ConfigError as e:
        _fail(str(e))


def main() -> None:
    """Console entry point (``hetu-logic``)."""
    if sys.argv[1:2] == ["migrate"]:  # subcommand beside the default (serve)
        from hetu_logic.migrate import run

        run(sys.argv[2:])
        return
    app()
