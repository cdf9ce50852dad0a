"""The solvers behind the linear surrogates, in torch and float64.

* :func:`weighted_least_squares` -- weighted OLS / ridge with an unpenalized intercept
  (sklearn's ``LinearRegression`` / ``Ridge`` objective);
* :func:`solve_constrained_wls` -- KernelSHAP's regression: no intercept, coefficients
  summing exactly to a given total;
* :func:`weighted_lasso` -- sklearn's ``Lasso`` objective by coordinate descent on the
  Gram matrix.

Every solver validates its data with
:func:`~whybox.core.surrogate.data.check_training_data` first and returns float64
tensors on the device of ``X``.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .data import check_training_data

__all__ = [
    "weighted_least_squares",
    "solve_constrained_wls",
    "constrained_wls_stack",
    "weighted_lasso",
]


def _weighted_center(
    X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool, total: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Subtract weighted means so the intercept drops out of the fit (it is unpenalized).

    ``total`` is ``w.sum()`` when the caller has it and has checked it is positive.
    Returns centred ``X`` (n, p) and ``y`` (n, k) and the means (p,) and (k,) (zeros
    when ``fit_intercept`` is false).
    """
    p, k = X.shape[1], y.shape[1]
    if not fit_intercept:
        return X, y, X.new_zeros(p), y.new_zeros(k)
    if total is None:
        total = w.sum()
        if total <= 0:
            raise ValueError("The sample weights sum to 0; cannot fit an intercept.")
    x_mean = (w @ X) / total
    y_mean = (w @ y) / total
    return X - x_mean, y - y_mean, x_mean, y_mean


def _lstsq_min_norm(A: Tensor, B: Tensor) -> Tensor:
    """Minimum-norm least squares (rank-deficiency safe), float64: ``(p, k)`` for A (n, p).

    ``gelsd`` (SVD based) is CPU only, so other devices solve the tiny system on the CPU:
    the systems are (n_samples x n_features) with n_features small, so the copy is cheap.
    """
    if A.device.type == "cpu":
        return torch.linalg.lstsq(A, B, driver="gelsd").solution
    sol = torch.linalg.lstsq(A.cpu(), B.cpu(), driver="gelsd").solution
    return sol.to(A.device)


