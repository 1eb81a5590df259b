"""Messages between clients and gateways, after the handshake (docs/protocol.md).

客户端与网关之间（握手之后）的消息，详见 docs/protocol.md。

Every message is a msgpack array whose first element is the tag, then the fields in
the order declared here (msgspec ``array_like`` tagged Structs). Requests carry a
client-chosen ``id``; the reply to a request names the same ``id``.

Internal: no promise to app authors; the C# SDK generator reads these Structs.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ErrorCode = Literal[
    "unknown_system",
    "bad_arguments",
    "permission_denied",
    "rejected",
    "rate_limited",
    "unique_violation",
    "timeout",
    "internal",
    "bad_request",
    "quota_exceeded",
]
ERROR_CODES: tuple[ErrorCode, ...] = ErrorCode.__args__  # type: ignore[attr-defined]


# --- client -> gateway -------------------------------------------------------


class Call(msgspec.Struct, tag="call", array_like=True):
    """Call System or endpoint ``sys`` with positional ``args``."""

    id: int
    sys: str
    args: list[Any] = []


class WatchRow(msgspec.Struct, tag="wrow", array_like=True):
    """Subscribe to the row of ``comp`` whose ``index`` equals ``value``.

    ``since`` is the last change id the client saw (resume), ``""`` for a new
    subscription; ``view`` is then the client's rows at ``since``.
    """

    id: int
    comp: str
    index: str
    value: Any
    since: str = ""
    view: list[dict[str, Any]] = []


class WatchRange(msgspec.Struct, tag="wrange", array_like=True):
    """Subscribe to rows of ``comp`` with ``left <= index <= right``."""

    id: int
    comp: str
    index: str
    left: Any
    right: Any
    limit: int = 10
    desc: bool = False
    since: str = ""
    view: list[dict[str, Any]] = []


class Unwatch(msgspec.Struct, tag="unwatch", array_like=True):
    """Stop subscription ``sub``."""

    id: int
    sub: int


ClientMsg = Call | WatchRow | WatchRange | Unwatch


# --- gateway -> client -------------------------------------------------------


class Ok(msgspec.Struct, tag="ok", array_like=True):
    """Successful reply to request ``id``: the System's data, or ``"ok"``."""

    id: int
    data: Any = "ok"


class Err(msgspec.Struct, tag="err", array_like=True):
    """Failed request ``id`` (``0`` when the request id could not be read)."""

    id: int
    code: ErrorCode
    message: str = ""


class Subscribed(msgspec.Struct, tag="sub", array_like=True):
    """Reply to a watch request: subscription ``sub`` with its snapshot.

    ``cid`` is the change id the snapshot is consistent with; ``fresh`` is true when
    the rows are a new snapshot (always for a new subscription; on resume, when
    the change log no longer held ``since``).
    """

    id: int
    sub: int
    cid: str
    rows: list[dict[str, Any]]
    fresh: bool = True


class RowEvent(msgspec.Struct, array_like=True):
    """One row's change in a push; ``row`` is ``None`` for ``delete``."""

    kind: Literal["insert", "update", "delete"]
    id: int
    row: dict[str, Any] | None


class Push(msgspec.Struct, tag="push", array_like=True):
    """Changes to subscription ``sub`` from the committed change ``cid``."""

    sub: int
    cid: str
    events: list[RowEvent]


ServerMsg = Ok | Err | Subscribed | Push

encoder = msgspec.msgpack.Encoder()
client_msg_decoder = msgspec.msgpack.Decoder(ClientMsg)
server_msg_decoder = msgspec.msgpack.Decoder(ServerMsg)
