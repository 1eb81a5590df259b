"""Invalid component definitions raise ConfigError naming the class and the field."""

import keyword
from typing import Any

import numpy as np
import pytest

import hetu
from hetu.component import BaseComponent, ComponentDefines
from hetu.errors import ConfigError
from hetu.property import CSHARP_KEYWORDS

ALL_CSHARP_KEYWORDS = """abstract as base bool break byte case catch char checked
class const continue decimal default delegate do double else enum event explicit extern
false finally fixed float for foreach goto if implicit in int interface internal is lock
long namespace new null object operator out override params private protected public
readonly ref return sbyte sealed short sizeof stackalloc static string struct switch
this throw true try typeof uint ulong unchecked unsafe ushort using virtual void
volatile while""".split()  # noqa: SIM905


def define(
    name: str, /, *, body: dict[str, Any] | None = None, **kwargs: Any
) -> type[BaseComponent]:
    """Define component ``name`` in namespace TcErr from a class ``body`` whose
    ``(hint, value)`` pairs become annotations and values (hint None: no hint)."""
    ns: dict[str, Any] = {"__annotations__": {}, "__module__": __name__}
    for fname, (hint, value) in (body or {}).items():
        if hint is not None:
            ns["__annotations__"][fname] = hint
        if value is not None:
            ns[fname] = value
    cls = type(name, (BaseComponent,), ns)
    kwargs.setdefault("namespace", "TcErr")
    return hetu.define_component(**kwargs)(cls)


