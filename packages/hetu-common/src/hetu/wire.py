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

    ``caller``/``group``/``ud`` are set only when the call changed them. ``entry``
    is the calls-stream entry id that produced the reply: a worker that finds the
    reply cached tells a client retry (another entry: answer it) from a
    re-delivery of the same entry (already answered). Gateways ignore it.
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
    entry: str = ""


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


class ComponentInfo(msgspec.Struct, omit_defaults=True):
    """A component table as gateways see it (``Registry.components``)."""

    name: str
    namespace: str
    schema: str
    hash: str
    permission: str
    cluster: int
    indexes: dict[str, bool]
    rls_compare: tuple[str, str, str] | None = None
    volatile: bool = False


class SystemInfo(msgspec.Struct, omit_defaults=True):
    """A System or endpoint clients may call (``Registry.systems``).

    ``permission`` is a ``Permission`` name, or ``None`` for ``on_disconnect``
    when clients may not call it; ``max_args`` is ``None`` for ``*args``;
    ``rate_limits`` lists ``(times, per_s)`` pairs per connection.
    """

    name: str
    cluster: int
    permission: str | None
    min_args: int
    max_args: int | None
    rate_limits: list[tuple[int, float]] = []
    guards: int = 0
    endpoint: bool = False


class ClusterInfo(msgspec.Struct):
    """One SystemCluster: id, hash tag, component and System names."""

    id: int
    tag: str
    components: list[str]
    systems: list[str]


class Registry(msgspec.Struct, omit_defaults=True):
    """What logic workers publish at ``hetu:<inst>:registry`` for gateways.

    ``version`` grows by one whenever the content changes; the new number is
    published on ``registry:changed``.
    """

    namespace: str
    components: dict[str, ComponentInfo]
    systems: dict[str, SystemInfo]
    clusters: list[ClusterInfo]
    version: int = 0


registry_encoder = msgspec.msgpack.Encoder()
registry_decoder = msgspec.msgpack.Decoder(Registry)
