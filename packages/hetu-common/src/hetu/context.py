"""The context a System or endpoint receives as ``ctx``, and ``elevate``.

System 与 Endpoint 收到的上下文 ``ctx``，以及 ``elevate``。
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hetu.system import CompType, SystemDefinition


class SystemRunner(Protocol):
    """What a context needs from the process running it (the logic worker or
    ``hetu.testing``). Internal."""

    systems: dict[str, SystemDefinition]

    def repository(self, session: Any, comp: CompType) -> Any:
        """The repository of ``comp`` in ``session``."""
        ...

    async def restart_session(self, ctx: SystemContext, commit: bool) -> None:
        """Commit (or discard) ``ctx``'s session now and give it a fresh one."""
        ...

    async def login_holder(self, user_id: int) -> str | None:
        """``"<gw>:<conn>"`` holding ``user_id``'s login, or None."""
        ...

    async def call_system(
        self, ctx: SystemContext, name: str, args: tuple[Any, ...], uuid: str | None
    ) -> Any:
        """Run System ``name`` in its own transaction on behalf of ``ctx``."""
        ...


class Repositories:
    """``ctx.repo[Comp]``: the transaction's repository of ``Comp``.

    In a ``"name:tag"`` dependency copy, ``Comp`` is mapped to its tagged copy.
    """

    __slots__ = ("_comp_map", "_ctx")

    def __init__(self, ctx: SystemContext, comp_map: dict[Any, Any]) -> None:
        self._ctx = ctx
        self._comp_map = comp_map

    def __getitem__(self, comp: CompType) -> Any:
        ctx = self._ctx
        return ctx._runner.repository(ctx._session, self._comp_map.get(comp, comp))


class Depends:
    """``ctx.depend[key]``: call a dependency inside the current transaction."""

    __slots__ = ("_runner",)

    def __init__(self, runner: SystemRunner) -> None:
        self._runner = runner

    def __getitem__(self, key: str) -> Callable[..., Awaitable[Any]]:
        definition = self._runner.systems.get(key)
        if definition is None:
            raise KeyError(
                f"{key!r} is not a known dependency; list it in depends=(...) of "
                "the calling System"
            )
        if not definition.comp_map:
            return definition.func

        def call_tagged(ctx: SystemContext, *args: Any, **kwargs: Any) -> Any:
            return definition.func(ctx._tagged(definition.comp_map), *args, **kwargs)

        return call_tagged


