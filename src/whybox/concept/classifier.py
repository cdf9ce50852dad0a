"""Concept classifiers: Captum's ``Classifier`` contract and its ``DefaultClassifier``.

Captum's default is scikit-learn's ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)``,
a linear SVM fitted by stochastic gradient descent. :class:`DefaultClassifier` runs that
algorithm (:func:`~whybox.concept._linear.sgd_linear_svm`: scikit-learn's own fit when it
is installed, else a step-for-step port needing only numpy), with Captum's random draws, so
seeded code gives Captum's CAVs; ``solver="exact"`` solves the same
objective to optimality instead (deterministic, no random draws for the fit).
"""

from __future__ import annotations

import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from whybox.core.validation import check_choice, check_int, check_real, fail

from ._linear import fit_linear_svm, sgd_linear_svm

__all__ = ["Classifier", "DefaultClassifier"]


class Classifier(ABC):
    """What TCAV needs from a concept classifier (Captum's abstract ``Classifier``).

    ``train_and_eval`` is given a ``DataLoader`` of ``(activations (B, F), labels (B,))``
    batches, the labels being concept ids; afterwards ``weights()`` gives one row per
    class (the CAVs) and ``classes()`` the concept id of each row.
    """

    @abstractmethod
    def __init__(self) -> None:
        pass

    @abstractmethod
    def train_and_eval(self, dataloader: DataLoader, **kwargs: Any) -> dict | None:
        """Train on ``dataloader``'s batches; return statistics (e.g. ``{"accs": ...}``)
        or ``None``."""

    @abstractmethod
    def weights(self) -> Tensor:
        """``(C, F)`` weights, one row per class, in the order of :meth:`classes`."""

    @abstractmethod
    def classes(self) -> list[int]:
        """The ``C`` class labels (concept ids), in the order of :meth:`weights`' rows."""


