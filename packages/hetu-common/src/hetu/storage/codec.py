"""Byte encodings for rows and indexes in Redis.

行与索引在 Redis 中的字节编码。

Index members are ``enc(value) + enc(id)``: ``enc`` is order-preserving (byte order
equals Python's order of the values) and prefix-free, so ``ZRANGE ... BYLEX`` returns
rows sorted by value, then by ascending id.

- signed ints: ``value + 2**(bits-1)`` big-endian in the field's width; unsigned:
  big-endian; bool (stored as int8) like int8.
- floats (any width): the IEEE float64 bits, sign bit flipped for positives and all
  bits flipped for negatives; ``-0.0`` is stored as ``0.0`` (they compare equal) and
  NaN is rejected (it has no place in an order).
- str: UTF-8 (code point order), bytes: raw; both with ``0x00`` escaped as
  ``0x00 0xff`` and terminated by ``0x00 0x00``.

Row hashes store ints as decimal, floats as ``repr`` (round-trips exactly), str as
UTF-8 and bytes raw.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

ID_BYTES = 8
ID_MAX_SUFFIX = b"\xff" * ID_BYTES
"""Sorts after ``enc(id)`` of every id, so ``enc(v) + ID_MAX_SUFFIX`` closes ``v``."""

_F64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1

Encoder = Callable[[Any], bytes]
LexRange = tuple[bytes, bytes]
"""``(min, max)`` arguments of ``ZRANGE ... BYLEX``: ``[x``, ``(x``, ``-`` or ``+``."""


def encode_id(row_id: int) -> bytes:
    """Encode an int64 id, order-preserving, 8 bytes."""
    return (row_id + _SIGN).to_bytes(8, "big")


def decode_id(member: bytes) -> int:
    """The id at the end of an index member."""
    return int.from_bytes(member[-ID_BYTES:], "big") - _SIGN


def _int_encoder(width: int, signed: bool) -> Encoder:
    offset = 1 << (width * 8 - 1) if signed else 0

    def enc(value: Any) -> bytes:
        return (int(value) + offset).to_bytes(width, "big")

    return enc


def encode_float(value: Any) -> bytes:
    """Encode a float (any width) order-preserving, 8 bytes.

    Raises:
        ValueError: ``value`` is NaN.
    """
    f = float(value) + 0.0  # turns -0.0 into 0.0
    if f != f:
        raise ValueError("NaN cannot be stored in or looked up by an index")
    (u,) = _U64.unpack(_F64.pack(f))
    return _U64.pack(u ^ _ALL if u & _SIGN else u | _SIGN)


def encode_bytes(value: bytes) -> bytes:
    """Escape ``0x00`` and terminate, keeping byte order (prefix-free)."""
    return bytes(value).replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def encode_str(value: str) -> bytes:
    """UTF-8 (code point order; lone surrogates kept in order) then as bytes."""
    return encode_bytes(str(value).encode("utf-8", "surrogatepass"))


def value_encoder(dtype: str | np.dtype) -> Encoder:
    """The order-preserving encoder of index values of NumPy dtype ``dtype``.

    Raises:
        TypeError: the dtype cannot be indexed.
    """
    dt = np.dtype(dtype)
    kind = dt.kind
    if kind == "b":
        return _int_encoder(1, True)
    if kind in "iu":
        return _int_encoder(dt.itemsize, kind == "i")
    if kind == "f":
        return encode_float
    if kind == "U":
        return encode_str
    if kind == "S":
        return encode_bytes
    raise TypeError(f"dtype {dt.str!r} cannot be indexed")


def _int_limits(dt: np.dtype) -> tuple[int, int]:
    if dt.kind == "b":
        return -128, 127
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def parse_bound(dtype: str | np.dtype, bound: Any) -> tuple[Any, bool]:
    """Split a range bound into ``(value, inclusive)``.

    A str starting with ``(`` is exclusive, with ``[`` inclusive, on any index type
    (``"(1.5"`` on a float index); anything else is an inclusive value.

    Raises:
        ValueError: the text after the prefix is not a value of the index's type.
    """
    if not (isinstance(bound, str) and bound[:1] in ("(", "[")):
        return bound, True
    inclusive = bound[0] == "["
    text = bound[1:]
    kind = np.dtype(dtype).kind
    try:
        if kind in "iub":
            try:
                return int(text), inclusive
            except ValueError:
                return float(text), inclusive
        if kind == "f":
            return float(text), inclusive
    except ValueError:
        raise ValueError(
            f"range bound {bound!r} is not a number; an index of dtype "
            f"{np.dtype(dtype).str!r} needs e.g. '(1.5' or '[3'"
        ) from None
    if kind == "S":
        return text.encode(), inclusive
    return text, inclusive


def _int_side(
    dt: np.dtype, value: Any, inclusive: bool, left: bool
) -> tuple[str, int, bool]:
    """Normalise an int-index bound: ``("ok", int, inclusive)``, or ``"open"`` /
    ``"empty"`` when it lies outside the dtype's range."""
    if isinstance(value, float | np.floating):
        value = float(value)
        if value != value:
            raise ValueError("NaN is not a valid range bound")
        if not math.isinf(value) and not value.is_integer():
            value, inclusive = (math.ceil(value) if left else math.floor(value)), True
    lo, hi = _int_limits(dt)
    if value < lo or (value == lo and not inclusive and not left):
        return ("open" if left else "empty"), 0, True
    if value > hi or (value == hi and not inclusive and left):
        return ("empty" if left else "open"), 0, True
    return "ok", int(value), inclusive


def lex_range(dtype: str | np.dtype, left: Any, right: Any) -> LexRange | None:
    """BYLEX ``(min, max)`` selecting index values between ``left`` and ``right``.

    Bounds as accepted by ``Repository.range`` (``parse_bound``); ±inf and values
    outside an int index's range are clamped to it. Returns None when the range is
    certainly empty.

    Raises:
        ValueError: a bound is NaN or not a value of the index's type.
    """
    dt = np.dtype(dtype)
    enc = value_encoder(dt)
    sides: list[bytes] = []
    for bound, is_left in ((left, True), (right, False)):
        value, inclusive = parse_bound(dt, bound)
        if dt.kind in "iub":
            state, value, inclusive = _int_side(dt, value, inclusive, is_left)
            if state == "empty":
                return None
            if state == "open":
                sides.append(b"-" if is_left else b"+")
                continue
        e = enc(value)
        if is_left:
            sides.append(b"[" + e if inclusive else b"(" + e + ID_MAX_SUFFIX)
        else:
            sides.append(b"[" + e + ID_MAX_SUFFIX if inclusive else b"(" + e)
    return sides[0], sides[1]


def equal_range(encoded: bytes) -> LexRange:
    """BYLEX range of all members whose value encodes to ``encoded``."""
    return b"[" + encoded, b"[" + encoded + ID_MAX_SUFFIX


def lex_contains(lex: LexRange, member: bytes) -> bool:
    """Whether ``member`` lies in the BYLEX range ``lex`` (as Redis would decide)."""
    lo, hi = lex
    if lo != b"-" and (member < lo[1:] if lo[0] == 0x5B else member <= lo[1:]):
        return False
    return hi == b"+" or (member <= hi[1:] if hi[0] == 0x5B else member < hi[1:])


def field_to_redis(dtype: str | np.dtype) -> Callable[[Any], str | bytes]:
    """How a Python field value (from ``record.item()``) is written to a row hash."""
    kind = np.dtype(dtype).kind
    if kind in "iu":
        return str
    if kind == "b":
        return _bool_to_redis
    if kind == "f":
        return repr
    if kind == "U":
        return str
    return bytes


def _bool_to_redis(value: Any) -> str:
    return str(int(value))


def _decode_str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _decode_bytes(raw: bytes) -> bytes:
    return raw


def field_from_redis(dtype: str | np.dtype) -> Callable[[bytes], Any]:
    """How a row hash value read from Redis becomes a Python field value."""
    kind = np.dtype(dtype).kind
    if kind in "iub":
        return int
    if kind == "f":
        return float
    if kind == "U":
        return _decode_str
    return _decode_bytes
