"""Captum 0.9's interpretable-model classes: ``Model``, ``LinearModel`` and its SGD and
scikit-learn variants, under Captum's names.

* :class:`Model` -- the interface (``fit(train_data)``, ``representation()``, ``__call__``).
  whybox's own surrogates (:class:`~whybox.core.surrogate.linear.LinearSurrogate`:
  ``WeightedLasso``, ``SkLearnLasso``, ...) are registered as ``Model`` and
  ``LinearModel`` (they implement ``fit`` / ``representation`` / ``bias`` / ``classes``).
* :class:`LinearModel` -- an ``nn.Module`` (optional norm, then ``nn.Linear``) trained by
  a ``train_fn`` (:mod:`whybox.core.surrogate.trainers`), as Captum's.
* :class:`SGDLinearModel`, :class:`SGDLasso`, :class:`SGDRidge`,
  :class:`SGDLinearRegression` -- trained by torch SGD, Captum's objectives: half the
  weighted mean squared error plus ``alpha * ||W||_1`` (lasso), ``alpha * ||W||_2``
  (ridge; the norm, not its square, as Captum) or nothing.
* ``SkLearnLinearModel``, ``SkLearnLasso``, ``SkLearnRidge``, ``SkLearnLinearRegression``
  are whybox's scikit-learn adapters
  (:mod:`~whybox.core.surrogate.sklearn_adapters`); :class:`SkLearnLogisticRegression` and
  :class:`SkLearnSGDClassifier` are two more of them. scikit-learn is imported only when
  one of these is fitted. They differ from Captum's in that they are not ``nn.Module``
  objects, keep the training data's dtype (float64 stays float64; Captum casts to
  float32) and return a ``(n_outputs,)`` bias for several outputs (Captum
  ``(1, n_outputs)``); ``fit`` passes every keyword to the estimator's ``fit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .linear import LinearSurrogate
from .sklearn_adapters import (
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
)
from .trainers import l2_loss, sgd_train_linear_model, sklearn_train_linear_model

__all__ = [
    "Model",
    "LinearModel",
    "SGDLinearModel",
    "SGDLasso",
    "SGDRidge",
    "SGDLinearRegression",
    "SkLearnLinearModel",
    "SkLearnLasso",
    "SkLearnRidge",
    "SkLearnLinearRegression",
    "SkLearnLogisticRegression",
    "SkLearnSGDClassifier",
    "sgd_train_linear_model",
    "sklearn_train_linear_model",
]


class Model(ABC):
    """A trainable interpretable model (Captum's interface, e.g. LIME's surrogate)."""

    @abstractmethod
    def fit(self, train_data: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Train on a ``DataLoader`` of ``(x, y)`` or ``(x, y, w)`` batches; optionally
        return training statistics."""

    @abstractmethod
    def representation(self) -> Tensor:
        """The model's representation, e.g. a linear model's weights."""

    @abstractmethod
    def __call__(self, x: Any) -> Any:
        """Predict for a batch ``x``."""


