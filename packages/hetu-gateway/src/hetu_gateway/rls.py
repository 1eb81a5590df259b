"""Row visibility: which rows of a component a connection may see.

行可见性：连接可以看到组件的哪些行。

The component's permission (from the registry) and the connection's state give
one predicate over committed rows, applied to snapshots and to every delta:

- ``EVERYBODY``: every row.
- ``USER``: every row once logged in (``caller != 0``), none before.
- ``OWNER``: rows whose ``owner`` equals the logged-in caller.
- ``RLS``: rows where ``operator.<op>(row[row_field], ctx value)`` is true; the
  ctx value is the connection's ``caller``/``group``/``connection_id``/
  ``address``, else ``user_data[ctx_attr]``; a missing value or a comparison
  that raises hides the row.
- ``ADMIN``: every row for an admin connection (group starting with "admin"),
  none otherwise. Admins also see every row of USER, OWNER and RLS tables.

The predicate is rebuilt when the connection's caller, group or user data
change (a login), and the subscriptions re-read their windows.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Protocol

from hetu.wire import ComponentInfo

Visible = Callable[[dict[str, Any]], bool]


class ConnState(Protocol):
    """What visibility reads from a gateway connection."""

    caller: int
    group: str
    id: int
    addr: str
    ud: dict[str, Any]


_MISSING: Any = object()


def _all(row: dict[str, Any]) -> bool:
    return True


def _none(row: dict[str, Any]) -> bool:
    return False


def ctx_value(conn: ConnState, attr: str) -> Any:
    """The context attribute ``attr`` of a connection, or ``_MISSING``."""
    if attr == "caller":
        return conn.caller
    if attr == "group":
        return conn.group
    if attr == "connection_id":
        return conn.id
    if attr == "address":
        return conn.addr
    return conn.ud.get(attr, _MISSING)


def visibility(info: ComponentInfo, conn: ConnState) -> Visible:
    """The predicate telling which rows of ``info`` ``conn`` may see now."""
    perm = info.permission
    if perm == "EVERYBODY" or conn.group.startswith("admin"):
        return _all
    if perm == "USER":
        return _all if conn.caller else _none
    if perm == "OWNER":
        caller = conn.caller
        if not caller:
            return _none

        def owned(row: dict[str, Any]) -> bool:
            return row.get("owner") == caller

        return owned
    if perm == "RLS" and info.rls_compare is not None:
        op_name, field, attr = info.rls_compare
        op = getattr(operator, op_name, None)
        value = ctx_value(conn, attr)
        if op is None or op_name.startswith("_") or value is _MISSING:
            return _none

        def rule(row: dict[str, Any]) -> bool:
            try:
                return bool(op(row[field], value))
            except Exception:  # a rule that cannot be evaluated hides the row
                return False

        return rule
    return _none  # ADMIN for non-admins, or an unknown permission
