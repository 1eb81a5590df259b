"""Every Redis key and channel name HeTu uses, built in one place.

HeTu 使用的所有 Redis 键名与频道名，集中在此构造。

The layout is documented in docs/architecture.md ("Redis key layout"). ``<inst>`` is
the instance (data partition); ``<tag>`` a SystemCluster's hash tag, so all keys of a
cluster land on one Redis Cluster shard and one Lua script can touch them together.
"""

from __future__ import annotations


class Keys:
    """Instance-wide keys: ``hetu:<inst>:...``. 实例级键名。"""

    __slots__ = ("instance", "prefix")

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.prefix = f"hetu:{instance}:"

    def cluster(self, tag: str) -> ClusterKeys:
        """Keys of the SystemCluster with hash tag ``tag``."""
        return ClusterKeys(self.instance, tag)

    def registry(self) -> str:
        return f"{self.prefix}registry"

    def registry_changed(self) -> str:
        """Pub/sub channel announcing a new registry version."""
        return f"{self.prefix}registry:changed"

    def gateway(self, gw: str) -> str:
        """Pub/sub channel of gateway ``gw`` (replies and control messages)."""
        return f"{self.prefix}gw:{gw}"

    def gateway_alive(self, gw: str) -> str:
        """Heartbeat key of gateway ``gw`` (expires)."""
        return f"{self.prefix}gw:{gw}:alive"

    def gateways(self) -> str:
        """Set of the ids of gateways that served the instance (for the sweeper)."""
        return f"{self.prefix}gateways"

    def gateway_conns(self, gw: str) -> str:
        """Hash of gateway ``gw``: open connection id -> msgpack ``ConnRecord``."""
        return f"{self.prefix}gw:{gw}:conns"

    def gateway_sweep(self, gw: str) -> str:
        """Lock of the live gateway closing dead gateway ``gw``'s connections."""
        return f"{self.prefix}gw:{gw}:sweep"

    def session(self, token: str) -> str:
        """``[caller, group, ud, login, secret, holder]`` of session id ``token``
        (expires)."""
        return f"{self.prefix}sess:{token}"

    def hello_nonce(self, nonce: bytes) -> str:
        """A hello nonce some gateway accepted (expires): refuses replays."""
        return f"{self.prefix}hello:{nonce.hex()}"

    def login(self, user_id: int) -> str:
        """Holds ``"<gw>:<conn>"`` of the connection logged in as ``user_id``."""
        return f"{self.prefix}login:{user_id}"

    def login_pattern(self) -> str:
        """SCAN pattern matching every login key of the instance."""
        return f"{self.prefix}login:*"

    def snowflake(self, worker_id: int) -> str:
        """Lease of Snowflake worker id ``worker_id`` (expires)."""
        return f"{self.prefix}sf:{worker_id}"

    def snowflake_pattern(self) -> str:
        """``SCAN`` pattern matching every Snowflake lease (running workers)."""
        return f"{self.prefix}sf:*"


class ClusterKeys:
    """Keys of one SystemCluster: ``hetu:<inst>:{<tag>}:...``. 一个系统簇的键名。

    ``comp`` arguments are component names (``Comp.name_``).
    """

    __slots__ = ("instance", "key_prefix", "tag")

    def __init__(self, instance: str, tag: str) -> None:
        self.instance = instance
        self.tag = tag
        self.key_prefix = f"hetu:{instance}:{{{tag}}}:"

    def row_prefix(self, comp: str) -> str:
        """``row(comp, id) == row_prefix(comp) + str(id)``; for hot loops."""
        return f"{self.key_prefix}r:{comp}:"

    def row(self, comp: str, row_id: int) -> str:
        """Hash holding one row (fields plus ``_version``)."""
        return f"{self.key_prefix}r:{comp}:{row_id}"

    def index(self, comp: str, field: str) -> str:
        """Sorted set indexing ``field``: score 0, member enc(value) + enc(id)."""
        return f"{self.key_prefix}i:{comp}:{field}"

    def calls(self) -> str:
        """Stream of calls for this cluster (consumer group ``logic``)."""
        return f"{self.key_prefix}calls"

    def changes(self) -> str:
        """Stream of change events, one entry per committed transaction."""
        return f"{self.key_prefix}changes"

    def reply_cache(self, rid: str) -> str:
        """Cached reply of request ``rid`` (expires)."""
        return f"{self.key_prefix}rsp:{rid}"

    def future_calls_mover(self, comp: str) -> str:
        """Lease of the worker moving due rows of FutureCalls table ``comp``."""
        return f"{self.key_prefix}fcm:{comp}"
