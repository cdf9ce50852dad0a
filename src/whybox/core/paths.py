"""Integration rules for path methods (Integrated Gradients, conductance, ...).

Each rule of :data:`RULES` maps ``n_steps`` to points ``alphas`` in [0, 1] and weights that
sum to exactly 1, so every rule is exact on linear models. ``riemann_trapezoid`` is the
textbook trapezoid rule (``1/(n-1)`` spacing); with ``n_steps=1`` it degenerates to the
midpoint.

Captum 0.9's ``riemann_trapezoid`` uses the same points with weights ``1/n`` and halved
endpoints, which sum to ``(n - 1) / n``: its attributions are scaled down by that factor.
That rule is :data:`CAPTUM_TRAPEZOID` (``"captum_trapezoid"``), which the Captum facade
(``whybox.attr``) runs for ``method="riemann_trapezoid"`` so that a renamed import gives
Captum's numbers; natively it is an explicit opt-in (:data:`ALL_RULES` lists it).

Gauss-Legendre nodes and weights are computed here rather than with
``numpy.polynomial.legendre.leggauss``, whose eigenvalue solve is cubic in ``n`` in time and
quadratic in memory (tenths of a second at ``n = 1000``, several seconds and a few hundred MB
at ``n = 5000``). :func:`_gauss_legendre_half` runs Newton's method on the Legendre
three-term recurrence for all nodes at once, from asymptotic initial guesses: ``O(n^2)``
flops in ``O(n)`` vectorised numpy calls, about 2 ms at ``n = 1000`` and 10 ms at
``n = 5000``. Its nodes are within an ulp of the exact roots and its weights within ~1e-16
(relative ~1e-11 for the tiny weights next to +-1 at ``n = 5000``); leggauss's own weights
are off by up to ~1e-14 at ``n = 200`` and by ~1e-6 relative next to +-1 at ``n = 5000``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .forward import to_device
from .validation import check_choice, check_int

__all__ = ["ALL_RULES", "CAPTUM_TRAPEZOID", "RULES", "path_plan", "path_plan_tensors"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
#: Captum 0.9's trapezoid weights (``1/n``, halved ends: they sum to ``(n - 1) / n``)
CAPTUM_TRAPEZOID = "captum_trapezoid"
#: every rule a path method accepts: the exact rules and Captum's scaled trapezoid
ALL_RULES = (*RULES, CAPTUM_TRAPEZOID)

# The first zeros j_{0,k} of the Bessel function J0 (Abramowitz & Stegun, table 9.5). They
# only seed Newton's method for the nodes nearest +-1, where Tricomi's guess is weakest; the
# accuracy of the nodes comes from the Newton iteration, not from these digits.
_J0_ZEROS = np.array(
    [
        2.404825557695773,
        5.520078110286311,
        8.653727912911012,
        11.79153443901428,
        14.93091770848779,
        18.07106396791092,
        21.21163662987926,
        24.35247153074930,
        27.49347913204025,
        30.63460646843198,
    ]
)
# Stop once the predicted error of the next Newton step is below a tenth of an ulp of 1.
_NEWTON_TOLERANCE = 1e-17
_NEWTON_MAX_ITERATIONS = 20


def _initial_nodes(n: int) -> np.ndarray:
    """Guesses for the ``ceil(n / 2)`` non-negative roots of ``P_n``, in decreasing order.

    Parameters
    ----------
    n : int
        Degree of the Legendre polynomial, ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``x_k`` for ``k = 1 .. ceil(n / 2)``, about ``cos(pi (4k - 1) / (4n + 2))``.

    Notes
    -----
    Interior nodes use Tricomi's expansion ``x_k ~ (1 - (n-1)/(8n^3) - (39 - 28/sin^2
    theta_k)/(384 n^4)) cos theta_k`` with ``theta_k = pi (4k - 1)/(4n + 2)``, whose error is
    about ``n^-5`` in the interior but largest next to +-1. The nodes nearest +-1 instead use the
    Bessel-zero expansion ``theta_k ~ psi + (psi cot psi - 1)/(8 psi rho^2)``,
    ``psi = j_{0,k}/rho``, ``rho = n + 1/2``, which is accurate there. With both, one Newton
    step already reaches double precision for large ``n``.
    """
    k = np.arange(1, (n + 1) // 2 + 1, dtype=np.float64)
    theta = np.pi * (4.0 * k - 1.0) / (4.0 * n + 2.0)
    sin2 = np.sin(theta) ** 2
    x = (1.0 - (n - 1.0) / (8.0 * n**3) - (39.0 - 28.0 / sin2) / (384.0 * n**4)) * np.cos(theta)
    near = min(len(_J0_ZEROS), len(x))
    # From n = 20 on the Bessel guess beats Tricomi's on (nearly) all of the first ten nodes;
    # below that the few nodes converge in a couple of cheap steps either way.
    if n >= 20:
        rho = n + 0.5
        psi = _J0_ZEROS[:near] / rho
        x[:near] = np.cos(psi + (psi / np.tan(psi) - 1.0) / (8.0 * psi * rho**2))
    return x


def _scaled_legendre(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q_n(x), q_{n-1}(x))`` with ``q_k = P_k / r_k`` and ``r_k = binom(2k, k) / 4^k``.

    Parameters
    ----------
    n : int
        Degree, ``n >= 1``.
    x : numpy.ndarray
        Points in [-1, 1].

    Returns
    -------
    tuple of numpy.ndarray
        ``q_n(x)`` and ``q_{n-1}(x)``.

    Notes
    -----
    ``q_k`` is ``2^k`` times the monic Legendre polynomial, so the three-term recurrence reads
    ``q_{k+1} = 2x q_k - c_k q_{k-1}`` with ``c_k = 4k^2 / (4k^2 - 1)``: three numpy calls a
    degree instead of four for ``P_k``'s own recurrence (the Python loop over the degree is
    the whole cost). ``|q_k| <= sqrt(pi (k + 1))`` on [-1, 1], so nothing overflows, and the
    recurrence is forward stable on [-1, 1] for any ``n``.
    """
    two_x = 2.0 * x
    q_prev = np.ones_like(x)
    q = two_x.copy()
    scratch = np.empty_like(x)
    for k in range(1, n):
        np.multiply(two_x, q, out=scratch)
        q_prev *= 4.0 * k * k / (4.0 * k * k - 1.0)
        np.subtract(scratch, q_prev, out=q_prev)
        q, q_prev = q_prev, q
    return q, q_prev


