"""Declared parameter validation with one message format for the whole library.

Every check raises ``ValueError`` or ``TypeError`` worded as
"The '<name>' parameter of <owner> must be <expected>. Got <got>." so that users
see the same shape of error whatever method they call.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

__all__ = [
    "ParameterError",
    "fail",
    "check_bool",
    "check_choice",
    "check_int",
    "check_real",
    "check_per_input",
    "describe",
]


class ParameterError(ValueError):
    """A ``ValueError`` raised for an invalid argument; carries the parameter name."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class ParameterTypeError(TypeError):
    """A ``TypeError`` raised for an argument of the wrong type."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def describe(value: Any) -> str:
    """Short description of ``value`` for error messages (shapes, not contents, of tensors)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(
    owner: str, name: str, expected: str, got: Any, *, type_error: bool = False, raw: bool = False
) -> None:
    """Raise the uniform error. ``raw=True`` uses ``got`` verbatim instead of describing it."""
    shown = got if raw else describe(got)
    message = f"The '{name}' parameter of {owner} must be {expected}. Got {shown}."
    if type_error:
        raise ParameterTypeError(message, parameter=name)
    raise ParameterError(message, parameter=name)


def check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(owner, name, "a bool", value, type_error=True)
    return value


def check_int(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Validate an integer (bools are rejected) within optional bounds."""
    if value is None and allow_none:
        return None
    bounds = _bounds_text(minimum, maximum)
    expected = "an int" + bounds + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, Integral):
        fail(owner, name, expected, value, type_error=True)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(owner, name, expected, value)
    return value


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Validate a real number within optional bounds (``strict_minimum`` makes it ``> minimum``)."""
    if value is None and allow_none:
        return None
    if strict_minimum and minimum is not None:
        bounds = f" > {minimum}"
    else:
        bounds = _bounds_text(minimum, maximum)
    expected = "a float" + bounds + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, Real):
        fail(owner, name, expected, value, type_error=True)
    value = float(value)
    too_small = minimum is not None and (value <= minimum if strict_minimum else value < minimum)
    if too_small or (maximum is not None and value > maximum):
        fail(owner, name, expected, value)
    return value


def check_choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> str:
    options = list(choices)
    if value not in options:
        fail(owner, name, f"one of {options}", value)
    return value


def check_per_input(
    owner: str, name: str, value: Any, n_inputs: int, *, item_check=None
) -> tuple[Any, ...]:
    """Expand a scalar to one value per input, or check a tuple has one value per input."""
    if isinstance(value, (tuple, list)):
        if len(value) != n_inputs:
            fail(
                owner,
                name,
                f"a single value or a tuple with one value per input ({n_inputs})",
                f"a {type(value).__name__} of length {len(value)}",
                raw=True,
            )
        values = tuple(value)
    else:
        values = (value,) * n_inputs
    if item_check is not None:
        values = tuple(item_check(owner, name, v) for v in values)
    return values


def _bounds_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
