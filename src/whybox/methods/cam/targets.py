"""Target helpers with pytorch-grad-cam's names, for CAM users moving over.

Any target form of :mod:`whybox.core.targets` works with the CAMs; these two are the
callables pytorch-grad-cam code passes, one per image (``[ClassifierOutputTarget(281),
...]``) or one for the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from whybox.core.validation import check_int

__all__ = ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget"]


class ClassifierOutputTarget:
    """Target: the score of class ``category`` (pytorch-grad-cam's helper of the same name).

    Parameters
    ----------
    category : int
        The class index.

    Notes
    -----
    Works on one example's output row ``(K,)`` (as an item of a per-example target list,
    giving a 0-d score) and on a batch ``(N, K)`` (as a single target callable, giving
    ``(N,)``).
    """

    def __init__(self, category: int) -> None:
        self.category = check_int(type(self).__name__, "category", category)

    def __call__(self, output: Tensor) -> Tensor:
        return output[self.category] if output.dim() == 1 else output[:, self.category]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """Target: the softmax probability of class ``category`` (over the last dimension)."""

    def __call__(self, output: Tensor) -> Tensor:
        return super().__call__(torch.softmax(output, dim=-1))
