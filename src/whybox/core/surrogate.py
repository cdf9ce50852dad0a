"""Interpretable surrogate models for LIME and KernelSHAP, fitted in torch.

A surrogate model is anything with the two methods that ``LimeBase`` uses:

* ``fit(train_data, **kwargs)`` where ``train_data`` is a ``DataLoader``-like
  iterable of batches ``(interpretable_inputs, outputs, weights)`` (or pairs
  ``(interpretable_inputs, outputs)``), with shapes ``(n, n_features)``,
  ``(n,)`` or ``(n, n_outputs)`` and ``(n,)``;
* ``representation()`` returning the coefficients, shape ``(n_outputs, n_features)``
  (``n_outputs`` is 1 for a 1-D target), without the intercept.

Models written for Captum's ``Model`` interface satisfy that contract unchanged.
whybox's own models additionally offer :meth:`LinearSurrogate.fit_tensors`, which
skips the ``DataLoader`` round trip, and ``bias()`` for the intercept.

The torch-native solvers work in float64 and return tensors in the dtype and on
the device of the training inputs.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SurrogateModel",
    "LinearSurrogate",
    "WeightedLinearRegression",
    "WeightedRidge",
    "WeightedLasso",
    "SkLearnLinearModel",
    "SkLearnLinearRegression",
    "SkLearnLasso",
    "SkLearnRidge",
    "weighted_least_squares",
    "solve_constrained_wls",
    "ExpKernelSimilarity",
    "get_exp_kernel_similarity_function",
    "default_perturb_func",
]


@runtime_checkable
class SurrogateModel(Protocol):
    """What ``LimeBase`` needs from an interpretable model (Captum-compatible)."""

    def fit(self, train_data: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Train on an iterable of ``(x, y)`` or ``(x, y, w)`` batches."""
        ...

    def representation(self) -> Tensor:
        """Coefficients, shape ``(n_outputs, n_features)``, intercept excluded."""
        ...


# ---------------------------------------------------------------------------
# Data plumbing
# ---------------------------------------------------------------------------


def _collect_batches(train_data: Iterable[Any]) -> tuple[Tensor, Tensor, Tensor | None]:
    """Concatenate a DataLoader-like iterable of ``(x, y[, w])`` batches."""
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    ws: list[Tensor] = []
    for batch in train_data:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(
                "The 'train_data' parameter of fit must yield (x, y) or (x, y, weights) "
                f"batches. Got a batch of type {type(batch).__name__}."
            )
        xs.append(torch.as_tensor(batch[0]))
        ys.append(torch.as_tensor(batch[1]))
        if len(batch) == 3 and batch[2] is not None:
            ws.append(torch.as_tensor(batch[2]).reshape(-1))
    if not xs:
        raise ValueError("The 'train_data' parameter of fit yielded no batches.")
    if ws and len(ws) != len(xs):
        raise ValueError("Either every batch of 'train_data' has weights or none has.")
    return torch.cat(xs), torch.cat(ys), (torch.cat(ws) if ws else None)


