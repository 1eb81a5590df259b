"""Component fields: ``property_field``, dtype resolution and default checks.

组件字段：``property_field``、dtype 解析与默认值校验。
"""

from __future__ import annotations

import keyword
import math
import warnings
from typing import Any

import msgspec
import numpy as np

from hetu.errors import ConfigError

# The C# SDK declares one member per field, so C# keywords cannot be field names.
CSHARP_KEYWORDS = frozenset(
    {
        "abstract",
        "as",
        "base",
        "bool",
        "break",
        "byte",
        "case",
        "catch",
        "char",
        "checked",
        "class",
        "const",
        "continue",
        "decimal",
        "default",
        "delegate",
        "do",
        "double",
        "else",
        "enum",
        "event",
        "explicit",
        "extern",
        "false",
        "finally",
        "fixed",
        "float",
        "for",
        "foreach",
        "goto",
        "if",
        "implicit",
        "in",
        "int",
        "interface",
        "internal",
        "is",
        "lock",
        "long",
        "namespace",
        "new",
        "null",
        "object",
        "operator",
        "out",
        "override",
        "params",
        "private",
        "protected",
        "public",
        "readonly",
        "ref",
        "return",
        "sbyte",
        "sealed",
        "short",
        "sizeof",
        "stackalloc",
        "static",
        "string",
        "struct",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "uint",
        "ulong",
        "unchecked",
        "unsafe",
        "ushort",
        "using",
        "virtual",
        "void",
        "volatile",
        "while",
    }
)
RESERVED_FIELDS = ("id", "_version")
_ALLOWED_KINDS = "iufbUS"


class Property(msgspec.Struct, frozen=True):
    """One user field of a component, as resolved by ``define_component``.

    ``dtype`` is a normalized NumPy dtype string (``"<i8"``, ``"<U256"``, ``"|S16"``);
    bool fields are stored as ``"|i1"`` with ``is_bool=True``. ``default`` is a plain
    Python value that fits ``dtype``.

    组件的一个字段。``dtype`` 为规范化的 NumPy dtype 字符串；bool 以 ``"|i1"``
    存储且 ``is_bool=True``。
    """

    default: Any
    unique: bool = False
    index: bool = False
    dtype: str = ""
    is_bool: bool = False


class FieldSpec(msgspec.Struct, frozen=True):
    """What ``property_field`` returns; resolved into a ``Property`` at definition."""

    default: Any
    unique: bool
    index: bool | None
    dtype: Any


def property_field(
    default: Any, unique: bool = False, index: bool | None = None, dtype: Any = ""
) -> Any:
    """Declare a component field: ``name: np.int32 = hetu.property_field(0)``.

    Args:
        default: the value of new rows (no nulls); must fit the dtype.
        unique: values must be unique across rows; implies ``index``.
        index: keep a sorted index for ``get``/``range``; ``None`` means ``unique``.
        dtype: a NumPy dtype string such as ``"U256"``; ``""`` uses the type hint.

    Raises:
        ConfigError: later, from ``define_component``, if the field is invalid.

    声明组件字段。``default`` 为新行的默认值；``unique`` 表示唯一（隐含索引）；
    ``index=None`` 表示与 ``unique`` 相同；``dtype=""`` 表示取类型注解。
    """
    return FieldSpec(default, unique, index, dtype)


def resolve_property(
    spec: FieldSpec, hint: Any, globalns: dict[str, Any], where: str
) -> Property:
    """Resolve ``spec`` with its type ``hint`` (string hints are evaluated in
    ``globalns``) into a checked ``Property``; ``where`` prefixes error messages.

    Raises:
        ConfigError: on a bad dtype or a default that does not fit it.
    """
    # dtype="" (or None) means "from the type hint".
    from_hint = spec.dtype is None or (isinstance(spec.dtype, str) and not spec.dtype)
    dt, is_bool = _resolve_dtype(hint if from_hint else spec.dtype, globalns, where)
    default = _check_default(spec.default, dt, is_bool, where)
    unique = bool(spec.unique)
    index = unique or bool(spec.index)
    return Property(default, unique, index, dt.str, is_bool)


def _resolve_dtype(
    source: Any, globalns: dict[str, Any], where: str
) -> tuple[np.dtype[Any], bool]:
    """Turn a type hint or dtype spec into ``(normalized dtype, is_bool)``."""
    if source is None:
        raise ConfigError(f"{where}: missing type hint")
    if source is str or source is bytes:
        raise ConfigError(
            f"{where}: {source.__name__} needs a width, "
            f'e.g. hetu.property_field("", dtype="U32")'
        )
    dt = _np_dtype(source)
    if dt is None and isinstance(source, str):
        # A string hint ("np.int32" under `from __future__ import annotations`).
        try:
            dt = _np_dtype(eval(source, dict(globalns)))
        except Exception:
            dt = None
    if dt is None:
        raise ConfigError(f"{where}: cannot read type {source!r} as a NumPy dtype")
    if (
        dt.kind not in _ALLOWED_KINDS
        or dt.shape != ()
        or (dt.kind == "f" and dt.itemsize > 8)
    ):
        raise ConfigError(
            f"{where}: dtype {dt} is not supported; use an int, uint, float16/32/64, "
            f"bool, U<n> or S<n>"
        )
    if dt.kind in "US" and dt.itemsize == 0:
        raise ConfigError(f'{where}: {dt.kind} needs a width, e.g. dtype="{dt.kind}32"')
    if dt.kind == "b":
        return np.dtype("i1"), True
    return dt.newbyteorder("<"), False


def _np_dtype(source: Any) -> np.dtype[Any] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.dtype(source)
        except (TypeError, ValueError, Warning):
            return None


def _check_default(default: Any, dt: np.dtype[Any], is_bool: bool, where: str) -> Any:
    """Validate ``default`` against ``dt``; return it as a plain Python value."""
    bad = f"{where}: default {default!r} does not fit dtype {dt.str}"
    numeric = isinstance(default, int | float | np.integer | np.floating | np.bool_)
    if is_bool:
        if not numeric or default not in (0, 1):
            raise ConfigError(f"{bad} (bool: True or False)")
        return bool(default)
    if dt.kind in "iu":
        if isinstance(default, float | np.floating) and float(default).is_integer():
            default = int(default)
        if not isinstance(default, int | np.integer | np.bool_):
            raise ConfigError(f"{bad} (not an integer)")
        info = np.iinfo(dt)
        if not info.min <= int(default) <= info.max:
            raise ConfigError(f"{bad} (range {info.min}..{info.max})")
        return int(default)
    if dt.kind == "f":
        if not numeric:
            raise ConfigError(f"{bad} (not a number)")
        if math.isfinite(default) and abs(default) > float(np.finfo(dt).max):
            raise ConfigError(f"{bad} (out of range)")
        return float(default)
    if dt.kind == "U":
        if not isinstance(default, str) or len(default) > dt.itemsize // 4:
            raise ConfigError(f"{bad} (a str of at most {dt.itemsize // 4} chars)")
        return str(default)
    if isinstance(default, str) and default.isascii():
        default = default.encode()
    if not isinstance(default, bytes) or len(default) > dt.itemsize:
        raise ConfigError(f"{bad} (bytes of at most {dt.itemsize} bytes)")
    return bytes(default)


def is_keyword(name: str) -> bool:
    """True if ``name`` is a Python or C# keyword (the C# SDK must compile)."""
    return keyword.iskeyword(name) or name in CSHARP_KEYWORDS