class LinearModel(nn.Module, Model):
    """A linear model (``nn.Linear`` after an optional norm) trained by ``train_fn``.

    Parameters
    ----------
    train_fn : callable
        ``train_fn(model, dataloader=..., construct_kwargs=..., **fit_kwargs)``, which builds
        the layers with :meth:`_construct_model_params` and trains them, e.g.
        :func:`~whybox.core.surrogate.trainers.sgd_train_linear_model`.
    **kwargs
        Given to :meth:`_construct_model_params` by ``train_fn`` (``norm_type``,
        ``affine_norm``, ``bias``).

    Attributes
    ----------
    norm : nn.Module or None
        Batch / layer norm (or a standardisation) applied before ``linear``.
    linear : nn.Linear or None
        The fitted layer (``None`` before ``fit``).
    """

    SUPPORTED_NORMS: list[str | None] = [None, "batch_norm", "layer_norm"]

    def __init__(self, train_fn: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__()
        self.norm: nn.Module | None = None
        self.linear: nn.Linear | None = None
        self.train_fn = train_fn
        self.construct_kwargs = kwargs

    def _construct_model_params(
        self,
        in_features: int | None = None,
        out_features: int | None = None,
        norm_type: str | None = None,
        affine_norm: bool = False,
        bias: bool = True,
        weight_values: Tensor | None = None,
        bias_value: Tensor | None = None,
        classes: Tensor | None = None,
    ) -> None:
        """Build the layers (called by ``train_fn``).

        Parameters
        ----------
        in_features, out_features : int, optional
            The layer's size (taken from ``weight_values`` when given).
        norm_type : {None, "batch_norm", "layer_norm"}
            A norm before the linear layer.
        affine_norm : bool
            Learn the norm's affine parameters.
        bias : bool
            Give the linear layer a bias.
        weight_values : Tensor, optional
            Initial weights, ``(out_features, in_features)`` or ``(in_features,)``.
        bias_value : Tensor, optional
            Initial bias (needs ``bias=True``).
        classes : Tensor, optional
            The class labels of a classifier.
        """
        if norm_type not in self.SUPPORTED_NORMS:
            raise ValueError(
                f"The 'norm_type' parameter of LinearModel must be one of "
                f"{self.SUPPORTED_NORMS}. Got {norm_type!r}."
            )
        if weight_values is not None:
            in_features = int(weight_values.shape[-1])
            out_features = 1 if weight_values.dim() == 1 else int(weight_values.shape[0])
        if in_features is None or out_features is None:
            raise ValueError(
                "LinearModel needs in_features and out_features, or weight_values, to be built."
            )
        if norm_type == "batch_norm":
            self.norm = nn.BatchNorm1d(in_features, eps=1e-8, affine=affine_norm)
        elif norm_type == "layer_norm":
            self.norm = nn.LayerNorm(in_features, eps=1e-8, elementwise_affine=affine_norm)
        else:
            self.norm = None
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        if weight_values is not None:
            self.linear.weight.data = weight_values.reshape(out_features, in_features)
        if bias_value is not None:
            if not bias:
                raise ValueError("LinearModel got a bias_value but bias=False.")
            assert self.linear.bias is not None  # bias=True
            self.linear.bias.data = bias_value
        if classes is not None:
            self.linear.classes = classes

    def fit(self, train_data: Any, **kwargs: Any) -> Any:
        """Train with ``train_fn`` on ``train_data`` (a ``DataLoader``).

        Parameters
        ----------
        train_data : DataLoader
            Batches ``(x, y)`` or ``(x, y, w)``.
        **kwargs
            Options of ``train_fn``.

        Returns
        -------
        Any
            What ``train_fn`` returns (training statistics).
        """
        return self.train_fn(
            self, dataloader=train_data, construct_kwargs=self.construct_kwargs, **kwargs
        )

    def _fitted(self) -> nn.Linear:
        if self.linear is None:
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet; call fit first.")
        return self.linear

    def forward(self, x: Tensor) -> Tensor:
        """Predict: ``linear(norm(x))``, shape ``(n, out_features)``."""
        linear = self._fitted()
        if self.norm is not None:
            x = self.norm(x)
        return linear(x)

    def representation(self) -> Tensor:
        """The weights, ``(out_features, in_features)``, bias excluded (see :meth:`bias`)."""
        return self._fitted().weight.detach()

    def bias(self) -> Tensor | None:
        """The bias, ``(out_features,)``, or ``None`` (not fitted, or ``bias=False``)."""
        if self.linear is None or self.linear.bias is None:
            return None
        return self.linear.bias.detach()

    def classes(self) -> Tensor | None:
        """The class labels of a classifier, else ``None``."""
        classes = None if self.linear is None else getattr(self.linear, "classes", None)
        return None if classes is None else classes.detach()


# whybox's surrogates implement the same interface: let isinstance checks written for
# Captum's classes accept them
Model.register(LinearSurrogate)
LinearModel.register(LinearSurrogate)


class SGDLinearModel(LinearModel):
    """A :class:`LinearModel` trained by
    :func:`~whybox.core.surrogate.trainers.sgd_train_linear_model`.

    Parameters
    ----------
    **kwargs
        Arguments of :meth:`LinearModel._construct_model_params`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(train_fn=sgd_train_linear_model, **kwargs)


class SGDLasso(SGDLinearModel):
    """SGD on half the weighted MSE plus ``alpha * ||W||_1`` (weights need not reach
    exactly 0, as with any SGD lasso)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def fit(self, train_data: Any, **kwargs: Any) -> Any:
        """Train (``alpha``, ``initial_lr``, ``max_epoch``, ... as
        :func:`~whybox.core.surrogate.trainers.sgd_train_linear_model`)."""
        return super().fit(train_data=train_data, loss_fn=l2_loss, reg_term=1, **kwargs)


class SGDRidge(SGDLinearModel):
    """SGD on half the weighted MSE plus ``alpha * ||W||_2`` (Captum's objective: the
    norm, not its square)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def fit(self, train_data: Any, **kwargs: Any) -> Any:
        """Train (options as
        :func:`~whybox.core.surrogate.trainers.sgd_train_linear_model`)."""
        return super().fit(train_data=train_data, loss_fn=l2_loss, reg_term=2, **kwargs)


class SGDLinearRegression(SGDLinearModel):
    """SGD on half the weighted MSE, no penalty."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def fit(self, train_data: Any, **kwargs: Any) -> Any:
        """Train (options as
        :func:`~whybox.core.surrogate.trainers.sgd_train_linear_model`)."""
        return super().fit(train_data=train_data, loss_fn=l2_loss, reg_term=None, **kwargs)


class SkLearnLogisticRegression(SkLearnLinearModel):
    """``sklearn.linear_model.LogisticRegression`` surrogate; ``**kwargs`` go to its
    constructor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("linear_model.LogisticRegression", **kwargs)


class SkLearnSGDClassifier(SkLearnLinearModel):
    """``sklearn.linear_model.SGDClassifier`` surrogate; ``**kwargs`` go to its
    constructor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("linear_model.SGDClassifier", **kwargs)
