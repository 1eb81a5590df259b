"""Transitional alias of :mod:`hetu.fastredis` (the one Redis client).

过渡用别名：请直接使用 :mod:`hetu.fastredis`。

New code uses ``hetu.fastredis.FastRedis`` (``execute_command``, ``connected``,
``send``, ``subscribe``); this module keeps code written against the former
gateway client importing until it moves over. Error replies now arrive as
redis-py's exception classes.
"""

from __future__ import annotations

from typing import Any

from hetu.fastredis import FastRedis, MessageCallback, pack_command

__all__ = ["RespConnection", "open_connection", "pack_command"]


class RespConnection(FastRedis):
    """``FastRedis`` with the former gateway client's method names."""

    @property
    def is_connected(self) -> bool:
        return self.connected

    async def execute(self, *args: Any) -> Any:
        return await self.execute_command(*args)


async def open_connection(
    url: str, on_message: MessageCallback | None = None, timeout_s: float = 5.0
) -> RespConnection:
    """``await RespConnection.from_url(url, on_message, timeout_s)``."""
    return await RespConnection.from_url(url, on_message, timeout_s)
