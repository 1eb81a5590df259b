"""Move due FutureCalls into the calls streams, exactly once.

把到期的 FutureCalls 原子地移入调用流，恰好一次。

Every worker runs one mover per FutureCalls table (``hetu.future_call``) in the
clusters it serves; the one holding the table's lease (``_Lease``) works, the
others stand by. It sleeps until the earliest due time (at most ``POLL_S``), reads
the due rows through the due-time index, and runs ``_MOVE``: per row, if its
``_version`` is still the one read, XADD a ``CallMsg`` with rid
``fc:<id>:<due_ms>`` to the target System's stream, then delete the row or
reschedule it (``interval_s``/``cron``), and append one change event for the rows
moved. A row another mover moved first has a new version (or is gone) and is
skipped, so however many workers run, each due time of a row is streamed once; the
executor's commit script then applies it once (the rid's cached reply answers a
redelivered entry). See docs/architecture.md "FutureCalls".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from hetu.component import BaseComponent
from hetu.future_call import is_future_calls, next_due_ms, unpack_args
from hetu.keys import ClusterKeys
from hetu.registry import AppLayout
from hetu.storage import codec
from hetu.storage.commit import RANGE
from hetu.storage.schema import schema_of
from hetu.wire import CallMsg, RowChange, call_encoder

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from hetu_logic.worker import Worker

logger = logging.getLogger(__name__)

POLL_S = 0.02
"""Longest sleep between looks at a table: bounds the lateness of a call inserted
while a mover sleeps towards a later due time."""
BATCH = 256
"""Rows moved per script call."""
_RETRY_S = 1.0
LEASE_MS = 1000
"""One worker per table moves rows (the others would only lose the version checks
and waste CPU); a standby takes over this long after the mover dies."""
_STANDBY_S = 0.1
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_DUE_OFFSET = 1 << 63

# KEYS: row, stream, index and changes keys, numbered by ARGV.
# ARGV: n rows, changes key# (0: none), changes maxlen, then per row: row key#,
# version read, stream key#, call message, change (msgpack RowChange), "1" to
# delete, n hset items, items, n zrem, (key#, member)*, n zadd, (key#, member)*.
# Returns how many rows were moved.
_MOVE = """
local A = ARGV
local p = 4
local moved = {}
for _ = 1, tonumber(A[1]) do
  local rk = KEYS[tonumber(A[p])]
  local ok = redis.call('HGET', rk, '_version') == A[p + 1]
  if ok then
    redis.call('XADD', KEYS[tonumber(A[p + 2])], '*', 'm', A[p + 3])
    moved[#moved + 1] = A[p + 4]
  end
  local del = A[p + 5] == '1'
  local nh = tonumber(A[p + 6])
  p = p + 7
  if ok then
    if del then
      redis.call('DEL', rk)
    else
      redis.call('HSET', rk, unpack(A, p, p + nh - 1))
    end
  end
  p = p + nh
  for _, cmd in ipairs({'ZREM', 'ZADD'}) do
    local nz = tonumber(A[p])
    p = p + 1
    for j = 0, nz - 1 do
      if ok then
        local k = KEYS[tonumber(A[p + 2 * j])]
        if cmd == 'ZREM' then
          redis.call('ZREM', k, A[p + 2 * j + 1])
        else
          redis.call('ZADD', k, 0, A[p + 2 * j + 1])
        end
      end
    end
    p = p + 2 * nz
  end
end
local c = #moved
if c > 0 and tonumber(A[2]) > 0 then
  local head
  if c < 16 then head = string.char(0x90 + c)
  else head = string.char(0xdc, math.floor(c / 256), c % 256) end
  redis.call('XADD', KEYS[tonumber(A[2])], 'MAXLEN', '~', A[3], '*', 'm',
    head .. table.concat(moved))
end
return c
"""


class _Lease:
    """Who moves a table: held with SET NX PX, renewed every third of ``LEASE_MS``.

    Only an optimisation: two movers at once (a stalled holder) stay exactly once
    through the version checks of ``_MOVE``.
    """

    def __init__(self, redis: aioredis.Redis, key: str, token: str) -> None:
        self.redis = redis
        self.key = key
        self.token = token
        self.held = False
        self._next_check = 0.0
        self._renew = redis.register_script(_RENEW)

    async def hold(self) -> bool:
        """Whether this worker moves the table now (takes or renews the lease)."""
        now = time.monotonic()
        if now < self._next_check:
            return self.held
        if self.held:
            got: Any = await self._renew(keys=[self.key], args=[self.token, LEASE_MS])
        else:
            got = await self.redis.set(self.key, self.token, nx=True, px=LEASE_MS)
        self.held = bool(got)
        self._next_check = now + (LEASE_MS / 3000 if self.held else _STANDBY_S)
        return self.held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self._renew(keys=[self.key], args=[self.token, 0])


def _due_of(member: bytes) -> int:
    return int.from_bytes(member[:8], "big") - _DUE_OFFSET


class _Args:
    """KEYS and ARGV of one ``_MOVE`` call being assembled."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._no: dict[str, int] = {}
        self.rows: list[Any] = []
        self.n = 0

    def key(self, key: str) -> int:
        no = self._no.get(key)
        if no is None:
            self.keys.append(key)
            no = self._no[key] = len(self.keys)
        return no


class Mover:
    """Moves the due rows of one FutureCalls table of one cluster."""

    def __init__(
        self,
        redis: aioredis.Redis,
        layout: AppLayout,
        comp: type[BaseComponent],
        ckeys: ClusterKeys,
        keys_of_cluster: dict[int, ClusterKeys],
        changes_maxlen: int,
        token: str,
    ) -> None:
        self.redis = redis
        self.lease = _Lease(redis, ckeys.future_calls_mover(comp.name_), token)
        self.comp = comp
        self.ckeys = ckeys
        self.schema = schema_of(comp, ckeys)
        self.due_index = self.schema.indexes["due_ms"]
        self.changes_maxlen = changes_maxlen
        self._stream_of = {
            name: keys_of_cluster[c.id].calls()
            for name, c in layout.cluster_of_sys.items()
        }
        self._known = set(layout.systems)
        self._script = redis.register_script(_MOVE)

    async def earliest_due_ms(self) -> int | None:
        """The due time of the earliest row, or None when the table is empty."""
        got: Any = await self.redis.zrange(self.due_index.key, 0, 0)
        return _due_of(got[0]) if got else None

    async def move_due(self, now_ms: int) -> int:
        """Move up to ``BATCH`` rows due at ``now_ms``; how many this call moved."""
        hi = b"[" + self.due_index.encode(now_ms) + codec.ID_MAX_SUFFIX
        prefix = self.schema.row_prefix
        got = await RANGE(
            self.redis, [self.due_index.key], [b"-", hi, "0", BATCH, prefix]
        )
        if not got:
            return 0
        args = _Args()
        for _member, flat in got:
            if flat:
                self._add_row(args, self.schema.decode(flat), now_ms)
        if not args.n:
            return 0
        changes = args.key(self.ckeys.changes())
        argv = [args.n, changes, self.changes_maxlen, *args.rows]
        moved: Any = await self._script(keys=args.keys, args=argv)
        return int(moved)

    def _add_row(self, args: _Args, row: tuple, now_ms: int) -> None:
        schema = self.schema
        rec = schema.record(row)
        row_id, due, version = int(rec.id), int(rec.due_ms), int(rec._version)
        system = str(rec.system)
        if system not in self._known:
            logger.warning(
                "FutureCall %d targets %r, which the app no longer defines; its "
                "call will fail with unknown_system",
                row_id,
                system,
            )
        msg = CallMsg(
            "",  # no gateway: the reply goes nowhere
            row_id,  # a connection of its own: FutureCalls run concurrently
            f"fc:{row_id}:{due}",
            system,
            unpack_args(row[schema.names.index("args")]),
            int(rec.owner),
        )
        try:
            nxt = next_due_ms(rec, now_ms)
        except ValueError as e:
            logger.warning("FutureCall %d stops repeating: %s", row_id, e)
            nxt = None
        stream = self._stream_of.get(system, self.ckeys.calls())
        row_key = args.key(schema.row_prefix + str(row_id))
        head = [row_key, str(version), args.key(stream), call_encoder.encode(msg)]
        zrem: list[Any] = []
        zadd: list[Any] = []
        if nxt is None:
            change = RowChange(schema.name, "delete", row_id, None)
            hset: list[Any] = []
            for index in schema.indexes.values():
                zrem += [args.key(index.key), index.member(row, row_id)]
        else:
            new = list(row)
            new[schema.names.index("due_ms")] = nxt
            new[schema.names.index("last_run_ms")] = due
            new[-1] = version + 1
            change = RowChange(
                schema.name, "update", row_id, dict(zip(schema.names, new, strict=True))
            )
            hset = [b"due_ms", str(nxt), b"last_run_ms", str(due)]
            hset += [b"_version", str(version + 1)]
            ix = args.key(self.due_index.key)
            zrem = [ix, self.due_index.member(row, row_id)]
            zadd = [ix, self.due_index.member(tuple(new), row_id)]
        args.rows += [*head, call_encoder.encode(change), "1" if nxt is None else "0"]
        args.rows += [len(hset), *hset, len(zrem) // 2, *zrem, len(zadd) // 2, *zadd]
        args.n += 1

    async def run(self, stopping: asyncio.Event) -> None:
        """Move due rows until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                delay_s = await self._step() if await self.lease.hold() else _STANDBY_S
            except (RedisError, OSError) as e:
                logger.warning("FutureCalls of %s: %s; retrying", self.comp.name_, e)
                delay_s = _RETRY_S
            if delay_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await stopping.wait()
        with contextlib.suppress(RedisError, OSError):
            await self.lease.release()  # a standby takes over at once

    async def _step(self) -> float:
        """One look at the table; how long to sleep before the next."""
        due = await self.earliest_due_ms()
        now_ms = int(time.time() * 1000)
        if due is None:
            return POLL_S
        if due > now_ms:
            return min((due - now_ms) / 1000, POLL_S)
        moved = await self.move_due(now_ms)
        # 0 moved: another worker won the rows; look again after it committed.
        return 0.0 if moved else 0.001


async def run_future_calls(worker: Worker) -> None:
    """Background task of a worker: move the due FutureCalls of its clusters."""
    layout, redis, streams = worker.layout, worker.redis, worker.streams
    if layout is None or redis is None or streams is None:
        return
    keys_of_cluster = {c.id: worker.keys.cluster(c.tag) for c in layout.clusters}
    movers = [
        Mover(
            redis,
            layout,
            comp,
            keys_of_cluster[cluster.id],
            keys_of_cluster,
            worker.config.changes_maxlen,
            worker.consumer,
        )
        for cluster in streams.by_stream.values()
        for comp in cluster.components
        if is_future_calls(comp)
    ]
    if movers:
        logger.info("moving FutureCalls of %d table(s)", len(movers))
        await asyncio.gather(*(m.run(worker.stopping) for m in movers))
