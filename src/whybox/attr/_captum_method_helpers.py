"""Module-level helpers of Captum's method modules (``shapley_value``, ``lime``,
``gradient_shap``, ``deep_lift``, ``feature_ablation``, ``dataloader_attr``,
``_utils.interpretable_input``, ``_utils.summarizer``) that Captum-style code imports from
those paths.

whybox's methods run on :mod:`whybox.core`; these are the small building blocks Captum's
classes are made of, with Captum's values, for code written against them. The alias
modules at Captum's paths re-export them.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert
from whybox.attr._captum_utils import (
    _construct_default_feature_mask,
    _format_output,
    _format_tensor_into_tuples,
    _get_max_feature_index,
)

__all__ = [
    "construct_feature_mask",
    "process_initial_eval",
    "format_result",
    "check_output_shape_valid",
    "logger",
]

#: where the ablation helpers log skipped feature groups (the alias module path's name)
logger = logging.getLogger("whybox.attr._core.feature_ablation")


# -- shapley_value ----------------------------------------------------------------------
def _all_perm_generator(num_features: int, num_samples: int) -> Iterator[Sequence[int]]:
    """Every ordering of ``num_features`` features (``num_samples`` is ignored)."""
    yield from itertools.permutations(range(num_features))


def _perm_generator(num_features: int, num_samples: int) -> Iterator[Sequence[int]]:
    """``num_samples`` random orderings of ``num_features`` features, drawn with
    ``torch.randperm`` (so a torch seed gives Captum's draws)."""
    for _ in range(num_samples):
        yield torch.randperm(num_features).tolist()


# -- lime ---------------------------------------------------------------------------------
def construct_feature_mask(
    feature_mask: None | Tensor | tuple[Tensor, ...], formatted_inputs: tuple[Tensor, ...]
) -> tuple[tuple[Tensor, ...], int]:
    """Lime's feature masks and their number of interpretable features.

    Without a mask, each element of an example is a feature. A given mask whose smallest
    index is not 0 is shifted to start at 0 (with a warning).

    Returns
    -------
    tuple
        ``(masks, number of features)``: the masks as a tuple, and the largest index + 1.
    """
    if feature_mask is None:
        return _construct_default_feature_mask(formatted_inputs)
    masks = _format_tensor_into_tuples(feature_mask)
    smallest = int(min(torch.min(mask).item() for mask in masks if mask.numel()))
    if smallest != 0:
        warnings.warn(
            "Minimum element in feature mask is not 0, shifting indices to start at 0.",
            stacklevel=2,
        )
        masks = tuple(mask - smallest for mask in masks)
    return masks, _get_max_feature_index(masks) + 1


# -- gradient_shap ------------------------------------------------------------------------
def _scale_input(input: Tensor, baseline: Tensor | int | float, rand_coefficient: Tensor) -> Tensor:
    """A point between ``baseline`` and ``input`` per example: ``c * input + (1 - c) *
    baseline`` with one coefficient per row, as a tensor that requires gradients."""
    coefficient = rand_coefficient.view(input.shape[0], *([1] * (input.dim() - 1)))
    return (coefficient * input + (1.0 - coefficient) * baseline).requires_grad_()


# -- deep_lift ----------------------------------------------------------------------------
def _compute_diffs(inputs: Tensor, outputs: Tensor) -> tuple[Tensor, Tensor]:
    """DeepLift's differences from the reference: ``inputs`` and ``outputs`` hold the
    inputs' rows then the references' rows; each difference is returned twice stacked
    (one copy for each half)."""
    inp, inp_ref = inputs.chunk(2)
    out, out_ref = outputs.chunk(2)
    delta_in, delta_out = inp - inp_ref, out - out_ref
    return torch.cat([delta_in, delta_in]), torch.cat([delta_out, delta_out])


# -- feature_ablation ---------------------------------------------------------------------
def _parse_forward_out(forward_output: object) -> Tensor:
    """The forward's output as a tensor: a tensor as it is, a Python int or float as a
    0-d ``int64`` / ``float64`` tensor.

    Raises
    ------
    AssertionError
        For any other output.
    """
    if isinstance(forward_output, Tensor):
        return forward_output
    if not isinstance(forward_output, (int, float)):
        fail_assert(
            "_parse_forward_out",
            "forward_output",
            "a tensor, an int or a float",
            forward_output,
            type_error=True,
        )
    dtype = torch.int64 if isinstance(forward_output, int) else torch.float64
    return torch.tensor(forward_output, dtype=dtype)


def process_initial_eval(
    initial_eval: Tensor, inputs: Iterable[Tensor], use_weights: bool = False
) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor, int, torch.dtype]:
    """The accumulators of an ablation from the unperturbed output.

    Returns
    -------
    tuple
        ``(totals, weights, initial_eval, flattened, n_outputs, dtype)``: per input a zero
        total ``(n_outputs, *input.shape[1:])`` of the output's dtype, per input a zero
        weight of that shape (``[]`` without ``use_weights``), the output, the output as
        ``(1, n_outputs)``, its number of elements and its dtype.
    """
    n_outputs = initial_eval.numel()
    flattened = initial_eval.reshape(1, -1)
    dtype = flattened.dtype
    inputs = list(inputs)
    totals = [
        torch.zeros((n_outputs, *inp.shape[1:]), dtype=dtype, device=inp.device) for inp in inputs
    ]
    weights = (
        [torch.zeros((n_outputs, *inp.shape[1:]), device=inp.device) for inp in inputs]
        if use_weights
        else []
    )
    return totals, weights, initial_eval, flattened, n_outputs, dtype


