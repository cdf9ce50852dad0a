"""Interpretable surrogate models for LIME and KernelSHAP, fitted in torch.

One idea per module:

* :mod:`~whybox.core.surrogate.protocol` -- :class:`SurrogateModel`, what ``LimeBase``
  needs (Captum's ``fit`` / ``representation`` contract);
* :mod:`~whybox.core.surrogate.data` -- the one place training data enter a fit
  (``DataLoader`` batches, shape checks, finite values);
* :mod:`~whybox.core.surrogate.fit` -- the float64 solvers: weighted least squares /
  ridge, KernelSHAP's constrained regression, lasso by coordinate descent;
* :mod:`~whybox.core.surrogate.linear` -- :class:`LinearSurrogate` and the torch-native
  ``Weighted*`` models;
* :mod:`~whybox.core.surrogate.sklearn_adapters` -- Captum's ``SkLearn*`` models
  (scikit-learn imported lazily);
* :mod:`~whybox.core.surrogate.similarity` -- LIME's exponential-kernel similarity;
* :mod:`~whybox.core.surrogate.sampling` -- LIME's default sampler.

The torch-native solvers work in float64 and return tensors in the dtype and on the
device of the training inputs.
"""

from .fit import solve_constrained_wls, weighted_lasso, weighted_least_squares
from .linear import LinearSurrogate, WeightedLasso, WeightedLinearRegression, WeightedRidge
from .protocol import SurrogateModel
from .sampling import default_perturb_func
from .similarity import ExpKernelSimilarity, SimilarityFunc, get_exp_kernel_similarity_function
from .sklearn_adapters import (
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
)

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
    "weighted_lasso",
    "solve_constrained_wls",
    "ExpKernelSimilarity",
    "get_exp_kernel_similarity_function",
    "SimilarityFunc",
    "default_perturb_func",
]