def _check_xyw(
    X: Tensor, y: Tensor, sample_weight: Tensor | None, *, caller: str
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate and convert to float64: X (n, p), y (n, k), w (n,). Returns a 1-D-y flag."""
    X = torch.as_tensor(X)
    y = torch.as_tensor(y, device=X.device)
    if X.dim() == 1:
        X = X.unsqueeze(1)
    if X.dim() != 2:
        raise ValueError(
            f"The 'X' parameter of {caller} must be a 2-D tensor (n_samples, n_features). "
            f"Got shape {tuple(X.shape)}."
        )
    n = X.shape[0]
    y_was_1d = y.dim() == 1
    if y.dim() == 1:
        y = y.unsqueeze(1)
    elif y.dim() > 2:
        # Model outputs such as (n, 1, 1) still describe one target per sample.
        y = y.reshape(y.shape[0], -1)
    if y.shape[0] != n:
        raise ValueError(
            f"The 'y' parameter of {caller} must have {n} rows to match 'X'. "
            f"Got shape {tuple(y.shape)}."
        )
    if sample_weight is None:
        w = torch.ones(n, dtype=torch.float64, device=X.device)
    else:
        w = torch.as_tensor(sample_weight, device=X.device).reshape(-1).to(torch.float64)
        if w.shape[0] != n:
            raise ValueError(
                f"The 'sample_weight' parameter of {caller} must have {n} entries. "
                f"Got {w.shape[0]}."
            )
        if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"The 'sample_weight' parameter of {caller} must be finite and >= 0.")
    if n == 0:
        raise ValueError(f"{caller} needs at least one sample.")
    return X.to(torch.float64), y.to(torch.float64), w, y_was_1d


def _weighted_center(
    X: Tensor, y: Tensor, w: Tensor, fit_intercept: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Subtract weighted means so the intercept drops out of the fit (it is unpenalized)."""
    p, k = X.shape[1], y.shape[1]
    if not fit_intercept:
        return X, y, X.new_zeros(p), y.new_zeros(k)
    total = w.sum()
    if total <= 0:
        raise ValueError("The sample weights sum to 0; cannot fit an intercept.")
    x_mean = (w @ X) / total
    y_mean = (w @ y) / total
    return X - x_mean, y - y_mean, x_mean, y_mean


def _lstsq_min_norm(A: Tensor, B: Tensor) -> Tensor:
    """Minimum-norm least squares (rank-deficiency safe), float64.

    ``gelsd`` (SVD based) is CPU only, so other devices solve the tiny system on the CPU:
    the systems are (n_samples x n_features) with n_features small, so the copy is cheap.
    """
    device = A.device
    sol = torch.linalg.lstsq(A.cpu(), B.cpu(), driver="gelsd").solution
    return sol.to(device)


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
    X, y, w, _ = _check_xyw(X, y, sample_weight, caller="weighted_least_squares")
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
        Required sum of the coefficients, per output.

    Returns
    -------
    Tensor
        Shape (n_features,) for 1-D ``y``, else (n_outputs, n_features); float64.
    """
    X, y, w, y_was_1d = _check_xyw(X, y, sample_weight, caller="solve_constrained_wls")
    p, k = X.shape[1], y.shape[1]
    total_t = torch.as_tensor(total, dtype=torch.float64, device=X.device).reshape(-1)
    if total_t.numel() == 1:
        total_t = total_t.expand(k)
    if total_t.numel() != k:
        raise ValueError(
            f"The 'total' parameter of solve_constrained_wls must be a scalar or have "
            f"{k} entries (one per output). Got {total_t.numel()}."
        )
    if p == 0:
        raise ValueError("solve_constrained_wls needs at least one feature.")
    base = total_t.unsqueeze(0) / p  # (1, k): each coef starts at total / M
    coef = base.expand(p, k).clone()
    if p > 1:
        # Columns 1.. of Q from a QR whose first column is the ones vector span sum-zero.
        seed = torch.eye(p, dtype=torch.float64, device=X.device)
        seed[:, 0] = 1.0
        q, _ = torch.linalg.qr(seed)
        null = q[:, 1:]  # (p, p-1), orthonormal, 1^T null = 0
        sw = w.sqrt().unsqueeze(1)
        resid = y - X.sum(dim=1, keepdim=True) * base  # y - X @ (total/M * 1)
        u = _lstsq_min_norm((X @ null) * sw, resid * sw)  # (p-1, k)
        coef = coef + null @ u
    coef = coef + (total_t - coef.sum(dim=0)) / p  # exact constraint up to one rounding
    coef = coef.T.contiguous()
    return coef[0] if y_was_1d else coef


def _soft_threshold(value: float, threshold: float) -> float:
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


def _lasso_cd(
    gram: np.ndarray,
    xty: np.ndarray,
    yty: float,
    alpha: float,
    *,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int, float]:
    """Cyclic coordinate descent on ``1/2 b^T G b - b^T c + alpha ||b||_1`` (+ yty/2).

    Works on the (weighted, centered) Gram matrix, so one sweep costs O(p^2) whatever
    the number of samples. Stops on the duality gap, like sklearn: when the largest
    coefficient step is small relative to the largest coefficient, the gap is checked
    against ``tol * yty``.
    """
    p = gram.shape[0]
    coef = np.zeros(p)
    g_coef = np.zeros(p)  # gram @ coef, kept up to date incrementally
    diag = np.diag(gram).copy()
    gap_tol = tol * yty
    gap = math.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        max_step = 0.0
        max_coef = 0.0
        for j in range(p):
            if diag[j] <= 0.0:  # constant (after centering) or zero-weight column
                continue
            old = coef[j]
            rho = xty[j] - g_coef[j] + diag[j] * old
            new = _soft_threshold(rho, alpha) / diag[j]
            if new != old:
                coef[j] = new
                g_coef += (new - old) * gram[:, j]
                max_step = max(max_step, abs(new - old))
            max_coef = max(max_coef, abs(new))
        if max_coef == 0.0 or max_step / max_coef < tol or n_iter == max_iter:
            # Duality gap of the lasso: the dual point is the residual rescaled to be
            # feasible (|X^T theta|_inf <= alpha).
            corr = xty - g_coef  # X^T r
            r_sq = max(yty - 2.0 * coef @ xty + coef @ g_coef, 0.0)  # ||r||^2
            corr_max = float(np.max(np.abs(corr))) if p else 0.0
            scale = 1.0 if corr_max <= alpha else alpha / corr_max
            primal = 0.5 * r_sq + alpha * float(np.abs(coef).sum())
            dual = scale * (yty - coef @ xty) - 0.5 * scale * scale * r_sq
            gap = primal - dual
            if gap <= gap_tol:
                break
    return coef, n_iter, gap


# ---------------------------------------------------------------------------
# Linear surrogates
# ---------------------------------------------------------------------------


class LinearSurrogate:
    """Base class: a linear surrogate with Captum's ``fit`` / ``representation`` contract.

    Subclasses implement :meth:`_solve`, returning float64 ``coef`` (n_outputs,
    n_features) and ``intercept`` (n_outputs,).
    """

    def __init__(self) -> None:
        self._coef: Tensor | None = None
        self._intercept: Tensor | None = None
        self._classes: Tensor | None = None
        self.n_iter_: int | None = None

    # -- fitting ----------------------------------------------------------
    def fit(self, train_data: Iterable[Any], **kwargs: Any) -> dict[str, Any]:
        """Fit on a ``DataLoader``-like iterable of ``(x, y)`` / ``(x, y, w)`` batches.

        Parameters
        ----------
        train_data : iterable
            Batches of interpretable inputs (n, n_features), outputs (n,) or
            (n, n_outputs) and optional weights (n,). All batches are concatenated.
        **kwargs
            Passed to :meth:`fit_tensors` (e.g. sklearn ``fit`` arguments for the
            sklearn adapters).

        Returns
        -------
        dict
            ``{"train_time": seconds}`` as Captum's trainers.
        """
        X, y, w = _collect_batches(train_data)
        start = time.perf_counter()
        self.fit_tensors(X, y, w, **kwargs)
        return {"train_time": time.perf_counter() - start}

    def fit_tensors(
        self, X: Tensor, y: Tensor, sample_weight: Tensor | None = None, **kwargs: Any
    ) -> LinearSurrogate:
        """Fit directly on tensors (no DataLoader).

        Parameters
        ----------
        X : Tensor, shape (n_samples, n_features)
        y : Tensor, shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : Tensor, shape (n_samples,), optional

        Returns
        -------
        self
        """
        X = torch.as_tensor(X)
        out_dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
        coef, intercept = self._solve(X, torch.as_tensor(y), sample_weight, **kwargs)
        self._coef = coef.to(device=X.device, dtype=out_dtype)
        self._intercept = intercept.to(device=X.device, dtype=out_dtype)
        return self

    def _solve(
        self, X: Tensor, y: Tensor, sample_weight: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    # -- accessors (Captum's LinearModel names) ----------------------------
    def _fitted_coef(self) -> Tensor:
        if self._coef is None:
            raise RuntimeError(
                f"This {type(self).__name__} is not fitted yet; call fit or fit_tensors."
            )
        return self._coef

    def representation(self) -> Tensor:
        """Coefficients, shape ``(n_outputs, n_features)``; the intercept is in :meth:`bias`."""
        return self._fitted_coef()

    def bias(self) -> Tensor | None:
        """Intercept, shape ``(n_outputs,)`` (zeros when ``fit_intercept=False``)."""
        return self._intercept

    def classes(self) -> Tensor | None:
        """Class labels for classifiers (sklearn adapters), else ``None``."""
        return self._classes

    @property
    def coef_(self) -> Tensor:
        """Alias of :meth:`representation` (sklearn naming)."""
        return self._fitted_coef()

    @property
    def intercept_(self) -> Tensor | None:
        """Alias of :meth:`bias` (sklearn naming)."""
        return self._intercept

    def __call__(self, x: Tensor) -> Tensor:
        """Predict, ``x @ coef.T + intercept``; shape (n, n_outputs)."""
        coef = self._fitted_coef()
        out = torch.as_tensor(x).to(coef.dtype) @ coef.T
        if self._intercept is not None:
            out = out + self._intercept
        return out


def _check_alpha(alpha: Any, cls: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise ValueError(f"The 'alpha' parameter of {cls} must be a float >= 0. Got {alpha!r}.")
    return float(alpha)


class WeightedLinearRegression(LinearSurrogate):
    """Weighted ordinary least squares, closed form in float64.

    Matches ``sklearn.linear_model.LinearRegression`` fitted with ``sample_weight``
    (minimum-norm solution for rank-deficient designs).

    Parameters
    ----------
    fit_intercept : bool, keyword-only
        Fit an unpenalized intercept. Default True.
    """

    def __init__(self, *, fit_intercept: bool = True) -> None:
        super().__init__()
        self.fit_intercept = fit_intercept

    def _solve(self, X, y, sample_weight, **kwargs):
        return weighted_least_squares(X, y, sample_weight, fit_intercept=self.fit_intercept)


class WeightedRidge(LinearSurrogate):
    """Weighted ridge regression, closed form in float64.

    Objective ``sum_i w_i (y_i - x_i . b - c)^2 + alpha ||b||^2`` as
    ``sklearn.linear_model.Ridge`` with ``sample_weight``.

    Parameters
    ----------
    alpha : float
        L2 penalty, >= 0. Default 1.0 (sklearn's default).
    fit_intercept : bool, keyword-only
        Default True.
    """

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha, "WeightedRidge")
        self.fit_intercept = fit_intercept

    def _solve(self, X, y, sample_weight, **kwargs):
        return weighted_least_squares(
            X, y, sample_weight, fit_intercept=self.fit_intercept, alpha=self.alpha
        )


class WeightedLasso(LinearSurrogate):
    """Weighted lasso by coordinate descent in float64.

    Minimizes sklearn's ``Lasso`` objective in its sample-weighted form::

        1 / (2 * sum(w)) * sum_i w_i (y_i - x_i . b - c)^2 + alpha * ||b||_1

    (sklearn rescales weights to sum to ``n_samples``, giving the same problem), with an
    unpenalized intercept obtained by weighted centering. Multi-output targets are
    fitted independently, as sklearn does.

    Parameters
    ----------
    alpha : float
        L1 penalty, >= 0. Default 1.0 (sklearn's default).
    fit_intercept : bool, keyword-only
        Default True.
    max_iter : int, keyword-only
        Maximum number of coordinate sweeps. Default 1000.
    tol : float, keyword-only
        Duality-gap tolerance relative to the weighted variance of ``y`` (sklearn's
        convention). Default 1e-4.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float = 1e-4,
    ) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha, "WeightedLasso")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(
                f"The 'max_iter' parameter of WeightedLasso must be an int >= 1. Got {max_iter!r}."
            )
        if not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(
                f"The 'tol' parameter of WeightedLasso must be a float >= 0. Got {tol!r}."
            )
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = float(tol)

    def _solve(self, X, y, sample_weight, **kwargs):
        X, y, w, _ = _check_xyw(X, y, sample_weight, caller="WeightedLasso.fit")
        total = float(w.sum())
        if total <= 0:
            raise ValueError("The sample weights sum to 0; WeightedLasso cannot be fitted.")
        Xc, yc, x_mean, y_mean = _weighted_center(X, y, w, self.fit_intercept)
        v = (w / total).unsqueeze(1)  # normalized weights turn 1/(2 sum w) into 1/2
        # The Gram matrix is small (p x p); the CD loop runs on the CPU in numpy since
        # per-coordinate scalar work is far cheaper there than as torch kernel launches.
        gram = ((Xc * v).T @ Xc).cpu().numpy()
        xty_all = ((Xc * v).T @ yc).cpu().numpy()  # (p, k)
        yty_all = (v * yc * yc).sum(dim=0).cpu().numpy()  # (k,)
        coefs = []
        n_iters = []
        for out in range(y.shape[1]):
            coef, n_iter, gap = _lasso_cd(
                gram,
                xty_all[:, out],
                float(yty_all[out]),
                self.alpha,
                max_iter=self.max_iter,
                tol=self.tol,
            )
            if gap > self.tol * float(yty_all[out]) and self.tol > 0:
                warnings.warn(
                    f"WeightedLasso did not converge in {self.max_iter} iterations "
                    f"(duality gap {gap:.3g}); increase max_iter or alpha.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            coefs.append(coef)
            n_iters.append(n_iter)
        self.n_iter_ = max(n_iters)
        coef_t = torch.as_tensor(np.stack(coefs), dtype=torch.float64, device=X.device)
        intercept = y_mean - coef_t @ x_mean
        return coef_t, intercept


# ---------------------------------------------------------------------------
# sklearn adapters (Captum names)
# ---------------------------------------------------------------------------


def _import_sklearn() -> Any:
    try:
        import sklearn
        import sklearn.linear_model  # noqa: F401 - make the submodule attribute available
    except ImportError as err:
        raise ImportError(
            "The sklearn surrogate models need scikit-learn. Install it with "
            "`pip install whybox[sklearn]` (or `pip install scikit-learn`), or use the "
            "torch-native WeightedLasso / WeightedRidge / WeightedLinearRegression."
        ) from err
    return sklearn


class SkLearnLinearModel(LinearSurrogate):
    """Train any sklearn linear estimator as a surrogate (Captum-compatible).

    Parameters
    ----------
    sklearn_module : str
        Path of the estimator under ``sklearn``, e.g. ``"linear_model.Lasso"`` or
        ``"svm.LinearSVC"``.
    **kwargs
        Passed unchanged to the estimator's constructor.

    Notes
    -----
    ``fit`` passes the batch weights as ``sample_weight``; estimators whose ``fit`` does
    not accept it are trained unweighted with a warning (as Captum). Extra ``fit``
    keyword arguments are forwarded to the estimator's ``fit``. The fitted estimator is
    kept in ``self.estimator_``.
    """

    def __init__(self, sklearn_module: str, **kwargs: Any) -> None:
        super().__init__()
        if not isinstance(sklearn_module, str) or not sklearn_module:
            raise ValueError(
                "The 'sklearn_module' parameter of SkLearnLinearModel must be a non-empty "
                f"string such as 'linear_model.Lasso'. Got {sklearn_module!r}."
            )
        self.sklearn_module = sklearn_module
        self.construct_kwargs = kwargs
        self.estimator_: Any = None

    def _solve(self, X, y, sample_weight, **fit_kwargs):
        sklearn = _import_sklearn()
        try:
            cls = reduce(getattr, self.sklearn_module.split("."), sklearn)
        except AttributeError as err:
            raise ValueError(
                f"sklearn has no estimator '{self.sklearn_module}' "
                "(the 'sklearn_module' parameter of SkLearnLinearModel)."
            ) from err
        x_np = X.detach().cpu().numpy()
        y_np = y.detach().cpu().numpy()
        w_np = None if sample_weight is None else sample_weight.detach().cpu().reshape(-1).numpy()
        estimator = cls(**self.construct_kwargs)
        try:
            estimator.fit(x_np, y_np, sample_weight=w_np, **fit_kwargs)
        except TypeError:
            estimator.fit(x_np, y_np, **fit_kwargs)
            warnings.warn(
                f"sklearn.{self.sklearn_module}.fit does not accept sample_weight; the "
                "surrogate was trained without weighting samples.",
                stacklevel=4,
            )
        self.estimator_ = estimator
        coef = torch.as_tensor(np.asarray(estimator.coef_, dtype=np.float64))
        coef = coef.reshape(-1, coef.shape[-1])  # (n_outputs, n_features)
        intercept = torch.as_tensor(
            np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64)
        ).reshape(-1)
        if intercept.numel() == 1 and coef.shape[0] > 1:
            intercept = intercept.expand(coef.shape[0])
        classes = getattr(estimator, "classes_", None)
        self._classes = None if classes is None else torch.as_tensor(np.asarray(classes))
        return coef, intercept


class SkLearnLasso(SkLearnLinearModel):
    """``sklearn.linear_model.Lasso`` surrogate; ``**kwargs`` go to its constructor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("linear_model.Lasso", **kwargs)


class SkLearnRidge(SkLearnLinearModel):
    """``sklearn.linear_model.Ridge`` surrogate; ``**kwargs`` go to its constructor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("linear_model.Ridge", **kwargs)


class SkLearnLinearRegression(SkLearnLinearModel):
    """``sklearn.linear_model.LinearRegression`` surrogate; ``**kwargs`` go to its constructor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("linear_model.LinearRegression", **kwargs)


# ---------------------------------------------------------------------------
# Similarity and sampling functions for LIME
# ---------------------------------------------------------------------------


def _flatten_cat(value: Tensor | tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    if isinstance(value, Tensor):
        return value.reshape(-1)
    return torch.cat([torch.as_tensor(t).reshape(-1) for t in value])


def _float_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class ExpKernelSimilarity:
    """Exponential kernel on a distance between the original and a perturbed input.

    ``similarity = exp(-d^2 / (2 * kernel_width^2))`` where ``d`` is the cosine
    distance ``1 - cos(x, x')`` or the Euclidean distance ``||x - x'||`` between the
    flattened (and, for tuples, concatenated) inputs. Instances are the callables
    returned by :func:`get_exp_kernel_similarity_function`.
    """

    def __init__(self, distance_mode: str, kernel_width: float) -> None:
        self.distance_mode = distance_mode
        self.kernel_width = kernel_width

    def _kernel(self, distance: Tensor) -> Tensor:
        return torch.exp(-(distance**2) / (2.0 * self.kernel_width**2))

    def __call__(
        self,
        original_inp: Tensor | tuple[Tensor, ...],
        perturbed_inp: Tensor | tuple[Tensor, ...],
        perturbed_interpretable_inp: Any = None,
        **kwargs: Any,
    ) -> float:
        """Similarity of one perturbed sample, as a Python float (LimeBase signature).

        The interpretable sample and ``**kwargs`` are accepted and ignored.
        """
        orig = _flatten_cat(original_inp)
        pert = _flatten_cat(perturbed_inp)
        return float(self.batch(orig.unsqueeze(0), pert.unsqueeze(0))[0])

    def batch(self, original_inp: Tensor, perturbed_inp: Tensor) -> Tensor:
        """Similarities for a batch of perturbed samples at once.

        Parameters
        ----------
        original_inp : Tensor, shape (1, ...) or (n, ...)
        perturbed_inp : Tensor, shape (n, ...)

        Returns
        -------
        Tensor, shape (n,)
        """
        pert = perturbed_inp.reshape(perturbed_inp.shape[0], -1)
        orig = original_inp.reshape(original_inp.shape[0], -1)
        dtype = torch.promote_types(_float_dtype(orig), _float_dtype(pert))
        orig, pert = orig.to(dtype), pert.to(dtype)
        if self.distance_mode == "cosine":
            distance = 1.0 - torch.nn.functional.cosine_similarity(orig, pert, dim=1)
        else:
            distance = torch.linalg.vector_norm(orig - pert, dim=1)
        return self._kernel(distance)

    def __repr__(self) -> str:
        return (
            f"ExpKernelSimilarity(distance_mode={self.distance_mode!r}, "
            f"kernel_width={self.kernel_width!r})"
        )


def get_exp_kernel_similarity_function(
    distance_mode: str = "cosine", kernel_width: float = 1.0
) -> ExpKernelSimilarity:
    """Build LIME's default similarity: an exponential kernel on a distance.

    Parameters
    ----------
    distance_mode : {"cosine", "euclidean"}
        Distance between the flattened original and perturbed inputs (tuples are
        concatenated). Default ``"cosine"``.
    kernel_width : float
        Width of the kernel ``exp(-d^2 / (2 * kernel_width^2))``, > 0. Default 1.0.

    Returns
    -------
    ExpKernelSimilarity
        Callable ``similarity(original_inp, perturbed_inp, perturbed_interpretable_inp,
        **kwargs) -> float``, usable as ``similarity_func`` of Lime / LimeBase, with a
        vectorized ``.batch(original, perturbed_batch)``.
    """
    if distance_mode not in ("cosine", "euclidean"):
        raise ValueError(
            "The 'distance_mode' parameter of get_exp_kernel_similarity_function must be "
            f"'cosine' or 'euclidean'. Got {distance_mode!r}."
        )
    if (
        isinstance(kernel_width, bool)
        or not isinstance(kernel_width, numbers.Real)
        or not kernel_width > 0
        or not math.isfinite(kernel_width)
    ):
        raise ValueError(
            "The 'kernel_width' parameter of get_exp_kernel_similarity_function must be a "
            f"float > 0. Got {kernel_width!r}."
        )
    return ExpKernelSimilarity(distance_mode, float(kernel_width))


def default_perturb_func(
    original_inp: Tensor | tuple[Tensor, ...],
    *,
    num_interp_features: int,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """LIME's default sampler: each interpretable feature kept with probability 1/2.

    Parameters
    ----------
    original_inp : Tensor or tuple of Tensor
        Only its device is used.
    num_interp_features : int, keyword-only
        Number of interpretable features ``M``.
    generator : torch.Generator, keyword-only, optional
        For reproducible sampling (must live on the CPU).

    Returns
    -------
    Tensor, shape (1, M), long, on the input's device.
    """
    device = original_inp.device if isinstance(original_inp, Tensor) else original_inp[0].device
    probs = torch.full((1, int(num_interp_features)), 0.5)
    return torch.bernoulli(probs, generator=generator).to(device=device, dtype=torch.long)


# Callable alias for type hints of user-provided similarity functions.
SimilarityFunc = Callable[..., float | Tensor]
