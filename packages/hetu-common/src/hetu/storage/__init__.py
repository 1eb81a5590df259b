"""Transactional storage of component rows in Redis (internal to HeTu).

组件数据在 Redis 中的事务化存储（HeTu 内部使用）。

``Session(redis, cluster_keys)`` is one optimistic transaction; ``session[Comp]``
its ``Repository``; ``await session.commit(extras)`` commits it with one Lua script.
"""

from hetu.storage.commit import CommitExtras, CommitResult
from hetu.storage.repository import Repository
from hetu.storage.session import Session

__all__ = ["CommitExtras", "CommitResult", "Repository", "Session"]
