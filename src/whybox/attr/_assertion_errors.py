"""Errors of the Captum-compatible helpers that are also ``AssertionError``.

Captum checks most arguments with ``assert``, and Captum code catches ``AssertionError``.
The drop-in helpers (summarizers, :class:`~whybox.attr.DataLoaderAttribution`, ...) raise
whybox's uniform ``ValueError`` / ``TypeError`` ("The 'x' parameter of Owner must be ...")
as instances of both, so ``except AssertionError`` keeps working after a migration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn

from whybox.core.validation import ParameterError, ParameterTypeError, describe

__all__ = ["DropInValueError", "DropInTypeError", "fail_assert", "raised_as_assertions"]


class DropInValueError(ParameterError, AssertionError):
    """A :class:`~whybox.core.validation.ParameterError` that Captum raised as an assertion."""


class DropInTypeError(ParameterTypeError, AssertionError):
    """A :class:`~whybox.core.validation.ParameterTypeError` that Captum raised as an
    assertion."""


def fail_assert(
    owner: str, name: str, expected: str, got: Any, *, type_error: bool = False, raw: bool = False
) -> NoReturn:
    """Raise the uniform parameter error, also an ``AssertionError``.

    Parameters
    ----------
    owner, name, expected, got
        As :func:`whybox.core.validation.fail`: "The '<name>' parameter of <owner> must be
        <expected>. Got <got>."
    type_error : bool, keyword-only
        Raise :class:`DropInTypeError` (a ``TypeError``) instead of :class:`DropInValueError`.
    raw : bool, keyword-only
        Show ``got`` verbatim instead of describing it.
    """
    shown = got if raw else describe(got)
    message = f"The '{name}' parameter of {owner} must be {expected}. Got {shown}."
    if type_error:
        raise DropInTypeError(message, parameter=name)
    raise DropInValueError(message, parameter=name)


@contextlib.contextmanager
def raised_as_assertions() -> Iterator[None]:
    """Re-raise whybox's parameter errors of the block as :class:`DropInValueError` /
    :class:`DropInTypeError` (same message and parameter; also ``AssertionError``)."""
    try:
        yield
    except (DropInValueError, DropInTypeError):
        raise
    except (ParameterError, ParameterTypeError) as error:
        kind = DropInTypeError if isinstance(error, TypeError) else DropInValueError
        raise kind(str(error), parameter=error.parameter) from None
