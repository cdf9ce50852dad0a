"""Linear surrogates fitted in torch: the base class and the weighted OLS / ridge / lasso.

:class:`LinearSurrogate` keeps Captum's ``fit(DataLoader)`` / ``representation()``
contract (:class:`~whybox.core.surrogate.protocol.SurrogateModel`) and adds
:meth:`LinearSurrogate.fit_tensors`, which skips the ``DataLoader`` round trip, and
``bias()`` for the intercept. Coefficients come back in the dtype and on the device of
the training inputs; the solving is done in float64 (:mod:`whybox.core.surrogate.fit`).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import collect_batches
from .fit import (
    _lasso_checked,
    _least_squares_checked,
    host_lasso_groups,
    lasso_groups,
    weighted_lasso,
    weighted_least_squares,
)

__all__ = ["LinearSurrogate", "WeightedLinearRegression", "WeightedRidge", "WeightedLasso"]


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
        X, y, w = collect_batches(train_data)
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

        Raises
        ------
        ValueError
            Mismatched shapes, negative weights, or NaN / inf in ``X``, ``y`` or
            ``sample_weight``.
        """
        X = torch.as_tensor(X)
        out_dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
        coef, intercept = self._solve(X, torch.as_tensor(y), sample_weight, **kwargs)
        self._coef = coef.to(device=X.device, dtype=out_dtype)
        self._intercept = intercept.to(device=X.device, dtype=out_dtype)
        return self

    def _fit_checked(self, X: Tensor, y: Tensor, w: Tensor, out_dtype: torch.dtype) -> Tensor:
        """Fit on checked float64 data and return the coefficients ``(k, p)`` in ``out_dtype``.

        ``X`` is ``(n, p)``, ``y`` ``(n,)`` or ``(n, k)``, ``w`` ``(n,)``, all float64 and
        finite, ``w >= 0`` (what :func:`~whybox.core.surrogate.data.check_training_data`
        returns), holding values exactly representable in ``out_dtype``.

        LIME calls this after checking its samples, outputs and similarities itself: the
        torch-native models then skip checking them again (a good part of a tiny job).
        Every other model, including a subclass with its own ``_solve``, is fitted through
        :meth:`fit_tensors` as usual.
        """
        solve = getattr(type(self), "_solve_checked", None)
        if solve is None or type(self)._solve is not _CHECKED_SOLVES.get(solve):
            self.fit_tensors(X.to(out_dtype), y.to(out_dtype), w.to(out_dtype))
            return torch.as_tensor(self.representation())
        coef, intercept = solve(self, X, y.unsqueeze(1) if y.dim() == 1 else y, w)
        self._coef = coef.to(dtype=out_dtype)
        self._intercept = intercept.to(dtype=out_dtype)
        return self._coef

    def _fit_checked_groups(
        self, X: Tensor, y: Tensor, w: Tensor, out_dtype: torch.dtype
    ) -> Tensor:
        """One fit per group, as :meth:`_fit_checked` makes them one at a time: group ``g``
        fits ``X[:, g]`` (or the shared ``X``), ``y[:, g]`` and ``w[:, g]``.

        Parameters
        ----------
        X : Tensor, shape ``(n, p)`` or ``(n, G, p)``
        y, w : Tensor, shape ``(n, G)``
            Checked float64 data, as for :meth:`_fit_checked`.

        Returns
        -------
        Tensor, shape ``(G, p)``, ``out_dtype``
            New memory; the surrogate is left holding the last group's fit.
        """
        coefs = []
        for g in range(y.shape[1]):
            xg = X if X.dim() == 2 else X[:, g]
            coef = self._fit_checked(xg, y[:, g], w[:, g], out_dtype).reshape(-1)
            coefs.append(coef if coef.dtype == out_dtype else coef.to(out_dtype))
        if not coefs:
            return torch.zeros(0, X.shape[-1], dtype=out_dtype, device=X.device)
        return torch.stack(coefs)

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

    def _solve_checked(self, X, y, w):
        return _least_squares_checked(X, y, w, fit_intercept=self.fit_intercept, alpha=0.0)


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

    def _solve_checked(self, X, y, w):
        return _least_squares_checked(X, y, w, fit_intercept=self.fit_intercept, alpha=self.alpha)


