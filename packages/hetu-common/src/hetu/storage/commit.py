"""Turn a transaction's reads and writes into one call of ``commit.lua``.

把事务的读写集变成一次 ``commit.lua`` 调用。

The script's argument layout is documented at the top of commit.lua and in
docs/architecture.md ("Commit script").
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import NoScriptError

from hetu.storage import codec
from hetu.wire import RowChange

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from hetu.storage.repository import Repository


class CommitExtras(msgspec.Struct, frozen=True, kw_only=True):
    """What a logic worker commits with a call, atomically with its data.

    逻辑进程随数据一起原子提交的附加操作。

    An empty ``str`` / 0 leaves a step out. Steps, in order: if ``reply_cache_key``
    exists, nothing is written, the stream entry is XACKed and XDELed and the cached
    reply is returned (a duplicate request); else the writes, ``XACK ack_stream
    ack_group ack_id`` + ``XDEL ack_stream ack_id``, ``XADD changes_stream MAXLEN ~
    changes_maxlen * m <event>`` (only when rows were written), ``SET
    reply_cache_key reply EX reply_cache_ttl_s`` and ``PUBLISH reply_channel reply``.
    """

    ack_stream: str = ""
    ack_group: str = ""
    ack_id: str = ""
    reply_channel: str = ""
    reply: bytes = b""
    reply_cache_key: str = ""
    reply_cache_ttl_s: int = 0
    changes_stream: str = ""
    changes_maxlen: int = 100_000

    def __post_init__(self) -> None:
        # a Lua error halfway would leave the writes applied: refuse bad input here
        if self.reply_cache_key and self.reply_cache_ttl_s <= 0:
            raise ValueError("CommitExtras: reply_cache_key needs reply_cache_ttl_s>0")
        if self.ack_stream and not (self.ack_group and self.ack_id):
            raise ValueError("CommitExtras: ack_stream needs ack_group and ack_id")


class CommitResult(msgspec.Struct, frozen=True):
    """Outcome of a commit that did not fail. 未失败的提交结果。

    ``change_id``: id of the change event in the changes stream, "" when no event
    was written (nothing changed, or no ``changes_stream``).
    ``duplicate_reply``: the cached reply when ``reply_cache_key`` already existed
    (nothing was applied), else None.
    ``called``: whether the commit script ran at all (False for read-only
    transactions without extras).
    """

    change_id: str = ""
    duplicate_reply: bytes | None = None
    called: bool = False


class Script:
    """A Lua script run by EVALSHA, loaded on first NOSCRIPT."""

    def __init__(self, file: str) -> None:
        self.source = resources.files("hetu.storage").joinpath(file).read_bytes()
        self.sha = hashlib.sha1(self.source).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await redis.script_load(self.source)  # type: ignore[misc]
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]


COMMIT = Script("commit.lua")
RANGE = Script("range.lua")

change_encoder = msgspec.msgpack.Encoder()


class _Plan:
    """Arguments of commit.lua being assembled, and what failures mean."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.key_no: dict[str, int] = {}
        self.checks: list[Any] = []
        self.absent: list[Any] = []
        self.unique: list[Any] = []
        self.unique_what: list[str] = []  # "Comp.field=value" per unique check
        self.dels: list[Any] = []
        self.hsets: list[Any] = []
        self.n_hsets = 0
        self.zrem: dict[int, list[bytes]] = {}
        self.zadd: dict[int, list[bytes]] = {}
        self.changes: list[RowChange] = []

    def key(self, key: str) -> int:
        """1-based position of ``key`` in KEYS, adding it if new."""
        no = self.key_no.get(key)
        if no is None:
            self.keys.append(key)
            no = self.key_no[key] = len(self.keys)
        return no

    def args(self, extras: CommitExtras | None, event: bytes) -> list[Any]:
        if extras is None:
            head: list[Any] = [0, "", "", "", b"", 0, 0, 0, 0, b""]
        else:
            x = extras
            head = [
                self.key(x.ack_stream) if x.ack_stream else 0,
                x.ack_group,
                x.ack_id,
                x.reply_channel,
                x.reply,
                self.key(x.reply_cache_key) if x.reply_cache_key else 0,
                x.reply_cache_ttl_s,
                self.key(x.changes_stream) if x.changes_stream else 0,
                x.changes_maxlen,
                event,
            ]
        # one list, extended in place: it can hold hundreds of arguments
        out = head
        out.append(len(self.checks) // 2)
        out += self.checks
        out.append(len(self.absent) // 3)
        out += self.absent
        out.append(len(self.unique_what))
        out += self.unique
        out.append(len(self.dels))
        out += self.dels
        out.append(self.n_hsets)
        out += self.hsets
        for ops in (self.zrem, self.zadd):
            out.append(len(ops))
            for k, members in ops.items():
                out += (k, len(members), *members)
        return out


def plan_commit(
    repos: list[Repository], absent: list[tuple[str, codec.LexRange]]
) -> _Plan:
    """Checks and writes for commit.lua from the transaction's repositories."""
    plan = _Plan()
    for repo in repos:
        _plan_repo(plan, repo)
    for key, (lo, hi) in absent:
        plan.absent += [plan.key(key), lo, hi]
    return plan


def _plan_repo(plan: _Plan, repo: Repository) -> None:
    schema = repo._schema
    prefix = schema.row_prefix
    snap, cur = repo._snap, repo._cur
    to_redis, names, indexes = schema.to_redis, schema.fields, schema.indexes.values()
    # KEYS position of each row read: a row written was read too (update, delete)
    key_nos: dict[int, int] = {}
    for row_id, row in snap.items():
        key_no = key_nos[row_id] = plan.key(prefix + str(row_id))
        plan.checks += (key_no, "" if row is None else str(row[-1]))
    removed: dict[int, list[bytes]] = {}
    unique: list[tuple[int, bytes]] = []
    for row_id, new in cur.items():
        old = snap.get(row_id)
        key_no = key_nos.get(row_id)
        if key_no is None:  # inserted without being read
            key_no = plan.key(prefix + str(row_id))
        if new is None:
            if old is None:
                continue
            plan.dels.append(key_no)
            for index in indexes:
                ix = plan.key(index.key)
                m = index.member(old, row_id)
                plan.zrem.setdefault(ix, []).append(m)
                removed.setdefault(ix, []).append(m)
            plan.changes.append(RowChange(schema.name, "delete", row_id, None))
            continue
        version = 1 if old is None else old[-1] + 1
        changed = [i for i in range(1, len(new) - 1) if old is None or new[i] != old[i]]
        if old is not None and not changed:
            continue
        fields: list[Any] = []
        for i in [0, *changed] if old is None else changed:
            fields += [names[i], to_redis[i](new[i])]
        fields += (b"_version", str(version))
        plan.hsets += (key_no, len(fields), *fields)
        plan.n_hsets += 1
        for index in indexes:
            if old is not None and index.pos not in changed:
                continue
            ix = plan.key(index.key)
            member = index.member(new, row_id)
            plan.zadd.setdefault(ix, []).append(member)
            if old is not None:
                m = index.member(old, row_id)
                plan.zrem.setdefault(ix, []).append(m)
                removed.setdefault(ix, []).append(m)
            if index.unique:
                plan.unique_what.append(
                    f"{schema.name}.{index.field}={new[index.pos]!r}"
                )
                unique.append((ix, member[: -codec.ID_BYTES]))
        committed = (*new[:-1], version)
        kind = "insert" if old is None else "update"
        plan.changes.append(
            RowChange(
                schema.name,
                kind,
                row_id,
                dict(zip(schema.names, committed, strict=True)),
            )
        )
    # unique checks may find members this transaction removes (delete + reinsert)
    for ix, value in unique:
        lo, hi = codec.equal_range(value)
        allowed = [m for m in removed.get(ix, ()) if m.startswith(value)]
        plan.unique += [ix, lo, hi, len(allowed), *allowed]
