"""Training data of a surrogate fit: the one place data enter every solver.

:func:`collect_batches` turns Captum's ``DataLoader`` of ``(x, y[, w])`` batches into
three tensors; :func:`check_training_data` validates shapes and values (finite
``X`` / ``y`` / weights, weights ``>= 0``) and converts to float64. Every solver in
:mod:`whybox.core.surrogate.fit` and every sklearn adapter calls it first, so bad data
get one clear ``ValueError`` instead of a failure deep inside a linear-algebra routine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["collect_batches", "check_training_data"]


def collect_batches(train_data: Iterable[Any]) -> tuple[Tensor, Tensor, Tensor | None]:
    """Concatenate a ``DataLoader``-like iterable of ``(x, y[, w])`` batches.

    Parameters
    ----------
    train_data : iterable of tuple
        Batches ``(x, y)`` or ``(x, y, w)`` with ``x`` of shape (b, n_features), ``y`` of
        shape (b,) or (b, n_outputs) and ``w`` of shape (b,).

    Returns
    -------
    X : Tensor, shape (n_samples, n_features)
    y : Tensor, shape (n_samples,) or (n_samples, n_outputs)
    weights : Tensor, shape (n_samples,), or None when no batch carries weights
    """
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


def _non_finite(name: str, values: Tensor) -> str:
    """Describe the NaN / inf entries of a 2-D (or 1-D) tensor, e.g. for an error."""
    nan = torch.isnan(values)
    inf = torch.isinf(values)
    bad = (nan | inf).reshape(values.shape[0], -1).any(dim=1)
    first_row = int(bad.nonzero()[0, 0])
    return (
        f"'{name}' has {int(nan.sum())} NaN and {int(inf.sum())} infinite value(s), "
        f"first in row {first_row}"
    )


def check_training_data(
    X: Tensor, y: Tensor, sample_weight: Tensor | None, *, caller: str
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate a fit's training data and convert it to float64.

    Parameters
    ----------
    X : Tensor, shape (n_samples, n_features) or (n_samples,)
        Interpretable inputs (a 1-D ``X`` is one feature).
    y : Tensor, shape (n_samples,), (n_samples, n_outputs) or (n_samples, ...)
        Targets; trailing dimensions are flattened into outputs.
    sample_weight : Tensor, shape (n_samples,), optional
        Non-negative weights; ``None`` means all ones.
    caller : str, keyword-only
        Name of the fitting function, for error messages.

    Returns
    -------
    X : Tensor, shape (n_samples, n_features), float64
    y : Tensor, shape (n_samples, n_outputs), float64
    w : Tensor, shape (n_samples,), float64
    y_was_1d : bool
        Whether ``y`` came in 1-D (solvers then return 1-D coefficients).

    Raises
    ------
    ValueError
        On mismatched shapes, no samples, negative weights, or NaN / inf anywhere in
        ``X``, ``y`` or ``sample_weight`` (the message names which and where).
    """
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
    if n == 0:
        raise ValueError(f"{caller} needs at least one sample.")
    X, y = X.to(torch.float64), y.to(torch.float64)
    if sample_weight is None:
        w = torch.ones(n, dtype=torch.float64, device=X.device)
    else:
        w = torch.as_tensor(sample_weight, device=X.device).reshape(-1).to(torch.float64)
        if w.shape[0] != n:
            raise ValueError(
                f"The 'sample_weight' parameter of {caller} must have {n} entries. "
                f"Got {w.shape[0]}."
            )
    # One device sync on the good path; the details are only computed for the message.
    finite = torch.isfinite(X).all() & torch.isfinite(y).all() & torch.isfinite(w).all()
    if not bool(finite):
        parts = {"X": X, "y": y, "sample_weight": w}
        bad = [name for name, t in parts.items() if not bool(torch.isfinite(t).all())]
        names = " and ".join(f"'{name}'" for name in bad)
        details = "; ".join(_non_finite(name, parts[name]) for name in bad)
        raise ValueError(
            f"The {names} parameter{'s' if len(bad) > 1 else ''} of {caller} must be finite "
            f"(no NaN or inf). Got: {details}. In LIME and KernelSHAP 'y' holds the model's "
            "outputs and 'sample_weight' the similarities: look for NaN or inf in the "
            "inputs, the baselines or the model."
        )
    if bool((w < 0).any()):
        raise ValueError(f"The 'sample_weight' parameter of {caller} must be finite and >= 0.")
    return X, y, w, y_was_1d
