"""Convergence-delta checks for sampling attributions (Captum 0.9's test helper)."""

from __future__ import annotations

import torch
from torch import Tensor

from whybox.testing.helpers import BaseTest


def assert_attribution_delta(
    test: BaseTest,
    inputs: Tensor | tuple[Tensor, ...],
    attributions: Tensor | tuple[Tensor, ...],
    n_samples: int,
    delta: Tensor,
    delta_thresh: float | Tensor = 0.0006,
    is_layer: bool = False,
) -> None:
    """Check shapes, then that the per-example mean delta is below ``delta_thresh``.

    Parameters
    ----------
    test : BaseTest
        The running test.
    inputs : Tensor or tuple of Tensor
        The attributed inputs; the first one's dimension 0 is the batch size.
    attributions : Tensor or tuple of Tensor
        The attributions. Unless ``is_layer``, each must have its input's shape.
    n_samples : int
        Deltas per example (e.g. the number of baselines or noise samples).
    delta : Tensor
        The convergence deltas, of shape ``(batch_size * n_samples,)``.
    delta_thresh : float or Tensor, default 0.0006
        The bound on the absolute value of each example's mean delta.
    is_layer : bool, default False
        Whether these are layer attributions, whose shape is not the input's.
    """
    if not is_layer:
        for input, attribution in zip(inputs, attributions):
            test.assertEqual(attribution.shape, input.shape)
    batch_size = inputs[0].shape[0] if isinstance(inputs, tuple) else inputs.shape[0]
    test.assertEqual([batch_size * n_samples], list(delta.shape))

    # one delta per example: the mean over its samples
    delta = torch.mean(delta.reshape(batch_size, -1), dim=1)
    assert_delta(test, delta, delta_thresh)


def assert_delta(test: BaseTest, delta: Tensor, delta_thresh: Tensor | float = 0.0006) -> None:
    """Assert that every delta is below ``delta_thresh`` in absolute value.

    Parameters
    ----------
    test : BaseTest
        The running test.
    delta : Tensor
        The deltas to check.
    delta_thresh : Tensor or float, default 0.0006
        The strict upper bound on ``abs(delta)``.
    """
    all_small = (delta.abs() < delta_thresh).all()
    test.assertTrue(
        all_small,
        f"Sum of SHAP values {delta} does not match the difference of endpoints.",
    )
