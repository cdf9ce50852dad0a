"""Nearest-neighbour search by inner product (Captum's ``NearestNeighbors`` /
``AnnoyNearestNeighbors``).

``AnnoyNearestNeighbors`` uses the ``annoy`` package (approximate search, Captum's
behaviour) when it is installed, and an exact search in torch otherwise: the top-``k``
inner products, computed in memory-bounded blocks of queries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert

__all__ = ["NearestNeighbors", "AnnoyNearestNeighbors"]

#: score-matrix entries computed at once by the exact search
_BLOCK_ENTRIES = 2**24


class NearestNeighbors(ABC):
    """Index a set of vectors, then find the ``k`` with the largest inner products."""

    @abstractmethod
    def get_nearest_neighbors(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """``(indices (Q, k), inner products (Q, k))`` of each query's neighbours, largest
        first."""

    @abstractmethod
    def setup(self, data: Tensor) -> None:
        """Index ``data`` ``(N, ...)`` (flattened to ``(N, D)``)."""


class AnnoyNearestNeighbors(NearestNeighbors):
    """Inner-product neighbours with ``annoy`` if installed, else exactly in torch.

    Parameters
    ----------
    num_trees : int, default 10
        Trees of the annoy index (more: slower to build, more accurate); unused by the
        exact search.
    """

    def __init__(self, num_trees: int = 10) -> None:
        if isinstance(num_trees, bool) or not isinstance(num_trees, int) or num_trees < 1:
            fail_assert("AnnoyNearestNeighbors", "num_trees", "an int >= 1", num_trees)
        self.num_trees = num_trees
        try:
            import annoy  # noqa: F401
        except ImportError:
            self._annoy = False
        else:
            self._annoy = True
        self._data: Tensor | None = None
        self.knn_index: Any = None

    @property
    def exact(self) -> bool:
        """Whether the search is the exact torch one (``annoy`` is not installed)."""
        return not self._annoy

    def setup(self, data: Tensor) -> None:
        data = data.reshape(len(data), -1)
        if not self._annoy:
            self._data = data
            return
        import annoy

        self.knn_index = annoy.AnnoyIndex(data.shape[1], "dot")
        for i, row in enumerate(data.detach().cpu()):
            self.knn_index.add_item(i, row)
        self.knn_index.build(self.num_trees)

    def get_nearest_neighbors(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        query = query.reshape(len(query), -1)
        if self._annoy:
            found = [
                self.knn_index.get_nns_by_vector(row, k, include_distances=True)
                for row in query.detach().cpu()
            ]
            indices, distances = zip(*found)
            return torch.tensor(indices, dtype=torch.long), torch.tensor(
                distances, dtype=torch.float32
            )
        if self._data is None:
            raise RuntimeError("AnnoyNearestNeighbors: call `setup` before searching.")
        data = self._data.to(query.device)
        k = min(k, data.shape[0])
        step = max(1, _BLOCK_ENTRIES // max(data.shape[0], 1))
        indices, values = [], []
        for start in range(0, len(query), step) if len(query) else [0]:
            scores = query[start : start + step] @ data.T
            top = torch.topk(scores, k, dim=1)
            values.append(top.values)
            indices.append(top.indices)
        return torch.cat(indices), torch.cat(values)
