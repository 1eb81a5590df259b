"""Client arguments checked against a System's type hints.

按 System 的类型注解检查客户端传入的参数。

Clients send positional msgpack values. A parameter annotated with a type msgspec
can check (``int``, ``float``, ``str``, ``bytes``, ``bool``, ``list[int]``, NumPy
scalar types, ...) gets its value converted leniently (``1`` for a ``float`` is
fine, ``"x"`` for an ``int`` is not); an unannotated or unsupported one is passed
as is. A value that does not fit makes the call fail with ``bad_arguments`` before
the System runs.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

ArgSpec = tuple[str, Any]
"""``(parameter name, type to convert to)``; the type is ``Any`` when unchecked."""


def _wire_type(hint: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, np.generic):
        if issubclass(hint, np.bool_):
            return bool
        if issubclass(hint, np.integer):
            return int
        if issubclass(hint, np.floating):
            return float
        return Any
    try:
        msgspec.inspect.type_info(hint)
    except (TypeError, ValueError):
        return Any
    return hint


def arg_specs(func: Callable[..., Any]) -> tuple[tuple[ArgSpec, ...], ArgSpec | None]:
    """The positional parameters after ``ctx`` and the ``*args`` one, if any."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable string annotations: leave those unchecked
        hints = {}
    params = list(inspect.signature(func).parameters.values())[1:]
    positional: list[ArgSpec] = []
    var: ArgSpec | None = None
    for p in params:
        spec = (p.name, _wire_type(hints[p.name]) if p.name in hints else Any)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(spec)
        elif p.kind is p.VAR_POSITIONAL:
            var = spec
    if all(wire is Any for _, wire in [*positional, *([var] if var else [])]):
        return (), None  # nothing to check: no cost per call
    return tuple(positional), var


def convert_args(
    specs: tuple[ArgSpec, ...], var: ArgSpec | None, args: list[Any]
) -> str | None:
    """Convert ``args`` in place; the reason the first misfit fails, else None."""
    for i, value in enumerate(args):
        name, wire = specs[i] if i < len(specs) else (var or ("", Any))
        if wire is Any:
            continue
        try:
            args[i] = msgspec.convert(value, wire, strict=False)
        except msgspec.ValidationError as e:
            return f"argument {i + 1} ({name}): {e}"
    return None
