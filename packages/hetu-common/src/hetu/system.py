"""Systems and endpoints: the server functions clients call.

System 与 Endpoint：客户端调用的服务器函数。

``define_system`` and ``define_endpoint`` record a :class:`SystemDefinition` in a
global registry keyed by namespace and name. Dependencies (``depends``) stay strings
until :func:`resolve_systems` turns them into definitions, so an app may list a
built-in (FutureCalls) that is registered after the app's own systems, and a
``"name:tag"`` dependency becomes a tagged copy running on duplicated components.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hetu.arguments import ArgSpec, arg_specs
from hetu.errors import ConfigError
from hetu.permission import Permission

if TYPE_CHECKING:
    from hetu.component import BaseComponent

    CompType = type[BaseComponent]
else:
    CompType = type

BUILTIN_NAMESPACE = "global"
"""Namespace of the engine's built-in systems and components (FutureCalls)."""

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class ResponseToClient:
    """Return this from a System or endpoint to send ``data`` to the client.

    从 System 或 Endpoint 返回它，把 ``data`` 发给客户端。

    NumPy scalars become plain numbers, a record a dict and a record array a list of
    dicts (``_version`` removed) before the reply is encoded.
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"ResponseToClient({self.data!r})"


@dataclass(frozen=True)
class SystemDefinition:
    """Everything the worker, registry and gateway need to know about one System.

    ``max_args`` is ``None`` when the function takes ``*args``. ``comp_map`` maps an
    original component to its tagged copy in a ``"name:tag"`` copy of a System.
    """

    name: str
    namespace: str
    func: Callable[..., Awaitable[Any]]
    components: tuple[CompType, ...]
    permission: Permission | None
    retry: int
    depends: tuple[str, ...]
    call_lock: bool
    on_start: bool
    min_args: int
    max_args: int | None
    endpoint: bool = False
    rate_limits: tuple[tuple[int, float], ...] = ()
    guards: tuple[Callable[..., Any], ...] = ()
    arg_specs: tuple[ArgSpec, ...] = ()
    vararg_spec: ArgSpec | None = None
    comp_map: dict[CompType, CompType] = field(default_factory=dict)

    @property
    def client_callable(self) -> bool:
        return self.permission is not None


class SystemDefines:
    """Every defined System and endpoint, by namespace then name; built-ins (the
    FutureCall systems) live in ``BUILTIN_NAMESPACE`` and any app may depend on them.

    所有已定义的 System 与 Endpoint，按命名空间与名称索引。
    """

    _by_ns: ClassVar[dict[str, dict[str, SystemDefinition]]] = {}

    @classmethod
    def add(cls, definition: SystemDefinition, *, force: bool = False) -> None:
        """Register ``definition``; replaces an existing one only with ``force``.

        Raises:
            ConfigError: not an async function, or the name is taken and not
                ``force``.
        """
        if not inspect.iscoroutinefunction(definition.func):
            raise ConfigError(
                f"{definition.name} must be an `async def` function to be a System "
                "or endpoint"
            )
        space = cls._by_ns.setdefault(definition.namespace, {})
        if definition.name in space and not force:
            raise ConfigError(
                f"{definition.namespace}.{definition.name} is already defined; "
                "rename one of them or pass force=True to replace it"
            )
        space[definition.name] = definition

    @classmethod
    def get(cls, namespace: str, name: str) -> SystemDefinition | None:
        """System ``name`` of ``namespace``, else the built-in of that name."""
        found = cls._by_ns.get(namespace, {}).get(name)
        if found is None:
            found = cls._by_ns.get(BUILTIN_NAMESPACE, {}).get(name)
        return found

    @classmethod
    def systems(cls, namespace: str) -> dict[str, SystemDefinition]:
        """The definitions of ``namespace`` by name (a copy)."""
        return dict(cls._by_ns.get(namespace, {}))

    @classmethod
    def namespaces(cls) -> list[str]:
        """Namespaces with at least one definition, built-in one included."""
        return [ns for ns, space in cls._by_ns.items() if space]

    @classmethod
    def clear(cls) -> None:
        """Forget every definition (tests, or reloading an app). 清空注册表。"""
        cls._by_ns.clear()


def _arg_range(func: Callable[..., Any], kind: str) -> tuple[int, int | None]:
    """Count the positional parameters after ``ctx``: (required, maximum)."""
    params = list(inspect.signature(func).parameters.values())
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    if not params or params[0].kind not in positional:
        raise ConfigError(
            f"{kind} {func.__qualname__} must take the context as its first "
            "positional parameter, e.g. `async def f(ctx, ...)`"
        )
    low, high = 0, 0
    unlimited = False
    for p in params[1:]:
        if p.kind in positional:
            high += 1
            if p.default is inspect.Parameter.empty:
                low = high
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            unlimited = True
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty:
            raise ConfigError(
                f"{kind} {func.__qualname__}: keyword-only parameter {p.name!r} needs "
                "a default; clients pass positional arguments only"
            )
    return low, None if unlimited else high


def _call_checks(func: Callable[..., Any], kind: str) -> dict[str, Any]:
    """What a call is checked against: argument count and types, rate limits and
    guards (the last two stored on ``func`` by the decorators below it)."""
    low, high = _arg_range(func, kind)
    specs, var = arg_specs(func)
    return {
        "min_args": low,
        "max_args": high,
        "arg_specs": specs,
        "vararg_spec": var,
        "rate_limits": getattr(func, "_hetu_rate_limits", ()),
        "guards": getattr(func, "_hetu_guards", ()),
    }


def define_system(
    components: tuple[CompType, ...] | list[CompType] | None = None,
    namespace: str = "default",
    force: bool = False,
    permission: Permission | None = None,
    retry: int = 9999,
    depends: tuple[Any, ...] | list[Any] = (),
    call_lock: bool = False,
    on_start: bool = False,
) -> Callable[[F], F]:
    """Register an ``async def f(ctx, *args)`` as a transactional System.

    把 ``async def f(ctx, *args)`` 注册为事务性 System。

    Args:
        components: the component tables the System reads or writes.
        namespace: the app namespace it belongs to.
        force: replace an existing definition of the same name.
        permission: who may call it (``None``: clients may not).
        retry: re-runs after a conflict (``0``: run once).
        depends: systems (or their names, or ``"name:tag"``) run inside this
            System's transaction via ``ctx.depend[key](ctx, ...)``.
        call_lock: make ``ctx.systems.call(name, ..., uuid=...)`` run once per uuid.
        on_start: run once per deployment when a worker starts.

    Retries:
        The body re-runs on ``RaceCondition`` up to ``retry`` times; keep side
        effects outside Redis out of it.

    Raises:
        ConfigError: not an async function, no ``ctx`` parameter, a keyword-only
            parameter without default, an OWNER/RLS permission, or a duplicate name.
    """
    if permission in (Permission.OWNER, Permission.RLS):
        raise ConfigError(
            f"permission={permission!r} is a read permission, not a call permission; "
            "use EVERYBODY, USER or ADMIN"
        )
    if retry < 0:
        raise ConfigError(f"retry must be >= 0, got {retry}")
    dep_names = tuple(d if isinstance(d, str) else d.__name__ for d in depends)

    def wrap(func: F) -> F:
        definition = SystemDefinition(
            name=func.__name__,
            namespace=namespace,
            func=func,
            components=tuple(components or ()),
            permission=permission,
            retry=retry,
            depends=dep_names,
            call_lock=call_lock,
            on_start=on_start,
            **_call_checks(func, "System"),
        )
        SystemDefines.add(definition, force=force)
        return func

    return wrap


def define_endpoint(
    namespace: str = "default",
    force: bool = False,
    permission: Permission | None = Permission.USER,
) -> Callable[[F], F]:
    """Register an ``async def f(ctx, *args)`` as a non-transactional endpoint.

    把 ``async def f(ctx, *args)`` 注册为非事务性 Endpoint。

    An endpoint runs Systems with ``await ctx.systems.call(name, *args)``; each call
    is its own transaction.

    Retries:
        Never re-run by the engine; see docs/architecture.md "Logic worker" for
        what a client sees when a worker dies mid-endpoint.

    Raises:
        ConfigError: not an async function, no ``ctx`` parameter, or a duplicate.
    """

    def wrap(func: F) -> F:
        definition = SystemDefinition(
            name=func.__name__,
            namespace=namespace,
            func=func,
            components=(),
            permission=permission,
            retry=0,
            depends=(),
            call_lock=False,
            on_start=False,
            endpoint=True,
            **_call_checks(func, "endpoint"),
        )
        SystemDefines.add(definition, force=force)
        return func

    return wrap


def rate_limit(times: int, per: float) -> Callable[[F], F]:
    """Allow ``times`` calls per ``per`` seconds per connection; place it below
    ``define_system``. The call past the limit gets code ``rate_limited``.

    每个连接每 ``per`` 秒最多调用 ``times`` 次；写在 ``define_system`` 下方。

    Raises:
        ConfigError: ``times`` < 1 or ``per`` <= 0.
    """
    if times < 1 or per <= 0:
        raise ConfigError(
            f"rate_limit needs times >= 1 and per > 0, got {times}, {per}"
        )

    def wrap(func: F) -> F:
        limits = (*getattr(func, "_hetu_rate_limits", ()), (times, float(per)))
        func._hetu_rate_limits = limits  # type: ignore[attr-defined]
        return func

    return wrap


def guard(check: Callable[..., Any]) -> Callable[[F], F]:
    """Run ``check(ctx, *args)`` (sync or async) before the body; place it below
    ``define_system``. Raising ``hetu.ClientReject`` rejects the call softly.

    在函数体之前运行 ``check(ctx, *args)``；写在 ``define_system`` 下方。
    抛出 ``hetu.ClientReject`` 可温和拒绝调用。

    Raises:
        ConfigError: ``check`` is not callable.
    """
    if not callable(check):
        raise ConfigError(f"guard needs a callable check, got {check!r}")

    def wrap(func: F) -> F:
        # Decorators apply bottom-up; prepend so guards run in the written order.
        func._hetu_guards = (check, *getattr(func, "_hetu_guards", ()))  # type: ignore[attr-defined]
        return func

    return wrap


def _tagged_copy(base: SystemDefinition, namespace: str, tag: str) -> SystemDefinition:
    comp_map = {c: c.duplicate(namespace, tag) for c in base.components}
    return replace(
        base,
        name=f"{base.name}:{tag}",
        namespace=namespace,
        components=tuple(comp_map.values()),
        permission=None,
        comp_map=comp_map,
    )


def resolve_systems(namespace: str) -> dict[str, SystemDefinition]:
    """Every System and endpoint an app in ``namespace`` can run: its own, the
    built-ins it depends on, and ``"name:tag"`` copies, keyed by name.

    Raises:
        ConfigError: a dependency names no known System, or depends on an endpoint.
    """
    result = SystemDefines.systems(namespace)
    pending = list(result.values())
    while pending:
        definition = pending.pop()
        for key in definition.depends:
            if key in result:
                continue
            base_name, _, tag = key.partition(":")
            base = SystemDefines.get(definition.namespace, base_name)
            if base is None or base.endpoint:
                raise ConfigError(
                    f"System {definition.name} depends on {key!r}, but no System "
                    f"named {base_name!r} is defined in namespace "
                    f"{definition.namespace!r} or among the built-ins"
                )
            dep = _tagged_copy(base, definition.namespace, tag) if tag else base
            result[key] = dep
            pending.append(dep)
    return result


def all_components(
    definition: SystemDefinition, systems: dict[str, SystemDefinition]
) -> set[CompType]:
    """Components a System touches, including those of its dependencies."""
    seen: set[str] = set()
    comps: set[CompType] = set()
    stack = [definition]
    while stack:
        d = stack.pop()
        comps.update(d.components)
        for key in d.depends:
            if key not in seen and key in systems:
                seen.add(key)
                stack.append(systems[key])
    return comps
