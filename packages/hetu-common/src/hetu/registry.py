"""Build the registry gateways read from an app, and compare two registries.

从应用构建网关读取的注册表，并比较两个注册表。

A logic worker imports the app, calls :func:`build_layout` and publishes
``layout.registry`` (see hetu_logic). :func:`schema_problems` says which stored data
the new layout would misread; the worker refuses to start on any, and
``hetu-logic migrate`` uses the same function to know what to convert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hetu.cluster import (
    SystemCluster,
    build_clusters,
    cluster_of_component,
    cluster_of_system,
)
from hetu.component import BaseComponent, ComponentDefines
from hetu.errors import ConfigError
from hetu.system import (
    BUILTIN_NAMESPACE,
    SystemDefines,
    SystemDefinition,
    resolve_systems,
)
from hetu.wire import ClusterInfo, ComponentInfo, Registry, SystemInfo

DISCONNECT_SYSTEM = "on_disconnect"
"""Name of the System the gateway calls when a client connection closes."""


@dataclass(frozen=True)
class AppLayout:
    """An app's namespace resolved into Systems, clusters and its registry."""

    namespace: str
    systems: dict[str, SystemDefinition]
    clusters: list[SystemCluster]
    registry: Registry
    cluster_of_comp: dict[type[BaseComponent], SystemCluster] = field(repr=False)
    cluster_of_sys: dict[str, SystemCluster] = field(repr=False)

    def cluster(self, cluster_id: int) -> SystemCluster:
        """The cluster with ``cluster_id``.

        Raises:
            ConfigError: no such cluster.
        """
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        ids = ", ".join(str(c.id) for c in self.clusters)
        raise ConfigError(f"the app has no cluster {cluster_id}; its clusters: {ids}")


def app_namespaces() -> list[str]:
    """Namespaces the loaded app defines, not counting the built-in one."""
    names = {c.namespace_ for c in ComponentDefines.components()}
    names.update(SystemDefines.namespaces())
    names.discard(BUILTIN_NAMESPACE)
    return sorted(names)


def default_namespace(namespace: str | None) -> str:
    """``namespace`` if given, else the app's only namespace.

    Raises:
        ConfigError: no namespace given and the app has none or several.
    """
    found = app_namespaces()
    if namespace:
        if namespace not in found:
            raise ConfigError(
                f"namespace {namespace!r} is not defined by the app; it defines "
                f"{', '.join(found) or 'none'}"
            )
        return namespace
    if len(found) != 1:
        raise ConfigError(
            "the app defines namespaces "
            f"{', '.join(found) or '(none)'}; choose one with --namespace"
        )
    return found[0]


def _system_info(d: SystemDefinition, cluster: int) -> SystemInfo:
    return SystemInfo(
        name=d.name,
        cluster=cluster,
        permission=d.permission.name if d.permission is not None else None,
        min_args=d.min_args,
        max_args=d.max_args,
        rate_limits=list(d.rate_limits),
        guards=len(d.guards),
        endpoint=d.endpoint,
    )


def _component_info(comp: type[BaseComponent], cluster: int) -> ComponentInfo:
    return ComponentInfo(
        name=comp.name_,
        namespace=comp.namespace_,
        schema=comp.schema_json(),
        hash=comp.schema_hash(),
        permission=comp.permission_.name,
        cluster=cluster,
        indexes=dict(comp.indexes_),
        rls_compare=comp.rls_compare_,
        volatile=comp.volatile_,
    )


def build_layout(namespace: str) -> AppLayout:
    """Resolve ``namespace`` of the loaded app into clusters and a registry
    (``version`` 0: the publisher sets it).

    Raises:
        ConfigError: a dependency is unknown, or two tables share a name.
    """
    systems = resolve_systems(namespace)
    # After resolve_systems: tagged copies are registered in the namespace by now.
    clusters = build_clusters(systems, ComponentDefines.components(namespace))
    by_comp = cluster_of_component(clusters)
    by_sys = cluster_of_system(clusters)
    components: dict[str, ComponentInfo] = {}
    for comp, cluster in by_comp.items():
        if comp.name_ in components:
            raise ConfigError(
                f"two components named {comp.name_!r} ({comp.namespace_} and "
                f"{components[comp.name_].namespace}) are used by namespace "
                f"{namespace!r}; rename one"
            )
        components[comp.name_] = _component_info(comp, cluster.id)
    callable_systems = {
        name: _system_info(d, by_sys[name].id)
        for name, d in systems.items()
        if d.client_callable or name == DISCONNECT_SYSTEM
    }
    registry = Registry(
        namespace=namespace,
        components=dict(sorted(components.items())),
        systems=dict(sorted(callable_systems.items())),
        clusters=[
            ClusterInfo(c.id, c.tag, [x.name_ for x in c.components], list(c.systems))
            for c in clusters
        ],
    )
    return AppLayout(namespace, systems, clusters, registry, by_comp, by_sys)


def schema_problems(stored: Registry, new: Registry) -> list[str]:
    """What stored data ``new`` would misread or forget: one sentence per component
    whose schema hash or cluster (hash tag) differs or that the app no longer
    defines, or a namespace mismatch. Empty when the app may start on the stored
    data.
    """
    if stored.namespace != new.namespace:
        return [
            f"this instance holds namespace {stored.namespace!r}, the app is "
            f"{new.namespace!r}; use another --instance"
        ]
    old_tags = {c.id: c.tag for c in stored.clusters}
    new_tags = {c.id: c.tag for c in new.clusters}
    problems = []
    for name, old in stored.components.items():
        cur = new.components.get(name)
        if cur is None:
            problems.append(
                f"component {name}: stored data exists, the app no longer defines it"
            )
            continue
        if cur.hash != old.hash:
            problems.append(
                f"component {name}: stored rows use schema {old.hash}, the app "
                f"defines {cur.hash}"
            )
        elif old_tags.get(old.cluster) != new_tags.get(cur.cluster):
            problems.append(
                f"component {name}: stored in cluster {old.cluster} "
                f"(tag {old_tags.get(old.cluster)}), the app puts it in cluster "
                f"{cur.cluster} (tag {new_tags.get(cur.cluster)})"
            )
    return problems


def same_content(a: Registry, b: Registry) -> bool:
    """True when ``a`` and ``b`` differ at most in ``version``."""
    return (a.namespace, a.components, a.systems, a.clusters) == (
        b.namespace,
        b.components,
        b.systems,
        b.clusters,
    )