class WeightedLasso(LinearSurrogate):
    """Weighted lasso by coordinate descent in float64.

    Minimizes sklearn's ``Lasso`` objective in its sample-weighted form::

        1 / (2 * sum(w)) * sum_i w_i (y_i - x_i . b - c)^2 + alpha * ||b||_1

    (sklearn rescales weights to sum to ``n_samples``, giving the same problem), with an
    unpenalized intercept obtained by weighted centering. Multi-output targets are
    fitted independently, as sklearn does (see :func:`~whybox.core.surrogate.fit.weighted_lasso`).

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
        coef, intercept, self.n_iter_ = weighted_lasso(
            X,
            y,
            sample_weight,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            caller="WeightedLasso.fit",
        )
        return coef, intercept

    def _fit_checked_groups(
        self, X: Tensor, y: Tensor, w: Tensor, out_dtype: torch.dtype
    ) -> Tensor:
        """:meth:`LinearSurrogate._fit_checked_groups` with the groups' fits run back to back
        on the host (:func:`~whybox.core.surrogate.fit.lasso_groups`: the same numbers
        as one fit per group), while the class still solves with this class's solver."""
        kind = type(self)
        if kind._solve is not WeightedLasso._solve or (
            kind._solve_checked is not WeightedLasso._solve_checked
        ):
            return super()._fit_checked_groups(X, y, w, out_dtype)
        fitted = lasso_groups(
            X,
            y,
            w,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            caller="WeightedLasso.fit",
        )
        if fitted is None:
            return super()._fit_checked_groups(X, y, w, out_dtype)
        return self._keep_groups(*fitted, out_dtype)

    def _fit_host_groups(
        self, X: np.ndarray, columns: Any, w: np.ndarray, out_dtype: torch.dtype
    ) -> Tensor | None:
        """:meth:`_fit_checked_groups` on the numpy arrays of its CPU tensors (LIME's tiny
        jobs: no tensor is made until the coefficients).

        ``X`` ``(n, p)`` or ``(n, G, p)`` and ``w`` ``(n, G)``: float64; ``columns``: the
        targets as :func:`~whybox.core.surrogate.fit.host_lasso_groups` takes them (the
        views :func:`~whybox.core.surrogate.fit.lasso_groups` makes). Returns ``None``
        when the class fits differently (its own ``_fit_checked_groups`` or solver): the
        caller then calls that.
        """
        kind = type(self)
        if (
            kind._fit_checked_groups is not WeightedLasso._fit_checked_groups
            or kind._solve is not WeightedLasso._solve
            or kind._solve_checked is not WeightedLasso._solve_checked
        ):
            return None
        coef, intercept, n_iter = host_lasso_groups(
            X,
            columns,
            w,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            caller="WeightedLasso.fit",
            stacklevel=4,  # the warning points at the caller of this method, as before
        )
        host_dtype = _HOST_DTYPES.get(out_dtype)
        if host_dtype is None or not len(coef):
            return self._keep_groups(
                torch.from_numpy(coef), torch.from_numpy(intercept), n_iter, out_dtype
            )
        # :meth:`_keep_groups` in numpy: the same IEEE roundings (numpy's and torch's CPU
        # float64 -> float32 casts both round to nearest even), without four tensor ops
        if host_dtype is not np.float64:
            coef, intercept = coef.astype(host_dtype), intercept.astype(host_dtype)
        last = coef[-1:] if len(coef) > 1 else coef
        self._coef = torch.from_numpy(last.copy())  # not sharing the result's memory
        self._intercept = torch.from_numpy(intercept[-1:] if len(intercept) > 1 else intercept)
        self.n_iter_ = n_iter
        return torch.from_numpy(coef)

    def _keep_groups(
        self, coef: Tensor, intercept: Tensor, n_iter: int, out_dtype: torch.dtype
    ) -> Tensor:
        """The groups' float64 fits as ``out_dtype`` coefficients ``(G, p)``; the surrogate
        keeps the last group's fit, as one fit per group leaves it."""
        if not len(coef):
            return coef.to(out_dtype)
        coef = coef.to(out_dtype)
        # not sharing the result's memory
        self._coef = coef[-1:].clone() if len(coef) > 1 else coef.clone()
        self._intercept = (intercept[-1:] if len(intercept) > 1 else intercept).to(out_dtype)
        self.n_iter_ = n_iter
        return coef

    def _solve_checked(self, X, y, w):
        coef, intercept, self.n_iter_ = _lasso_checked(
            X,
            y,
            w,
            alpha=self.alpha,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            caller="WeightedLasso.fit",
        )
        return coef, intercept


#: the output dtypes :meth:`WeightedLasso._fit_host_groups` casts to in numpy
_HOST_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

#: ``_solve_checked`` -> the ``_solve`` it stands for: :meth:`LinearSurrogate._fit_checked`
#: takes the short path only while a class still solves with that very ``_solve``
_CHECKED_SOLVES = {
    WeightedLinearRegression._solve_checked: WeightedLinearRegression._solve,
    WeightedRidge._solve_checked: WeightedRidge._solve,
    WeightedLasso._solve_checked: WeightedLasso._solve,
}
