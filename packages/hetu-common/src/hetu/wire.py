"""Messages between gateways and logic workers, carried through Redis.

网关与逻辑进程之间经 Redis 传递的消息。

Internal: no promise to app authors. See docs/architecture.md for the contract.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

RowKind = Literal["insert", "update", "delete"]


class CallMsg(msgspec.Struct, array_like=True, omit_defaults=True):
    """One call a gateway puts on a cluster's ``calls`` stream (field ``m``)."""

    gw: str
    conn: int
    rid: str
    sys: str
    args: list[Any]
    caller: int = 0
    group: str = ""
    ud: dict[str, Any] = {}
    addr: str = ""
    ts: float = 0.0


class ReplyMsg(msgspec.Struct, tag="reply", array_like=True, omit_defaults=True):
    """A worker's answer to one ``CallMsg``, published on the gateway's channel.

    ``caller``/``group``/``ud`` are set only when the call changed them.
    """

    rid: str
    conn: int
    ok: bool
    data: Any = None
    code: str = ""
    message: str = ""
    caller: int | None = None
    group: str | None = None
    ud: dict[str, Any] | None = None


class KickMsg(msgspec.Struct, tag="kick", array_like=True):
    """Close connection ``conn`` of the receiving gateway with ``reason``."""

    conn: int
    reason: str = "kicked"


GatewayMsg = ReplyMsg | KickMsg


class RowChange(msgspec.Struct, array_like=True):
    """One row's committed change; ``row`` is ``None`` for a delete."""

    comp: str
    kind: RowKind
    id: int
    row: dict[str, Any] | None


ChangeEvent = list[RowChange]

call_encoder = msgspec.msgpack.Encoder()
call_decoder = msgspec.msgpack.Decoder(CallMsg)
gateway_msg_decoder = msgspec.msgpack.Decoder(GatewayMsg)
change_event_decoder = msgspec.msgpack.Decoder(ChangeEvent)
