"""Small helpers and type aliases that Captum-style code and Captum's own tests import from
Captum's private modules (``captum._utils.typing`` / ``gradient`` / ``common``,
``captum.attr._utils.batching``); the alias modules at those paths re-export them."""

from __future__ import annotations

import warnings
from collections import UserDict
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor
from torch.nn import Module

from whybox.attr._base import compute_gradients  # re-exported at captum._utils.gradient

__all__ = [
    "compute_gradients",
    "apply_gradient_requirements",
    "undo_gradient_requirements",
    "BaselineType",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
]

TensorOrTupleOfTensorsGeneric = TypeVar("TensorOrTupleOfTensorsGeneric", Tensor, tuple[Tensor, ...])
TupleOrTensorOrBoolGeneric = TypeVar("TupleOrTensorOrBoolGeneric", tuple[Tensor, ...], Tensor, bool)
PassThroughOutputType = TypeVar("PassThroughOutputType")
ModuleOrModuleList = TypeVar("ModuleOrModuleList", Module, list[Module])
#: what a ``target`` may be (see whybox.core.targets for the full set whybox accepts)
TargetType = None | int | tuple[int, ...] | Tensor | list[tuple[int, ...]] | list[int]
BaselineTupleType = None | tuple[Tensor | int | float, ...]
BaselineType = None | Tensor | int | float | BaselineTupleType
TensorLikeList1D = list[float]
TensorLikeList2D = list[TensorLikeList1D]
TensorLikeList3D = list[TensorLikeList2D]
TensorLikeList4D = list[TensorLikeList3D]
TensorLikeList5D = list[TensorLikeList4D]
TensorLikeList = (
    TensorLikeList1D | TensorLikeList2D | TensorLikeList3D | TensorLikeList4D | TensorLikeList5D
)
SliceIntType = slice
BatchEncodingType = UserDict


class TokenizerLike(Protocol):
    """What LLM attribution needs of a tokenizer: encode, decode, token ids."""

    def encode(self, text: str, *args: object, **kwargs: object) -> object: ...

    def decode(self, token_ids: object, *args: object, **kwargs: object) -> str: ...

    def convert_ids_to_tokens(self, token_ids: object) -> object: ...


def apply_gradient_requirements(inputs: Sequence[Tensor], warn: bool = True) -> list[bool]:
    """Make every floating-point tensor of ``inputs`` require gradients.

    Returns, per tensor, whether it already required them (for
    :func:`undo_gradient_requirements`); gradients already accumulated are zeroed, as
    Captum does before taking new ones.
    """
    required: list[bool] = []
    for position, tensor in enumerate(inputs):
        required.append(tensor.requires_grad)
        if not tensor.is_floating_point() and not tensor.is_complex():
            if warn:
                warnings.warn(
                    f"Input tensor {position} has dtype {tensor.dtype}, which cannot require "
                    "gradients",
                    stacklevel=2,
                )
            continue
        if not tensor.requires_grad:
            if warn:
                warnings.warn(
                    f"Input tensor {position} did not already require gradients; they have "
                    "been required automatically",
                    stacklevel=2,
                )
            tensor.requires_grad_()
        elif tensor.grad is not None:
            tensor.grad.zero_()
    return required


def undo_gradient_requirements(inputs: Sequence[Tensor], grad_required: Sequence[bool]) -> None:
    """Undo :func:`apply_gradient_requirements`: tensors that did not require gradients
    stop requiring them, and their accumulated gradients are zeroed."""
    if len(inputs) != len(grad_required):
        raise ValueError("'grad_required' must have one entry per input tensor")
    for tensor, required in zip(inputs, grad_required):
        if not required and tensor.requires_grad:
            if tensor.grad is not None:
                tensor.grad.detach_()
                tensor.grad.zero_()
            tensor.requires_grad_(False)


def _is_tuple(inputs: Any) -> bool:
    """Whether ``inputs`` is a tuple (Captum's convention for several inputs)."""
    return isinstance(inputs, tuple)


def _format_tensor_into_tuples(inputs: Any) -> Any:
    """``None`` stays ``None``; a tensor becomes a one-element tuple; a tuple is kept."""
    if inputs is None:
        return None
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, tuple):
        return inputs
    raise TypeError(f"'inputs' must be a tensor or a tuple of tensors. Got {type(inputs)}.")


def _format_additional_forward_args(additional_forward_args: Any) -> tuple | None:
    """Extra forward arguments as a tuple (``None`` stays ``None``)."""
    if additional_forward_args is None:
        return None
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def _format_output(is_inputs_tuple: bool, output: tuple[Tensor, ...]) -> Any:
    """A tuple of outputs, or its only element when the inputs were one tensor."""
    if not isinstance(output, tuple):
        raise TypeError("'output' must be a tuple of tensors")
    if not is_inputs_tuple and len(output) != 1:
        raise ValueError("one output is expected for a single input tensor")
    return output if is_inputs_tuple else output[0]


def _select_example(curr_arg: Any, index: int, bsz: int) -> Any:
    """Example ``index`` of one argument: a tensor or list whose length is the batch is cut
    to ``[index : index + 1]``; a tuple is treated per element (one per input); anything
    else is kept."""
    if curr_arg is None:
        return None
    is_tuple = isinstance(curr_arg, tuple)
    parts = curr_arg if is_tuple else (curr_arg,)
    picked = tuple(
        part[index : index + 1] if isinstance(part, (Tensor, list)) and len(part) == bsz else part
        for part in parts
    )
    return picked if is_tuple else picked[0]


def _batch_example_iterator(bsz: int, *args: Any) -> Iterator[tuple[Any, ...]]:
    """Yield, for each of the ``bsz`` examples, the arguments cut to that example."""
    for index in range(bsz):
        yield tuple(_select_example(arg, index, bsz) for arg in args)


def _zeros(inputs: tuple[Tensor, ...]) -> tuple[int | float, ...]:
    """A zero baseline per input (``0`` for integer / bool inputs, ``0.0`` otherwise)."""
    return tuple(0 if t.dtype in (torch.bool, torch.int64, torch.int32) else 0.0 for t in inputs)


def _format_baseline(baselines: Any, inputs: tuple[Tensor, ...]) -> tuple[Any, ...]:
    """Baselines as a tuple: zeros for ``None``, a single value wrapped."""
    if baselines is None:
        return _zeros(inputs)
    if not isinstance(baselines, tuple):
        baselines = (baselines,)
    for baseline in baselines:
        if not isinstance(baseline, (Tensor, int, float)):
            raise TypeError(f"a baseline must be a tensor or a number. Got {type(baseline)}.")
    return baselines


def _format_input_baseline(inputs: Any, baselines: Any) -> tuple[tuple[Tensor, ...], tuple]:
    """``(inputs, baselines)`` both as tuples."""
    formatted = _format_tensor_into_tuples(inputs)
    return formatted, _format_baseline(baselines, formatted)


def _construct_default_feature_mask(inputs: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], int]:
    """One feature per element of one example, numbered across inputs; ``(masks, count)``
    with each mask shaped like one example ``(1, ...)``."""
    masks, start = [], 0
    for tensor in inputs:
        count = tensor[0].numel()
        masks.append(start + torch.arange(count, device=tensor.device).reshape(tensor[0:1].shape))
        start += count
    return tuple(masks), start
