"""Small helpers and type aliases that Captum-style code and Captum's own tests import from
Captum's private modules (``captum._utils.typing`` / ``gradient`` / ``common``,
``captum.attr._utils.batching``); the alias modules at those paths re-export them."""

from __future__ import annotations

import inspect
import warnings
from collections import UserDict
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor
from torch.nn import Module

from whybox.attr._assertion_errors import fail_assert, raised_as_assertions
from whybox.attr._base import compute_gradients  # re-exported at captum._utils.gradient

__all__ = [
    "compute_gradients",
    "compute_layer_gradients_and_eval",
    "safe_div",
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


def parse_version(v: str) -> tuple[int, ...]:
    """A version string's numeric dot-separated parts as ints (``"2.13.0+cpu"`` gives
    ``(2, 13)``: parts with letters are dropped), for comparisons (Captum's
    ``_utils.common.parse_version``; ``AssertionError`` when no part is numeric)."""
    parts = [part for part in v.split(".") if part.isdigit()]
    assert parts != [], f"no numeric part in version {v!r}"
    return tuple(int(part) for part in parts)


class ExpansionTypes(Enum):
    """How :func:`_expand_target` / :func:`_expand_additional_forward_args` repeat rows:
    the whole batch ``n`` times, or each row ``n`` times in place."""

    repeat = 1
    repeat_interleave = 2


def _expand_rows(value: Tensor, n_steps: int, expansion_type: ExpansionTypes) -> Tensor:
    if expansion_type == ExpansionTypes.repeat:
        return torch.cat([value] * n_steps, dim=0)
    if expansion_type == ExpansionTypes.repeat_interleave:
        return value.repeat_interleave(n_steps, dim=0)
    raise NotImplementedError(
        "Currently only `repeat` and `repeat_interleave` expansion_types are supported"
    )


def _expand_target(
    target: Any, n_steps: int, expansion_type: ExpansionTypes = ExpansionTypes.repeat
) -> Any:
    """A per-example target repeated for ``n_steps`` copies of the batch (a list, or a
    tensor of more than one element); any other target as it is (Captum's helper)."""
    if isinstance(target, list):
        if expansion_type == ExpansionTypes.repeat:
            return target * n_steps
        if expansion_type == ExpansionTypes.repeat_interleave:
            return [item for item in target for _ in range(n_steps)]
        raise NotImplementedError(
            "Currently only `repeat` and `repeat_interleave` expansion_types are supported"
        )
    if isinstance(target, Tensor) and target.numel() > 1:
        return _expand_rows(target, n_steps, expansion_type)
    return target


def _expand_additional_forward_args(
    additional_forward_args: tuple | None,
    n_steps: int,
    expansion_type: ExpansionTypes = ExpansionTypes.repeat,
) -> tuple | None:
    """Each tensor argument with a batch dimension repeated for ``n_steps`` copies of the
    batch (0-d tensors and other values as they are; Captum's helper)."""
    if additional_forward_args is None:
        return None
    return tuple(
        _expand_rows(arg, n_steps, expansion_type) if isinstance(arg, Tensor) and arg.dim() else arg
        for arg in additional_forward_args
    )


def _is_mask_valid(mask: Tensor, inp: Tensor) -> bool:
    """Whether ``mask`` broadcasts to ``inp`` from the right: no more dimensions, each of
    size 1 or the input's (Captum's ``_utils.common._is_mask_valid``)."""
    if mask.dim() > inp.dim():
        return False
    return all(m in (1, i) for m, i in zip(reversed(mask.shape), reversed(inp.shape)))


def _format_inputs(inputs: Any, unpack_inputs: bool = True) -> Any:
    """``inputs`` as they are when a tuple or list (and ``unpack_inputs``), else
    ``(inputs,)`` (Captum's ``_utils.common._format_inputs``)."""
    return inputs if isinstance(inputs, (tuple, list)) and unpack_inputs else (inputs,)


def _run_forward(
    forward_func: Callable[..., Any],
    inputs: Any,
    target: Any = None,
    additional_forward_args: Any = None,
) -> Any:
    """``forward_func(*inputs, *additional_forward_args)`` with the ``target`` selected
    (:func:`_select_targets`); a function of no arguments is called without any; a
    ``torch.futures.Future`` output gives a future of the selection (Captum's
    ``_utils.common._run_forward``)."""
    if not inspect.signature(forward_func).parameters:
        output = forward_func()
        return output if target is None else _select_targets(output, target)
    inputs = _format_inputs(inputs)
    extra = _format_additional_forward_args(additional_forward_args)
    output = forward_func(*inputs, *extra) if extra is not None else forward_func(*inputs)
    if isinstance(output, torch.futures.Future):
        return output.then(lambda done: _select_targets(done.value(), target))
    return _select_targets(output, target)


def _format_feature_mask(
    feature_mask: Tensor | tuple[Tensor, ...] | None,
    inputs: tuple[Tensor, ...],
    start_idx: int = 0,
) -> tuple[Tensor, ...]:
    """A feature mask as a tuple (Captum's ``_utils.common._format_feature_mask``); ``None``
    gives every element of an example its own feature, numbered from ``start_idx`` across
    the inputs in order, each mask shaped ``(1, *input.shape[1:])`` on its input's device."""
    if feature_mask is not None:
        return _format_tensor_into_tuples(feature_mask)
    masks = []
    first = start_idx
    for inp in inputs:
        one = inp[0:1]  # also an empty input (0 features)
        masks.append(first + torch.arange(one.numel(), device=inp.device).reshape(one.shape))
        first += one.numel()
    return tuple(masks)


def _get_max_feature_index(feature_mask: tuple[Tensor, ...]) -> int:
    """The largest feature index over the non-empty masks (Captum's helper of the same name:
    the number of features is this plus one)."""
    return int(max(int(mask.max()) for mask in feature_mask if mask.numel()))


def _get_feature_idx_to_tensor_idx(feature_mask: tuple[Tensor, ...]) -> dict[int, list[int]]:
    """Each feature index and the positions of the masks it appears in, in order."""
    where: dict[int, list[int]] = {}
    for position, mask in enumerate(feature_mask):
        for feature in torch.unique(mask).tolist():
            where.setdefault(feature, []).append(position)
    return where


def _flatten_tensor_or_tuple(inp: Tensor | tuple[Tensor, ...]) -> Tensor:
    """A tensor flattened, or a tuple's tensors flattened and joined, ``(total,)``."""
    if isinstance(inp, Tensor):
        return inp.flatten()
    return torch.cat([part.flatten() for part in inp])


def _extract_device(module: Module, hook_inputs: Any, hook_outputs: Any) -> torch.device:
    """The device of a hook's first input, else of its first output, else of the module's
    first parameter (Captum's ``_utils.common._extract_device``); ``RuntimeError`` when
    there is none of the three."""
    if hook_inputs is not None and len(hook_inputs) > 0:
        return hook_inputs[0].device
    if hook_outputs is not None and len(hook_outputs) > 0:
        return hook_outputs[0].device
    for parameter in module.parameters():
        return parameter.device
    raise RuntimeError(
        f"Unable to extract device information for the module {module}: the inputs and "
        "outputs of its forward hook and its parameters are all empty (the inputs are "
        "empty when every argument of its forward is passed by name)."
    )


def _shape_feature_mask(
    feature_mask: tuple[Tensor, ...], inputs: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Captum's ``shapley_value._shape_feature_mask``: each mask with leading size-1
    dimensions prepended up to its input's number of dimensions, on the input's device
    (``AssertionError`` for a mask that does not broadcast to its input).

    Parameters
    ----------
    feature_mask : tuple of Tensor
        One mask per input, broadcastable to it from the right.
    inputs : tuple of Tensor

    Returns
    -------
    tuple of Tensor
        The masks, each with ``input.dim()`` dimensions.
    """
    shaped = []
    for index, (mask, inp) in enumerate(zip(feature_mask, inputs)):
        if not _is_mask_valid(mask, inp):
            raise AssertionError(
                f"the shape of feature mask (index {index}) is invalid, input shape: "
                f"{tuple(inp.shape)}, feature mask shape {tuple(mask.shape)}"
            )
        if mask.dim() < inp.dim():
            mask = mask.reshape((1,) * (inp.dim() - mask.dim()) + tuple(mask.shape))
        shaped.append(mask.to(inp.device))
    return tuple(shaped)


def _construct_default_feature_mask(inputs: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], int]:
    """One feature per element of one example, numbered across inputs; ``(masks, count)``
    with each mask shaped like one example ``(1, ...)``."""
    masks, start = [], 0
    for tensor in inputs:
        count = tensor[0].numel()
        masks.append(start + torch.arange(count, device=tensor.device).reshape(tensor[0:1].shape))
        start += count
    return tuple(masks), start


#: Captum's old name of :func:`_format_tensor_into_tuples` (its tests still import it)
_format_input = _format_tensor_into_tuples


def _tensorize_baseline(
    inputs: tuple[Tensor, ...], baselines: tuple[Tensor | int | float, ...]
) -> tuple[Tensor, ...]:
    """Baselines as tensors the shape of their inputs.

    A number becomes a tensor like its input filled with it; a one-row baseline tensor is
    repeated to the input's number of rows; any other tensor is kept.

    Parameters
    ----------
    inputs : tuple of Tensor
        The inputs, each ``(rows, ...)``.
    baselines : tuple of Tensor, int or float
        One baseline per input.

    Returns
    -------
    tuple of Tensor
    """
    if not isinstance(inputs, tuple) or not isinstance(baselines, tuple):
        fail_assert(
            "_tensorize_baseline",
            "inputs",
            "a tuple, with 'baselines' a tuple",
            f"inputs {type(inputs).__name__}, baselines {type(baselines).__name__}",
            type_error=True,
            raw=True,
        )

    def one(baseline: Tensor | int | float, inp: Tensor) -> Tensor:
        if isinstance(baseline, (int, float)):
            return torch.full_like(inp, baseline)
        if baseline.shape[0] == 1 and inp.shape[0] > 1:
            return baseline.expand(inp.shape[0], *baseline.shape[1:]).clone()
        return baseline

    return tuple(one(b, i) for b, i in zip(baselines, inputs))


# -- arithmetic, targets, devices, validation ----------------------------------------------
def safe_div(
    numerator: Tensor,
    denom: Tensor | int | float,
    default_denom: Tensor | int | float = 1.0,
) -> Tensor:
    """``numerator / denom``, dividing by ``default_denom`` wherever ``denom`` is zero.

    Parameters
    ----------
    numerator : Tensor
    denom : Tensor, int or float
        A number, or a tensor broadcastable with ``numerator`` (zero entries are replaced
        element by element).
    default_denom : Tensor, int or float, default 1.0
        The denominator used instead of zero.

    Returns
    -------
    Tensor
    """
    if not isinstance(denom, Tensor):
        return numerator / (default_denom if denom == 0 else denom)
    if not isinstance(default_denom, Tensor):
        default_denom = torch.tensor(default_denom, dtype=denom.dtype, device=denom.device)
    return numerator / torch.where(denom == 0, default_denom, denom)


def _select_column(output: Tensor, index: int | tuple) -> Tensor:
    """``output[:, *index]``: an index into the dimensions after the batch dimension."""
    index = (index,) if isinstance(index, int) else index
    if len(index) > output.dim() - 1:
        fail_assert(
            "_select_targets",
            "target",
            f"an index with at most {output.dim() - 1} entries for output shape "
            f"{tuple(output.shape)}",
            index,
        )
    return output[(slice(None), *index)]


def _select_targets(output: Tensor, target: Any) -> Tensor:
    """The part of ``output`` that ``target`` names, in Captum's forms.

    * ``None``: the output as it is;
    * an int, a tuple or a one-element integer tensor: an index into the dimensions after
      the batch dimension, the same for every example (``output[:, *target]``; dimensions
      left out are kept);
    * a 1-D tensor or a list of ints with one entry per example: per example, a column of
      a 2-D output (``(rows,)``);
    * a list of tuples with one entry per example: per example ``i``, ``output[i, *t]``
      (stacked).

    Parameters
    ----------
    output : Tensor ``(rows, ...)``
    target : None, int, tuple, Tensor or list

    Returns
    -------
    Tensor

    Raises
    ------
    AssertionError
        For an index longer than the output's dimensions, a per-example target whose length
        is not the number of rows, a per-example column target on an output that is not
        2-D, or a target of another form.
    """
    if target is None:
        return output
    rows = output.shape[0]
    owner = "_select_targets"
    if isinstance(target, (int, tuple)):
        return _select_column(output, target)
    if isinstance(target, Tensor):
        if target.numel() == 1 and isinstance(target.item(), int):
            return _select_column(output, int(target.item()))
        if target.dim() == 1 and target.numel() == rows:
            if output.dim() != 2:
                fail_assert(
                    owner, "output", "2-D to select a tensor of targets", tuple(output.shape)
                )
            return output.gather(1, target.reshape(rows, 1)).squeeze(-1)
        fail_assert(
            owner,
            "target",
            f"a one-element tensor or a 1-D tensor with one entry per example ({rows})",
            f"a tensor of shape {tuple(target.shape)} for output shape {tuple(output.shape)}",
            raw=True,
        )
    if isinstance(target, list):
        if len(target) != rows:
            fail_assert(
                owner,
                "target",
                f"a list with one entry per example ({rows})",
                f"a list of length {len(target)}",
                raw=True,
            )
        first = target[0]
        if isinstance(first, int):
            if output.dim() != 2:
                fail_assert(owner, "output", "2-D to select a list of targets", tuple(output.shape))
            columns = torch.tensor(target, device=output.device).reshape(rows, 1)
            return output.gather(1, columns).squeeze(-1)
        if isinstance(first, tuple):
            return torch.stack([output[(row, *index)] for row, index in enumerate(target)])
        fail_assert(
            owner,
            "target",
            "a list of ints or of tuples",
            f"a list of {type(first).__name__}",
            type_error=True,
            raw=True,
        )
    fail_assert(
        owner, "target", "None, an int, a tuple, a tensor or a list", target, type_error=True
    )


def _sort_key_list(
    keys: list[torch.device], device_ids: list[int] | None = None
) -> list[torch.device]:
    """Order devices ``keys`` as their indices appear in ``device_ids`` (the order in which
    ``DataParallel`` splits a batch); a single device is returned as it is.

    Parameters
    ----------
    keys : list of torch.device
        The devices, with distinct indices.
    device_ids : list of int, optional
        Device indices in batch order; required for more than one device. Indices not in
        ``keys`` are skipped.

    Returns
    -------
    list of torch.device

    Raises
    ------
    AssertionError
        Without ``device_ids`` for several devices, for two devices with one index, or when
        ``device_ids`` does not name every device.
    """
    if len(keys) == 1:
        return keys
    owner = "_sort_key_list"
    if device_ids is None:
        fail_assert(owner, "device_ids", "given when there are several devices", None)
    by_index: dict[int | None, torch.device] = {}
    for key in keys:
        if key.index in by_index:
            fail_assert(owner, "keys", "devices with distinct indices", keys)
        by_index[key.index] = key
    ordered = [by_index[index] for index in device_ids if index in by_index]
    if len(ordered) != len(keys):
        fail_assert(owner, "device_ids", f"a list naming every device of {keys}", device_ids)
    return ordered


def _validate_input(
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor | int | float, ...],
    n_steps: int = 50,
    method: str = "riemann_trapezoid",
    draw_baseline_from_distrib: bool = False,
) -> None:
    """Check inputs and baselines of a path method, its number of steps and its method.

    Each baseline is a number, or a tensor shaped like its input, or (unless drawn from a
    distribution) a single row ``(1, ...)``; with ``draw_baseline_from_distrib`` a tensor
    baseline only needs the input's per-example shape.

    Parameters
    ----------
    inputs : tuple of Tensor
    baselines : tuple of Tensor, int or float
        One per input.
    n_steps : int, default 50
        At least 0.
    method : str, default "riemann_trapezoid"
        One of :data:`whybox.attr._approximation.SUPPORTED_METHODS`.
    draw_baseline_from_distrib : bool, default False

    Raises
    ------
    AssertionError
        When a check fails.
    """
    from whybox.attr._approximation import SUPPORTED_METHODS

    owner = "_validate_input"
    if len(inputs) != len(baselines):
        fail_assert(
            owner,
            "baselines",
            f"one baseline per input ({len(inputs)})",
            f"{len(baselines)} baselines",
            raw=True,
        )
    for position, (inp, baseline) in enumerate(zip(inputs, baselines)):
        if isinstance(baseline, (int, float)):
            continue
        if draw_baseline_from_distrib:
            fits = inp.shape[1:] == baseline.shape[1:]
            shape = "the shape of the input's examples"
        else:
            fits = inp.shape == baseline.shape or baseline.shape[0] == 1
            shape = "the input's shape or a single row"
        if not fits:
            fail_assert(
                owner,
                "baselines",
                f"numbers or tensors of {shape}",
                f"baseline {position} of shape {tuple(baseline.shape)} for an input of shape "
                f"{tuple(inp.shape)}",
                raw=True,
            )
    if n_steps < 0:
        fail_assert(owner, "n_steps", "a non-negative integer", n_steps)
    if method not in SUPPORTED_METHODS:
        fail_assert(owner, "method", f"one of {SUPPORTED_METHODS}", method)


def _validate_noise_tunnel_type(nt_type: str, supported_noise_tunnel_types: list[str]) -> None:
    """Check that ``nt_type`` is one of ``supported_noise_tunnel_types``.

    Raises
    ------
    AssertionError
        When it is not.
    """
    if nt_type not in supported_noise_tunnel_types:
        fail_assert(
            "_validate_noise_tunnel_type",
            "nt_type",
            f"one of {list(supported_noise_tunnel_types)}",
            nt_type,
        )


# -- batching ----------------------------------------------------------------------------
def _tuple_splice_range(inputs: tuple | None, start: int, end: int) -> tuple | None:
    """Rows ``start:end`` of every tensor of ``inputs`` (other entries are kept).

    Parameters
    ----------
    inputs : tuple or None
        Tensors (sharing their first dimension) and other values; ``None`` stays ``None``.
    start, end : int
        The rows, ``start`` included, ``end`` excluded; ``start < end``.

    Returns
    -------
    tuple or None
    """
    if not start < end:
        fail_assert("_tuple_splice_range", "start", f"smaller than 'end' ({end})", start)
    if inputs is None:
        return None
    return tuple(part[start:end] if isinstance(part, Tensor) else part for part in inputs)


def _batched_generator(
    inputs: Tensor | tuple[Tensor, ...],
    additional_forward_args: Any = None,
    target_ind: Any = None,
    internal_batch_size: int | None = None,
) -> Iterator[tuple[tuple[Tensor, ...], tuple | None, Any]]:
    """Yield ``(inputs, additional_forward_args, target)`` in chunks of rows.

    Without ``internal_batch_size`` the whole (formatted) arguments are yielded once;
    otherwise each chunk of ``internal_batch_size`` rows, with the tensors of the extra
    arguments and a per-example target (a list, or a tensor of several values) cut to the
    same rows. Warns, as Captum does, when the inputs do not take part in autograd (a
    gradient method under ``torch.no_grad``).

    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
    additional_forward_args : Any, optional
    target_ind : Any, optional
    internal_batch_size : int, optional
        A positive number of rows per chunk.

    Yields
    ------
    tuple
        ``(inputs chunk, extra arguments chunk, target chunk)``.
    """
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, int)
        or internal_batch_size <= 0
    ):
        fail_assert(
            "_batched_generator",
            "internal_batch_size",
            "a positive int or None",
            internal_batch_size,
        )
    inputs = _format_tensor_into_tuples(inputs)
    additional_forward_args = _format_additional_forward_args(additional_forward_args)
    if not (inputs[0] * 1).requires_grad:
        warnings.warn(
            "The attribution of a gradient method seems to be computed under torch.no_grad, "
            "or the inputs do not require gradients.",
            stacklevel=2,
        )
    if internal_batch_size is None:
        yield inputs, additional_forward_args, target_ind
        return
    per_example = isinstance(target_ind, list) or (
        isinstance(target_ind, Tensor) and target_ind.numel() > 1
    )
    for start in range(0, inputs[0].shape[0], internal_batch_size):
        stop = start + internal_batch_size
        with torch.autograd.set_grad_enabled(True):
            chunk = _tuple_splice_range(inputs, start, stop)
        yield (
            chunk,
            _tuple_splice_range(additional_forward_args, start, stop),
            target_ind[start:stop] if per_example else target_ind,
        )


def _reduce_list(values: Sequence[Any], reduce: Callable[[list], Any] = torch.cat) -> Any:
    """Combine per-chunk results: tensors with ``reduce`` (on the first one's device),
    bools with ``any``, tuples / lists position by position (a tuple comes back)."""
    if not values:
        fail_assert("_reduce_list", "val_list", "a non-empty list", values)
    first = values[0]
    if isinstance(first, Tensor):
        return reduce([value.to(first.device) for value in values])
    if isinstance(first, bool):
        return any(values)
    if isinstance(first, (tuple, list)):
        return tuple(
            _reduce_list([value[i] for value in values], reduce) for i in range(len(first))
        )
    fail_assert("_reduce_list", "val_list", "a list of tensors, bools or tuples of them", values)


def _batched_operator(
    operator: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    additional_forward_args: Any = None,
    target_ind: Any = None,
    internal_batch_size: int | None = None,
    **kwargs: Any,
) -> Any:
    """Apply ``operator`` chunk by chunk (see :func:`_batched_generator`) and concatenate.

    ``operator`` is called as ``operator(inputs=..., additional_forward_args=...,
    target_ind=..., **kwargs)``; its results (tensors, bools, or tuples of them) are
    combined over the chunks.

    Returns
    -------
    Any
        The chunks' results concatenated along rows.
    """
    results = [
        operator(inputs=chunk, additional_forward_args=extra, target_ind=target, **kwargs)
        for chunk, extra, target in _batched_generator(
            inputs, additional_forward_args, target_ind, internal_batch_size
        )
    ]
    return _reduce_list(results)


# -- layer values ------------------------------------------------------------------------
def _forward_layer_eval(
    forward_fn: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    layer: Module | list[Module],
    additional_forward_args: Any = None,
    device_ids: list[int] | None = None,
    attribute_to_layer_input: bool = False,
    grad_enabled: bool = False,
) -> tuple[Tensor, ...] | list[tuple[Tensor, ...]]:
    """The tensors a layer produces (or receives) in one forward of ``forward_fn``.

    Runs ``forward_fn(*inputs, *additional_forward_args)`` with the layer recorded by
    whybox's capture (:class:`whybox.core.scope.LayerSite`).

    Parameters
    ----------
    forward_fn : callable
        The model or forward function.
    inputs : Tensor or tuple of Tensor
        Its inputs.
    layer : nn.Module or list of nn.Module
        The layer(s) whose values are wanted.
    additional_forward_args : Any, optional
        Extra arguments after the inputs.
    device_ids : list of int, optional
        Accepted for Captum's signature; whybox records the layer on the device it runs on
        (a layer replicated over several devices keeps its last call).
    attribute_to_layer_input : bool, default False
        Record the layer's inputs instead of its outputs.
    grad_enabled : bool, default False
        Run the forward with gradients on, so the values stay on the autograd graph.

    Returns
    -------
    tuple of Tensor, or list of tuple of Tensor
        A tuple of the layer's tensors (clones, each ``(rows, ...)``); with a list of
        layers, one tuple per layer.

    Raises
    ------
    ValueError
        (also ``AssertionError``) when a layer does not run in the forward.
    """
    del device_ids
    with torch.autograd.set_grad_enabled(grad_enabled):
        per_layer, _ = _layer_forward(
            "_forward_layer_eval",
            forward_fn,
            inputs,
            layer,
            additional_forward_args,
            attribute_to_layer_input,
        )
        values = [tuple(t.clone() for t in tensors) for tensors in per_layer]
    return values[0] if isinstance(layer, Module) else values


def _layer_forward(
    owner: str,
    forward_fn: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    layer: Module | list[Module],
    additional_forward_args: Any,
    attribute_to_layer_input: bool,
) -> tuple[list[tuple[Tensor, ...]], Any]:
    """One forward of ``forward_fn(*inputs, *additional_forward_args)`` (``forward_fn()``
    when it takes no arguments) with the layer(s) recorded by whybox's capture.

    Returns ``(per_layer, output)``: per layer, its recorded tensors (on the autograd graph
    when gradients are on; the rest of the model ran on clones, so in-place operations
    after the layer leave them intact), and the forward's output.
    """
    from whybox.core.scope import LayerSite  # the engine; imported when first needed
    from whybox.core.validation import ParameterError

    with raised_as_assertions():
        site = LayerSite.of(layer, to_input=attribute_to_layer_input, owner=owner)
    extra = _format_additional_forward_args(additional_forward_args) or ()
    arguments = (*_format_tensor_into_tuples(inputs), *extra)
    try:
        takes_arguments = bool(inspect.signature(forward_fn).parameters)
    except (TypeError, ValueError):
        takes_arguments = True
    try:
        with site.checked(owner) as captured:
            output = forward_fn(*arguments) if takes_arguments else forward_fn()
    except ParameterError as error:
        if error.parameter != "layer":
            raise
        fail_assert(owner, "layer", "a module that runs in the forward", layer)
    return list(captured.per_layer), output


def compute_layer_gradients_and_eval(
    forward_fn: Callable[..., Any],
    layer: Module | list[Module],
    inputs: Tensor | tuple[Tensor, ...],
    target_ind: Any = None,
    additional_forward_args: Any = None,
    gradient_neuron_selector: Any = None,
    device_ids: list[int] | None = None,
    attribute_to_layer_input: bool = False,
    output_fn: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]] | None = None,
    grad_kwargs: dict[str, Any] | None = None,
    offload_to_cpu: bool = False,
) -> tuple[Any, ...]:
    """Gradients of the selected output with respect to a layer, and the layer's values.

    One forward of ``forward_fn(*inputs, *additional_forward_args)`` records the layer's
    outputs (or, with ``attribute_to_layer_input``, its inputs) through whybox's capture;
    the model runs on clones of them, so an in-place operation after the layer (such as
    ``ReLU(inplace=True)``) leaves the recorded values intact. The output is reduced to one
    value per example with :func:`_select_targets`, and ``torch.autograd.grad`` of those
    values is taken with respect to the recorded tensors.

    Parameters
    ----------
    forward_fn : callable
        The model or forward function.
    layer : nn.Module or list of nn.Module
        The layer(s) whose gradients and values are wanted.
    inputs : Tensor or tuple of Tensor
        The inputs passed to ``forward_fn``.
    target_ind : int, tuple, Tensor or list, optional
        Which output value per example is differentiated (any form
        :func:`_select_targets` takes); without it the output must hold one value per
        example.
    additional_forward_args : Any, optional
        Extra arguments after the inputs.
    gradient_neuron_selector : int, tuple of int / slice, or callable, optional
        Also return the gradients of this neuron of the layer (one layer only) with
        respect to ``inputs`` (see :func:`whybox.core.scope.select_neuron`).
    device_ids : list of int, optional
        Accepted for Captum's signature; whybox records the layer on the device it runs on
        (a layer replicated over several devices keeps its last call).
    attribute_to_layer_input : bool, default False
        Use the layer's inputs instead of its outputs.
    output_fn : callable, optional
        Applied to each layer's tuple of values and to its tuple of gradients.
    grad_kwargs : dict, optional
        Extra keyword arguments of ``torch.autograd.grad``.
    offload_to_cpu : bool, default False
        Return the values (detached) and the gradients on the CPU.

    Returns
    -------
    tuple
        ``(gradients, values)``: each a tuple of tensors (one per tensor of the layer, each
        ``(rows, ...)``), or a list of such tuples for a list of layers; with
        ``gradient_neuron_selector``, ``(gradients, values, input_gradients)``.

    Raises
    ------
    AssertionError
        When the selected output holds more than one value per example, when a layer does
        not run in the forward, or with a neuron selector for several layers.
    """
    del device_ids
    owner = "compute_layer_gradients_and_eval"
    with torch.autograd.set_grad_enabled(True):
        per_layer, output = _layer_forward(
            owner, forward_fn, inputs, layer, additional_forward_args, attribute_to_layer_input
        )
        selected = _select_targets(output, target_ind)
        if selected.dim() > 0 and selected.shape[0] > 0 and selected[0].numel() != 1:
            fail_assert(
                owner,
                "target_ind",
                "given when the forward returns more than one value per example",
                f"an output of shape {tuple(selected.shape)} after target selection",
                raw=True,
            )

        def finish(values: tuple[Tensor, ...], *, detach: bool) -> tuple[Tensor, ...]:
            if output_fn is not None:
                values = output_fn(values)
            if offload_to_cpu:
                values = tuple((t.detach() if detach else t).cpu() for t in values)
            return values

        # the values first: with ``offload_to_cpu`` their copies leave the graph before
        # the backward pass, which reads the recorded tensors themselves
        evals = [finish(tensors, detach=True) for tensors in per_layer]
        recorded = [t for tensors in per_layer for t in tensors]
        flat = torch.autograd.grad(
            torch.unbind(selected) if selected.dim() > 0 else selected,
            recorded,
            **(grad_kwargs or {}),
        )
        grads, start = [], 0
        for tensors in per_layer:
            grads.append(finish(tuple(flat[start : start + len(tensors)]), detach=False))
            start += len(tensors)
        if gradient_neuron_selector is None:
            if isinstance(layer, Module):
                return grads[0], evals[0]
            return grads, evals
        if not isinstance(layer, Module):
            fail_assert(
                owner,
                "layer",
                "a single module when gradient_neuron_selector is given",
                layer,
            )
        from whybox.core.scope import select_neuron

        with raised_as_assertions():
            neuron = select_neuron(per_layer[0], gradient_neuron_selector, owner=owner)
        input_grads = torch.autograd.grad(
            torch.unbind(neuron) if neuron.numel() > 1 else neuron, inputs
        )
    return grads[0], evals[0], input_grads


# -- LLM tokens --------------------------------------------------------------------------
def _convert_ids_to_pretty_tokens(ids: Tensor, tokenizer: Any) -> list[str]:
    """Readable labels of token ids: the text each token covers in the decoded string.

    Byte-level markers (``Ġ``, ``▁``) are gone; newlines show as ``\\n``, surrounding space
    is stripped, and a token whose span overlaps the previous one ends in ``" [OVERLAP]"``.
    Tokens the re-encoding adds are skipped with a warning; if the labels still do not
    match the ids one for one, :func:`_convert_ids_to_pretty_tokens_fallback` labels them.

    Parameters
    ----------
    ids : Tensor ``(T,)``
        Token ids.
    tokenizer : Hugging Face style tokenizer
        It must decode, and encode with ``return_offsets_mapping``.

    Returns
    -------
    list of str, length ``T``
    """
    from whybox.llm.tokens import offsets

    wanted = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
    text = tokenizer.decode(ids)
    again, spans = offsets(text, tokenizer, add_special_tokens=False)
    labels: list[str] = []
    previous_end = -1
    for i, (token, (start, end)) in enumerate(zip(again, spans)):
        position = len(labels)
        if position >= len(wanted) or token != wanted[position]:
            warnings.warn(
                f"re-encoded token {i} ({token}, text {text[start:end]!r}) is not the "
                f"expected id {wanted[position] if position < len(wanted) else None}; "
                "Skipping this token.",
                stacklevel=2,
            )
            continue
        labels.append(_pretty(text[start:end]) + (" [OVERLAP]" if previous_end > start else ""))
        previous_end = end
    if len(labels) != len(wanted):
        warnings.warn(
            f"{len(labels)} readable tokens for {len(wanted)} ids; decoding the ids one by "
            "one instead",
            stacklevel=2,
        )
        return _convert_ids_to_pretty_tokens_fallback(ids, tokenizer)
    return labels


def _clean_up_pretty_token(token: str) -> str:
    """A token's text as a label: newlines written ``\\n``, surrounding space stripped.

    Parameters
    ----------
    token : str

    Returns
    -------
    str
    """
    return token.replace("\n", "\\n").strip()


_pretty = _clean_up_pretty_token


def _encode_with_offsets(
    txt: str, tokenizer: Any, add_special_tokens: bool = True, **kwargs: Any
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``txt`` and the ``(start, end)`` characters each token covers.

    A token with an empty span (special tokens of many tokenizers) is given the span up
    to the next token's start (the end of the text for the last token), so every token
    covers some text.

    Parameters
    ----------
    txt : str
    tokenizer : Hugging Face style tokenizer
        Called as ``tokenizer(txt, return_offsets_mapping=True, ...)``.
    add_special_tokens : bool
        Passed to the tokenizer.
    **kwargs
        Further tokenizer arguments.

    Returns
    -------
    (list of int, list of (int, int))
        The ids (as the tokenizer gives them) and one span per id.

    Raises
    ------
    AssertionError
        When the tokenizer gives a different number of ids and spans.
    """
    encoded = tokenizer(
        txt, return_offsets_mapping=True, add_special_tokens=add_special_tokens, **kwargs
    )
    input_ids = encoded["input_ids"]
    spans = encoded["offset_mapping"]
    if len(input_ids) != len(spans):
        raise AssertionError(f"{len(input_ids)} != {len(spans)}: {txt} -> {input_ids}, {spans}")
    fixed: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(spans):
        if start == end:
            end = spans[i + 1][0] if i + 1 < len(spans) else len(txt)
        fixed.append((start, end))
    return input_ids, fixed


def _convert_ids_to_pretty_tokens_fallback(ids: Tensor, tokenizer: Any) -> list[str]:
    """Label token ids by decoding them one by one.

    A character split over two ids decodes, id by id, to the replacement character
    ``"�"``; two such neighbours are labelled as the decoded pair, the second marked
    ``" [OVERLAP]"`` (Captum labels both ``"�"``: it decodes the pair but keeps the first
    id's text), and a split character at the end is labelled on its own (Captum fails).

    Parameters
    ----------
    ids : Tensor ``(T,)``
    tokenizer : Hugging Face style tokenizer

    Returns
    -------
    list of str, length ``T``
    """
    ids = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]

    def partial_character(index: int) -> bool:
        decoded = tokenizer.decode(ids[index])
        return decoded.strip() == "\N{REPLACEMENT CHARACTER}" and tokenizer.encode(decoded) != [
            ids[index]
        ]

    labels: list[str] = []
    index = 0
    while index < len(ids):
        if index + 1 < len(ids) and partial_character(index):
            if partial_character(index + 1):
                pair = _pretty(tokenizer.decode(ids[index : index + 2]))
                labels += [pair, pair + " [OVERLAP]"]
            else:
                labels += [
                    _pretty(tokenizer.decode(ids[index])),
                    _pretty(tokenizer.decode(ids[index + 1])),
                ]
            index += 2
        else:
            labels.append(_pretty(tokenizer.decode(ids[index])))
            index += 1
    return labels
