"""Concept activations on disk, in Captum's layout.

``<save_path>/av/<model_id>/<concept identifier>/<layer>/<batch>.pt``: one ``(B, F)``
tensor per batch of the concept's ``data_iter``, so activations Captum wrote are read here
and the other way round. Writing a concept's layer first clears its folder, so a shorter
dataset never leaves older batches behind.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "AV_DIR_NAME",
    "ActivationBatches",
    "batch_files",
    "clear",
    "layer_dir",
    "model_dir",
    "natural_sorted",
    "save_batch",
]

AV_DIR_NAME = "av"


def model_dir(path: str, model_id: str) -> str:
    """The folder holding a model's activations, ``<path>/av/<model_id>/`` (ends in ``/``)."""
    return "/".join([path, AV_DIR_NAME, model_id, ""])


def layer_dir(path: str, model_id: str, identifier: str, layer: str) -> str:
    """The folder holding one concept's activations in one layer."""
    return os.path.join(model_dir(path, model_id), identifier, layer)


def clear(path: str, model_id: str, identifier: str, layer: str) -> None:
    """Remove a concept's stored batches for ``layer`` (the folder stays)."""
    for name in glob.glob(os.path.join(layer_dir(path, model_id, identifier, layer), "*.pt")):
        os.remove(name)


def save_batch(
    path: str, model_id: str, identifier: str, layer: str, values: Tensor, batch: int
) -> None:
    """Write batch number ``batch`` of a concept's ``(B, F)`` activations in ``layer``."""
    folder = layer_dir(path, model_id, identifier, layer)
    os.makedirs(folder, exist_ok=True)
    torch.save(values, os.path.join(folder, f"{batch}.pt"))


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split("([0-9]+)", name)]


def natural_sorted(names: Sequence[str]) -> list[str]:
    """``names`` in natural order: digit runs compare as numbers (``a2`` before ``a10``).

    Parameters
    ----------
    names : sequence of str

    Returns
    -------
    list of str
    """
    return sorted(names, key=_natural_key)


def batch_files(path: str, model_id: str, identifier: str, layer: str) -> list[str]:
    """The stored batch files in batch order (``2.pt`` before ``10.pt``)."""
    found = glob.glob(os.path.join(layer_dir(path, model_id, identifier, layer), "*.pt"))
    return natural_sorted(found)


class ActivationBatches(Dataset):
    """The stored batches of one concept in one layer; item ``i`` is batch ``i``, ``(B, F)``.

    Parameters
    ----------
    files : sequence of str
        The batch files, in order (see :func:`batch_files`).
    """

    def __init__(self, files: Sequence[str]) -> None:
        self.files = list(files)

    def __getitem__(self, index: int) -> Tensor:
        return torch.load(self.files[index])

    def __len__(self) -> int:
        return len(self.files)