class SystemCaller:
    """``ctx.systems``: run Systems, each in its own transaction."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: SystemContext) -> None:
        self._ctx = ctx

    async def call(self, name: str, *args: Any, uuid: str | None = None) -> Any:
        """Run System ``name`` with ``args`` in its own transaction and return what
        it returned. With ``uuid`` and a ``call_lock=True`` System, the body runs
        once per uuid and later calls return None.

        在独立事务中运行 System ``name``，返回其返回值。

        Raises:
            UniqueViolation: the System's commit broke a unique constraint.
            ClientReject: the System or a guard rejected the call.
        """
        return await self._ctx._runner.call_system(self._ctx, name, args, uuid)


class SystemContext:
    """What a System sees as ``ctx``. 系统函数收到的 ``ctx``。

    Attributes:
        caller: logged-in user id, 0 before login.
        connection_id: the gateway's id of the client connection.
        address: the client's address.
        group: the connection's group (``"admin..."`` for admins).
        user_data: per-connection dict; changes travel back to the gateway.
        timestamp: POSIX time the call was received (or fired, for FutureCalls).
        race_count: how many times this call was re-run after a conflict.
        repo: ``ctx.repo[Comp]`` repositories of the transaction.
        depend: ``ctx.depend[key](ctx, ...)`` runs a dependency in this transaction.
        systems: ``await ctx.systems.call(name, *args, uuid=None)``.
    """

    __slots__ = (
        "_call_seq",
        "_login",
        "_runner",
        "_session",
        "_value",
        "address",
        "caller",
        "connection_id",
        "depend",
        "gateway",
        "group",
        "race_count",
        "repo",
        "request_id",
        "systems",
        "timestamp",
        "user_data",
    )

    def __init__(
        self,
        runner: SystemRunner,
        session: Any,
        *,
        caller: int = 0,
        connection_id: int = 0,
        address: str = "",
        group: str = "",
        user_data: dict[str, Any] | None = None,
        timestamp: float = 0.0,
        race_count: int = 0,
        gateway: str = "",
        request_id: str = "",
    ) -> None:
        self._runner = runner
        self._session = session
        self._login: tuple[int, bool] | None = None
        self._call_seq = 0  # numbers ctx.systems.call()s: derived request ids
        self._value: Any = None  # what the body returned (for ctx.systems.call)
        self.caller = caller
        self.connection_id = connection_id
        self.address = address
        self.group = group
        self.user_data: dict[str, Any] = {} if user_data is None else user_data
        self.timestamp = timestamp
        self.race_count = race_count
        self.gateway = gateway
        self.request_id = request_id
        self.repo = Repositories(self, {})
        self.depend = Depends(runner)
        self.systems = SystemCaller(self)

    def is_admin(self) -> bool:
        """True on admin connections (``group`` starts with ``"admin"``)."""
        return self.group.startswith("admin")

    async def session_commit(self) -> None:
        """Commit what the transaction wrote so far and continue in a new one.

        提前提交当前事务已写入的内容，之后在新事务中继续。

        Raises:
            RaceCondition: a row read was changed meanwhile (the System re-runs).
            UniqueViolation: a unique value is taken.
        """
        await self._runner.restart_session(self, commit=True)

    async def session_discard(self) -> None:
        """Drop what the transaction wrote so far and continue in a new one.

        丢弃当前事务已写入的内容，之后在新事务中继续。
        """
        await self._runner.restart_session(self, commit=False)

    def _tagged(self, comp_map: dict[Any, Any]) -> SystemContext:
        view = copy.copy(self)
        view.repo = Repositories(view, comp_map)
        return view

    @property
    def connection_ref(self) -> str:
        """``"<gw>:<conn>"``: the value a login key holds for this connection."""
        return f"{self.gateway}:{self.connection_id}"


class EndpointContext(SystemContext):
    """What an endpoint sees as ``ctx``: a ``SystemContext`` without a transaction
    of its own; use ``ctx.systems.call``. 端点收到的 ``ctx``，自身不带事务。"""

    __slots__ = ()


async def elevate(
    ctx: SystemContext, user_id: int, kick_logged_in: bool = True
) -> tuple[bool, str | None]:
    """Log the connection in as ``user_id``.

    将当前连接登录为 ``user_id``。

    An older connection of the same user, on any gateway, is closed with reason
    "kicked" once the call commits. With ``kick_logged_in=False`` the login fails
    instead when the user is logged in elsewhere.

    Returns:
        ``(True, None)``, ``(False, "USER_ALREADY_LOGGED_IN")`` or
        ``(False, "CURRENT_CONNECTION_ALREADY_ELEVATED")``.

    Raises:
        ValueError: ``user_id`` is not an integer in 1 .. 2**63 - 1.
    """
    if not 0 < int(user_id) < 2**63:
        raise ValueError(
            f"elevate needs a user id in 1 .. 2**63 - 1 (int64), got {user_id!r}"
        )
    if ctx.caller:
        return False, "CURRENT_CONNECTION_ALREADY_ELEVATED"
    if not kick_logged_in:
        holder = await ctx._runner.login_holder(int(user_id))
        if holder is not None and holder != ctx.connection_ref:
            return False, "USER_ALREADY_LOGGED_IN"
    ctx.caller = int(user_id)
    ctx._login = (int(user_id), kick_logged_in)
    return True, None
