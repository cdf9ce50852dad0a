"""Helpers of Captum's ``captum.attr._utils.common`` and ``captum.attr._utils.batching``
that Captum-style attribution code imports: formatting occlusion windows and strides,
callable baselines, custom attribution functions, the output mode of a perturbation
method, and step-batched path integration.

The alias modules ``whybox.attr._utils.common`` / ``batching`` re-export them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor

from whybox.attr._approximation import approximation_parameters
from whybox.attr._assertion_errors import fail_assert
from whybox.attr._captum_utils import (
    _format_baseline,
    _format_output,
    _format_tensor_into_tuples,
)

__all__: list[str] = []


def _sum_rows(input: Tensor) -> Tensor:
    """The sum of each row of ``input`` (``(rows, ...)`` gives ``(rows,)``)."""
    return input.reshape(input.shape[0], -1).sum(1)


def _format_callable_baseline(
    baselines: Any, inputs: Tensor | tuple[Tensor, ...]
) -> tuple[Tensor | int | float, ...]:
    """Baselines as a tuple, calling them first when they are a function (with ``inputs``
    when it takes arguments, without any otherwise)."""
    if callable(baselines):
        takes_inputs = bool(inspect.signature(baselines).parameters)
        baselines = baselines(inputs) if takes_inputs else baselines()
    return _format_baseline(baselines, _format_tensor_into_tuples(inputs))


def _format_and_verify_strides(
    strides: None | int | tuple[int | tuple[int, ...], ...],
    inputs: tuple[Tensor, ...],
) -> tuple[int | tuple[int, ...], ...]:
    """Occlusion strides, one per input: ``None`` gives 1 for each; a single input's stride
    may be given bare. Each is an int or a tuple with one entry per non-batch dimension.

    Raises
    ------
    AssertionError
        When the strides do not give one valid stride per input.
    """
    owner = "_format_and_verify_strides"
    if strides is None:
        strides = tuple(1 for _ in inputs)
    if len(inputs) == 1 and not (isinstance(strides, tuple) and len(strides) == 1):
        strides = (strides,)
    if not isinstance(strides, tuple) or len(strides) != len(inputs):
        fail_assert(owner, "strides", f"one stride per input ({len(inputs)})", strides)
    for position, (stride, inp) in enumerate(zip(strides, inputs)):
        if isinstance(stride, int) or (isinstance(stride, tuple) and len(stride) == inp.dim() - 1):
            continue
        fail_assert(
            owner,
            "strides",
            "an int or a tuple of one int per non-batch dimension for each input",
            f"{stride!r} for input {position} of shape {tuple(inp.shape)}",
            raw=True,
        )
    return strides


def _format_and_verify_sliding_window_shapes(
    sliding_window_shapes: tuple[int, ...] | tuple[tuple[int, ...], ...],
    inputs: tuple[Tensor, ...],
) -> tuple[tuple[int, ...], ...]:
    """Occlusion window shapes, one per input (a single input's may be given bare), each a
    tuple with one entry per non-batch dimension.

    Raises
    ------
    AssertionError
        When they do not give one valid shape per input.
    """
    owner = "_format_and_verify_sliding_window_shapes"
    if isinstance(sliding_window_shapes[0], int):
        sliding_window_shapes = (sliding_window_shapes,)
    if len(sliding_window_shapes) != len(inputs):
        fail_assert(
            owner,
            "sliding_window_shapes",
            f"one shape per input ({len(inputs)})",
            sliding_window_shapes,
        )
    for position, (shape, inp) in enumerate(zip(sliding_window_shapes, inputs)):
        if not (isinstance(shape, tuple) and len(shape) == inp.dim() - 1):
            fail_assert(
                owner,
                "sliding_window_shapes",
                f"a tuple of {inp.dim() - 1} dimensions for input {position}",
                shape,
            )
    return sliding_window_shapes


def _compute_conv_delta_and_format_attrs(
    attr_algo: Any,
    return_convergence_delta: bool,
    attributions: tuple[Tensor, ...],
    start_point: Any,
    end_point: Tensor | tuple[Tensor, ...],
    additional_forward_args: Any,
    target: Any,
    is_inputs_tuple: bool = False,
) -> Any:
    """The attributions shaped like the inputs (a tensor for a single input), with
    ``attr_algo.compute_convergence_delta`` from ``start_point`` to ``end_point`` when
    ``return_convergence_delta``: ``(attributions, delta)``."""
    formatted = _format_output(is_inputs_tuple, attributions)
    if not return_convergence_delta:
        return formatted
    delta = attr_algo.compute_convergence_delta(
        attributions,
        start_point,
        end_point,
        additional_forward_args=additional_forward_args,
        target=target,
    )
    return formatted, delta


def _reshape_and_sum(
    tensor_input: Tensor, num_steps: int, num_examples: int, layer_size: tuple[int, ...]
) -> Tensor:
    """Sum over integration steps: ``tensor_input`` viewed as
    ``(num_steps, num_examples, *layer_size)`` and summed over the steps."""
    return tensor_input.reshape((num_steps, num_examples, *layer_size)).sum(0)


def _call_custom_attribution_func(
    custom_attribution_func: Callable[..., tuple[Tensor, ...]],
    multipliers: tuple[Tensor, ...],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """Call ``custom_attribution_func`` with as many of ``(multipliers, inputs,
    baselines)`` as it takes (1 to 3).

    Raises
    ------
    AssertionError
        When it is not callable or takes no or more than three arguments.
    """
    owner = "_call_custom_attribution_func"
    if not callable(custom_attribution_func):
        fail_assert(owner, "custom_attribution_func", "a callable", custom_attribution_func)
    count = len(inspect.signature(custom_attribution_func).parameters)
    if not 1 <= count <= 3:
        fail_assert(
            owner,
            "custom_attribution_func",
            "a function of one to three arguments",
            f"a function of {count}",
            raw=True,
        )
    return custom_attribution_func(*(multipliers, inputs, baselines)[:count])


def _find_output_mode_and_verify(
    initial_eval: int | float | Tensor,
    num_examples: int,
    perturbations_per_eval: int,
    feature_mask: tuple[Tensor, ...] | None,
    allow_multi_outputs: bool = False,
) -> bool:
    """Whether the forward gives one value for the whole batch (``True``) or evaluations
    can be split per example; checks the arguments that mode allows.

    An output is for the whole batch when it is a number, a 0-d tensor, or a one-element
    tensor for several examples. Then ``perturbations_per_eval`` must be 1 and every
    feature mask a single row. Otherwise the result is ``perturbations_per_eval == 1``,
    and (unless ``allow_multi_outputs``) the output must hold one value per example.

    Raises
    ------
    AssertionError
        When a check fails.
    """
    owner = "_find_output_mode_and_verify"
    aggregate = isinstance(initial_eval, (int, float)) or (
        isinstance(initial_eval, Tensor)
        and (initial_eval.dim() == 0 or (num_examples > 1 and initial_eval.numel() == 1))
    )
    if aggregate:
        if perturbations_per_eval != 1:
            fail_assert(
                owner,
                "perturbations_per_eval",
                "1 when the forward returns a scalar",
                perturbations_per_eval,
            )
        for mask in feature_mask or ():
            if mask.shape[0] != 1:
                fail_assert(
                    owner,
                    "feature_mask",
                    "masks of one row when the forward returns a scalar",
                    f"a mask of shape {tuple(mask.shape)}",
                    raw=True,
                )
        return True
    if not allow_multi_outputs and not (
        isinstance(initial_eval, Tensor) and initial_eval[0].numel() == 1
    ):
        fail_assert(
            owner,
            "target",
            "one that selects a single value per example of the model output",
            f"an output of shape {tuple(getattr(initial_eval, 'shape', ()))}",
            raw=True,
        )
    return perturbations_per_eval == 1


def _batch_attribution(
    attr_method: Any,
    num_examples: int,
    internal_batch_size: int,
    n_steps: int,
    include_endpoint: bool = False,
    **kwargs: Any,
) -> Any:
    """Integrate a path method in chunks of steps and add up the chunks' attributions.

    Each chunk covers about ``internal_batch_size // num_examples`` steps (at least 1; at
    least 2 with ``include_endpoint``, where consecutive chunks share one step, as finite
    differences between steps need) and calls ``attr_method._attribute(**kwargs,
    n_steps=..., step_sizes_and_alphas=(step_sizes, alphas))`` with that chunk of the
    rule ``kwargs["method"]``. Warns when the batch size is too small for that.

    Returns
    -------
    Tensor or tuple of Tensor
        The summed attributions (later chunks detached).
    """
    if internal_batch_size < num_examples:
        warnings.warn(
            "Internal batch size cannot be less than the number of input examples. "
            f"Defaulting to internal batch size of {num_examples} equal to the number of "
            "examples.",
            stacklevel=1,
        )
    per_chunk = max(1, internal_batch_size // num_examples)
    if include_endpoint and per_chunk < 2:
        per_chunk = 2
        warnings.warn(
            "This method computes finite differences between evaluations at consecutive "
            "steps, so internal batch size must be at least twice the number of examples. "
            f"Defaulting to internal batch size of {2 * num_examples} equal to twice the "
            "number of examples.",
            stacklevel=1,
        )
    step_sizes_of, alphas_of = approximation_parameters(kwargs["method"])
    all_sizes, all_alphas = step_sizes_of(n_steps), alphas_of(n_steps)
    total = None
    start = 0
    while start < n_steps:
        end = min(start + per_chunk, n_steps)
        steps = end - start - (1 if include_endpoint else 0)
        chunk = attr_method._attribute(
            **kwargs,
            n_steps=steps,
            step_sizes_and_alphas=(all_sizes[start:end], all_alphas[start:end]),
        )
        if total is None:
            total = chunk
        elif isinstance(total, Tensor):
            total = total + chunk.detach()
        else:
            total = tuple(part.detach() + sum_ for part, sum_ in zip(chunk, total))
        # chunks overlap by one step when the method differences consecutive steps
        start = end - 1 if include_endpoint and end < n_steps else end
    return total
