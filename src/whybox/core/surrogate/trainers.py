"""Training functions of Captum's ``LinearModel``: stochastic gradient descent in torch, and
scikit-learn behind the ``SkLearn*`` names.

A ``LinearModel`` is trained by ``train_fn(model, dataloader=..., construct_kwargs=...,
**options)``; the function builds the model's layers through
``model._construct_model_params(...)`` and returns training statistics. These are the two
functions of Captum 0.9's ``linear_model.train`` module, with its semantics:

* :func:`sgd_train_linear_model` -- SGD over the batches of a ``DataLoader``, epoch after
  epoch, until the running-average loss stops improving by ``threshold`` for ``patience``
  steps (the learning rate halves on plateaus) or ``max_epoch`` epochs are done; the loss is
  ``loss_fn(y, prediction, weights) + alpha * ||W||_p`` (``p = reg_term``; ``None`` for no
  penalty). With the same data order it gives Captum's weights.
* :func:`sklearn_train_linear_model` -- fits any scikit-learn linear estimator on the
  whole (concatenated) data and copies its coefficients into the model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .data import collect_batches

if TYPE_CHECKING:
    from .captum_models import LinearModel

__all__ = [
    "l2_loss",
    "ConvergenceTracker",
    "LossWindow",
    "NormLayer",
    "sgd_train_linear_model",
    "sklearn_train_linear_model",
]


def l2_loss(x1: Tensor, x2: Tensor, weights: Tensor | None = None) -> Tensor:
    """Half the (weighted) mean squared difference.

    Parameters
    ----------
    x1, x2 : Tensor
        Same shape (or broadcastable), e.g. labels ``(n, k)`` and predictions ``(n, k)``.
    weights : Tensor, optional
        Per-example weights ``(n, 1)``, normalised to sum to 1.

    Returns
    -------
    Tensor
        ``mean((x1 - x2)^2) / 2``, or ``sum(w / sum|w| * (x1 - x2)^2) / 2``.
    """
    squared = (x1 - x2).square()
    if weights is None:
        return squared.mean() / 2.0
    return (weights / weights.norm(p=1) * squared).sum() / 2.0


class ConvergenceTracker:
    """Stops training once the loss has not improved for ``patience`` updates.

    Parameters
    ----------
    patience : int
        Updates in a row without improvement that count as converged.
    threshold : float
        An update improves only if it lowers the best loss by more than ``threshold``.
    """

    def __init__(self, patience: int, threshold: float) -> None:
        self.min_avg_loss: Tensor | None = None
        self.convergence_counter: int = 0
        self.converged: bool = False
        self.threshold = threshold
        self.patience = patience

    def update(self, average_loss: Tensor) -> bool:
        """Record one running-average loss; ``True`` once converged."""
        best = self.min_avg_loss
        if best is not None:
            stalled = bool(average_loss > best) or bool(
                torch.isclose(best, average_loss, atol=self.threshold)
            )
            if stalled:
                self.convergence_counter += 1
                if self.convergence_counter >= self.patience:
                    self.converged = True
                    return True
            else:
                self.convergence_counter = 0
        if best is None or bool(best >= average_loss):
            self.min_avg_loss = average_loss.clone()
        return False


class LossWindow:
    """The last ``window_size`` losses and their average.

    Parameters
    ----------
    window_size : int
        How many recent losses the average covers.
    """

    def __init__(self, window_size: int) -> None:
        self.loss_window: list[Tensor] = []
        self.window_size = window_size

    def append(self, loss: Tensor) -> None:
        """Add a loss (the oldest ones beyond the window are dropped)."""
        if len(self.loss_window) >= self.window_size:
            self.loss_window = self.loss_window[-self.window_size :]
        self.loss_window.append(loss)

    def average(self) -> Tensor:
        """The mean of the losses in the window."""
        return torch.stack(self.loss_window).mean()


class NormLayer(nn.Module):
    """Standardises inputs: ``(x - mean) / (std + eps)``.

    Parameters
    ----------
    mean, std : Tensor
        Per-feature statistics of the training inputs.
    n : int, optional
        Unused (Captum's signature).
    eps : float
        Added to ``std``.
    """

    def __init__(self, mean: Tensor, std: Tensor, n: int | None = None, eps: float = 1e-8) -> None:
        super().__init__()
        self.mean = mean
        self.std = std
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Return the standardised ``x``."""
        return (x - self.mean) / (self.std + self.eps)


def _point(batch: Any, device: str | torch.device | None) -> tuple[Tensor, Tensor, Tensor | None]:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(
            "The 'dataloader' parameter of sgd_train_linear_model must yield (x, y) or "
            f"(x, y, weights) batches. Got a batch of type {type(batch).__name__}."
        )
    x, y = batch[0], batch[1]
    w = batch[2] if len(batch) == 3 else None
    if device is not None:
        x, y = x.to(device), y.to(device)
        w = None if w is None else w.to(device)
    return x, y, w


def _init_weights(model: LinearModel, init_scheme: str | None) -> None:
    linear = model.linear
    if init_scheme is None or linear is None:
        return
    if init_scheme not in ("xavier", "zeros"):
        raise ValueError(
            "The 'init_scheme' parameter of sgd_train_linear_model must be 'zeros', "
            f"'xavier' or None. Got {init_scheme!r}."
        )
    with torch.no_grad():
        if init_scheme == "xavier":
            nn.init.xavier_uniform_(linear.weight)
        else:
            linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def sgd_train_linear_model(
    model: LinearModel,
    dataloader: Iterable[Any],
    construct_kwargs: dict[str, Any],
    max_epoch: int = 100,
    reduce_lr: bool = True,
    initial_lr: float = 0.01,
    alpha: float = 1.0,
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor] = l2_loss,
    reg_term: int | None = 1,
    patience: int = 10,
    threshold: float = 1e-4,
    running_loss_window: int | None = None,
    device: str | None = None,
    init_scheme: str = "zeros",
    debug: bool = False,
) -> dict[str, float]:
    """Train a :class:`~whybox.core.surrogate.captum_models.LinearModel` with SGD.

    Parameters
    ----------
    model : LinearModel
        Built here with ``in_features = x.shape[1]`` and ``out_features = y.shape[1]``
        (1 for 1-D labels) plus ``construct_kwargs``.
    dataloader : DataLoader
        Re-iterable batches ``(x, y)`` or ``(x, y, w)``, ``x`` of shape ``(n, features)``.
    construct_kwargs : dict
        More arguments of ``model._construct_model_params`` (``norm_type``, ``bias``, ...).
    max_epoch : int
        Most passes over the data.
    reduce_lr : bool
        Halve the learning rate when the average loss plateaus (``patience``, ``threshold``).
    initial_lr : float
        The starting learning rate.
    alpha : float
        Weight of the penalty ``||W||_p``.
    loss_fn : callable
        ``loss_fn(labels, predictions, weights) -> loss``.
    reg_term : int, optional
        The norm ``p`` of the penalty (1: lasso-like, 2: ridge-like); ``None``: no penalty.
    patience, threshold : int, float
        Converged after ``patience`` steps without an improvement of more than
        ``threshold`` in the running-average loss.
    running_loss_window : int, optional
        Steps averaged in the running loss; default ``batch_size * len(dataloader)``.
    device : str, optional
        Move each batch there (the model is not moved).
    init_scheme : {"zeros", "xavier"} or None
        Initial weights (the bias starts at 0).
    debug : bool
        Print the learning rate and losses at every step.

    Returns
    -------
    dict
        ``train_time`` (seconds), ``train_loss`` (final running average), ``train_iter``
        (steps) and ``train_epoch``.
    """
    tracker = ConvergenceTracker(patience, threshold)

    def epoch() -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
        return (_point(batch, device) for batch in dataloader)

    batches = epoch()
    try:
        x, y, w = next(batches)
    except StopIteration:
        raise ValueError(
            "The 'dataloader' parameter of sgd_train_linear_model yielded no batches."
        ) from None
    if running_loss_window is None:
        running_loss_window = x.shape[0] * len(dataloader)  # type: ignore[arg-type]
    window = LossWindow(running_loss_window)
    model._construct_model_params(
        in_features=x.shape[1],
        out_features=y.shape[1] if y.dim() == 2 else 1,
        **construct_kwargs,
    )
    model.train()
    _init_weights(model, init_scheme)
    linear = model.linear
    assert linear is not None  # built just above

    step = 0
    epochs_done = 0
    start = time.time()
    with torch.enable_grad():
        optimizer = torch.optim.SGD(model.parameters(), lr=initial_lr)
        scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=patience, threshold=threshold
            )
            if reduce_lr
            else None
        )
        batch: tuple[Tensor, Tensor, Tensor | None] | None = (x, y, w)
        while epochs_done < max_epoch:
            while batch is not None:
                x, y, w = batch
                step += 1
                labels = y.reshape(x.shape[0], -1)
                weights = None if w is None else w.reshape(x.shape[0], -1)
                loss = loss_fn(labels, model(x), weights)
                if reg_term is not None:
                    loss = loss + torch.norm(linear.weight, p=reg_term).sum() * alpha
                window.append(loss.detach().clone())
                average = window.average()
                if tracker.update(average):
                    break
                if debug:
                    print(
                        f"lr={optimizer.param_groups[0]['lr']}, Loss={loss}, "
                        f"Aloss={average}, min_avg_loss={tracker.min_avg_loss}"
                    )
                loss.backward()
                optimizer.step()
                model.zero_grad()
                if scheduler is not None:
                    scheduler.step(average)
                batch = next(batches, None)
            if tracker.converged:
                break
            epochs_done += 1
            batches = epoch()
            batch = next(batches, None)
    return {
        "train_time": time.time() - start,
        "train_loss": window.average().item(),
        "train_iter": step,
        "train_epoch": epochs_done,
    }


