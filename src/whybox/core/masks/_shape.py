"""An int or one int per dimension, as a tuple (window shapes, strides, grid cells)."""

from __future__ import annotations

from collections.abc import Sequence

from ..validation import ParameterError

__all__ = ["as_shape"]


def as_shape(value: int | Sequence[int], ndim: int, name: str, fn: str) -> tuple[int, ...]:
    """``value`` repeated ``ndim`` times if an int, else checked to have ``ndim`` entries.

    Parameters
    ----------
    value : int or sequence of int
    ndim : int
        Number of dimensions.
    name, fn : str
        Parameter and function names for the error message.

    Returns
    -------
    tuple of int, length ``ndim``
    """
    if isinstance(value, bool):
        raise ParameterError(
            f"The '{name}' parameter of {fn} must be an int or a tuple of ints.", parameter=name
        )
    if isinstance(value, int):
        return (value,) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ParameterError(
            f"The '{name}' parameter of {fn} must have {ndim} entries (one per input "
            f"dimension). Got {len(out)}: {tuple(value)}.",
            parameter=name,
        )
    return out
