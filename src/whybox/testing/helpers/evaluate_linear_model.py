"""Mean L1 and L2 errors of a trained linear model (Captum 0.9's test helper)."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from whybox._utils.models.linear_model.model import LinearModel


def evaluate(test_data: DataLoader, classifier: LinearModel) -> dict[str, Tensor]:
    """Mean (optionally weighted) absolute and squared errors of ``classifier``.

    Parameters
    ----------
    test_data : DataLoader
        Yields ``(x, y)`` or ``(x, y, w)`` batches; ``w`` holds one weight per
        example, which multiplies that example's errors.
    classifier : LinearModel
        The model to evaluate. It is put in eval mode while evaluating and back in
        train mode afterwards.

    Returns
    -------
    dict of str to Tensor
        ``"l1"`` and ``"l2"``: the per-output sums of the (weighted) absolute and
        squared errors, in float64, divided by the number of examples.
    """
    classifier.eval()

    l1_loss: float | Tensor = 0.0
    l2_loss: float | Tensor = 0.0
    n = 0
    squared_errors = []
    with torch.no_grad():
        for batch in test_data:
            if len(batch) == 2:
                x, y = batch
                w = None
            else:
                x, y, w = batch

            out = classifier(x)
            y = y.view(x.shape[0], -1)
            assert y.shape == out.shape

            error = out - y
            if w is None:
                abs_error = error.abs()
                squared_error = error**2
            else:
                weights = w.view(-1, 1)
                abs_error = (weights * error).abs()
                squared_error = weights * (error**2)
            l1_loss += abs_error.sum(0).to(dtype=torch.float64)
            l2_loss += squared_error.sum(0).to(dtype=torch.float64)
            squared_errors.append(squared_error.to(dtype=torch.float64))
            n += x.shape[0]

    all_squared_errors = torch.cat(squared_errors, dim=0)
    assert n > 0

    # a cross-check of the running sum against the per-example errors
    assert ((all_squared_errors.mean(0) - l2_loss / n).abs() <= 0.1).all()

    classifier.train()
    return {"l1": cast(Tensor, l1_loss / n), "l2": cast(Tensor, l2_loss / n)}
