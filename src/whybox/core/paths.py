"""Integration rules for path methods (Integrated Gradients, conductance, ...).

Each rule maps ``n_steps`` to points ``alphas`` in [0, 1] and weights that sum to exactly 1,
so every rule is exact on linear models. Captum 0.9's ``riemann_trapezoid`` uses weights
``1/n`` with halved endpoints, which sum to ``(n - 1) / n``: its attributions are scaled down
by that factor. whybox uses the textbook trapezoid rule (``1/(n-1)`` spacing) instead; with
``n_steps=1`` the trapezoid rule degenerates to the midpoint.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .validation import check_choice, check_int

__all__ = ["RULES", "path_plan", "path_plan_tensors"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


@lru_cache(maxsize=128)
def path_plan(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` as float64 arrays of length ``n_steps``; weights sum to 1."""
    n = n_steps
    if rule == "riemann_left":
        alphas = np.arange(n, dtype=np.float64) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann_right":
        alphas = np.arange(1, n + 1, dtype=np.float64) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann_middle":
        alphas = (np.arange(n, dtype=np.float64) + 0.5) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann_trapezoid":
        if n == 1:
            alphas, weights = np.array([0.5]), np.array([1.0])
        else:
            alphas = np.linspace(0.0, 1.0, n)
            weights = np.full(n, 1.0 / (n - 1))
            weights[0] = weights[-1] = 0.5 / (n - 1)
    elif rule == "gausslegendre":
        nodes, node_weights = np.polynomial.legendre.leggauss(n)
        alphas = (nodes + 1.0) / 2.0
        weights = node_weights / 2.0
    else:  # pragma: no cover - validated by callers
        raise ValueError(rule)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


def path_plan_tensors(
    rule: str, n_steps: int, *, dtype: torch.dtype, device: torch.device, owner: str
) -> tuple[Tensor, Tensor]:
    """Validated plan as tensors in the inputs' dtype and device."""
    check_choice(owner, "method", rule, RULES)
    check_int(owner, "n_steps", n_steps, minimum=1)
    alphas, weights = path_plan(rule, n_steps)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return (
        torch.tensor(alphas, dtype=dtype, device=device),
        torch.tensor(weights, dtype=dtype, device=device),
    )