def weighted_least_squares(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    *,
    fit_intercept: bool = True,
    alpha: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Weighted (ridge) least squares in float64.

    Minimizes ``sum_i w_i (y_i - x_i . b - c)^2 + alpha * ||b||^2`` (intercept ``c``
    unpenalized), the objective of sklearn's ``LinearRegression`` / ``Ridge`` with
    ``sample_weight``.

    Parameters
    ----------
    X : Tensor, shape (n_samples, n_features)
    y : Tensor, shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : Tensor, shape (n_samples,), optional
        Non-negative weights; ``None`` means all ones.
    fit_intercept : bool, keyword-only
        Fit an unpenalized intercept (by weighted centering).
    alpha : float, keyword-only
        L2 penalty. ``0`` gives ordinary weighted least squares, solved with an SVD
        based least-squares routine so rank-deficient designs get the minimum-norm
        solution (as sklearn's ``LinearRegression``).

    Returns
    -------
    coef : Tensor, shape (n_outputs, n_features), float64
    intercept : Tensor, shape (n_outputs,), float64
    """
    X, y, w, _ = check_training_data(X, y, sample_weight, caller="weighted_least_squares")
    return _least_squares_checked(X, y, w, fit_intercept=fit_intercept, alpha=alpha)


def _least_squares_checked(
    X: Tensor, y: Tensor, w: Tensor, *, fit_intercept: bool, alpha: float
) -> tuple[Tensor, Tensor]:
    """:func:`weighted_least_squares` on data :func:`check_training_data` has returned
    (or that the caller guarantees as such: float64, ``X`` (n, p), ``y`` (n, k), finite,
    ``w >= 0``)."""
    Xc, yc, x_mean, y_mean = _weighted_center(X, y, w, fit_intercept)
    sw = w.sqrt().unsqueeze(1)
    if alpha == 0:
        coef = _lstsq_min_norm(Xc * sw, yc * sw)  # (p, k)
    else:
        # Normal equations are safe here: alpha > 0 makes the matrix positive definite.
        Xw = Xc * w.unsqueeze(1)
        gram = Xw.T @ Xc
        gram.diagonal().add_(alpha)
        chol, info = torch.linalg.cholesky_ex(gram)
        rhs = Xw.T @ yc
        if int(info) == 0:
            coef = torch.cholesky_solve(rhs, chol)
        else:  # numerically indefinite (huge feature scales): fall back to SVD
            coef = _lstsq_min_norm(gram, rhs)
    coef = coef.T.contiguous()  # (k, p)
    intercept = y_mean - coef @ x_mean
    return coef, intercept


def solve_constrained_wls(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor,
    total: float | Tensor,
) -> Tensor:
    """Weighted least squares without intercept under ``sum(coef) == total`` (KernelSHAP).

    KernelSHAP fixes the intercept to ``f(baseline)`` (pass ``y - f(baseline)``) and
    requires the efficiency constraint ``sum(phi) = f(x) - f(baseline)``; the empty and
    full coalitions carry infinite Shapley-kernel weight and are exactly these two
    constraints, so leave them out of ``X``. Given every other coalition with its
    Shapley-kernel weight, the solution equals the exact Shapley values.

    The constraint is enforced exactly (not with a large weight): the coefficients are
    parametrized as ``total / M * 1 + N u`` with ``N`` an orthonormal basis of the
    sum-zero subspace, ``u`` is the minimum-norm weighted least-squares solution
    (float64, SVD based), and a final rank-one correction removes rounding.

    Parameters
    ----------
    X : Tensor, shape (n_samples, n_features)
        Coalition matrix (0/1 or any real design).
    y : Tensor, shape (n_samples,) or (n_samples, n_outputs)
        Targets, already minus the intercept ``f(baseline)``.
    sample_weight : Tensor, shape (n_samples,)
        Non-negative weights (e.g. Shapley-kernel weights).
    total : float or Tensor, shape () or (n_outputs,)
        Required sum of the coefficients, per output; finite.

    Returns
    -------
    Tensor
        Shape (n_features,) for 1-D ``y``, else (n_outputs, n_features); float64.
    """
    caller = "solve_constrained_wls"
    X, y, w, y_was_1d = check_training_data(X, y, sample_weight, caller=caller)
    p, k = X.shape[1], y.shape[1]
    total_t = torch.as_tensor(total, dtype=torch.float64, device=X.device).reshape(-1)
    if total_t.numel() == 1:
        total_t = total_t.expand(k)
    if total_t.numel() != k:
        raise ValueError(
            f"The 'total' parameter of {caller} must be a scalar or have "
            f"{k} entries (one per output). Got {total_t.numel()}."
        )
    if not bool(torch.isfinite(total_t).all()):
        raise ValueError(
            f"The 'total' parameter of {caller} must be finite (no NaN or inf). Got "
            f"{total_t.tolist()}. In KernelSHAP it is f(x) - f(baseline): look for NaN or "
            "inf in the inputs, the baselines or the model."
        )
    if p == 0:
        raise ValueError(f"{caller} needs at least one feature.")
    coef = _constrained_checked(X, y, w, total_t)
    return coef[0] if y_was_1d else coef


def _constrained_checked(
    X: Tensor, y: Tensor, w: Tensor, total_t: Tensor, factor: NormalFactor | None = None
) -> Tensor:
    """:func:`solve_constrained_wls` on checked data: float64 ``X`` (n, p) with p >= 1,
    ``y`` (n, k), ``w`` (n,) >= 0 and ``total_t`` (k,), all finite (KernelShap builds
    them so). Returns ``(k, p)``.

    Small well-conditioned CPU problems (every KernelSHAP design with enough samples) are
    solved by :func:`_constrained_normal`; the others, rank-deficient ones included, by the
    SVD based minimum-norm least squares. ``factor``: :func:`normal_factor` of this very
    ``X`` and ``w`` (a caller that solves on one design many times keeps it).
    """
    p, k = X.shape[1], y.shape[1]
    if 1 < p <= _NORMAL_MAX_FEATURES and _on_cpu(X, y, w, total_t):
        if factor is None:
            factor = normal_factor(X.numpy(), w.numpy())
        if factor.inverse is not None:
            return torch.from_numpy(_normal_apply(factor, y.numpy(), total_t.numpy()))
    base = total_t.unsqueeze(0) / p  # (1, k): each coef starts at total / M
    coef = base.expand(p, k).clone()
    if p > 1:
        null = _sum_zero_basis(p, X.device)  # (p, p-1), orthonormal, 1^T null = 0
        sw = w.sqrt().unsqueeze(1)
        resid = y - X.sum(dim=1, keepdim=True) * base  # y - X @ (total/M * 1)
        u = _lstsq_min_norm((X @ null) * sw, resid * sw)  # (p-1, k)
        coef = coef + null @ u
    coef = coef + (total_t - coef.sum(dim=0)) / p  # exact constraint up to one rounding
    return coef.T.contiguous()


#: features up to which :func:`_constrained_checked` tries the normal equations (tiny
#: systems: numpy's per-call cost is far below torch's there, and below an SVD's)
_NORMAL_MAX_FEATURES = 64
#: largest 1-norm condition number of the normal equations' matrix they are used for: the
#: solution then carries a relative rounding error of at most about ``1e4 * 2**-52``
#: (~2e-12), the order of the SVD path's own on such problems
_NORMAL_MAX_COND = 1e4


def _on_cpu(*tensors: Tensor) -> bool:
    """Whether every tensor is a CPU tensor numpy can view (no autograd history)."""
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)


class NormalFactor(NamedTuple):
    """What :func:`_constrained_normal` computes from the design alone (``X``, ``w``).

    ``x_sum``: ``X.sum(axis=1, keepdims=True)`` (n, 1); ``aw``: ``(X N)^T W`` (p-1, n);
    ``inverse``: the inverse of ``(X N)^T W (X N)``, or ``None`` when the normal equations
    are not used (singular, or condition number above :data:`_NORMAL_MAX_COND`).
    """

    x_sum: np.ndarray
    aw: np.ndarray
    inverse: np.ndarray | None


def normal_factor(X: np.ndarray, w: np.ndarray) -> NormalFactor:
    """The design's part of :func:`_constrained_normal`: ``X`` (n, p), p >= 2, ``w`` (n,).

    A KernelSHAP design drawn once and solved on every call (an int seed) keeps it: the
    solves then only do the targets' part (:func:`_normal_apply`), the same operations
    on the same arrays as one whole solve.
    """
    # ufunc reductions (``np.add.reduce`` is what ``ndarray.sum`` runs) without the array
    # methods' Python layers: this runs on every facade call
    null = _sum_zero_basis_np(X.shape[1])  # (p, p-1)
    A = X @ null  # (n, p-1)
    Aw = A.T * w  # (p-1, n)
    gram = Aw @ A
    x_sum = np.add.reduce(X, axis=1, keepdims=True)
    try:
        inverse = _inv(gram)
    except np.linalg.LinAlgError:  # exactly singular (fewer distinct samples than features)
        return NormalFactor(x_sum, Aw, None)
    # the 1-norm condition number: largest column sum of |gram| times that of |inverse|,
    # both matrices' column sums in one pass (each reduced in the same order as alone)
    p1 = gram.shape[0]
    both = np.abs(np.concatenate((gram, inverse)).reshape(2, p1, p1))
    norms = np.maximum.reduce(np.add.reduce(both, axis=1), axis=1)
    cond = float(norms[0]) * float(norms[1])
    if not cond <= _NORMAL_MAX_COND:  # also catches NaN
        return NormalFactor(x_sum, Aw, None)
    return NormalFactor(x_sum, Aw, inverse)


try:  # the gufunc behind ``np.linalg.inv`` and the handler it raises singularity with
    from numpy.linalg import _umath_linalg

    _INV_GUFUNC: Any = _umath_linalg.inv
    try:
        from numpy.linalg._linalg import _raise_linalgerror_singular as _SINGULAR
    except ImportError:  # numpy < 2
        from numpy.linalg.linalg import _raise_linalgerror_singular as _SINGULAR
except (ImportError, AttributeError):  # pragma: no cover - another numpy layout
    _INV_GUFUNC = None


def _gufunc_matches_inv() -> bool:
    """Whether the private gufunc still behaves as ``np.linalg.inv`` on this numpy (the
    same values on a sample matrix, a singular one refused): private names may change
    meaning between numpy releases, and then the public function is used."""
    if _INV_GUFUNC is None:
        return False
    sample = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.25], [0.5, 0.25, 2.0]])
    try:
        with np.errstate(call=_SINGULAR, invalid="call", over="ignore", divide="ignore"):
            same = np.array_equal(_INV_GUFUNC(sample, signature="d->d"), np.linalg.inv(sample))
            try:
                _INV_GUFUNC(np.zeros((2, 2)), signature="d->d")
            except np.linalg.LinAlgError:
                return bool(same)
    except Exception:  # noqa: BLE001 - any other behaviour: use the public function
        return False
    return False


@functools.cache
def _checked_gufunc() -> Any:
    """The gufunc once :func:`_gufunc_matches_inv` has vouched for it on the first
    inversion (not at import), else ``None``."""
    return _INV_GUFUNC if _gufunc_matches_inv() else None


def _inv(a: np.ndarray) -> np.ndarray:
    """``np.linalg.inv`` of a float64 ``(p, p)`` array: the same gufunc under the same error
    state (a singular matrix raises ``LinAlgError``), without the wrapper's checks and
    conversions (they cost as much as the inversion of these tiny matrices, on every
    facade call)."""
    gufunc = _checked_gufunc() if _INV_GUFUNC is not None else None
    if gufunc is None:
        return np.linalg.inv(a)
    with np.errstate(
        call=_SINGULAR, invalid="call", over="ignore", divide="ignore", under="ignore"
    ):
        return gufunc(a, signature="d->d")


def _normal_apply(factor: NormalFactor, y: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The targets' part of :func:`_constrained_normal` (``factor.inverse`` not ``None``):
    ``(k, p)`` coefficients for ``y`` (n, k) and ``total`` (k,)."""
    null = _sum_zero_basis_np(factor.aw.shape[0] + 1)
    p = null.shape[0]
    base = total / p  # (k,)
    resid = y - factor.x_sum * base  # y - X @ (total/p * 1)
    coef = base + null @ (factor.inverse @ (factor.aw @ resid))  # (p, k)
    coef += (total - np.add.reduce(coef, axis=0)) / p  # exact constraint up to one rounding
    return np.ascontiguousarray(coef.T)


def _constrained_normal(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, total: np.ndarray
) -> np.ndarray | None:
    """KernelSHAP's constrained regression by the normal equations, in numpy float64.

    The same parametrization as the SVD path (``coef = total / p + N u`` with ``N`` the
    orthonormal sum-zero basis, then the rank-one correction), with ``u`` solving
    ``(A^T W A) u = A^T W r`` for ``A = X N``. Returns ``(k, p)``, or ``None`` when that
    matrix is singular or its condition number exceeds :data:`_NORMAL_MAX_COND` (its
    solution would then lose more digits than the SVD's: the caller falls back to it).
    The design's part is :func:`normal_factor`, the targets' part :func:`_normal_apply`.

    Parameters
    ----------
    X : array, shape (n, p), p >= 2
    y : array, shape (n, k)
    w : array, shape (n,), >= 0
    total : array, shape (k,)
    """
    factor = normal_factor(X, w)
    if factor.inverse is None:
        return None
    return _normal_apply(factor, y, total)


@functools.lru_cache(maxsize=32)
def _sum_zero_basis_np(p: int) -> np.ndarray:
    """:func:`_sum_zero_basis` on the CPU as a read-only numpy array (cached)."""
    basis = _sum_zero_basis(p, torch.device("cpu")).numpy().copy()
    basis.flags.writeable = False
    return basis


def constrained_wls_stack(
    X: np.ndarray, w: np.ndarray, y: np.ndarray, total: np.ndarray
) -> np.ndarray:
    """:func:`_constrained_checked` for a stack of ``N`` problems of one size, at once.

    The same maths (``coef = total / p + B u`` with ``B`` the orthonormal sum-zero basis,
    then the rank-one correction to the exact constraint) and the same choice per problem:
    the normal equations where their matrix's 1-norm condition number is at most
    :data:`_NORMAL_MAX_COND` (and ``p <= _NORMAL_MAX_FEATURES``), the SVD-based minimum-norm
    least squares otherwise (rank-deficient problems included).

    Parameters
    ----------
    X : numpy.ndarray, shape (N, K, p), float64
        The designs (``p >= 2``), finite.
    w : numpy.ndarray, shape (N, K)
        Non-negative sample weights (0 leaves a row out).
    y : numpy.ndarray, shape (N, K, k)
        Targets, ``k`` per problem.
    total : numpy.ndarray, shape (N, k)
        What each target's coefficients must sum to.

    Returns
    -------
    numpy.ndarray, shape (N, p, k), float64
    """
    n, _, p = X.shape
    k = y.shape[2]
    totals = total.reshape(n, 1, k)
    base = totals / p  # each coefficient starts at total / p
    resid = y - X.sum(axis=2, keepdims=True) * base  # y - X @ (total / p * 1)
    null = _sum_zero_basis_np(p)  # (p, p-1), orthonormal, 1^T null = 0
    A = X @ null  # (N, K, p-1)
    u = np.empty((n, p - 1, k))
    svd = np.ones(n, dtype=bool)
    if p <= _NORMAL_MAX_FEATURES:
        aw = A.transpose(0, 2, 1) * w[:, None, :]  # (N, p-1, K)
        gram = aw @ A
        try:
            inverse = _inv(gram)
        except np.linalg.LinAlgError:  # one is exactly singular: the SVD for every one
            inverse = None
        if inverse is not None:
            # 1-norm condition numbers: largest column sums of |gram| and of |inverse|
            cond = np.abs(gram).sum(axis=1).max(axis=1) * np.abs(inverse).sum(axis=1).max(axis=1)
            svd = ~(cond <= _NORMAL_MAX_COND)  # NaN takes the SVD too
            normal = ~svd
            if normal.all():
                u = inverse @ (aw @ resid)
            elif normal.any():
                u[normal] = inverse[normal] @ (aw[normal] @ resid[normal])
    if svd.any():
        sw = np.sqrt(w[svd])[:, :, None]
        a_t, r_t = torch.from_numpy(A[svd] * sw), torch.from_numpy(resid[svd] * sw)
        u[svd] = _lstsq_min_norm(a_t, r_t).numpy()
    coef = base + null @ u  # (N, p, k)
    coef += (totals - coef.sum(axis=1, keepdims=True)) / p  # the exact constraint
    return coef


@functools.lru_cache(maxsize=32)
def _sum_zero_basis(p: int, device: torch.device) -> Tensor:
    """An orthonormal basis ``(p, p - 1)`` of the sum-zero subspace: columns 1.. of Q from
    a QR whose first column is the ones vector (cached: it depends on ``p`` alone; callers
    only read it)."""
    seed = torch.eye(p, dtype=torch.float64, device=device)
    seed[:, 0] = 1.0
    q, _ = torch.linalg.qr(seed)
    return q[:, 1:]


#: numpy's clip ufunc (what ``np.clip`` runs), without ``np.clip``'s Python layer
_CLIP: Any = (getattr(np, "_core", None) or np.core).umath.clip


#: features up to which coordinate descent updates ``gram @ coef`` element by element in
#: Python (cheaper than a numpy call per coordinate on tiny problems)
_SCALAR_SWEEP_MAX = 32


def _lasso_cd(
    gram: np.ndarray,
    xty: np.ndarray,
    yty: float,
    alpha: float,
    *,
    max_iter: int,
    tol: float,
    state: tuple[list[float], Any, int] | None = None,
) -> tuple[np.ndarray, int, float]:
    """Cyclic coordinate descent on ``1/2 b^T G b - b^T c + alpha ||b||_1`` (+ yty/2).

    Works on the (weighted, centered) Gram matrix ``G`` (p, p) and ``c = X^T y`` (p,),
    so one sweep costs O(p^2) whatever the number of samples. Stops on the duality gap,
    like sklearn: when the largest coefficient step is small relative to the largest
    coefficient, the gap is checked against ``tol * yty``. Returns the coefficients
    (p,), the number of sweeps and the final duality gap.

    ``state``: ``(coef, gram @ coef, sweeps)`` after that many sweeps that did not stop
    (coefficients a list of floats; ``gram @ coef`` a list of floats, or a new float64
    array when p > :data:`_SCALAR_SWEEP_MAX`), to go on from there
    (:func:`_lasso_cd_groups` hands over its last few groups so).
    """
    p = gram.shape[0]
    # The sweeps read and write Python floats (the same IEEE double operations, in the
    # same order, as on numpy scalars, without numpy's per-scalar overhead); ``gram @ coef``
    # is updated element by element for small problems and as an array otherwise. The
    # duality gap is computed on arrays.
    small = p <= _SCALAR_SWEEP_MAX
    first = 1
    if state is None:
        coef_l = [0.0] * p
        # gram @ coef, kept up to date incrementally; columns[j][i] = gram[i, j]
        g_l: Any = [0.0] * p if small else np.zeros(p)
    else:
        coef_l, g_l, done = state
        first = done + 1
    columns: Any = gram.T.tolist() if small else gram.T
    diag = [float(columns[j][j]) for j in range(p)]
    xty_l = xty.tolist()
    rows = range(p)
    gap_tol = tol * yty
    gap = math.inf
    n_iter = 0
    coef = np.zeros(p)
    for n_iter in range(first, max_iter + 1):
        max_step = 0.0
        max_coef = 0.0
        for j in rows:
            d = diag[j]
            if d <= 0.0:  # constant (after centering) or zero-weight column
                continue
            old = coef_l[j]
            rho = xty_l[j] - g_l[j] + d * old
            # the soft threshold of ``rho`` at ``alpha``, over ``d`` (0.0 / d is 0.0), and
            # the maxima below by comparison: inline, as a call per coordinate costs more
            # than its arithmetic
            if rho > alpha:
                new = (rho - alpha) / d
            elif rho < -alpha:
                new = (rho + alpha) / d
            else:
                new = 0.0
            if new != old:
                coef_l[j] = new
                step = new - old
                if small:
                    # each element's ``g += step * c``, as the indexed loop did it
                    g_l = [g + step * c for g, c in zip(g_l, columns[j])]
                else:
                    g_l += step * columns[j]
                size = abs(step)
                if size > max_step:
                    max_step = size
            size = abs(new)
            if size > max_coef:
                max_coef = size
        if max_coef == 0.0 or max_step / max_coef < tol or n_iter == max_iter:
            # Duality gap of the lasso: the dual point is the residual rescaled to be
            # feasible (|X^T theta|_inf <= alpha).
            coef = np.array(coef_l)
            g_coef = np.array(g_l)
            corr = xty - g_coef  # X^T r
            r_sq = max(yty - 2.0 * coef @ xty + coef @ g_coef, 0.0)  # ||r||^2
            # ufunc reductions (what np.max / ndarray.sum run), without their Python layers
            corr_max = float(np.maximum.reduce(np.abs(corr))) if p else 0.0
            scale = 1.0 if corr_max <= alpha else alpha / corr_max
            primal = 0.5 * r_sq + alpha * float(np.add.reduce(np.abs(coef)))
            dual = scale * (yty - coef @ xty) - 0.5 * scale * scale * r_sq
            gap = primal - dual
            if gap <= gap_tol:
                break
    return coef, n_iter, gap


def weighted_lasso(
    X: Tensor,
    y: Tensor,
    sample_weight: Tensor | None = None,
    *,
    alpha: float,
    fit_intercept: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-4,
    caller: str = "weighted_lasso",
) -> tuple[Tensor, Tensor, int]:
    """Weighted lasso by coordinate descent in float64 (sklearn's ``Lasso`` objective).

    Minimizes, per output,
    ``1 / (2 * sum(w)) * sum_i w_i (y_i - x_i . b - c)^2 + alpha * ||b||_1`` with an
    unpenalized intercept ``c`` (weighted centering). Warns (``RuntimeWarning``) when the
    duality gap is still above ``tol`` after ``max_iter`` sweeps.

    Parameters
    ----------
    X : Tensor, shape (n_samples, n_features)
    y : Tensor, shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : Tensor, shape (n_samples,), optional
        Non-negative weights with a positive sum; ``None`` means all ones.
    alpha : float, keyword-only
        L1 penalty, >= 0.
    fit_intercept : bool, keyword-only
    max_iter : int, keyword-only
        Maximum number of coordinate sweeps per output.
    tol : float, keyword-only
        Duality-gap tolerance relative to the weighted variance of ``y``.
    caller : str, keyword-only
        Name used in error and warning messages.

    Returns
    -------
    coef : Tensor, shape (n_outputs, n_features), float64
    intercept : Tensor, shape (n_outputs,), float64
    n_iter : int
        Largest number of sweeps over the outputs.
    """
    X, y, w, _ = check_training_data(X, y, sample_weight, caller=caller)
    return _lasso_checked(
        X, y, w, alpha=alpha, fit_intercept=fit_intercept, max_iter=max_iter, tol=tol, caller=caller
    )


def _numpy(t: Tensor) -> np.ndarray:
    """The values of ``t`` as a numpy array (a view on the CPU)."""
    return t.numpy() if t.device.type == "cpu" else t.cpu().numpy()


def _lasso_checked(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    *,
    alpha: float,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    caller: str,
) -> tuple[Tensor, Tensor, int]:
    """:func:`weighted_lasso` on data :func:`check_training_data` has returned (or that
    the caller guarantees as such: float64, ``X`` (n, p), ``y`` (n, k), finite, ``w >= 0``)."""
    gram, xty_all, yty_all, x_mean, y_mean = _lasso_moments(X, y, w, fit_intercept, caller)
    coef_np, n_iter = _lasso_sweeps(
        gram, xty_all, yty_all, alpha=alpha, max_iter=max_iter, tol=tol, caller=caller
    )
    if isinstance(x_mean, np.ndarray):  # the moments were computed in numpy (CPU)
        intercept_np = y_mean - coef_np @ x_mean
        return torch.from_numpy(coef_np), torch.from_numpy(intercept_np), n_iter
    coef_t = torch.as_tensor(coef_np, dtype=torch.float64, device=X.device)
    intercept = y_mean - coef_t @ x_mean
    return coef_t, intercept, n_iter


def _lasso_sweeps(
    gram: np.ndarray,
    xty_all: np.ndarray,
    yty_all: np.ndarray,
    *,
    alpha: float,
    max_iter: int,
    tol: float,
    caller: str,
    stacklevel: int = 4,
) -> tuple[np.ndarray, int]:
    """Coordinate descent for each output of one set of moments: ``(k, p)`` coefficients
    (new memory) and the largest number of sweeps; warns for an output that did not
    converge (``stacklevel`` as ``warnings.warn``'s, counted from here)."""
    coefs = []
    n_iters = []
    for out in range(xty_all.shape[1]):
        yty = float(yty_all[out])
        coef, n_iter, gap = _lasso_cd(gram, xty_all[:, out], yty, alpha, max_iter=max_iter, tol=tol)
        if gap > tol * yty and tol > 0:
            warnings.warn(
                f"{caller} did not converge in {max_iter} iterations "
                f"(duality gap {gap:.3g}); increase max_iter or alpha.",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
        coefs.append(coef)
        n_iters.append(n_iter)
    if len(coefs) == 1:
        # one output (LIME's case): a view of the sweeps' own new array, as np.stack's values
        return coefs[0][None], n_iters[0]
    return np.array(coefs), max(n_iters)  # (k, p), as np.stack


def lasso_groups(
    X: Tensor,
    y: Tensor,
    w: Tensor,
    *,
    alpha: float,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    caller: str,
) -> tuple[Tensor, Tensor, int] | None:
    """One lasso per group on checked CPU data, as :func:`_lasso_checked` fits each.

    LIME fits one surrogate per example (a group); this runs those fits back to back
    without the per-fit tensor round trips: each group's moments come from the very views
    (same memory, same strides) a single fit of that group reads, so every group's
    numbers are bit for bit those of its own :func:`_lasso_checked` call.

    Parameters
    ----------
    X : Tensor, shape ``(n, p)`` (shared by the groups) or ``(n, G, p)``
    y : Tensor, shape ``(n, G)``
    w : Tensor, shape ``(n, G)``
        float64, finite, ``w >= 0`` (checked data).

    Returns
    -------
    tuple or None
        ``(G, p)`` coefficients and ``(G,)`` intercepts (float64), and the last group's
        number of sweeps; ``None`` when a tensor is not a plain CPU tensor (the caller
        fits the groups one by one).
    """
    if not _on_cpu(X, y, w):
        return None
    # numpy views of the whole tensors, sliced per group: the same memory and strides as
    # ``X[:, g]``, ``y[:, g].unsqueeze(1)`` and ``w[:, g]`` (no torch op per group); the
    # unsqueezed dimension has stride 1, as ``y``'s columns when it is row-major
    if y.stride(1) == 1:
        columns: Any = y.numpy()
    else:
        columns = [y[:, g].unsqueeze(1).numpy() for g in range(y.shape[1])]
    fitted = host_lasso_groups(
        X.numpy(),
        columns,
        w.numpy(),
        alpha=alpha,
        fit_intercept=fit_intercept,
        max_iter=max_iter,
        tol=tol,
        caller=caller,
        stacklevel=5,  # the warning points at the caller of _fit_checked_groups
    )
    coef, intercept, n_iter = fitted
    return torch.from_numpy(coef), torch.from_numpy(intercept), n_iter


def host_lasso_groups(
    Xn: np.ndarray,
    columns: Any,
    wn: np.ndarray,
    *,
    alpha: float,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    caller: str,
    stacklevel: int = 4,
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`lasso_groups` on numpy arrays: the same fits of the same views.

    From :data:`_BATCH_MIN_GROUPS` groups on, the groups are fitted together
    (:func:`_host_lasso_groups_batched`: the same IEEE operations on each group's numbers,
    so the same results bit for bit); otherwise, and where that path does not apply, one
    by one (:func:`_host_lasso_groups_each`).

    Parameters
    ----------
    Xn : array, shape ``(n, p)`` (shared by the groups) or ``(n, G, p)``, float64
    columns : array ``(n, G)`` float64 whose column ``g`` (the view ``[:, g : g + 1]``) is
        group ``g``'s targets, or a list of ``G`` arrays ``(n, 1)``
    wn : array, shape ``(n, G)``, float64 (checked data, as for :func:`lasso_groups`)
    stacklevel : int
        The non-convergence warning's, counted from :func:`_lasso_sweeps` (which warns).

    Returns
    -------
    coef : array ``(G, p)``, intercept : array ``(G,)``, new memory; n_iter : int
        The last group's number of sweeps.
    """
    options: dict[str, Any] = dict(
        alpha=alpha, fit_intercept=fit_intercept, max_iter=max_iter, tol=tol, caller=caller
    )
    if wn.shape[1] >= _BATCH_MIN_GROUPS and _batchable(Xn, columns, wn, alpha, max_iter):
        # the batched path warns from one frame below this one, as _lasso_sweeps does
        fitted = _host_lasso_groups_batched(Xn, columns, wn, **options, stacklevel=stacklevel)
        if fitted is not None:
            return fitted
    # one frame deeper than _lasso_sweeps called from here: the warning's stacklevel + 1
    return _host_lasso_groups_each(Xn, columns, wn, **options, stacklevel=stacklevel + 1)


def _host_lasso_groups_each(
    Xn: np.ndarray,
    columns: Any,
    wn: np.ndarray,
    *,
    alpha: float,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    caller: str,
    stacklevel: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`host_lasso_groups` one group after the other: each group's moments from
    its own views, then :func:`_lasso_sweeps` (the reference the batched path matches)."""
    groups = wn.shape[1]
    shared = Xn.ndim == 2
    split = isinstance(columns, list)
    coefs, intercepts = [], []
    n_iter = 0
    for g in range(groups):
        yg = columns[g] if split else columns[:, g : g + 1]
        gram, xty, yty, x_mean, y_mean = _host_lasso_moments(
            Xn if shared else Xn[:, g], yg, wn[:, g], fit_intercept, caller
        )
        coef_np, n_iter = _lasso_sweeps(
            gram,
            xty,
            yty,
            alpha=alpha,
            max_iter=max_iter,
            tol=tol,
            caller=caller,
            stacklevel=stacklevel,
        )
        coefs.append(coef_np)
        intercepts.append(y_mean - coef_np @ x_mean)
    if groups == 1:  # both new arrays already: np.concatenate's values without a copy
        return coefs[0], intercepts[0], n_iter
    if not coefs:
        p = Xn.shape[-1]
        return np.zeros((0, p)), np.zeros(0), 0
    return np.concatenate(coefs), np.concatenate(intercepts), n_iter


#: groups from which :func:`host_lasso_groups` fits them together (below, the batched
#: path's per-call numpy overhead exceeds what it saves)
_BATCH_MIN_GROUPS = 3
#: fewest groups the batched sweeps keep sweeping together: fewer left go on in
#: :func:`_lasso_cd`'s scalar sweeps (a numpy call per coordinate costs more than the
#: scalar sweeps of so few groups)
_BATCH_MIN_ACTIVE = 10


def _batchable(Xn: np.ndarray, columns: Any, wn: np.ndarray, alpha: Any, max_iter: Any) -> bool:
    """Whether :func:`_host_lasso_groups_batched` reproduces these fits: float64 arrays,
    a row-major ``Xn`` (each group's working copies are then row-major, as the batched
    ones), the targets as one array, a float ``alpha`` (the scalar sweeps' arithmetic is
    then float64 throughout) and at least one feature and one sweep."""
    return (
        isinstance(columns, np.ndarray)
        and type(alpha) is float
        and type(max_iter) is int
        and max_iter >= 1
        and Xn.shape[-1] >= 1
        and Xn.dtype == np.float64
        and columns.dtype == np.float64
        and wn.dtype == np.float64
        and Xn.flags.c_contiguous
    )


def _host_lasso_groups_batched(
    Xn: np.ndarray,
    yn: np.ndarray,
    wn: np.ndarray,
    *,
    alpha: float,
    fit_intercept: bool,
    max_iter: int,
    tol: float,
    caller: str,
    stacklevel: int,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """:func:`_host_lasso_groups_each` with every group's moments, sweeps and intercept
    computed together: ``None`` when a weight sum is not positive or a moment not finite
    (the caller then fits one by one, which raises or fits as before).

    Called from :func:`host_lasso_groups`, so it warns from the frame depth
    :func:`_lasso_sweeps` warns from: the same ``stacklevel`` points at the same line.
    """
    with np.errstate(all="ignore"):  # an overflow is not finite: one by one then, warning
        moments = _host_lasso_moments_groups(Xn, yn, wn, fit_intercept)
    if moments is None:
        return None
    gram, xty, yty, x_mean, y_mean = moments
    coef, n_iters, gaps = _lasso_cd_groups(gram, xty, yty, alpha, max_iter=max_iter, tol=tol)
    if tol > 0:
        # one warning per group, in the groups' order, as the one-by-one fits give them
        for gap, yty_g in zip(gaps.tolist(), yty.tolist()):
            if gap > tol * yty_g:
                warnings.warn(
                    f"{caller} did not converge in {max_iter} iterations "
                    f"(duality gap {gap:.3g}); increase max_iter or alpha.",
                    RuntimeWarning,
                    stacklevel=stacklevel,
                )
    intercept = y_mean - _row_dots(coef, x_mean)
    return coef, intercept, int(n_iters[-1])


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[i] @ b[i]`` for each row of two C-contiguous ``(m, p)`` arrays, ``(m,)``.

    ``np.vecdot`` runs numpy's 1-D dot (``DOUBLE_dot``: BLAS ``ddot`` on unit strides)
    once per row, the very call ``a[i] @ b[i]`` makes, so each value is bit for bit the
    1-D product's; numpy before 2.0 has no ``vecdot`` and loops.
    """
    vecdot = getattr(np, "vecdot", None)
    if vecdot is not None:
        return vecdot(a, b)
    return np.array([x @ y for x, y in zip(a, b)], dtype=np.float64).reshape(len(a))


def _host_lasso_moments_groups(
    Xn: np.ndarray, yn: np.ndarray, wn: np.ndarray, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_host_lasso_moments` of every group at once, bit for bit.

    Each group's slice of every input is the very view the one-group call reads (same
    memory, same strides); every intermediate is allocated row-major (``order="C"``), as
    the one-group call's are for a row-major ``Xn``; a stacked ``np.matmul`` runs, item
    by item, the BLAS call the 2-D product of those views makes (its loop decides on the
    core shapes and strides alone), and a row-wise ``np.add.reduce`` of a row-major array
    sums each row as the 1-D reduction does (numpy's pairwise sum, whatever the stride).

    Returns
    -------
    tuple or None
        ``gram`` ``(G, p, p)``, ``xty`` ``(G, p)``, ``yty`` ``(G,)``, ``x_mean``
        ``(G, p)`` and ``y_mean`` ``(G,)``; ``None`` when a group's weights do not sum to
        a positive number or a moment is not finite.
    """
    n, groups = wn.shape
    p = Xn.shape[-1]
    w_rows = wn.T  # row g: wn[:, g]
    totals = np.add.reduce(np.ascontiguousarray(w_rows), axis=1)
    if not bool((totals > 0).all()):
        return None
    # row g: Xn[:, g] (or the shared Xn, broadcast) and the view yn[:, g : g + 1]
    x_rows = Xn if Xn.ndim == 2 else Xn.transpose(1, 0, 2)
    y_rows = np.lib.stride_tricks.as_strided(
        yn, shape=(groups, n, 1), strides=(yn.strides[1], yn.strides[0], yn.strides[1])
    )
    if fit_intercept:
        w_vec = w_rows[:, None, :]  # each row a (1, n) operand: numpy's vector @ matrix
        x_mean = np.divide(np.matmul(w_vec, x_rows)[:, 0], totals[:, None], order="C")
        y_mean = np.divide(np.matmul(w_vec, y_rows)[:, 0, 0], totals, order="C")
        x_c = np.subtract(x_rows, x_mean[:, None, :], order="C")
        y_c = np.subtract(y_rows, y_mean[:, None, None], order="C")
    else:
        x_mean, y_mean = np.zeros((groups, p)), np.zeros(groups)
        x_c, y_c = x_rows, y_rows
    v = np.divide(w_rows, totals[:, None], order="C")
    xv_t = np.multiply(x_c, v[:, :, None], order="C").transpose(0, 2, 1)
    gram = np.matmul(xv_t, x_c, out=np.empty((groups, p, p)))
    xty = np.matmul(xv_t, y_c, out=np.empty((groups, p, 1)))[:, :, 0]
    y_flat = y_c[:, :, 0]
    yty = np.add.reduce(np.multiply(np.multiply(v, y_flat, order="C"), y_flat, order="C"), axis=1)
    finite = np.isfinite(np.add.reduce(gram.reshape(groups, -1), axis=1) + xty.sum(axis=1) + yty)
    if not bool(finite.all()):  # overflowing sums flag finite moments too: one by one then
        return None
    return gram, xty, yty, x_mean, y_mean


def _lasso_cd_groups(
    gram: np.ndarray,
    xty: np.ndarray,
    yty: np.ndarray,
    alpha: float,
    *,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_lasso_cd` of many groups at once, each group's results bit for bit its own.

    Every coordinate step runs the scalar code's IEEE operations, in its order, on
    ``(A,)`` arrays of the ``A`` groups still sweeping (a group's numbers never mix with
    another's). Where the scalar code branches, the arrays compute both sides' values
    identically: the soft threshold as ``rho - clip(rho, -alpha, alpha)`` (``rho - alpha``,
    ``rho + alpha`` or ``+0.0``); a coefficient that does not change adds ``step = +-0``
    to ``gram @ coef``, which leaves it as it is (it never holds ``-0.0``: it starts at
    ``+0.0`` and only sums); coordinates with ``d <= 0`` (skipped) keep ``+0.0``; and the
    sweep's largest step and coefficient are maxima, exact in any order. A group whose
    sweep ends as the scalar loop checks the duality gap gets that gap from the same
    expressions (:func:`_duality_gaps`) and stops on its own.

    Where the arrays could still differ from the scalar code, the group is fitted again
    by :func:`_lasso_cd`: a ``-0.0`` coefficient (the scalar code keeps an equal ``+0.0``
    over it, or the reverse, where the arrays write it) and a coefficient that is not
    finite (NaN steps; such a value stays non-finite, so the retired coefficients show
    it). The last few groups (fewer than :data:`_BATCH_MIN_ACTIVE`) go on in
    :func:`_lasso_cd`'s scalar sweeps from the state reached.

    Parameters
    ----------
    gram : array ``(G, p, p)``, xty : array ``(G, p)``, yty : array ``(G,)``
        Finite moments (:func:`_host_lasso_moments_groups`), p >= 1.
    alpha : float
    max_iter : int, >= 1
    tol : float

    Returns
    -------
    coef : array ``(G, p)``, n_iter : int array ``(G,)``, gap : array ``(G,)``
    """
    groups, p = xty.shape
    coef_out = np.zeros((groups, p))
    n_out = np.zeros(groups, dtype=np.intp)
    gap_out = np.full(groups, math.inf)
    redo: list[int] = []  # fitted again from the start
    handed: dict[int, tuple[list[float], Any, int]] = {}  # go on in the scalar sweeps
    if groups >= _BATCH_MIN_ACTIVE:
        # the scalar sweeps compute on Python floats, which never warn: nor do these
        with np.errstate(all="ignore"):
            _sweep_groups(
                gram, xty, yty, alpha, max_iter, tol, (coef_out, n_out, gap_out), redo, handed
            )
        # a NaN or infinite coefficient may have come another way than the scalar one's
        redo.extend(np.flatnonzero(~np.isfinite(coef_out).all(axis=1)).tolist())
    else:
        handed = {gid: ([0.0] * p, [0.0] * p, 0) for gid in range(groups)}
    again = set(redo)
    for gid in sorted(again | handed.keys()):
        state = None if gid in again else handed[gid]
        if state is not None and state[2] == 0:
            state = None  # no sweep done: the plain start
        coef_out[gid], n_out[gid], gap_out[gid] = _lasso_cd(
            gram[gid], xty[gid], float(yty[gid]), alpha, max_iter=max_iter, tol=tol, state=state
        )
    return coef_out, n_out, gap_out


#: the bits of ``-0.0`` read as an int64
_NEG_ZERO_BITS = np.int64(np.iinfo(np.int64).min)


def _sweep_groups(
    gram: np.ndarray,
    xty: np.ndarray,
    yty: np.ndarray,
    alpha: float,
    max_iter: int,
    tol: float,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
    redo: list[int],
    handed: dict[int, tuple[list[float], Any, int]],
) -> None:
    """The batched sweeps of :func:`_lasso_cd_groups`: fill ``out`` (coef, n_iter, gap)
    for the groups that stop here, list in ``redo`` those to fit again and in ``handed``
    the scalar state of those left to the scalar sweeps."""
    coef_out, n_out, gap_out = out
    groups, p = xty.shape
    # coordinate-major state, so that coordinate j of every active group is one row
    ids = np.arange(groups)
    cols = np.ascontiguousarray(gram.transpose(2, 1, 0))  # cols[j, i, a] = gram[a, i, j]
    diag = np.ascontiguousarray(np.diagonal(gram, axis1=1, axis2=2).T)  # (p, A)
    xty_t = np.ascontiguousarray(xty.T)
    coef = np.zeros((p, groups))
    g = np.zeros((p, groups))  # gram @ coef of each group
    valid = diag > 0.0  # the scalar code skips d <= 0.0
    d_safe = np.where(valid, diag, 1.0)  # skipped coordinates divide by 1, then reset
    skipped = set(np.flatnonzero(~valid.all(axis=1)).tolist())
    positive = alpha > 0.0
    clip = _CLIP
    for n_iter in range(1, max_iter + 1):
        if len(ids) < _BATCH_MIN_ACTIVE:
            # the scalar sweeps go on from here: their state is these very numbers (a
            # non-finite one may have come another way: that group starts again)
            small = p <= _SCALAR_SWEEP_MAX
            finite = np.isfinite(coef).all(axis=0).tolist()
            for k, gid in enumerate(ids.tolist()):
                if not finite[k]:
                    redo.append(gid)
                    continue
                g_k = g[:, k].tolist() if small else g[:, k].copy()
                handed[gid] = (coef[:, k].tolist(), g_k, n_iter - 1)
            return
        start = coef.copy()  # each coordinate's old value: it changes once per sweep
        d_old = d_safe * start
        for j in range(p):
            rho = xty_t[j] - g[j]
            rho += d_old[j]  # (xty - g) + d * old, the scalar order
            if positive:
                t = rho - clip(rho, -alpha, alpha)
            else:  # alpha == 0: rho, but +0.0 for a zero rho (as the scalar else branch)
                t = rho + 0.0
            new = coef[j]
            np.divide(t, d_safe[j], out=new)  # written into coef[j]
            if j in skipped:
                np.copyto(new, 0.0, where=~valid[j])
            g += cols[j] * (new - start[j])  # each element's g + step * column
        active = len(ids)
        max_coef = np.maximum.reduce(np.abs(coef), axis=0)
        max_step = np.maximum.reduce(np.abs(coef - start), axis=0)
        if n_iter == max_iter:
            check = np.ones(active, dtype=bool)
        else:  # max_coef == 0.0 or max_step / max_coef < tol (no 0 / 0 computed)
            zero = max_coef == 0.0
            ratio = np.divide(max_step, max_coef, out=np.zeros(active), where=~zero)
            check = zero | (ratio < tol)
        neg_zero = coef.view(np.int64) == _NEG_ZERO_BITS
        leave = None
        if neg_zero.any():
            # a -0.0 coefficient: the scalar code may have kept an equal +0.0 (or will
            # keep this -0.0 over a +0.0 next sweep)
            unsure = neg_zero.any(axis=0)
            redo.extend(ids[unsure].tolist())
            check &= ~unsure
            leave = unsure
        c = np.flatnonzero(check)
        if len(c):
            c_rows = np.ascontiguousarray(coef.T[c])
            gid = ids[c]
            yty_c = yty[gid]
            gap = _duality_gaps(c_rows, np.ascontiguousarray(g.T[c]), xty[gid], yty_c, alpha)
            stop = gap <= tol * yty_c
            if n_iter == max_iter:
                stop[:] = True
            if stop.any():
                done = gid[stop]
                coef_out[done] = c_rows[stop]
                n_out[done] = n_iter
                gap_out[done] = gap[stop]
                if leave is None:
                    leave = np.zeros(active, dtype=bool)
                leave[c[stop]] = True
        if leave is not None:
            keep = ~leave
            ids = ids[keep]
            if not len(ids):
                return
            coef, g, xty_t = coef[:, keep], g[:, keep], xty_t[:, keep]
            cols, valid, d_safe = cols[:, :, keep], valid[:, keep], d_safe[:, keep]
            skipped = set(np.flatnonzero(~valid.all(axis=1)).tolist())


def _duality_gaps(
    coef: np.ndarray, g: np.ndarray, xty: np.ndarray, yty: np.ndarray, alpha: float
) -> np.ndarray:
    """:func:`_lasso_cd`'s duality gap of each row, ``(m,)``: its expressions, in its
    order, on ``(m,)`` arrays (elementwise IEEE operations and maxima give each row the
    scalar value; the dot products are numpy's 1-D dot, :func:`_row_dots`; the ``abs``
    sum of a row-major row is the 1-D pairwise sum).

    ``coef``, ``g`` (``gram @ coef``) and ``xty``: C-contiguous ``(m, p)``; ``yty``
    ``(m,)``.
    """
    corr = xty - g  # X^T r
    coef_xty = _row_dots(coef, xty)
    # max(yty - 2.0 * coef @ xty + coef @ g, 0.0), Python's max: 0.0 only if larger
    r_sq = yty - _row_dots(np.multiply(2.0, coef, order="C"), xty) + _row_dots(coef, g)
    r_sq = np.where(0.0 > r_sq, 0.0, r_sq)
    corr_max = np.maximum.reduce(np.abs(corr), axis=1)
    # 1.0 if corr_max <= alpha else alpha / corr_max (no division by 0 computed)
    big = ~(corr_max <= alpha)
    scale = np.divide(alpha, corr_max, out=np.ones(len(corr_max)), where=big)
    primal = 0.5 * r_sq + alpha * np.add.reduce(np.abs(coef), axis=1)
    dual = scale * (yty - coef_xty) - 0.5 * scale * scale * r_sq
    return primal - dual


def _lasso_moments(
    X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool, caller: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any, Any]:
    """The lasso's weighted, centred moments of checked float64 data.

    Parameters
    ----------
    X : Tensor, shape (n, p)
    y : Tensor, shape (n, k)
    w : Tensor, shape (n,), >= 0

    Returns
    -------
    gram : array (p, p), ``Xc^T V Xc``
    xty : array (p, k), ``Xc^T V yc``
    yty : array (k,), ``yc^T V yc`` per output
    x_mean : (p,) and y_mean : (k,)
        The weighted means (zeros without an intercept): numpy arrays on the CPU path,
        tensors on ``X``'s device otherwise.

    ``V`` holds the weights normalized to sum to 1; ``Xc``, ``yc`` are centred by the
    weighted means. On the CPU the same operations run in numpy (LIME's problems are
    tiny: a numpy call costs a fraction of a torch one); the sweeps read numpy arrays.
    """
    if _on_cpu(X, y, w):
        return _host_lasso_moments(X.numpy(), y.numpy(), w.numpy(), fit_intercept, caller)
    total_t = w.sum()
    total = float(total_t)
    if total <= 0:
        raise ValueError(f"The sample weights sum to 0; {caller} cannot be fitted.")
    Xc, yc, x_mean, y_mean = _weighted_center(X, y, w, fit_intercept, total_t)
    v = (w / total).unsqueeze(1)  # normalized weights turn 1/(2 sum w) into 1/2
    # The Gram matrix is small (p x p); the CD loop runs on the CPU in numpy since
    # per-coordinate scalar work is far cheaper there than as torch kernel launches.
    xv = Xc * v
    gram = _numpy(xv.T @ Xc)
    xty = _numpy(xv.T @ yc)  # (p, k)
    yty = _numpy((v * yc * yc).sum(dim=0))  # (k,)
    return gram, xty, yty, x_mean, y_mean


def _host_lasso_moments(
    Xn: np.ndarray, yn: np.ndarray, wn: np.ndarray, fit_intercept: bool, caller: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_lasso_moments` in numpy: ``X`` (n, p), ``y`` (n, k), ``w`` (n,) arrays."""
    total = float(np.add.reduce(wn))  # ``wn.sum()`` without the method's Python layer
    if total <= 0:
        raise ValueError(f"The sample weights sum to 0; {caller} cannot be fitted.")
    if fit_intercept:
        x_mean_n, y_mean_n = (wn @ Xn) / total, (wn @ yn) / total
        Xn, yn = Xn - x_mean_n, yn - y_mean_n
    else:
        x_mean_n, y_mean_n = np.zeros(Xn.shape[1]), np.zeros(yn.shape[1])
    v = (wn / total)[:, None]  # normalized weights turn 1/(2 sum w) into 1/2
    xv = Xn * v
    return xv.T @ Xn, xv.T @ yn, np.add.reduce(v * yn * yn, axis=0), x_mean_n, y_mean_n
