"""Component tables: schema definition, validation, registry and row construction.

组件（数据表）：结构定义、校验、注册表与行的构造。
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import math
import operator
import sys
from collections.abc import Callable
from types import FunctionType
from typing import Any, ClassVar, TypeVar, overload

import numpy as np

from hetu.errors import ConfigError
from hetu.permission import Permission
from hetu.property import (
    RESERVED_FIELDS,
    FieldSpec,
    Property,
    is_keyword,
    property_field,
    resolve_property,
)

__all__ = [
    "BaseComponent",
    "ComponentDefines",
    "Property",
    "define_component",
    "property_field",
]

_C = TypeVar("_C", bound="type[BaseComponent]")


class BaseComponent:
    """Base class of component tables; ``define_component`` fills the attributes.

    Rows are NumPy records (``new_row``), never instances of this class.

    组件表的基类；属性由 ``define_component`` 填写。行是 NumPy record。
    """

    name_: ClassVar[str] = ""
    namespace_: ClassVar[str] = ""
    permission_: ClassVar[Permission] = Permission.USER
    rls_compare_: ClassVar[tuple[str, str, str] | None] = None
    volatile_: ClassVar[bool] = False
    backend_: ClassVar[str] = "default"
    properties_: ClassVar[dict[str, Property]] = {}
    indexes_: ClassVar[dict[str, bool]] = {}
    dtypes: ClassVar[np.dtype[np.void]] = np.dtype([])
    _defaults_: ClassVar[np.recarray[Any, Any]]
    _duplicates_: ClassVar[dict[tuple[str, str], type[BaseComponent]]]

    @classmethod
    def new_row(cls, id_: int | None = None) -> np.record:
        """A row with every default, ``_version`` 0 and a fresh Snowflake id (or
        ``id_``). 新行：默认值、``_version`` 为 0、新的 Snowflake id（或 ``id_``）。

        Raises:
            ConfigError: if called on a class ``define_component`` did not define.
        """
        row = cls._require_defined()._defaults_.copy()[0]
        row["id"] = _new_id() if id_ is None else id_
        return row

    @classmethod
    def new_rows(cls, n: int) -> np.recarray[Any, Any]:
        """``n`` rows with defaults and fresh ids. ``n`` 行默认值与新 id。

        Raises:
            ConfigError: if called on a class ``define_component`` did not define.
        """
        rows = np.repeat(cls._require_defined()._defaults_, n).view(np.recarray)
        rows["id"] = [_new_id() for _ in range(n)]
        return rows

    @classmethod
    def schema_json(cls) -> str:
        """Canonical JSON of the schema; field order does not change it.

        规范化的结构 JSON；字段定义顺序不影响结果。
        """
        fields = {
            name: {
                "dtype": p.dtype,
                "default": _json_value(p.default),
                "unique": p.unique,
                "index": p.index,
                "is_bool": p.is_bool,
            }
            for name, p in cls.properties_.items()
        }
        doc = {
            "namespace": cls.namespace_,
            "name": cls.name_,
            "permission": cls.permission_.name,
            "rls_compare": list(cls.rls_compare_) if cls.rls_compare_ else None,
            "volatile": cls.volatile_,
            "backend": cls.backend_,
            "fields": fields,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def schema_hash(cls) -> str:
        """First 16 hex digits of the SHA-256 of ``schema_json()``. 结构哈希。"""
        return hashlib.sha256(cls.schema_json().encode()).hexdigest()[:16]

    @classmethod
    def duplicate(cls, namespace: str, tag: str) -> type[BaseComponent]:
        """A registered copy named ``"<name>:<tag>"`` with the same fields and
        permission, stored separately; the same class on every call.

        Raises:
            ConfigError: if ``tag`` is empty or has ``":"``, or ``cls`` is a copy.

        复制一个名为 ``"<name>:<tag>"`` 的组件（独立存储），重复调用返回同一个类。
        """
        cls._require_defined()
        dup = cls._duplicates_.get((namespace, tag))
        if dup is None:
            dup = cls._make_copy(namespace, tag)
            cls._duplicates_[(namespace, tag)] = dup
        if ComponentDefines.get(namespace, dup.name_) is not dup:
            # Registered again after ComponentDefines.clear().
            ComponentDefines.add(dup, force=True)
        return dup

    @classmethod
    def _make_copy(cls, namespace: str, tag: str) -> type[BaseComponent]:
        if not tag or ":" in tag:
            raise ConfigError(f"component {cls.name_}: bad duplicate tag {tag!r}")
        if ":" in cls.name_:
            raise ConfigError(
                f"component {cls.name_} is already a copy; duplicate the original"
            )
        _check_namespace(namespace)
        dup = type(cls.__name__, (BaseComponent,), {"__module__": cls.__module__})
        _finish(
            dup,
            name=f"{cls.name_}:{tag}",
            namespace=namespace,
            permission=cls.permission_,
            rls_compare=cls.rls_compare_,
            volatile=cls.volatile_,
            backend=cls.backend_,
            properties=cls.properties_,
        )
        return dup

    @classmethod
    def _require_defined(cls) -> type[BaseComponent]:
        if "_defaults_" not in vars(cls):
            raise ConfigError(f"{cls.__name__} is not decorated by define_component")
        return cls


# Names a field may not take and a class scan skips (set again by a redefinition).
_BASE_ATTRS = frozenset(dir(BaseComponent)) | {"_defaults_", "_duplicates_"}


class ComponentDefines:
    """Every defined component, keyed by ``(namespace, name)``; read it to compute
    clusters and the registry.

    所有已定义的组件，以 ``(namespace, name)`` 为键。
    """

    _by_key: ClassVar[dict[tuple[str, str], type[BaseComponent]]] = {}

    @classmethod
    def add(cls, comp: type[BaseComponent], *, force: bool = False) -> None:
        """Register ``comp``; replaces an existing one only with ``force``.

        Raises:
            ConfigError: if the name is taken in that namespace and not ``force``.
        """
        key = (comp.namespace_, comp.name_)
        old = cls._by_key.get(key)
        if old is not None and old is not comp and not force:
            raise ConfigError(
                f"component {comp.namespace_}.{comp.name_} is already defined in "
                f"module {old.__module__}; rename it or pass force=True"
            )
        cls._by_key[key] = comp

    @classmethod
    def get(cls, namespace: str, name: str) -> type[BaseComponent] | None:
        """The component ``name`` of ``namespace``, or None. 按名称查找组件。"""
        return cls._by_key.get((namespace, name))

    @classmethod
    def components(cls, namespace: str | None = None) -> list[type[BaseComponent]]:
        """All components, or those of ``namespace``, in definition order."""
        return [c for (ns, _), c in cls._by_key.items() if namespace in (None, ns)]

    @classmethod
    def clear(cls) -> None:
        """Forget every component (tests, or reloading an app). 清空注册表。"""
        cls._by_key.clear()


@overload
def define_component(_cls: _C, /) -> _C: ...


@overload
def define_component(
    _cls: None = None,
    /,
    *,
    namespace: str = "default",
    force: bool = False,
    permission: Permission = Permission.USER,
    volatile: bool = False,
    backend: str = "default",
    rls_compare: tuple[str, str, str] | None = None,
) -> Callable[[_C], _C]: ...


def define_component(
    _cls: _C | None = None,
    /,
    *,
    namespace: str = "default",
    force: bool = False,
    permission: Permission = Permission.USER,
    volatile: bool = False,
    backend: str = "default",
    rls_compare: tuple[str, str, str] | None = None,
) -> _C | Callable[[_C], _C]:
    """Turn a ``BaseComponent`` subclass into a component table; bare or with args.

    Args:
        namespace: the app namespace the component belongs to.
        force: replace a component of the same name in ``namespace``.
        permission: who may read/subscribe rows (``Permission``).
        volatile: the table may be flushed by migrations.
        backend: storage backend name.
        rls_compare: ``(op, row_field, ctx_attr)`` for ``Permission.RLS``; ``op`` is
            a function name of the ``operator`` module.

    Raises:
        ConfigError: naming the class and field, for any invalid definition.

    把 ``BaseComponent`` 子类定义为组件表，可直接使用或带参数使用。
    定义有误时抛出 ``ConfigError``，消息中写明类名与字段名。
    """

    def wrap(cls: _C) -> _C:
        _define(cls, namespace, force, permission, volatile, backend, rls_compare)
        return cls

    return wrap if _cls is None else wrap(_cls)


def _define(
    cls: type[BaseComponent],
    namespace: str,
    force: bool,
    permission: Permission,
    volatile: bool,
    backend: str,
    rls_compare: tuple[str, str, str] | None,
) -> None:
    if not (isinstance(cls, type) and issubclass(cls, BaseComponent)):
        raise ConfigError(f"{cls!r}: a component class must subclass BaseComponent")
    name = cls.__name__
    if is_keyword(name) or name.startswith("_"):
        raise ConfigError(f"component {name}: the class name is a keyword or private")
    _check_namespace(namespace)
    if not isinstance(permission, Permission):
        raise ConfigError(f"component {name}: permission must be a hetu.Permission")
    if not isinstance(backend, str) or not backend:
        raise ConfigError(f"component {name}: backend must be a non-empty string")
    properties = _collect_fields(cls)
    rls = _check_permission(name, permission, rls_compare, properties)
    _finish(
        cls,
        name=name,
        namespace=namespace,
        permission=permission,
        rls_compare=rls,
        volatile=bool(volatile),
        backend=backend,
        properties=properties,
    )
    ComponentDefines.add(cls, force=force)


def _finish(
    cls: type[BaseComponent],
    *,
    name: str,
    namespace: str,
    permission: Permission,
    rls_compare: tuple[str, str, str] | None,
    volatile: bool,
    backend: str,
    properties: dict[str, Property],
) -> None:
    """Set the class attributes every other module reads."""
    dtypes = np.dtype(
        [("id", "<i8")]
        + [(f, p.dtype) for f, p in properties.items()]
        + [("_version", "<i4")]
    )
    defaults = np.zeros(1, dtype=dtypes).view(np.recarray)
    for f, p in properties.items():
        defaults[f] = p.default
    indexes = {"id": True} | {f: p.unique for f, p in properties.items() if p.index}
    cls.name_ = name
    cls.namespace_ = namespace
    cls.permission_ = permission
    cls.rls_compare_ = rls_compare
    cls.volatile_ = volatile
    cls.backend_ = backend
    cls.properties_ = dict(properties)
    cls.indexes_ = indexes
    cls.dtypes = dtypes
    cls._defaults_ = defaults
    cls._duplicates_ = {}


def _collect_fields(cls: type[BaseComponent]) -> dict[str, Property]:
    hints = inspect.get_annotations(cls)
    module = sys.modules.get(cls.__module__)
    globalns = vars(module) if module is not None else {}
    properties: dict[str, Property] = {}
    for fname, value in vars(cls).items():
        if (fname.startswith("__") and fname.endswith("__")) or fname in _BASE_ATTRS:
            continue
        where = f"component {cls.__name__}: field {fname!r}"
        if isinstance(value, FieldSpec):
            if fname not in hints:
                raise ConfigError(f"{where}: missing type hint, e.g. `{fname}: int`")
            _check_field_name(cls.__name__, fname, where)
            properties[fname] = resolve_property(value, hints[fname], globalns, where)
        elif not isinstance(
            value, FunctionType | classmethod | staticmethod | property
        ):
            raise ConfigError(
                f"{where}: plain class attribute; declare fields as "
                f"`{fname}: <type> = hetu.property_field(<default>)`"
            )
    for fname in hints:
        if fname not in properties:
            where = f"component {cls.__name__}: field {fname!r}"
            _check_field_name(cls.__name__, fname, where)
            raise ConfigError(
                f"{where}: has no default; use `= hetu.property_field(<default>)`"
            )
    if not properties:
        raise ConfigError(f"component {cls.__name__}: defines no fields")
    return properties


def _check_field_name(cls_name: str, fname: str, where: str) -> None:
    if fname in RESERVED_FIELDS or fname.startswith("_"):
        raise ConfigError(f"{where}: reserved name (id, _version and _*)")
    if is_keyword(fname):
        raise ConfigError(f"{where}: a Python or C# keyword cannot be a field name")
    if fname in _BASE_ATTRS:
        raise ConfigError(f"{where}: shadows a BaseComponent attribute")
    if fname == cls_name:
        raise ConfigError(f"{where}: a field cannot have the class's name (C#)")


def _check_permission(
    name: str,
    permission: Permission,
    rls_compare: Any,
    properties: dict[str, Property],
) -> tuple[str, str, str] | None:
    """Check OWNER/RLS requirements; return ``rls_compare`` as a tuple."""
    if permission == Permission.OWNER:
        owner = properties.get("owner")
        if owner is None or np.dtype(owner.dtype).kind not in "iu" or owner.is_bool:
            raise ConfigError(
                f"component {name}: field 'owner' (an integer) is required by "
                f"Permission.OWNER"
            )
    if rls_compare is None:
        if permission == Permission.RLS:
            raise ConfigError(
                f"component {name}: Permission.RLS needs "
                f"rls_compare=(op, row_field, ctx_attr)"
            )
        return None
    if permission != Permission.RLS:
        raise ConfigError(f"component {name}: rls_compare needs Permission.RLS")
    if not (
        isinstance(rls_compare, tuple | list)
        and len(rls_compare) == 3
        and all(isinstance(s, str) and s for s in rls_compare)
    ):
        raise ConfigError(
            f"component {name}: rls_compare must be (op, row_field, ctx_attr) strings"
        )
    op, row_field, ctx_attr = rls_compare
    if op.startswith("_") or not _is_binary_function(getattr(operator, op, None)):
        raise ConfigError(
            f"component {name}: rls_compare op {op!r} is not a function of two "
            f"arguments in the operator module (e.g. 'eq', 'lt', 'contains')"
        )
    if row_field != "id" and row_field not in properties:
        raise ConfigError(
            f"component {name}: rls_compare row field {row_field!r} is not a field"
        )
    return (op, row_field, ctx_attr)


def _is_binary_function(fn: Any) -> bool:
    """True for ``operator`` functions called as ``op(row_value, ctx_value)``."""
    if not callable(fn) or inspect.isclass(fn):
        return False
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    return [p.kind in positional for p in params] == [True, True]


def _check_namespace(namespace: Any) -> None:
    if not isinstance(namespace, str) or not namespace.isidentifier():
        raise ConfigError(f"namespace {namespace!r} must be an identifier")


def _json_value(value: Any) -> Any:
    """Defaults as JSON: bytes in base64, non-finite floats as strings."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _new_id() -> int:
    # Imported lazily so defining components does not set up the id generator.
    from hetu import snowflake

    return snowflake.new_id()