def format_result(
    total_attrib: list[Tensor], weights: list[Tensor], is_inputs_tuple: bool, use_weights: bool
) -> Tensor | tuple[Tensor, ...]:
    """The attributions (each total divided by its weight with ``use_weights``), as a
    tuple, or a tensor for a single input."""
    if use_weights:
        attributions = tuple(total.float() / weight for total, weight in zip(total_attrib, weights))
    else:
        attributions = tuple(total_attrib)
    return _format_output(is_inputs_tuple, attributions)


def check_output_shape_valid(
    inputs: Tensor | tuple[Tensor, ...],
    num_examples: int,
    initial_eval: Tensor,
    modified_eval: Tensor,
    perturbations_per_eval: int,
) -> None:
    """Check, when several perturbations share a forward, that the output grows with the
    batch (its first dimension ``k`` times the unperturbed one for ``k`` copies of the
    batch) rather than being aggregated over it.

    Raises
    ------
    AssertionError
        When ``perturbations_per_eval > 1`` and the output does not grow so.
    """
    if perturbations_per_eval <= 1:
        return
    batch = inputs[0].shape[0]
    copies, rest = divmod(batch, num_examples)
    grown, initial = modified_eval.shape, initial_eval.shape
    if grown and initial and rest == 0 and grown[0] == copies * initial[0]:
        return
    fail_assert(
        "check_output_shape_valid",
        "modified_eval",
        "an output whose first dimension grows with the input batch size when "
        "perturbations_per_eval > 1",
        f"shape {tuple(initial)} for {num_examples} examples and shape {tuple(grown)} for {batch}",
        raw=True,
    )


def _should_skip_inputs_and_warn(
    current_feature_idxs: list[int],
    feature_idx_to_tensor_idx: dict[int, list[int]],
    formatted_inputs: tuple[Tensor, ...],
    min_examples_per_batch_grouped: int | None = None,
) -> bool:
    """Whether a group of features is skipped: when one of its inputs has fewer rows than
    ``min_examples_per_batch_grouped`` (logged as a warning), or all of its inputs are
    empty (logged as information)."""
    tensor_indices = {
        index for feature in current_feature_idxs for index in feature_idx_to_tensor_idx[feature]
    }
    if min_examples_per_batch_grouped is not None and any(
        formatted_inputs[index].shape[0] < min_examples_per_batch_grouped
        for index in tensor_indices
    ):
        logger.warning(
            f"Skipping feature group {current_feature_idxs} since it contains at least one "
            f"input tensor with 0th dim less than {min_examples_per_batch_grouped}"
        )
        return True
    if all(formatted_inputs[index].numel() == 0 for index in tensor_indices):
        logger.info(
            f"Skipping feature group {current_feature_idxs} since all input tensors are empty"
        )
        return True
    return False


# -- dataloader_attr ----------------------------------------------------------------------
def _concat_tensors(accum: Tensor | None, cur_output: Tensor, _: Any) -> Tensor:
    """The default reducer of :class:`~whybox.attr.DataLoaderAttribution`: the outputs
    concatenated along the batch."""
    return cur_output if accum is None else torch.cat([accum, cur_output])


def _create_perturbation_mask(
    perturbed_feature_indices: Tensor,
    feature_mask: tuple[Tensor, ...],
    feature_idx_to_mask_idx: dict[int, list[int]],
) -> tuple[Tensor | None, ...]:
    """Per input, a 0/1 mask (1 keeps the value) from a 0/1 vector over features (0:
    perturbed), or ``None`` for an input none of whose features is perturbed."""
    touched = {
        mask_index
        for feature, keep in enumerate(perturbed_feature_indices.tolist())
        if not keep
        for mask_index in feature_idx_to_mask_idx[feature]
    }
    return tuple(
        perturbed_feature_indices[mask] if position in touched else None
        for position, mask in enumerate(feature_mask)
    )


