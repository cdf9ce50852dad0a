"""Concept examples from files: Captum's ``CustomIterableDataset`` and
``dataset_to_dataloader`` (the helpers Captum's TCAV tutorials import)."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator

from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = ["CustomIterableDataset", "dataset_to_dataloader"]


class CustomIterableDataset(IterableDataset):
    """Iterate the examples stored in a folder (one file each) or in one file.

    Parameters
    ----------
    transform_filename_to_tensor : callable
        ``f(path) -> Tensor``: reads one file and returns its example (for a folder), or
        reads the one file and returns a tensor whose rows are the examples.
    path : str
        A folder (every entry matching ``path + "*"``, so give it a trailing ``/``) or a
        file.
    """

    def __init__(self, transform_filename_to_tensor: Callable[[str], Tensor], path: str) -> None:
        self.file_itr: list[str] | None = None
        self.path = path
        if os.path.isdir(self.path):
            # glob's order, as Captum: the examples' order decides the train/test split
            self.file_itr = glob.glob(self.path + "*")
        self.transform_filename_to_tensor = transform_filename_to_tensor

    def __iter__(self) -> Iterator[Tensor]:
        if self.file_itr is not None:
            return map(self.transform_filename_to_tensor, self.file_itr)
        return iter(self.transform_filename_to_tensor(self.path))


def dataset_to_dataloader(dataset: Dataset, batch_size: int = 64) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` in batches of ``batch_size`` (no shuffling).

    Parameters
    ----------
    dataset : Dataset
    batch_size : int, default 64

    Returns
    -------
    DataLoader
    """
    return DataLoader(dataset, batch_size=batch_size)
