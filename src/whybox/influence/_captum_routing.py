"""Captum 0.9's private helpers shared by influence methods' ``influence`` /
``self_influence``: routing on ``k``, and scores from "influence embeddings" (methods
whose ``compute_intermediate_quantities`` gives vectors whose dot products are the
influence scores).

Re-exported under Captum's names by :mod:`whybox.influence._utils.common`.
"""

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from whybox.influence._captum_batches import _format_inputs_dataset, _progress_bar_constructor
from whybox.influence.base import KMostInfluentialResults

__all__ = [
    "_influence_batch_intermediate_quantities_influence_function",
    "_influence_helper_intermediate_quantities_influence_function",
    "_influence_route_to_helpers",
    "_self_influence_helper_intermediate_quantities_influence_function",
]


def _influence_route_to_helpers(
    influence_instance: Any,
    inputs: tuple[Any, ...] | DataLoader,
    k: int | None = None,
    proponents: bool = True,
    **kwargs: Any,
) -> Tensor | KMostInfluentialResults:
    """``influence_instance._influence(inputs, **kwargs)`` without ``k``, else
    ``influence_instance._get_k_most_influential(inputs, k, proponents, **kwargs)``."""
    if k is None:
        return influence_instance._influence(inputs, **kwargs)
    return influence_instance._get_k_most_influential(inputs, k, proponents, **kwargs)


def _influence_batch_intermediate_quantities_influence_function(
    influence_inst: Any, test_batch: tuple[Any, ...], train_batch: tuple[Any, ...]
) -> Tensor:
    """Scores ``(n_test, n_train)`` of a training batch on a test batch: the dot
    products of their embeddings."""
    return (
        influence_inst.compute_intermediate_quantities(test_batch)
        @ influence_inst.compute_intermediate_quantities(train_batch).T
    )


def _influence_helper_intermediate_quantities_influence_function(
    influence_inst: Any, inputs_dataset: tuple[Any, ...] | DataLoader, show_progress: bool
) -> Tensor:
    """Scores ``(n_inputs, n_train)`` of every training example (of
    ``influence_inst.train_dataloader``) on every example of ``inputs_dataset``."""
    loader = _format_inputs_dataset(inputs_dataset)
    embeddings = influence_inst.compute_intermediate_quantities(
        loader, show_progress=show_progress, test=True
    )
    train = influence_inst.train_dataloader
    if show_progress:
        train = _progress_bar_constructor(
            influence_inst, train, "influence scores", "train_dataset"
        )
    blocks = [embeddings @ influence_inst.compute_intermediate_quantities(b).T for b in train]
    return torch.cat(blocks, dim=1)


def _self_influence_helper_intermediate_quantities_influence_function(
    influence_inst: Any,
    inputs_dataset: tuple[Any, ...] | DataLoader | None,
    show_progress: bool,
) -> Tensor:
    """Self influence scores (squared embedding norms) of every example of
    ``inputs_dataset`` (the training data when ``None``)."""
    data = influence_inst.train_dataloader if inputs_dataset is None else inputs_dataset
    loader: Any = _format_inputs_dataset(data)
    if show_progress:
        loader = _progress_bar_constructor(
            influence_inst, loader, "self influence scores", "inputs_dataset"
        )
    return torch.cat(
        [
            influence_inst.compute_intermediate_quantities(b, show_progress=False).square().sum(1)
            for b in loader
        ]
    )