def sklearn_train_linear_model(
    model: LinearModel,
    dataloader: Iterable[Any],
    construct_kwargs: dict[str, Any],
    sklearn_trainer: str = "Lasso",
    norm_input: bool = False,
    **fit_kwargs: Any,
) -> dict[str, float]:
    """Train a :class:`~whybox.core.surrogate.captum_models.LinearModel` with scikit-learn.

    Parameters
    ----------
    model : LinearModel
        Receives the estimator's coefficients, intercept and classes.
    dataloader : DataLoader
        Finite batches ``(x, y)`` or ``(x, y, w)``; all of them are concatenated.
    construct_kwargs : dict
        Arguments of the estimator's constructor.
    sklearn_trainer : str
        The estimator's path under ``sklearn`` (``"linear_model.Lasso"``) or under
        ``sklearn.linear_model`` (``"Lasso"``).
    norm_input : bool
        Standardise the inputs first (the model then standardises its inputs too).
    **fit_kwargs
        Passed to the estimator's ``fit``.

    Returns
    -------
    dict
        ``{"train_time": seconds}``.
    """
    from .sklearn_adapters import _import_sklearn

    sklearn = _import_sklearn()
    X, y, w = collect_batches(dataloader)
    x_np = X.detach().cpu().numpy()
    mean = std = None
    if norm_input:
        mean, std = x_np.mean(0), x_np.std(0)
        x_np = (x_np - mean) / std
    try:
        estimator_cls = reduce(getattr, sklearn_trainer.split("."), sklearn)
    except AttributeError:
        try:
            estimator_cls = reduce(getattr, sklearn_trainer.split("."), sklearn.linear_model)
        except AttributeError:
            raise ValueError(
                f"The 'sklearn_trainer' parameter of sklearn_train_linear_model must name a "
                f"scikit-learn estimator. Got {sklearn_trainer!r}."
            ) from None
    estimator = estimator_cls(**construct_kwargs)
    start = time.time()
    y_np = y.detach().cpu().numpy()
    w_np = None if w is None else w.detach().cpu().reshape(-1).numpy()
    try:
        estimator.fit(x_np, y_np, sample_weight=w_np, **fit_kwargs)
    except TypeError:
        # estimators without sample weights are trained unweighted, with a warning (Captum)
        estimator.fit(x_np, y_np, **fit_kwargs)
        warnings.warn(
            f"{sklearn_trainer}.fit does not accept sample_weight; the model was trained "
            "without weighting the samples.",
            stacklevel=2,
        )
    train_time = time.time() - start

    dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
    device = getattr(model, "device", "cpu")
    coef = torch.as_tensor(np.asarray(estimator.coef_, dtype=np.float64), dtype=dtype)
    outputs = coef.shape[0] if coef.dim() > 1 else 1
    intercept = torch.as_tensor(
        np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64), dtype=dtype
    ).reshape(-1)
    if intercept.numel() == 1 and outputs > 1:
        intercept = intercept.expand(outputs).clone()
    classes = getattr(estimator, "classes_", None)
    classes_tensor = None
    if classes is not None and np.asarray(classes).dtype.kind in "biuf":
        classes_tensor = torch.as_tensor(np.asarray(classes)).int()
    model._construct_model_params(
        norm_type=None,
        weight_values=coef.reshape(outputs, -1).to(device),
        bias_value=intercept.to(device),
        classes=classes_tensor,
    )
    if norm_input:
        model.norm = NormLayer(torch.as_tensor(mean), torch.as_tensor(std))
    return {"train_time": train_time}
