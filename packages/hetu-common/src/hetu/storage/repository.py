"""A component's table as seen inside one transaction (``session.repo(Comp)``).

事务内看到的某个组件表（``session.repo(Comp)``）。
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from hetu.errors import UniqueViolation
from hetu.storage import codec
from hetu.storage.schema import ComponentLike, Index, Schema

if TYPE_CHECKING:
    from hetu.storage.session import Session

_MISSING: Any = object()


class Repository:
    """Reads and writes of one component within a ``Session``.

    一个事务（``Session``）内对某组件的读写。

    Rows read are remembered (identity map): reading a row again returns this
    transaction's view of it without a round trip, and every row read is
    version-checked at commit.
    """

    __slots__ = ("_cur", "_schema", "_session", "_snap")

    def __init__(self, session: Session, schema: Schema) -> None:
        self._session = session
        self._schema = schema
        # committed rows as read from Redis, by id; None: read as absent
        self._snap: dict[int, tuple | None] = {}
        # this transaction's writes, by id; None: deleted
        self._cur: dict[int, tuple | None] = {}

    @property
    def component(self) -> ComponentLike:
        return self._schema.comp

    # -- reads ---------------------------------------------------------------------

    async def get(
        self, index_name: str | None = None, query_value: Any = None, **kw: Any
    ) -> np.record | None:
        """The row whose indexed field equals a value, e.g. ``get(id=5)``,
        ``get(name="bob")``; None when there is none. For a non-unique index, the
        one with the smallest id. 按索引字段取一行；没有则返回 None。

        Raises:
            ValueError: not exactly one field given, or the field is not indexed.
        """
        field, value = _one_field(index_name, query_value, kw, "get")
        index = self._index(field)
        if field == "id":
            row = await self._get_by_id(int(value))
        else:
            lex = codec.equal_range(index.encode(value))
            rows, fetched = await self._range(index, lex, 1, False)
            row = rows[0] if rows else None
            if not fetched:  # re-checked at commit: a phantom insert aborts
                self._session._absent.append((index.key, lex))
        return None if row is None else self._schema.record(row)

    async def range(
        self,
        index_name: str | None = None,
        left: Any = None,
        right: Any = None,
        limit: int = 10,
        desc: bool = False,
        **kw: Any,
    ) -> np.recarray:
        """Rows with ``left <= field <= right`` in index order (ties by ascending id).

        按索引范围查询，包括本事务自己的写入。

        ``range(owner=(lo, hi))`` or ``range("owner", lo, hi)``; ``right=None``
        means equality; a str bound starting with ``(`` is exclusive, ``[``
        inclusive; ±inf is allowed on ints; ``limit < 0`` means no limit. The
        result includes this transaction's own inserts, updates and deletes.

        Raises:
            ValueError: the field is not indexed, or a bound is not a value of it.
        """
        if kw:
            field, bounds = _one_field(None, None, kw, "range")
            left, right = bounds if isinstance(bounds, tuple) else (bounds, None)
        elif index_name is None:
            raise ValueError("range() needs an index name, e.g. range(owner=(1, 9))")
        else:
            field = index_name
        index = self._index(field)
        lex = codec.lex_range(index.dtype, left, left if right is None else right)
        if lex is None or limit == 0:
            return self._schema.records([])
        rows, _ = await self._range(index, lex, limit, desc)
        return self._schema.records(rows)

    async def _get_by_id(self, row_id: int) -> tuple | None:
        row = self._cur.get(row_id, _MISSING)
        if row is _MISSING:
            row = self._snap.get(row_id, _MISSING)
        if row is _MISSING:
            got = await self._session._redis.execute_command(
                "HGETALL", self._schema.row_prefix + str(row_id)
            )
            if not got:
                row = None
            elif isinstance(got, list):  # FastRedis: raw reply
                row = self._schema.decode(got)
            else:  # redis-py: dict
                row = self._schema.decode_map(got)
            self._snap[row_id] = row
        return row

    async def _range(
        self, index: Index, lex: codec.LexRange, limit: int, desc: bool
    ) -> tuple[list[tuple], bool]:
        """Rows in ``lex``, merged with pending writes; and whether Redis had any."""
        cur, snap, decode = self._cur, self._snap, self._schema.decode
        # rows this transaction changed may drop out: fetch enough to fill the limit
        fetch = -1 if limit < 0 else limit + len(cur)
        reply = await self._session._read_range(
            index.key, lex, desc, fetch, self._schema.row_prefix
        )
        found: list[tuple[bytes, tuple]] = []
        for member, flat in reply:
            row_id = codec.decode_id(member)
            if row_id in cur:
                continue
            row = snap.get(row_id, _MISSING)
            if row is _MISSING:
                if not flat:  # deleted between ZRANGE and HGETALL: cannot happen
                    continue
                row = snap[row_id] = decode(flat)
            if row is not None:
                found.append((member, row))
        pending = [
            (m, row)
            for row_id, row in cur.items()
            if row is not None
            and codec.lex_contains(lex, m := index.member(row, row_id))
        ]
        if pending:
            found += pending
            found.sort(key=_first, reverse=desc)
        if 0 <= limit < len(found):
            del found[limit:]
        return [row for _, row in found], bool(reply)

    # -- writes --------------------------------------------------------------------

    async def insert(self, row: Any) -> None:
        """Insert ``row`` (a record from ``Comp.new_row()``). 插入一行。

        Raises:
            UniqueViolation: a unique value is already used by a row this
                transaction sees (checked again at commit against all of Redis).
        """
        new = row.item()
        row_id = new[0]
        if self._cur.get(row_id, self._snap.get(row_id)) is not None:
            raise UniqueViolation(f"{self._schema.name}: a row with id={row_id} exists")
        self._check_unique(new, row_id)
        self._cur[row_id] = new

    async def update(self, row: Any) -> None:
        """Write back a changed ``row`` that was read in this transaction. 更新一行。

        Raises:
            ValueError: the row was not read in this transaction (get/range it
                first) or was deleted.
            UniqueViolation: a unique value is already used by a row this
                transaction sees.
        """
        new = row.item()
        row_id = new[0]
        old = self._cur.get(row_id, self._snap.get(row_id))
        if old is None:
            raise ValueError(
                f"{self._schema.name}.update: row id={row_id} was not read in this "
                "transaction (or was deleted); read it with get()/range() first"
            )
        self._check_unique(new, row_id, old)
        self._cur[row_id] = (*new[:-1], old[-1])  # _version is not the caller's

    def delete(self, row_id: int) -> None:
        """Delete the row ``row_id``, which must have been read in this transaction
        (not awaited). 删除一行（须已在本事务读取；无需 await）。

        Raises:
            ValueError: the row was not read in this transaction or is deleted.
        """
        row_id = int(row_id)
        if self._cur.get(row_id, self._snap.get(row_id)) is None:
            raise ValueError(
                f"{self._schema.name}.delete: row id={row_id} was not read in this "
                "transaction (or is already deleted); read it with get() first"
            )
        if self._snap.get(row_id) is None:  # inserted by this transaction
            del self._cur[row_id]
        else:
            self._cur[row_id] = None

    @asynccontextmanager
    async def upsert(self, **kw: Any) -> AsyncIterator[Any]:
        """``async with repo.upsert(name="bob") as row:`` edit the row whose unique
        field has that value, or a new row with it; written when the block exits
        without an exception. 按唯一字段插入或更新。

        Raises:
            ValueError: not exactly one field given, or it is not a unique index.
            UniqueViolation: as for insert/update.
        """
        field, value = _one_field(None, None, kw, "upsert")
        if not self._index(field).unique:
            raise ValueError(f"{self._schema.name}.upsert: {field!r} is not unique")
        row = await self.get(**{field: value})
        is_new = row is None
        if row is None:
            row = self._schema.comp.new_row()
            row[field] = value
        yield row
        await (self.insert(row) if is_new else self.update(row))

    # -- helpers -------------------------------------------------------------------

    def _index(self, field: str) -> Index:
        index = self._schema.indexes.get(field)
        if index is None:
            raise ValueError(
                f"{self._schema.name}.{field} is not indexed; indexed fields: "
                f"{', '.join(self._schema.indexes)}"
            )
        return index

    def _check_unique(self, new: tuple, row_id: int, old: tuple | None = None) -> None:
        """Unique values of ``new`` (those that differ from ``old``) against every
        other row this transaction sees."""
        for index in self._schema.unique:
            value = new[index.pos]
            if index.field == "id" or (old is not None and old[index.pos] == value):
                continue
            for other_id, other in self._visible():
                if other_id != row_id and other[index.pos] == value:
                    raise UniqueViolation(
                        f"{self._schema.name}.{index.field}={value!r} is already "
                        f"used by row id={other_id}"
                    )

    def _visible(self) -> list[tuple[int, tuple]]:
        rows = [(i, r) for i, r in self._cur.items() if r is not None]
        rows += [
            (i, r)
            for i, r in self._snap.items()
            if r is not None and i not in self._cur
        ]
        return rows


def _first(item: tuple[bytes, tuple]) -> bytes:
    return item[0]


def _one_field(
    index_name: str | None, value: Any, kw: dict[str, Any], what: str
) -> tuple[str, Any]:
    if index_name is not None and not kw:
        return index_name, value
    if index_name is None and len(kw) == 1:
        return next(iter(kw.items()))
    raise ValueError(f"{what}() takes exactly one indexed field, e.g. {what}(id=5)")