def field(hint: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return (hint, hetu.property_field(*args, **kwargs))


def test_csharp_keyword_list_is_complete() -> None:
    assert set(ALL_CSHARP_KEYWORDS) == CSHARP_KEYWORDS


@pytest.mark.parametrize("fname", sorted(set(keyword.kwlist) | CSHARP_KEYWORDS))
def test_keyword_field_names(fname: str) -> None:
    with pytest.raises(ConfigError, match=rf"TcKw.*'{fname}'.*keyword"):
        define("TcKw", body={fname: field(int, 0)})


@pytest.mark.parametrize("fname", ["id", "_version", "_private", "__x"])
def test_reserved_field_names(fname: str) -> None:
    with pytest.raises(ConfigError, match=rf"TcReserved.*'{fname}'.*reserved"):
        define("TcReserved", body={fname: field(int, 0)})


@pytest.mark.parametrize("fname", ["new_row", "dtypes", "name_", "duplicate"])
def test_field_shadowing_base_attributes(fname: str) -> None:
    with pytest.raises(ConfigError, match=rf"TcShadow.*'{fname}'.*shadows"):
        define("TcShadow", body={fname: field(int, 0)})


def test_field_named_like_the_class() -> None:
    with pytest.raises(ConfigError, match=r"TcSelf.*'TcSelf'"):
        define("TcSelf", body={"TcSelf": field(int, 0)})


@pytest.mark.parametrize("name", ["string", "int", "while", "None"])
def test_keyword_component_names(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"component {name}: .*keyword"):
        define(name, body={"a": field(int, 0)})


@pytest.mark.parametrize(
    ("hint", "kwargs", "reason"),
    [
        (str, {"default": ""}, "needs a width"),
        (bytes, {"default": b""}, "needs a width"),
        ("str", {"default": ""}, "needs a width"),
        (np.str_, {"default": ""}, "needs a width"),
        (np.bytes_, {"default": b""}, "needs a width"),
        (int, {"default": "", "dtype": "U"}, "needs a width"),
        (object, {"default": 0}, "not supported"),
        (complex, {"default": 0}, "not supported"),
        (np.complex64, {"default": 0}, "not supported"),
        (np.datetime64, {"default": 0}, "not supported"),
        ("M8[s]", {"default": 0}, "not supported"),
        (np.longdouble, {"default": 0}, "not supported"),
        (int, {"default": 0, "dtype": "(2,)i4"}, "not supported"),
        (list, {"default": 0}, "not supported"),
        ("no_such_type", {"default": 0}, "cannot read type"),
        ("<<U16", {"default": 0}, "cannot read type"),
    ],
)
def test_bad_dtypes(hint: Any, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"TcDtype.*'bad'.*{reason}"):
        define("TcDtype", body={"bad": field(hint, **kwargs)})


@pytest.mark.parametrize(
    ("hint", "default"),
    [
        (np.int8, 300),
        (np.int8, -129),
        (np.uint8, -1),
        (np.uint8, 256),
        (np.int16, 40000),
        (np.uint32, 2**32),
        (np.int64, 2**63),
        (np.uint64, 2**64),
        (np.uint64, 10**400),
        (np.int32, 1.5),
        (np.int32, float("inf")),
        (np.int32, float("nan")),
        (np.int32, "1"),
        (np.int32, None),
        (np.float32, "1.0"),
        (np.float16, 70000.0),
        (np.float32, 1e39),
        (np.float64, b"1"),
        (bool, 2),
        (bool, "yes"),
        ("U16", "x" * 17),
        ("U16", b"bytes"),
        ("U16", 5),
        ("S4", b"12345"),
        ("S4", "é"),
        ("S4", 5),
    ],
)
def test_defaults_that_do_not_fit(hint: Any, default: Any) -> None:
    with pytest.raises(ConfigError, match=r"TcDefault.*'bad'.*default"):
        define("TcDefault", body={"bad": field(hint, default)})


def test_missing_type_hint() -> None:
    with pytest.raises(ConfigError, match=r"TcNoHint.*'bad'.*type hint"):
        define("TcNoHint", body={"ok": field(int, 0), "bad": (None, field(int, 0)[1])})


def test_hint_without_property_field() -> None:
    with pytest.raises(ConfigError, match=r"TcNoDefault.*'bad'.*property_field"):
        define("TcNoDefault", body={"ok": field(int, 0), "bad": (int, None)})


@pytest.mark.parametrize("value", [5, "x", None])
def test_plain_class_attribute(value: Any) -> None:
    body = {"__annotations__": {"ok": int}, "ok": hetu.property_field(0), "bad": value}
    cls = type("TcPlain", (BaseComponent,), body)
    with pytest.raises(ConfigError, match=r"TcPlain.*'bad'.*property_field"):
        hetu.define_component(namespace="TcErr")(cls)


def test_undefined_component_cannot_make_rows() -> None:
    cls = type("TcUndefined", (BaseComponent,), {})
    with pytest.raises(ConfigError, match="TcUndefined is not decorated"):
        cls.new_row(id_=1)
    with pytest.raises(ConfigError, match="TcUndefined is not decorated"):
        cls.duplicate("TcErr", "x")


def test_plain_class_attribute_with_hint() -> None:
    with pytest.raises(ConfigError, match=r"TcPlainHint.*'bad'.*property_field"):
        define("TcPlainHint", body={"ok": field(int, 0), "bad": (int, 5)})


def test_methods_are_allowed() -> None:
    def describe(self: object) -> str:
        return "x"

    cls = type(
        "TcMethods",
        (BaseComponent,),
        {
            "__annotations__": {"a": int},
            "a": hetu.property_field(0),
            "describe": describe,
            "helper": staticmethod(lambda: 1),
        },
    )
    assert hetu.define_component(namespace="TcErr")(cls).properties_.keys() == {"a"}


def test_no_fields() -> None:
    with pytest.raises(ConfigError, match=r"TcEmpty.*no fields"):
        define("TcEmpty")


def test_not_a_base_component() -> None:
    with pytest.raises(ConfigError, match=r"BaseComponent"):
        hetu.define_component(type("TcPlainCls", (), {}))  # type: ignore[arg-type]


def test_rls_compare_needs_rls_permission() -> None:
    with pytest.raises(ConfigError, match=r"TcRls1.*rls_compare needs Permission.RLS"):
        define(
            "TcRls1",
            body={"a": field(int, 0)},
            permission=hetu.Permission.USER,
            rls_compare=("eq", "a", "caller"),
        )


def test_rls_permission_needs_rls_compare() -> None:
    with pytest.raises(ConfigError, match=r"TcRls2.*Permission.RLS needs"):
        define("TcRls2", body={"a": field(int, 0)}, permission=hetu.Permission.RLS)


@pytest.mark.parametrize(
    ("rls", "reason"),
    [
        (("no_such_op", "a", "caller"), "'no_such_op' is not a function"),
        (("__eq__", "a", "caller"), "is not a function"),
        (("attrgetter", "a", "caller"), "'attrgetter' is not a function"),
        (("not_", "a", "caller"), "'not_' is not a function"),
        (("eq", "missing", "caller"), "row field 'missing' is not a field"),
        (("eq", "a"), "must be"),
        (("eq", "a", ""), "must be"),
        ("eq a caller", "must be"),
    ],
)
def test_bad_rls_compare(rls: Any, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"TcRls3.*{reason}"):
        define(
            "TcRls3",
            body={"a": field(int, 0)},
            permission=hetu.Permission.RLS,
            rls_compare=rls,
        )


def test_good_rls_compare() -> None:
    comp = define(
        "TcRls4",
        body={"level": field(np.int32, 0)},
        permission=hetu.Permission.RLS,
        rls_compare=["le", "level", "max_level"],
    )
    assert comp.rls_compare_ == ("le", "level", "max_level")
    assert comp.schema_json().count('"rls_compare":["le","level","max_level"]') == 1


@pytest.mark.parametrize(
    "body",
    [
        {"a": field(int, 0)},
        {"owner": field(np.float64, 0)},
        {"owner": field("U8", "")},
        {"owner": field(bool, False)},
    ],
)
def test_owner_permission_needs_integer_owner_field(body: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"TcOwner.*'owner'.*Permission.OWNER"):
        define("TcOwner", body=body, permission=hetu.Permission.OWNER)


def test_owner_permission_ok() -> None:
    comp = define(
        "TcOwnerOk",
        body={"owner": field(np.int64, 0, index=True)},
        permission=hetu.Permission.OWNER,
    )
    assert comp.permission_ is hetu.Permission.OWNER


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"namespace": ""}, "namespace"),
        ({"namespace": "a b"}, "namespace"),
        ({"namespace": "a:b"}, "namespace"),
        ({"permission": "USER"}, "permission"),
        ({"backend": ""}, "backend"),
    ],
)
def test_bad_decorator_arguments(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        define("TcArgs", body={"a": field(int, 0)}, **kwargs)


def test_failed_definition_registers_nothing() -> None:
    with pytest.raises(ConfigError):
        define("TcNotRegistered", body={"a": field(np.int8, 1000)})
    assert ComponentDefines.get("TcErr", "TcNotRegistered") is None
