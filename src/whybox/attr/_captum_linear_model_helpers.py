"""The private helpers of Captum's ``captum._utils.models.linear_model.train`` that
Captum-style code imports: a training point unpacked, a linear model's weights initialised,
and the optional imports the sklearn trainer needs, with Captum's errors.

whybox's own trainers (:mod:`whybox.core.surrogate.trainers`) check their arguments with
whybox's uniform messages; these keep Captum's contracts (assertions) for code written
against them. The alias module ``whybox._utils.models.linear_model.train`` re-exports them.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import torch
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert
from whybox.core.surrogate.captum_models import LinearModel

__all__: list[str] = []


def _init_linear_model(model: LinearModel, init_scheme: str | None = None) -> None:
    """Initialise ``model.linear`` in place: ``"xavier"`` (uniform) weights or ``"zeros"``;
    the bias, if any, is zeroed either way; ``None`` leaves the layer as it is.

    Raises ``AssertionError`` (as Captum) when the model has no linear layer yet or the
    scheme is unknown.
    """
    linear = model.linear
    if linear is None:
        fail_assert("_init_linear_model", "model", "a LinearModel whose layer is built", None)
    if init_scheme is None:
        return
    if init_scheme not in ("xavier", "zeros"):
        fail_assert("_init_linear_model", "init_scheme", "'xavier', 'zeros' or None", init_scheme)
    with torch.no_grad():
        if init_scheme == "xavier":
            torch.nn.init.xavier_uniform_(linear.weight)
        else:
            linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def _get_point(
    datapoint: tuple[Tensor, ...], device: str | torch.device | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(x, y, weights)`` of one dataloader batch: a 2-tuple has no weights (``None``);
    each tensor moved to ``device`` when one is given."""
    if len(datapoint) == 2:
        x, y = datapoint
        weights = None
    else:
        x, y, weights = datapoint  # a wrong length fails here, as in Captum
    if device is not None:
        x, y = x.to(device), y.to(device)
        weights = None if weights is None else weights.to(device)
    return x, y, weights


def _import_sklearn() -> ModuleType:
    """``sklearn`` with its ``linear_model`` and ``svm`` loaded; ``ValueError`` when it is
    not installed, a warning below 0.23 (no ``sample_weight`` in Lasso there)."""
    try:
        import sklearn
        import sklearn.linear_model  # noqa: F401 - the trainer looks estimators up here
        import sklearn.svm  # noqa: F401
    except ImportError as error:
        raise ValueError("sklearn is not available. Please install sklearn >= 0.23") from error
    # Captum compares version strings as strings; kept, so the same versions warn
    if not sklearn.__version__ >= "0.23.0":
        warnings.warn(
            "Must have sklearn version 0.23.0 or higher to use sample_weight in Lasso regression.",
            stacklevel=1,
        )
    return sklearn


def _import_numpy() -> ModuleType:
    """``numpy``; ``ValueError`` when it is not installed."""
    try:
        import numpy
    except ImportError as error:
        raise ValueError("numpy is not available. Please install numpy.") from error
    return numpy
