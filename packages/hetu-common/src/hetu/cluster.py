"""SystemClusters: groups of Systems and components that commit together.

SystemCluster：共同提交的 System 与组件的分组。

Systems that share a component, directly or through ``depends``, are in one cluster
(union-find over systems and their components). A tagged copy (``"name:tag"``) runs
on duplicated components, which are different tables, so it lands in its own
cluster unless another System shares those copies.

Identity is derived from content so it survives unrelated changes: a cluster's
hash tag is the first 8 hex digits of SHA-1 of the alphabetically smallest
``"namespace.component"`` name in it, and its id is ``1 + int(tag, 16) % 9999``.
Collisions (of tags or ids) are resolved in order of that smallest name: the later
cluster probes the next id (tag gets a ``-n`` suffix). Adding a System that touches
only new components therefore never moves existing clusters; one that joins two
clusters keeps the tag of the one with the smaller name, and the other cluster's
data must be migrated.

Cluster id 0 (tag ``"ep"``) is the endpoint cluster: it holds every endpoint and
every System without components, and has no tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hetu.system import SystemDefinition, all_components

if TYPE_CHECKING:
    from hetu.system import CompType

ENDPOINT_CLUSTER_ID = 0
ENDPOINT_CLUSTER_TAG = "ep"
_ID_SPACE = 9999


@dataclass(frozen=True)
class SystemCluster:
    """One cluster: ``id`` (for ``--cluster``), hash ``tag`` (for keys), its
    components (sorted by full name) and System/endpoint names (sorted)."""

    id: int
    tag: str
    components: tuple[CompType, ...]
    systems: tuple[str, ...]


def full_name(comp: CompType) -> str:
    """``"namespace.name"`` of a component class."""
    return f"{comp.namespace_}.{comp.name_}"


def _tag_of(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:8]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def build_clusters(
    systems: dict[str, SystemDefinition], components: list[CompType] | tuple[()] = ()
) -> list[SystemCluster]:
    """Compute the clusters of ``systems`` (from ``resolve_systems``) plus tables in
    ``components`` that no System uses (each its own cluster). Sorted by id; the
    endpoint cluster (id 0) comes first.
    """
    uf = _UnionFind()
    by_name: dict[str, CompType] = {full_name(c): c for c in components}
    comps_of: dict[str, list[str]] = {}
    for key, definition in systems.items():
        if definition.endpoint:
            continue
        names = sorted(full_name(c) for c in all_components(definition, systems))
        for comp in all_components(definition, systems):
            by_name[full_name(comp)] = comp
        comps_of[key] = names
        for name in names[1:]:
            uf.union(names[0], name)
    groups: dict[str, list[str]] = {}
    for name in by_name:
        groups.setdefault(uf.find(name), []).append(name)
    members: dict[str, list[str]] = {root: [] for root in groups}
    endpoint_systems = [k for k, d in systems.items() if d.endpoint]
    for key, names in comps_of.items():
        if names:
            members[uf.find(names[0])].append(key)
        else:
            endpoint_systems.append(key)

    clusters = [
        SystemCluster(
            ENDPOINT_CLUSTER_ID,
            ENDPOINT_CLUSTER_TAG,
            (),
            tuple(sorted(endpoint_systems)),
        )
    ]
    used_ids = {ENDPOINT_CLUSTER_ID}
    used_tags = {ENDPOINT_CLUSTER_TAG}
    # The root is the smallest name of each group (union keeps the minimum).
    for root in sorted(groups):
        tag = base = _tag_of(root)
        n = 0
        while tag in used_tags:
            n += 1
            tag = f"{base}-{n}"
        cid = 1 + int(base, 16) % _ID_SPACE
        while cid in used_ids:
            cid = cid % _ID_SPACE + 1
        used_ids.add(cid)
        used_tags.add(tag)
        clusters.append(
            SystemCluster(
                cid,
                tag,
                tuple(by_name[n] for n in sorted(groups[root])),
                tuple(sorted(members[root])),
            )
        )
    clusters.sort(key=lambda c: c.id)
    return clusters


def cluster_of_component(
    clusters: list[SystemCluster],
) -> dict[CompType, SystemCluster]:
    """Map every component class to its cluster."""
    return {comp: c for c in clusters for comp in c.components}


def cluster_of_system(clusters: list[SystemCluster]) -> dict[str, SystemCluster]:
    """Map every System/endpoint name to its cluster."""
    return {name: c for c in clusters for name in c.systems}
