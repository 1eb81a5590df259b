"""Client arguments are checked against a System's type hints."""

from typing import Any

import numpy as np

from hetu.arguments import arg_specs, convert_args


async def typed(ctx: Any, n: int, x: float, name: str, flag: bool = False) -> None:
    pass


async def numpy_typed(ctx: Any, n: np.int32, x: np.float64, *rest: int) -> None:
    pass


async def untyped(ctx, a, b=1):
    pass


def check(func: Any, *args: Any) -> tuple[list[Any], str | None]:
    specs, var = arg_specs(func)
    values = list(args)
    return values, convert_args(specs, var, values)


def test_fitting_values_are_converted() -> None:
    assert check(typed, 3, 1, "bob") == ([3, 1.0, "bob"], None)
    values, misfit = check(typed, 3, 1, "bob", True)
    assert misfit is None and values[3] is True
    assert check(numpy_typed, 3, 2.5, 4, 5) == ([3, 2.5, 4, 5], None)


def test_misfits_name_the_argument() -> None:
    _, misfit = check(typed, "x", 1.0, "bob")
    assert misfit is not None and "argument 1 (n)" in misfit
    _, misfit = check(typed, 1, 1.0, 7)
    assert misfit is not None and "argument 3 (name)" in misfit
    _, misfit = check(numpy_typed, 1, 1.0, 2, "three")
    assert misfit is not None and "argument 4 (rest)" in misfit


def test_unannotated_parameters_cost_nothing() -> None:
    assert arg_specs(untyped) == ((), None)
    assert check(untyped, object(), "anything")[1] is None
