"""``hetu-gateway``: the command line. 网关命令行。"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import version
from typing import Annotated

import typer

from hetu.errors import ConfigError
from hetu_gateway.config import GatewayConfig, LogLevel
from hetu_gateway.server import Server
from hetu_gateway.subscriptions import Subscriptions

EXIT_BAD_CONFIG = 2

app = typer.Typer(add_completion=False, no_args_is_help=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hetu-gateway {version('hetu-gateway')}")
        raise typer.Exit()


@app.command()
def run(
    port: Annotated[
        int, typer.Option(envvar="HETU_PORT", help="TCP port to listen on (0: any).")
    ] = 2466,
    host: Annotated[
        str, typer.Option(envvar="HETU_HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    redis: Annotated[
        str,
        typer.Option(envvar="HETU_REDIS", help="Redis URL shared with hetu-logic."),
    ] = "redis://127.0.0.1:6379/0",
    auth_key: Annotated[
        str,
        typer.Option(
            envvar="HETU_AUTH_KEY",
            help="Shared secret clients must prove (HMAC) at the handshake; "
            "empty: no client authentication.",
        ),
    ] = "",
    max_frame: Annotated[
        int,
        typer.Option(
            envvar="HETU_MAX_FRAME",
            help="Largest WebSocket message accepted, in bytes; larger ones close "
            "the connection (code 1009).",
        ),
    ] = 1 << 20,
    heartbeat_ttl: Annotated[
        float,
        typer.Option(
            envvar="HETU_HEARTBEAT_TTL",
            help="Seconds without a heartbeat after which other gateways treat "
            "this one as dead and close its connections (on_disconnect, logins).",
        ),
    ] = 5.0,
    log_level: Annotated[
        str,
        typer.Option(envvar="HETU_LOG_LEVEL", help="debug, info, warning or error."),
    ] = "info",
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Serve HeTu clients over WebSocket at ws://HOST:PORT/hetu/<instance>.

    Needs no app code: systems, permissions and clusters come from the registry
    that hetu-logic workers publish in Redis.
    """
    del show_version
    if log_level not in ("debug", "info", "warning", "error"):
        _fail(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    level: LogLevel = log_level  # type: ignore[assignment]
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level != "debug":
        logging.getLogger("hetu_gateway.access").setLevel(logging.WARNING)
    config = GatewayConfig(
        host=host,
        port=port,
        redis_url=redis,
        auth_key=auth_key,
        max_frame_bytes=max_frame,
        heartbeat_ttl_s=heartbeat_ttl,
        log_level=level,
    )
    try:
        Server(config, Subscriptions.factory).run()
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    typer.echo(f"hetu-gateway: {message}", err=True)
    sys.exit(EXIT_BAD_CONFIG)


def main() -> None:
    """Console-script entry point. 命令行入口。"""
    app()
