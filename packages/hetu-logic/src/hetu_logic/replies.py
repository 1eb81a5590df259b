"""Building replies: converting return values, error codes, call checks.

构建回复：返回值转换、错误码、调用前检查。
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgspec
import numpy as np

from hetu.arguments import convert_args
from hetu.context import SystemContext
from hetu.permission import Permission
from hetu.system import ResponseToClient, SystemDefinition
from hetu.wire import CallMsg, ReplyMsg, gateway_msg_decoder


def _record_dict(rec: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: v for n, v in zip(names, rec.item(), strict=True) if n != "_version"}


def _enc_hook(obj: Any) -> Any:
    """NumPy values as plain msgpack values: records as dicts without
    ``_version``, record arrays as lists of them, scalars as numbers."""
    if isinstance(obj, np.ndarray):
        names = obj.dtype.names
        if names:
            return [_record_dict(r, names) for r in obj]
        return obj.tolist()
    if isinstance(obj, np.void) and obj.dtype.names:
        return _record_dict(obj, obj.dtype.names)
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(f"cannot send a {type(obj).__name__} to a client")


reply_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def ok_reply(msg: CallMsg, ctx: SystemContext, result: Any, entry: str) -> bytes:
    """The encoded reply of a call that returned ``result``, carrying the
    connection state the call changed.

    Raises:
        TypeError: ``result`` holds something msgpack cannot carry.
    """
    data = result.data if isinstance(result, ResponseToClient) else "ok"
    reply = ReplyMsg(msg.rid, msg.conn, True, data, entry=entry)
    if ctx.caller != msg.caller:
        reply.caller = ctx.caller
    if ctx.group != msg.group:
        reply.group = ctx.group
    if ctx.user_data != msg.ud:
        reply.ud = ctx.user_data
    try:
        return reply_encoder.encode(reply)
    except (msgspec.EncodeError, NotImplementedError, OverflowError) as e:
        raise TypeError(f"the return value cannot be sent: {e}") from e


def error_reply(msg: CallMsg, code: str, message: str, entry: str) -> bytes:
    """The encoded error reply of ``msg``."""
    reply = ReplyMsg(msg.rid, msg.conn, False, code=code, message=message, entry=entry)
    return reply_encoder.encode(reply)


def resend(cached: bytes, msg: CallMsg, entry: str) -> bytes | None:
    """A cached reply to send again, addressed to ``msg``'s connection; None when
    ``entry`` itself produced it (a re-delivery: its reply was published)."""
    reply = gateway_msg_decoder.decode(cached)
    if not isinstance(reply, ReplyMsg) or reply.entry == entry:
        return None
    if reply.conn != msg.conn:
        reply.conn = msg.conn
        return reply_encoder.encode(reply)
    return cached


def cached_result(cached: bytes) -> Any:
    """What ``ctx.systems.call`` returns for a replayed System: its reply data."""
    reply = gateway_msg_decoder.decode(cached)
    if isinstance(reply, ReplyMsg) and reply.ok and reply.data != "ok":
        return ResponseToClient(reply.data)
    return None


def check_call(d: SystemDefinition, msg: CallMsg) -> tuple[str, str] | None:
    """``(code, message)`` when the caller may not make this call, else None."""
    perm = d.permission
    if (
        perm is None
        or (perm is Permission.USER and not msg.caller)
        or (perm is Permission.ADMIN and not msg.group.startswith("admin"))
    ):
        return (
            "permission_denied",
            f"{msg.sys} needs permission {getattr(perm, 'name', 'server-only')}",
        )
    n = len(msg.args)
    if n < d.min_args or (d.max_args is not None and n > d.max_args):
        most = "any" if d.max_args is None else d.max_args
        return (
            "bad_arguments",
            f"{msg.sys} takes {d.min_args} to {most} arguments, got {n}",
        )
    if d.arg_specs or d.vararg_spec:
        misfit = convert_args(d.arg_specs, d.vararg_spec, msg.args)
        if misfit is not None:
            return "bad_arguments", f"{msg.sys} {misfit}"
    return None


class RateLimiter:
    """Sliding-window limits per (gateway, connection, System) in this process.

    Gateways enforce the same limits from the registry; this is the check of last
    resort and counts only the calls this worker sees.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, str], list[deque[float]]] = {}
        self._checks = 0

    def allow(self, d: SystemDefinition, msg: CallMsg) -> bool:
        now = time.monotonic()
        self._checks += 1
        if self._checks % 10_000 == 0:
            self._forget_before(now - max(per for _, per in d.rate_limits) * 10)
        key = (msg.gw, msg.conn, msg.sys)
        windows = self._seen.get(key)
        if windows is None:
            windows = self._seen[key] = [deque() for _ in d.rate_limits]
        for (times, per), window in zip(d.rate_limits, windows, strict=True):
            while window and window[0] <= now - per:
                window.popleft()
            if len(window) >= times:
                return False
        for window in windows:
            window.append(now)
        return True

    def _forget_before(self, horizon: float) -> None:
        self._seen = {
            k: w for k, w in self._seen.items() if any(q and q[-1] > horizon for q in w)
        }
