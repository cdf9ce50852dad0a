"""The exception classes of Captum 0.9's ``captum._utils.exceptions``: Captum raises them
from the callback chains of ``FeatureAblation.attribute_future`` and
``ShapleyValueSampling.attribute_future``; Captum-style code imports them to catch them."""

from __future__ import annotations

__all__ = ["FeatureAblationFutureError", "ShapleyValueFutureError"]


class FeatureAblationFutureError(Exception):
    """An error inside the callback chain of a feature-ablation ``attribute_future`` call."""


class ShapleyValueFutureError(Exception):
    """An error inside the callback chain of a Shapley-value ``attribute_future`` call."""