class DefaultClassifier(Classifier):
    """A linear SVM on the concepts' activations (one class against the rest for 3+).

    ``train_and_eval`` shuffles the examples as Captum does (Python's ``random``), fits
    the first ``1 - test_split_ratio`` of them and reports the accuracy on the rest.

    Parameters
    ----------
    solver : {"sgd", "exact"}, keyword-only, default "sgd"
        ``"sgd"``: Captum's algorithm (scikit-learn's ``SGDClassifier`` with hinge loss, L2
        penalty ``alpha``, ``max_iter=1000``, ``tol=1e-3``), step for step; ``"exact"``:
        the same objective minimised to optimality (see
        :func:`~whybox.concept._linear.fit_linear_svm`).
    alpha : float, keyword-only, default 0.01
        The L2 penalty.
    seed : int or None, keyword-only, default None
        ``None``: Captum's draws from the global generators (``random`` for the split,
        ``numpy.random`` for SGD's shuffling seeds), so ``random.seed`` / ``np.random.seed``
        reproduce Captum's CAVs; an int: private generators seeded with it.

    Notes
    -----
    Keeps every activation in memory while fitting (as Captum's); for very large concept
    sets write a :class:`Classifier` that streams.
    """

    def __init__(
        self, *, solver: str = "sgd", alpha: float = 0.01, seed: int | None = None
    ) -> None:
        warnings.warn(
            "Using default classifier for TCAV which keeps input both train and test "
            "datasets in the memory. Consider defining your own classifier that doesn't "
            "rely heavily on memory, for large number of concepts, by extending "
            "`Classifer` abstract class",
            stacklevel=2,
        )
        owner = "DefaultClassifier"
        self.solver = check_choice(owner, "solver", solver, ("sgd", "exact"))
        self.alpha = check_real(owner, "alpha", alpha, minimum=0.0, strict_minimum=True)
        self.seed = check_int(owner, "seed", seed, allow_none=True)
        self._weights: Tensor | None = None
        self._bias: Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(
        self, dataloader: DataLoader, test_split_ratio: float = 0.33, **kwargs: Any
    ) -> dict | None:
        """Fit on a random ``1 - test_split_ratio`` of the examples, score the rest.

        Parameters
        ----------
        dataloader : DataLoader
            Batches ``(inputs (B, F), labels (B,))``.
        test_split_ratio : float, default 0.33
            Fraction of examples held out (``int(ratio * n)`` of them).

        Returns
        -------
        dict
            ``{"accs": Tensor ()}``: the accuracy on the held-out examples (on the training
            examples when none is held out). For two concepts Captum reports the share of
            held-out examples of the first concept instead (its prediction is always that
            class); this is the real accuracy.
        """
        owner = "DefaultClassifier.train_and_eval"
        check_real(owner, "test_split_ratio", test_split_ratio, minimum=0.0, maximum=1.0)
        x, y = _collect(dataloader, owner)
        order = list(range(len(x)))
        # Captum shuffles a list of (x, y) pairs; a list of indices of the same length
        # draws the same permutation
        (random.Random(self.seed).shuffle if self.seed is not None else random.shuffle)(order)
        index = torch.tensor(order, dtype=torch.long, device=x.device)
        n_test = int(test_split_ratio * len(order))
        test, train = index[:n_test], index[n_test:]
        if len(train) == 0:
            fail(
                owner, "test_split_ratio", "a ratio that leaves training examples", test_split_ratio
            )
        classes = sorted(int(c) for c in torch.unique(y[train]).tolist())
        if len(classes) < 2:
            fail(
                owner,
                "dataloader",
                "examples of at least two concepts",
                f"labels {classes}",
                raw=True,
            )
        if self.solver == "sgd":
            state = None if self.seed is None else np.random.RandomState(self.seed)
            weights, bias = sgd_linear_svm(
                x[train], y[train], classes, alpha=self.alpha, random_state=state
            )
            if self.seed is None:
                # Captum's fit also iterates a DataLoader (one draw) and builds an
                # nn.Linear it then overwrites: the same draws keep torch's generator where
                # Captum leaves it
                torch.empty((), dtype=torch.int64).random_()
                torch.nn.Linear(weights.shape[1], weights.shape[0])
        else:
            weights, bias = fit_linear_svm(x[train], y[train], classes, alpha=self.alpha)
        self._weights, self._bias, self._classes = weights, bias, classes
        held_out = test if n_test > 0 else train
        scores = x[held_out].to(weights.dtype) @ weights.T + bias
        labels = torch.tensor(classes, device=x.device)
        if len(classes) == 2:
            predicted = labels[(scores[:, 0] > 0).long()]
        else:
            predicted = labels[scores.argmax(dim=1)]
        return {"accs": (predicted == y[held_out].long()).float().mean().cpu()}

    def weights(self) -> Tensor:
        """The CAVs: ``(C, F)``; for two concepts ``[-w, w]`` (``w`` points to the second
        class, as Captum splits scikit-learn's single row)."""
        if self._weights is None:
            raise RuntimeError("DefaultClassifier has no weights yet: call `train_and_eval` first.")
        if len(self._classes) == 2:
            return torch.stack([-self._weights[0], self._weights[0]])
        return self._weights

    def classes(self) -> list[int]:
        """The sorted concept ids the classifier was trained on."""
        return list(self._classes)


def _collect(dataloader: Iterable[Any], owner: str) -> tuple[Tensor, Tensor]:
    """All ``(inputs, labels)`` batches concatenated: ``(n, F)`` and ``(n,)``."""
    xs, ys = [], []
    for batch in dataloader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            fail(owner, "dataloader", "batches of (inputs, labels)", batch)
        inputs, labels = batch
        xs.append(inputs.reshape(inputs.shape[0], -1))
        ys.append(labels.reshape(-1).to(inputs.device))
    if not xs:
        fail(owner, "dataloader", "a non-empty iterable of batches", "no batch", raw=True)
    return torch.cat(xs), torch.cat(ys)
