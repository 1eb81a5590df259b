"""One optimistic transaction on Redis: reads, buffered writes, one atomic commit.

Redis 上的一个乐观事务：读取、缓冲写入、一次原子提交。
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from hetu.errors import RaceCondition, UniqueViolation
from hetu.keys import ClusterKeys
from hetu.storage import codec
from hetu.storage.commit import (
    COMMIT,
    RANGE,
    CommitExtras,
    CommitResult,
    change_encoder,
    plan_commit,
)
from hetu.storage.repository import Repository
from hetu.storage.schema import ComponentLike, schema_of

if TYPE_CHECKING:
    from redis.asyncio import Redis

_READ_ONLY = CommitResult()


class Session:
    """One transaction over the components of one SystemCluster.

    一个系统簇内组件上的一个事务。

    ``session.repo(Comp)`` (or ``session[Comp]``) gives the ``Repository``. Writes
    are buffered until ``await commit()``, which version-checks every row read and
    applies all writes atomically in one Lua script; on ``RaceCondition`` start a
    new Session and run the transaction again. A Session is used once.

    ``redis`` must return bytes (``decode_responses=False``). Use
    ``async with Session(...) as s:`` to commit on success and discard on error.
    """

    def __init__(self, redis: Redis, keys: ClusterKeys) -> None:
        self._redis = redis
        self.keys = keys
        self._repos: dict[Any, Repository] = {}
        # (index key, BYLEX range) found empty by get(); re-checked at commit
        self._absent: list[tuple[str, codec.LexRange]] = []
        self._done = False

    def repo(self, comp: ComponentLike) -> Repository:
        """The repository of ``comp`` in this transaction.

        Raises:
            RuntimeError: the session was already committed or discarded.
        """
        repo = self._repos.get(comp)
        if repo is None:
            if self._done:
                raise RuntimeError("this Session is finished; start a new one")
            repo = self._repos[comp] = Repository(self, schema_of(comp, self.keys))
        return repo

    __getitem__ = repo

    @property
    def has_writes(self) -> bool:
        """Whether any insert, update or delete is pending."""
        return any(repo._cur for repo in self._repos.values())

    async def commit(self, extras: CommitExtras | None = None) -> CommitResult:
        """Apply this transaction atomically. 原子提交本事务。

        A transaction without writes and without ``extras`` makes no Redis call.
        See ``CommitExtras`` for what a logic worker commits along.

        Raises:
            RaceCondition: a row read was changed (or a row looked up as absent
                appeared) since it was read; nothing was applied. Retry.
            UniqueViolation: a unique value is taken; nothing was applied.
            RuntimeError: the session was already committed or discarded.
        """
        if self._done:
            raise RuntimeError("this Session is finished; start a new one")
        self._done = True
        repos = list(self._repos.values())
        if extras is None and not any(repo._cur for repo in repos):
            return _READ_ONLY
        plan = plan_commit(repos, self._absent)
        event = b""
        if extras is not None and extras.changes_stream and plan.changes:
            event = change_encoder.encode(plan.changes)
        args = plan.args(extras, event)
        status, value = await COMMIT(self._redis, plan.keys, args)
        if status == 1:
            return CommitResult(value.decode(), None, True)
        if status == 2:
            return CommitResult("", value, True)
        if status == 3:
            raise RaceCondition(
                f"{plan.keys[value - 1]} changed after this transaction read it; "
                "run the transaction again"
            )
        raise UniqueViolation(f"{plan.unique_what[value - 1]} is already taken")

    def discard(self) -> None:
        """Drop all pending writes; the session cannot be used any more."""
        self._done = True
        self._repos.clear()
        self._absent.clear()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._done:
            await self.commit()
        else:
            self.discard()

    async def _read_range(
        self, index_key: str, lex: codec.LexRange, desc: bool, limit: int, prefix: str
    ) -> list[list[Any]]:
        lo, hi = lex
        return await RANGE(
            self._redis, [index_key], [lo, hi, "1" if desc else "0", limit, prefix]
        )
