"""What LIME and KernelSHAP need from an interpretable (surrogate) model.

A surrogate model is anything with the two methods that ``LimeBase`` uses:

* ``fit(train_data, **kwargs)`` where ``train_data`` is a ``DataLoader``-like
  iterable of batches ``(interpretable_inputs, outputs, weights)`` (or pairs
  ``(interpretable_inputs, outputs)``), with shapes ``(n, n_features)``,
  ``(n,)`` or ``(n, n_outputs)`` and ``(n,)``;
* ``representation()`` returning the coefficients, shape ``(n_outputs, n_features)``
  (``n_outputs`` is 1 for a 1-D target), without the intercept.

Models written for Captum's ``Model`` interface satisfy that contract unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["SurrogateModel"]


@runtime_checkable
class SurrogateModel(Protocol):
    """What ``LimeBase`` needs from an interpretable model (Captum-compatible)."""

    def fit(self, train_data: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Train on an iterable of ``(x, y)`` or ``(x, y, w)`` batches."""
        ...

    def representation(self) -> Tensor:
        """Coefficients, shape ``(n_outputs, n_features)``, intercept excluded."""
        ...
