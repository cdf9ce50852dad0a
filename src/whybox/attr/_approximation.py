"""Captum's integration-rule helpers (``approximation_methods``) on whybox's path plans.

Each builder returns ``(step_sizes, alphas)``: functions of the number of steps ``n`` that
give the quadrature weights and the points in ``[0, 1]`` of a rule, as lists, from
:func:`whybox.core.paths.path_plan`, the plan every integrated-gradients method uses.

``"riemann_trapezoid"`` gives Captum 0.9's weights, ``1 / n`` with halved ends (they sum
to ``(n - 1) / n``: :data:`whybox.core.paths.CAPTUM_TRAPEZOID`), which is what the facade's
path methods integrate with; whybox's native ``rule="riemann_trapezoid"`` is the textbook
rule (``1 / (n - 1)``, summing to 1). The other rules agree with Captum up to rounding.
``n = 1`` is allowed for every rule (the midpoint for both trapezoids).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from whybox.core.paths import CAPTUM_TRAPEZOID, path_plan

from ._assertion_errors import fail_assert

__all__ = [
    "Riemann",
    "SUPPORTED_RIEMANN_METHODS",
    "SUPPORTED_METHODS",
    "approximation_parameters",
    "riemann_builders",
    "gauss_legendre_builders",
]

Builders = tuple[Callable[[int], list[float]], Callable[[int], list[float]]]


class Riemann(Enum):
    """The Riemann sums (Captum's numbering)."""

    left = 1
    right = 2
    middle = 3
    trapezoid = 4


SUPPORTED_RIEMANN_METHODS: list[str] = [f"riemann_{kind.name}" for kind in Riemann]
SUPPORTED_METHODS: list[str] = [*SUPPORTED_RIEMANN_METHODS, "gausslegendre"]


def _builders(rule: str) -> Builders:
    plan = CAPTUM_TRAPEZOID if rule == "riemann_trapezoid" else rule

    def check(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            fail_assert(rule, "n", "an int >= 1 (the number of steps)", n)

    def step_sizes(n: int) -> list[float]:
        check(n)
        return path_plan(plan, n)[1].tolist()

    def alphas(n: int) -> list[float]:
        check(n)
        return path_plan(plan, n)[0].tolist()

    return step_sizes, alphas


def riemann_builders(method: Riemann = Riemann.trapezoid) -> Builders:
    """``(step_sizes, alphas)`` of a Riemann sum.

    Parameters
    ----------
    method : Riemann
        ``Riemann.left``, ``right``, ``middle`` or ``trapezoid``.

    Returns
    -------
    tuple of callable
        ``step_sizes(n)`` (weights summing to 1; to ``(n - 1) / n`` for Captum's
        trapezoid) and ``alphas(n)`` (points in [0, 1]).
    """
    if not isinstance(method, Riemann):
        fail_assert("riemann_builders", "method", "a Riemann member", method, type_error=True)
    return _builders(f"riemann_{method.name}")


def gauss_legendre_builders() -> Builders:
    """``(step_sizes, alphas)`` of Gauss-Legendre quadrature on [0, 1].

    Returns
    -------
    tuple of callable
        ``step_sizes(n)`` (weights summing to 1) and ``alphas(n)`` (increasing nodes).
    """
    return _builders("gausslegendre")


def approximation_parameters(method: str) -> Builders:
    """``(step_sizes, alphas)`` of the rule named ``method``.

    Parameters
    ----------
    method : str
        One of :data:`SUPPORTED_METHODS`.

    Returns
    -------
    tuple of callable

    Raises
    ------
    ValueError
        An unknown rule name (as Captum).
    """
    if method not in SUPPORTED_METHODS:
        raise ValueError(
            f"The 'method' parameter of approximation_parameters must be one of "
            f"{SUPPORTED_METHODS}. Got {method!r}."
        )
    return _builders(method)
