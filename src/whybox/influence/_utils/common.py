"""Alias of Captum 0.9's ``captum.influence._utils.common``: its public names, as whybox
objects, and the private helpers Captum-style code (and Captum's tests) import from it,
implemented by :mod:`whybox.influence._linalg` under Captum's underscore names."""

from typing import Any

from torch import Tensor
from torch.nn import Module

from whybox.influence._linalg import custom_functional_call, functional_call
from whybox.influence._linalg import eig_sorted as _eig_helper
from whybox.influence._linalg import flatten_params as _flatten_params
from whybox.influence._linalg import top_eigen_general as _top_eigen
from whybox.influence._linalg import unflatten_params_factory as _unflatten_params_factory
from whybox.influence.base import KMostInfluentialResults

__all__ = [
    "KMostInfluentialResults",
    "_custom_functional_call",
    "_eig_helper",
    "_flatten_params",
    "_functional_call",
    "_top_eigen",
    "_unflatten_params_factory",
]


# defined (not just bound) under Captum's names: code that names tests or logs after a
# function's ``__name__`` (Captum's parameterized tests do) sees Captum's names
def _functional_call(model: Module, params: dict[str, Tensor], features: Any) -> Any:
    """Captum's name for :func:`whybox.influence._linalg.functional_call`."""
    return functional_call(model, params, features)


def _custom_functional_call(model: Module, params: dict[str, Tensor], features: Any) -> Any:
    """Captum's name for :func:`whybox.influence._linalg.custom_functional_call`."""
    return custom_functional_call(model, params, features)
