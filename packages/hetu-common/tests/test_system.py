"""define_system / define_endpoint: argument ranges, guards, rate limits, depends."""

import numpy as np
import pytest

import hetu
from hetu.errors import ConfigError
from hetu.system import SystemDefines, resolve_systems

NS = "TestSystem"


@hetu.define_component(namespace=NS, force=True)
class Item(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)


def check_positive(ctx, n, *rest):
    if n <= 0:
        raise hetu.ClientReject("bad_n")


@hetu.define_system(
    namespace=NS, components=(Item,), permission=hetu.Permission.USER, force=True
)
@hetu.rate_limit(3, 1.0)
@hetu.guard(check_positive)
async def take(ctx, n, extra=1, *more):
    return n


@hetu.define_endpoint(namespace=NS, force=True)
async def hello(ctx, a, b=2):
    return a


def test_argument_range_from_signature() -> None:
    take_def = SystemDefines.get(NS, "take")
    assert take_def is not None
    assert (take_def.min_args, take_def.max_args) == (1, None)
    hello_def = SystemDefines.get(NS, "hello")
    assert hello_def is not None and hello_def.endpoint
    assert (hello_def.min_args, hello_def.max_args) == (1, 2)
    assert hello_def.permission is hetu.Permission.USER


def test_guards_and_rate_limits_recorded_below_define_system() -> None:
    take_def = SystemDefines.get(NS, "take")
    assert take_def is not None
    assert take_def.rate_limits == ((3, 1.0),)
    assert take_def.guards == (check_positive,)


def test_bad_definitions_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="async def"):

        @hetu.define_system(namespace=NS, force=True)  # pyright: ignore[reportArgumentType]
        def not_async(ctx):  # pyright: ignore[reportUnusedFunction]
            pass

    with pytest.raises(ConfigError, match="read permission"):
        hetu.define_system(namespace=NS, permission=hetu.Permission.OWNER)
    with pytest.raises(ConfigError, match="already defined"):

        @hetu.define_system(namespace=NS)
        async def take(ctx):  # pyright: ignore[reportUnusedFunction]
            pass

    with pytest.raises(ConfigError, match="keyword-only"):

        @hetu.define_system(namespace=NS, force=True)
        async def kwonly(ctx, *, x):  # pyright: ignore[reportUnusedFunction]
            pass


def test_tagged_dependency_runs_on_duplicated_components() -> None:
    @hetu.define_system(namespace=NS, components=(Item,), force=True)
    async def base_sys(ctx):
        pass

    @hetu.define_system(namespace=NS, depends=("base_sys:copy", base_sys), force=True)
    async def user_sys(ctx):
        pass

    systems = resolve_systems(NS)
    copy_def = systems["base_sys:copy"]
    assert copy_def.components == (Item.duplicate(NS, "copy"),)
    assert copy_def.comp_map == {Item: Item.duplicate(NS, "copy")}
    assert systems["base_sys"].components == (Item,)


def test_unknown_dependency_is_named() -> None:
    @hetu.define_system(namespace="TestSystemBad", depends=("nope",), force=True)
    async def lonely(ctx):
        pass

    with pytest.raises(ConfigError, match="'nope'"):
        resolve_systems("TestSystemBad")
