"""The train/test split of Captum's ``captum.concept._utils.classifier``
(``_train_test_split``), for code that imports it from that path."""

from __future__ import annotations

import random

import torch
from torch import Tensor

__all__: list[str] = []


def _train_test_split(
    x_list: Tensor, y_list: Tensor, test_split: float = 0.33
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Shuffle the examples with Python's ``random`` (so ``random.seed`` gives Captum's
    split) and split off the first ``int(test_split * n)`` as the test set.

    Parameters
    ----------
    x_list, y_list : Tensor
        Examples and labels, one row each.
    test_split : float, default 0.33

    Returns
    -------
    tuple of Tensor
        ``(x_train, x_test, y_train, y_test)``.

    Raises
    ------
    ValueError
        When either part would be empty (as Captum's unpacking fails).
    """
    # the pairs are shuffled, not indices, so the draws match Captum's
    pairs = list(zip(x_list, y_list))
    random.shuffle(pairs)
    n_test = int(test_split * len(pairs))
    x_test, y_test = zip(*pairs[:n_test])
    x_train, y_train = zip(*pairs[n_test:])
    return torch.stack(x_train), torch.stack(x_test), torch.stack(y_train), torch.stack(y_test)
