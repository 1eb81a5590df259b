"""What storage needs to know about one component in one cluster, computed once.

存储层对某个组件（在某个系统簇中）所需的信息，只计算一次。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from hetu.keys import ClusterKeys
from hetu.storage import codec


class ComponentLike(Protocol):
    """The class attributes of a component that storage reads (see
    docs/architecture.md "Components")."""

    name_: str
    indexes_: dict[str, bool]
    dtypes: np.dtype

    @classmethod
    def new_row(cls, id_: int | None = None) -> Any: ...


class Index:
    """One indexed field: position in the row tuple, Redis key, encoder."""

    __slots__ = ("dtype", "encode", "field", "key", "pos", "unique")

    def __init__(
        self, field: str, pos: int, unique: bool, dtype: np.dtype, key: str
    ) -> None:
        self.field = field
        self.pos = pos
        self.unique = unique
        self.dtype = dtype
        self.key = key
        self.encode = codec.value_encoder(dtype)

    def member(self, row: tuple, row_id: int) -> bytes:
        """The index member of ``row``: enc(value) + enc(id)."""
        return self.encode(row[self.pos]) + codec.encode_id(row_id)


class Schema:
    """Field codecs, index keys and the record dtype of one component."""

    __slots__ = (
        "comp",
        "decoders",
        "defaults",
        "fields",
        "from_redis",
        "indexes",
        "name",
        "names",
        "record_dtype",
        "row_prefix",
        "to_redis",
        "unique",
    )

    def __init__(self, comp: ComponentLike, keys: ClusterKeys) -> None:
        dt = comp.dtypes
        self.comp = comp
        self.name = comp.name_
        self.record_dtype = np.dtype((np.record, dt))
        names = dt.names or ()
        self.names: tuple[str, ...] = names
        self.fields: tuple[bytes, ...] = tuple(n.encode() for n in names)
        kinds = [dt.fields[n][0] for n in names]  # type: ignore[index]
        self.from_redis: tuple[Callable[[bytes], Any], ...] = tuple(
            codec.field_from_redis(k) for k in kinds
        )
        self.to_redis: tuple[Callable[[Any], str | bytes], ...] = tuple(
            codec.field_to_redis(k) for k in kinds
        )
        # (field, from_redis) pairs zipped once: decode runs for every row read
        self.decoders = tuple(zip(self.fields, self.from_redis, strict=True))
        self.defaults: tuple = np.zeros(1, dt)[0].item()
        self.row_prefix = keys.row_prefix(self.name)
        self.indexes: dict[str, Index] = {
            f: Index(
                f, names.index(f), u, kinds[names.index(f)], keys.index(self.name, f)
            )
            for f, u in comp.indexes_.items()
        }
        self.unique = tuple(ix for ix in self.indexes.values() if ix.unique)

    def decode(self, flat: list[bytes]) -> tuple:
        """A row tuple from ``HGETALL``'s flat ``[field, value, ...]`` reply."""
        it = iter(flat)
        return self.decode_map(dict(zip(it, it, strict=True)))

    def decode_map(self, got: dict[Any, Any]) -> tuple:
        """A row tuple from ``HGETALL``'s reply as a dict."""
        try:
            return tuple([conv(got[f]) for f, conv in self.decoders])
        except KeyError:  # a field added to the schema after the row was written
            return tuple(
                conv(got[f]) if f in got else default
                for f, conv, default in zip(
                    self.fields, self.from_redis, self.defaults, strict=True
                )
            )

    def record(self, row: tuple) -> Any:
        """A fresh ``np.record`` holding ``row``."""
        return np.array([row], self.record_dtype)[0]

    def records(self, rows: list[tuple]) -> np.recarray:
        """A ``np.recarray`` of ``rows`` (possibly empty)."""
        return np.array(rows, self.record_dtype).view(np.recarray)


_cache: dict[tuple[Any, str], Schema] = {}


def schema_of(comp: ComponentLike, keys: ClusterKeys) -> Schema:
    """The cached ``Schema`` of ``comp`` under ``keys``."""
    key = (comp, keys.key_prefix)
    schema = _cache.get(key)
    if schema is None:
        schema = _cache[key] = Schema(comp, keys)
    return schema
