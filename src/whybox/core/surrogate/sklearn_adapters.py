"""Captum's sklearn surrogates: any sklearn linear estimator behind the surrogate contract.

scikit-learn is an optional dependency (``whybox[sklearn]``): it is imported when an
adapter is fitted, never when this module is imported.
"""

from __future__ import annotations

import warnings
from functools import reduce
from typing import Any

import numpy as np
import torch

from .data import check_training_data
from .linear import LinearSurrogate

__all__ = ["SkLearnLinearModel", "SkLearnLinearRegression", "SkLearnLasso", "SkLearnRidge"]


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
        # Same checks (and messages) as the torch solvers; the estimator gets the data
        # in its original dtype and shape (classifiers want 1-D integer labels).
        check_training_data(X, y, sample_weight, caller=f"{type(self).__name__}.fit")
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