def _perturb_inputs(
    inputs: Iterable[object],
    input_roles: tuple[int, ...],
    baselines: tuple[int | float | Tensor, ...],
    perturbation_mask: tuple[Tensor | None, ...],
) -> tuple[object, ...]:
    """The batch with each attributed input (role 0) blended with its baseline by its mask
    (``x * mask + baseline * (1 - mask)``); other elements and unmasked inputs as they
    are."""
    from whybox.attr._dataloader_attribution import InputRole

    perturbed: list[object] = []
    attributed = 0
    for inp, role in zip(inputs, input_roles):
        if role != InputRole.need_attr:
            perturbed.append(inp)
            continue
        mask = perturbation_mask[attributed]
        if mask is None:
            perturbed.append(inp)
        else:
            perturbed.append(inp * mask + baselines[attributed] * (1 - mask))
        attributed += 1
    return tuple(perturbed)


def _convert_output_shape(
    unique_attr: Tensor, attr_inputs: tuple[Tensor, ...], feature_mask: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Attributions per feature ``(*output_dims, n_features)`` spread to each input's shape
    ``(*output_dims, *input.shape[1:])`` by its feature mask."""
    return tuple(
        _scatter_itp_attr_by_mask(unique_attr, tuple(inp.shape), mask)
        for inp, mask in zip(attr_inputs, feature_mask)
    )


# -- _utils.interpretable_input -------------------------------------------------------------
def _scatter_itp_attr_by_mask(
    itp_attr: Tensor, input_shape: tuple[int, ...], mask: Tensor
) -> Tensor:
    """Attributions of interpretable features ``(*output_dims, n_features)`` spread to the
    elements of an input of ``input_shape`` ``(batch, ...)``: each element gets the value of
    the feature ``mask`` (broadcastable to ``(*output_dims, *input_shape[1:])``) gives it.

    Returns
    -------
    Tensor
        ``(*output_dims, *input_shape[1:])``.
    """
    output_dims, n_features = itp_attr.shape[:-1], itp_attr.shape[-1]
    shape = (*output_dims, *input_shape[1:])
    indices = mask.expand(shape)
    if len(input_shape) > 2:
        # the feature values broadcast over the input's dimensions but its last, so the
        # gather along the last dimension can pick one per element
        middle = tuple(input_shape[1:-1])
        values = itp_attr.reshape((*output_dims, *(1,) * len(middle), n_features)).expand(
            (*output_dims, *middle, n_features)
        )
    else:
        values = itp_attr
    return torch.gather(values, -1, indices)


# -- _utils.summarizer ----------------------------------------------------------------------
def _reorder_stats(stats: list[Any]) -> tuple[list[Any], list[int]]:
    """Every statistic a summarizer updates for ``stats``, in update order, and the
    positions of the requested ones.

    As Captum: equal statistics count once; each ``StdDev(order)`` brings its
    ``Var(order)``; the first of ``Var, MSE, Mean, Count`` present brings default
    instances of itself and of everything after it in that chain (so a ``Var(order=1)``
    also brings ``Var()``); they are ordered ``Count, Mean, MSE, Var, StdDev`` and then
    ``Min, Max, Sum`` (within one kind, in the order first seen; Captum leaves that order to
    a set). whybox's :class:`~whybox.attr.Summarizer` adds only what is needed.

    Raises
    ------
    KeyError
        For a statistic of another class.
    """
    from whybox.attr._stat import MSE, Count, Max, Mean, Min, StdDev, Sum, Var

    chain = [StdDev, Var, MSE, Mean, Count]
    requested = list(dict.fromkeys(stats))
    everything = dict.fromkeys(requested)
    for stat in requested:
        if type(stat) is StdDev:
            everything.setdefault(Var(order=stat.order))
    present = {type(stat) for stat in everything}
    for position, kind in enumerate(chain[1:], start=1):
        if kind in present:
            for needed in chain[position:]:
                everything.setdefault(needed())
            break
    # dependencies before what needs them, then the independent ones
    rank = {kind: i for i, kind in enumerate(chain)} | {Min: -1, Max: -1, Sum: -1}
    ordered = sorted(everything, key=lambda stat: rank[type(stat)], reverse=True)
    return ordered, [i for i, stat in enumerate(ordered) if stat in requested]