def _gauss_legendre_half(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative Gauss-Legendre nodes on [-1, 1] (decreasing) and their weights.

    Parameters
    ----------
    n : int
        Number of nodes of the full rule, ``n >= 1``.

    Returns
    -------
    x, w : numpy.ndarray
        The ``ceil(n / 2)`` roots ``x`` of ``P_n`` in [0, 1) and ``w = 2 / ((1 - x^2)
        P_n'(x)^2)``; for odd ``n`` the last root is exactly 0. The other half of the rule is
        ``(-x, w)`` by symmetry.

    Raises
    ------
    RuntimeError
        If Newton's method has not converged (not expected for any ``n``).
    """
    x = _initial_nodes(n)
    # P_n = ratio * r_{n-1} * q_n and P_{n-1} = r_{n-1} * q_{n-1}; the common factor r_{n-1}
    # cancels in the Newton step and is put back for the weights.
    ratio = (2.0 * n - 1.0) / (2.0 * n)
    for _ in range(_NEWTON_MAX_ITERATIONS):
        q, q_prev = _scaled_legendre(n, x)
        p = ratio * q
        one_minus_x2 = (1.0 - x) * (1.0 + x)
        # (1 - x^2) P_n' = n (P_{n-1} - x P_n), in units of r_{n-1}.
        dp = n * (q_prev - x * p) / one_minus_x2
        step = p / dp
        # Newton's error after this step is about (P_n'' / 2 P_n') step^2 = x step^2 / (1 - x^2)
        # near a root: an estimate of the updated nodes' error, with no extra evaluation.
        converged = np.max(np.abs(x) * step * step / one_minus_x2) <= _NEWTON_TOLERANCE
        x_old, x = x, x - step
        if converged:
            break
    else:  # pragma: no cover - quadratic convergence from these guesses takes 1 to 3 steps
        raise RuntimeError(f"Gauss-Legendre nodes did not converge for n={n}")
    # P_n' at the updated nodes to second order in the (tiny) step, instead of another pass:
    # P_n'' = (2x P_n' - n(n+1) P_n) / (1 - x^2) by Legendre's equation.
    d2p = (2.0 * x_old * dp - n * (n + 1.0) * p) / one_minus_x2
    dp = dp - d2p * step
    if n % 2:
        x[-1] = 0.0  # the middle root is exactly 0 (P_n is odd); drop the rounding residue
    # r_{n-1} = prod_{j < n} (1 - 1/(2j)), as exp of an exactly rounded sum of logs: a plain
    # product drifts by ~sqrt(n) ulps, a common scale error of all weights.
    r = math.exp(math.fsum(np.log1p(-0.5 / np.arange(1, n, dtype=np.float64))))
    # 1 - x^2 at the exact root, also from the step: recomputing it from the rounded node
    # would cost ~eps / (1 - x) relative accuracy next to +-1.
    one_minus_x2 = one_minus_x2 + step * (2.0 * x_old - step)
    w = 2.0 / (one_minus_x2 * (r * dp) ** 2)
    return x, w


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes (increasing) and weights on [-1, 1], like ``leggauss(n)``.

    Parameters
    ----------
    n : int
        Number of nodes, ``n >= 1``.

    Returns
    -------
    nodes, weights : numpy.ndarray
        The roots of ``P_n`` and weights summing to 2 (up to rounding); the rule is exact for
        polynomials of degree ``<= 2n - 1``.
    """
    x, w = _gauss_legendre_half(n)
    skip = n % 2  # odd n: the middle node 0 is in the lower half already
    nodes = np.concatenate((-x + 0.0, x[::-1][skip:]))  # + 0.0 turns -0.0 into 0.0
    weights = np.concatenate((w, w[::-1][skip:]))
    return nodes, weights


@lru_cache(maxsize=128)
def path_plan(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Integration points and weights of ``rule`` on [0, 1].

    Parameters
    ----------
    rule : str
        One of :data:`ALL_RULES` (not validated here: see :func:`path_plan_tensors`).
    n_steps : int
        Number of points, ``>= 1``.

    Returns
    -------
    alphas, weights : numpy.ndarray
        Read-only float64 arrays of length ``n_steps``: ``alphas`` increasing in [0, 1],
        ``weights`` summing to 1 (to ``(n - 1) / n`` for :data:`CAPTUM_TRAPEZOID` with
        ``n > 1``). Cached, so callers must not (and cannot) modify them.
    """
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
    elif rule == CAPTUM_TRAPEZOID:
        if n == 1:  # Captum refuses one step; the midpoint, as the exact trapezoid rule
            alphas, weights = np.array([0.5]), np.array([1.0])
        else:
            alphas = np.linspace(0.0, 1.0, n)
            weights = np.full(n, 1.0 / n)
            weights[0] = weights[-1] = 0.5 / n
    elif rule == "gausslegendre":
        x, w = _gauss_legendre_half(n)
        skip = n % 2
        # alphas = (1 + x) / 2 on the upper half is taken as 1 - (1 - x) / 2 so that
        # alphas[i] + alphas[n - 1 - i] == 1 holds exactly in floating point.
        lower = (1.0 - x) / 2.0
        alphas = np.concatenate((lower, (1.0 - lower)[::-1][skip:]))
        weights = np.concatenate((w, w[::-1][skip:]))
        # The computed weights sum to 2 only up to a few ulps; dividing by their exact sum
        # (fsum) makes them sum to 1 to rounding, so the rule stays exact on linear models.
        weights = weights / math.fsum(weights)
    else:  # pragma: no cover - validated by callers
        raise ValueError(rule)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


def path_plan_tensors(
    rule: str,
    n_steps: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    owner: str,
    parameter: str = "rule",
) -> tuple[Tensor, Tensor]:
    """Validated plan of :func:`path_plan` as tensors in the inputs' dtype and device.

    Parameters
    ----------
    rule : str
        One of :data:`ALL_RULES`.
    n_steps : int
        Number of points, ``>= 1``.
    dtype : torch.dtype
        dtype of the result; a non-floating dtype falls back to torch's default dtype.
    device : torch.device
        Device of the result.
    owner : str
        Name of the calling method, for error messages.
    parameter : str, default "rule"
        Name under which the caller received ``rule``, for error messages (a facade with
        another name, e.g. Captum's ``method``, should validate it itself beforehand).

    Returns
    -------
    alphas, weights : torch.Tensor
        1-D tensors of length ``n_steps``.

    Raises
    ------
    whybox.core.validation.ParameterError
        If ``rule`` is not in :data:`ALL_RULES` or ``n_steps`` is not an int ``>= 1``.
    """
    check_choice(owner, parameter, rule, ALL_RULES)
    check_int(owner, "n_steps", n_steps, minimum=1)
    alphas, weights = path_plan(rule, n_steps)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    # built on the host, then queued to the device without waiting for its work
    return (
        to_device(torch.tensor(alphas, dtype=dtype), device),
        to_device(torch.tensor(weights, dtype=dtype), device),
    )
