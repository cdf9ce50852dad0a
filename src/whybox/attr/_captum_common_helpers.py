"""Argument helpers of Captum's ``captum._utils.common`` that Captum-style code imports:
checking targets and baselines, repeating arguments for several samples per example,
selecting neurons, wrapping a forward as a future, and a module-level backward hook.

The alias module ``whybox._utils.common`` re-exports them; they build on the helpers of
:mod:`whybox.attr._captum_utils`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.hooks import RemovableHandle

from whybox.attr._assertion_errors import fail_assert
from whybox.attr._captum_utils import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_baseline,
    _format_output,
    _format_tensor_into_tuples,
    _select_column,
)

__all__: list[str] = []

Selector = int | tuple | Callable[..., Tensor]


def _validate_target(num_samples: int, target: Any) -> None:
    """Check that a per-example target (a list, or a tensor of more than one element) has
    one entry per example.

    Parameters
    ----------
    num_samples : int
        The number of examples.
    target : int, tuple, Tensor, list or None

    Raises
    ------
    AssertionError
        When a per-example target's length is not ``num_samples``.
    """
    per_example = isinstance(target, list) or (isinstance(target, Tensor) and target.numel() > 1)
    if per_example and len(target) != num_samples:
        fail_assert(
            "_validate_target",
            "target",
            f"one target per example ({num_samples})",
            f"{len(target)} targets",
            raw=True,
        )


def _validate_input(
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor | int | float, ...],
    draw_baseline_from_distrib: bool = False,
) -> None:
    """Check that there is one baseline per input and that each fits its input.

    A baseline is a number, or a tensor of its input's shape, or a single row ``(1, ...)``;
    with ``draw_baseline_from_distrib`` (baselines are rows to draw from) a tensor baseline
    only needs the shape of the input's examples.

    Parameters
    ----------
    inputs : tuple of Tensor
    baselines : tuple of Tensor, int or float
    draw_baseline_from_distrib : bool, default False

    Raises
    ------
    AssertionError
        When a check fails.
    """
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
            fits, shape = inp.shape[1:] == baseline.shape[1:], "the shape of the input's examples"
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


def _format_float_or_tensor_into_tuples(
    inputs: float | Tensor | tuple[float | Tensor, ...],
) -> tuple[float | Tensor, ...]:
    """``inputs`` as a tuple: a tuple as it is, a float or a tensor wrapped.

    Raises
    ------
    AssertionError
        For a single value that is neither a float nor a tensor.
    """
    if isinstance(inputs, tuple):
        return inputs
    if not isinstance(inputs, (Tensor, float)):
        fail_assert(
            "_format_float_or_tensor_into_tuples",
            "inputs",
            "a float, a tensor or a tuple",
            inputs,
            type_error=True,
        )
    return (inputs,)


def _expand_feature_mask(
    feature_mask: Tensor | tuple[Tensor, ...], n_samples: int
) -> Tensor | tuple[Tensor, ...]:
    """Each mask with a row per example repeated ``n_samples`` times in place (a mask of one
    row is shared by every sample, so it stays as it is); a tensor gives a tensor."""
    is_tuple = isinstance(feature_mask, tuple)
    expanded = tuple(
        mask.repeat_interleave(n_samples, dim=0) if mask.size(0) > 1 else mask
        for mask in _format_tensor_into_tuples(feature_mask)
    )
    return _format_output(is_tuple, expanded)


def _expand_and_update_baselines(
    inputs: tuple[Tensor, ...],
    n_samples: int,
    kwargs: dict,
    draw_baseline_from_distrib: bool = False,
) -> None:
    """Replace ``kwargs["baselines"]`` (when present) by baselines for ``n_samples``
    samples of each example.

    With ``draw_baseline_from_distrib`` each tensor baseline gives ``n_samples`` rows per
    example drawn at random (``numpy.random``, as Captum, so seeds give the same draws);
    otherwise a baseline with one row per example has each row repeated in place.

    Raises
    ------
    AssertionError
        When the baselines do not fit the inputs (see :func:`_validate_input`).
    """
    if "baselines" not in kwargs:
        return
    baselines = _format_baseline(kwargs["baselines"], inputs)
    _validate_input(inputs, baselines, draw_baseline_from_distrib=draw_baseline_from_distrib)
    if draw_baseline_from_distrib:
        draws = n_samples * inputs[0].shape[0]
        baselines = tuple(
            baseline[np.random.choice(baseline.shape[0], draws).tolist()]
            if isinstance(baseline, Tensor)
            else baseline
            for baseline in baselines
        )
    else:
        baselines = tuple(
            baseline.repeat_interleave(n_samples, dim=0)
            if isinstance(baseline, Tensor)
            and baseline.shape[0] == inp.shape[0]
            and baseline.shape[0] > 1
            else baseline
            for inp, baseline in zip(inputs, baselines)
        )
    kwargs["baselines"] = baselines


def _expand_and_update_additional_forward_args(n_samples: int, kwargs: dict) -> None:
    """Replace ``kwargs["additional_forward_args"]`` (when present and not ``None``) by the
    arguments as a tuple with each tensor row repeated ``n_samples`` times in place."""
    if "additional_forward_args" not in kwargs:
        return
    extra = _format_additional_forward_args(kwargs["additional_forward_args"])
    if extra is None:
        return
    kwargs["additional_forward_args"] = _expand_additional_forward_args(
        extra, n_samples, expansion_type=ExpansionTypes.repeat_interleave
    )


def _expand_and_update_target(n_samples: int, kwargs: dict) -> None:
    """Replace ``kwargs["target"]`` (when present) by the target with each per-example
    entry repeated ``n_samples`` times in place."""
    if "target" not in kwargs:
        return
    kwargs["target"] = _expand_target(
        kwargs["target"], n_samples, expansion_type=ExpansionTypes.repeat_interleave
    )


def _expand_and_update_feature_mask(n_samples: int, kwargs: dict) -> None:
    """Replace ``kwargs["feature_mask"]`` (when present and not ``None``) by
    :func:`_expand_feature_mask` of it."""
    mask = kwargs.get("feature_mask")
    if mask is None:
        return
    kwargs["feature_mask"] = _expand_feature_mask(mask, n_samples)


def _format_outputs(
    is_multiple_inputs: bool, outputs: list[tuple[Tensor, ...]]
) -> Tensor | tuple[Tensor, ...] | list[Tensor | tuple[Tensor, ...]]:
    """Each tuple of ``outputs`` as its tensor when it holds one, else as the tuple; a list
    of them with ``is_multiple_inputs``, else the single one.

    Raises
    ------
    AssertionError
        When ``outputs`` is not a list, or holds several entries without
        ``is_multiple_inputs``.
    """
    owner = "_format_outputs"
    if not isinstance(outputs, list):
        fail_assert(owner, "outputs", "a list", outputs, type_error=True)
    if not is_multiple_inputs and len(outputs) != 1:
        fail_assert(
            owner,
            "outputs",
            "a list of one entry when is_multiple_inputs is False",
            f"{len(outputs)} entries",
            raw=True,
        )
    formatted = [_format_output(len(output) > 1, output) for output in outputs]
    return formatted if is_multiple_inputs else formatted[0]


def _construct_future_forward(original_forward: Callable[..., Any]) -> Callable[..., Any]:
    """``original_forward`` as a function that returns a completed
    ``torch.futures.Future`` of its result (for code that expects an asynchronous
    forward)."""

    def future_forward(*args: Any, **kwargs: Any) -> torch.futures.Future:
        future: torch.futures.Future = torch.futures.Future()
        future.set_result(original_forward(*args, **kwargs))
        return future

    return future_forward


def _contains_slice(target: int | tuple | slice) -> bool:
    """Whether ``target`` is a slice or a tuple with a slice in it."""
    if isinstance(target, tuple):
        return any(isinstance(index, slice) for index in target)
    return isinstance(target, slice)


def _verify_select_column(output: Tensor, target: int | tuple) -> Tensor:
    """``output[:, *target]`` (an int is one index).

    Raises
    ------
    AssertionError
        When ``target`` has more entries than ``output`` has dimensions after the batch one.
    """
    return _select_column(output, target)


def _verify_select_neuron(layer_output: tuple[Tensor, ...], selector: Selector) -> Tensor:
    """The neuron ``selector`` names in a layer's tensors.

    A callable gets the layer's tensor (its tuple when it has several) and its result is
    returned; an index or a tuple of ints / slices selects ``output[:, *selector]`` from the
    layer's one tensor, summed per example when it contains a slice.

    Raises
    ------
    AssertionError
        For an index selector on a layer with several tensors, or one longer than the
        tensor's dimensions after the batch one.
    """
    if callable(selector):
        return selector(layer_output if len(layer_output) > 1 else layer_output[0])
    if len(layer_output) != 1:
        fail_assert(
            "_verify_select_neuron",
            "selector",
            f"a callable for a layer with {len(layer_output)} tensors",
            selector,
        )
    selected = _select_column(layer_output[0], selector)
    if _contains_slice(selector):
        return selected.reshape(selected.shape[0], -1).sum(1)
    return selected


def _maybe_expand_parameters(
    perturbations_per_eval: int,
    formatted_inputs: tuple[Tensor, ...],
    formatted_additional_forward_args: tuple | None,
    target: Any,
) -> tuple[tuple[Tensor, ...], tuple | None, Any]:
    """Inputs, extra arguments and target for ``perturbations_per_eval`` copies of the
    batch in one forward (each repeated as a whole); as they are for 1 or fewer."""
    if perturbations_per_eval <= 1:
        return formatted_inputs, formatted_additional_forward_args, target
    inputs = tuple(torch.cat([inp] * perturbations_per_eval, dim=0) for inp in formatted_inputs)
    extra = _expand_additional_forward_args(
        formatted_additional_forward_args, perturbations_per_eval
    )
    return inputs, extra, _expand_target(target, perturbations_per_eval)


def _register_backward_hook(
    module: Module, hook: Callable[..., Any], attr_obj: object | None
) -> list[RemovableHandle]:
    """Register ``hook(module, grad_input, grad_output)`` as a backward hook of ``module``
    through tensor hooks on its input and output.

    The output's gradient is recorded per device; when the input's gradient arrives, the
    hook is called with both, and a value it returns (a tensor, or the first of a tuple)
    replaces the input's gradient. The module's input is passed on as a clone so the hook
    sees this module's gradient only. ``attr_obj`` is accepted for Captum's signature.

    Returns
    -------
    list of RemovableHandle
        The forward pre-hook and the forward hook; remove both to undo.

    Raises
    ------
    AssertionError
        (in the forward) For a module with more than one input or output tensor.
    """
    del attr_obj
    grad_out: dict[torch.device, Tensor] = {}

    def single(values: Tensor | tuple[Tensor, ...], what: str) -> Tensor:
        if not isinstance(values, tuple):
            return values
        if len(values) != 1:
            fail_assert(
                "_register_backward_hook",
                "module",
                f"a module with one {what} tensor",
                f"{len(values)} {what} tensors",
                raw=True,
            )
        return values[0]

    def record_output_grad(grad: Tensor) -> None:
        grad_out[grad.device] = grad

    def call_hook(grad: Tensor) -> Tensor | None:
        if not grad_out:
            return None
        result = hook(module, grad, grad_out[grad.device])
        if result is None:
            return None
        return result[0] if isinstance(result, tuple) else result

    def pre_hook(_: Module, inp: Tensor | tuple[Tensor, ...]) -> Tensor:
        tensor = single(inp, "input")
        tensor.register_hook(call_hook)
        return tensor.clone()

    def forward_hook(_: Module, inp: Any, out: Tensor | tuple[Tensor, ...]) -> None:
        single(out, "output").register_hook(record_output_grad)

    return [module.register_forward_pre_hook(pre_hook), module.register_forward_hook(forward_hook)]
