"""Component tables as the subscription layer sees them, built from the registry.

订阅层所见的组件表，由注册表构造。

The gateway loads no app code: field dtypes come from each component's schema
JSON, so index members are encoded and row hashes decoded with the same
:mod:`hetu.storage.codec` functions storage uses (ordering equals index order).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hetu.keys import Keys
from hetu.storage import codec
from hetu.wire import ComponentInfo, Registry


class Table:
    """One component: keys, codecs and read rule inputs. 一个组件表。"""

    __slots__ = (
        "_keys",
        "changes_key",
        "decoders",
        "defaults",
        "dtypes",
        "encoders",
        "info",
        "name",
        "row_prefix",
    )

    def __init__(self, keys: Keys, tag: str, info: ComponentInfo) -> None:
        ckeys = keys.cluster(tag)
        self._keys = ckeys
        self.info = info
        self.name = info.name
        self.changes_key = ckeys.changes()
        self.row_prefix = ckeys.row_prefix(info.name)
        fields = json.loads(info.schema)["fields"]
        self.dtypes: dict[str, str] = {"id": "<i8"}
        self.defaults: dict[str, Any] = {}
        for name, spec in fields.items():
            self.dtypes[name] = spec["dtype"]
            self.defaults[name] = _default(spec["dtype"], spec["default"])
        self.decoders: dict[bytes, tuple[str, Callable[[bytes], Any]]] = {
            name.encode(): (name, codec.field_from_redis(dt))
            for name, dt in self.dtypes.items()
        }
        self.encoders: dict[str, codec.Encoder] = {
            f: codec.value_encoder(self.dtypes[f]) for f in info.indexes
        }

    def index_key(self, field: str) -> str:
        return self._keys.index(self.name, field)

    def decode_row(self, flat: list[bytes]) -> dict[str, Any]:
        """A client row (no ``_version``) from HGETALL's ``[field, value, ...]``."""
        row = dict(self.defaults)
        decoders = self.decoders
        for i in range(0, len(flat), 2):
            conv = decoders.get(flat[i])
            if conv is not None:
                row[conv[0]] = conv[1](flat[i + 1])
        return row


def check_value(dtype: str, value: Any, bound: bool) -> None:
    """Refuse what is not a value of an index of ``dtype``; a range ``bound`` may
    also be a float on an int index or a ``"(x"``/``"[x"`` string.

    Raises:
        TypeError: naming the value and the dtype.
    """
    if bound and isinstance(value, str) and value[:1] in ("(", "["):
        return
    kind = _kind(dtype)
    if kind in "iub":
        ok = isinstance(value, int) or (bound and isinstance(value, float))
    elif kind == "f":
        ok = isinstance(value, int | float)
    elif kind == "U":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, bytes)
    if not ok:
        raise TypeError(f"{value!r:.40} is not a value of an index of dtype {dtype}")


def _kind(dtype: str) -> str:
    return dtype.lstrip("<>|=")[:1]


def _default(dtype: str, value: Any) -> Any:
    """A schema JSON default as the Python value rows carry."""
    kind = _kind(dtype)
    if kind == "S":
        return base64.b64decode(value)
    if kind == "f":
        return float(value)
    return value


def build_tables(keys: Keys, registry: Registry) -> dict[str, Table]:
    """Every component of ``registry`` by name."""
    tags = {c.id: c.tag for c in registry.clusters}
    return {
        name: Table(keys, tags[info.cluster], info)
        for name, info in registry.components.items()
        if info.cluster in tags
    }
