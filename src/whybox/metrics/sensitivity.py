"""Captum 0.9's ``sensitivity_max`` (Yeh et al., 2019): the largest relative change of an
explanation over random perturbations of the input.

``SENS_max(Phi, x) = max_{|y - x|_inf <= r} ||Phi(y) - Phi(x)|| / ||Phi(x)||``, estimated by
Monte-Carlo sampling. Same signature, defaults, draws and numbers as Captum: the default
perturbation draws ``uniform_(-r, r)`` float32 CPU noise from torch's global generator,
once per input and chunk, on example-major rows, so code seeded for Captum gives Captum's
numbers. ``explanation_func`` is the user's (e.g. ``Saliency(model).attribute``); it is
called as Captum calls it: ``explanation_func(inputs_tuple, **kwargs)`` once, then
``explanation_func(perturbed, **kwargs_expanded)`` per chunk.

The native, seeded forms (max / average sensitivity, local Lipschitz) are in
:mod:`whybox.metrics.robustness`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_int, check_real, fail

from ._common import check_norm
from .infidelity import _captum_chunk_sizes

__all__ = ["sensitivity_max", "default_perturb_func"]

_OWNER = "sensitivity_max"


def default_perturb_func(inputs: Any, perturb_radius: float = 0.02) -> tuple[Tensor, ...]:
    """Add noise drawn uniformly from the L-infinity ball of radius ``perturb_radius``.

    The noise is drawn as Captum draws it: a float32 CPU tensor per input, filled with
    ``uniform_(-perturb_radius, perturb_radius)`` from torch's global generator, then
    moved to the input's device.

    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
    perturb_radius : float

    Returns
    -------
    tuple of Tensor
        The perturbed inputs, one per input.
    """
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    return tuple(
        x
        + torch.empty(tuple(x.size()), dtype=torch.float32)
        .uniform_(-perturb_radius, perturb_radius)
        .to(x.device)
        for x in tensors
    )


def sensitivity_max(
    explanation_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    perturb_func: Callable[..., Any] = default_perturb_func,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm_ord: str = "fro",
    max_examples_per_batch: int | None = None,
    **kwargs: Any,
) -> Tensor:
    """Maximum sensitivity of an explanation per example, as ``captum.metrics.sensitivity_max``.

    Parameters
    ----------
    explanation_func : callable
        Returns the explanation (a tensor or tuple of tensors, each ``(rows, ...)``) of
        the rows it is given, e.g. ``Saliency(model).attribute``.
    inputs : Tensor or tuple of Tensor, each ``(N, ...)``
    perturb_func : callable
        ``perturb_func(inputs[, perturb_radius]) -> perturbed inputs`` (the radius is
        passed when it takes more than one parameter); called once per chunk on
        example-major rows ``(N * k, ...)``.
    perturb_radius : float
    n_perturb_samples : int
        Perturbations per example.
    norm_ord : str, int or float
        ``p`` of :func:`torch.norm` over each example's flattened explanation.
    max_examples_per_batch : int, optional
        At most this many perturbed rows per ``perturb_func`` / ``explanation_func``
        call (``None``: all at once).
    **kwargs
        Passed to ``explanation_func``; ``target``, ``additional_forward_args`` and
        ``baselines`` (when shaped like the first input) are repeated per example for the
        perturbed rows, as Captum does.

    Returns
    -------
    Tensor, shape ``(N,)``
        ``max_s ||Phi(x_s) - Phi(x)|| / ||Phi(x)||`` per example (a zero norm counts as 1).
    """
    if not callable(explanation_func):
        fail(_OWNER, "explanation_func", "a callable", explanation_func, type_error=True)
    if not callable(perturb_func):
        fail(_OWNER, "perturb_func", "a callable", perturb_func, type_error=True)
    check_int(_OWNER, "n_perturb_samples", n_perturb_samples, minimum=1)
    check_norm(_OWNER, "norm_ord", norm_ord)
    if perturb_func is default_perturb_func:
        # the default draws uniform_(-r, r): it needs a radius >= 0
        check_real(_OWNER, "perturb_radius", perturb_radius, minimum=0.0)
    check_int(_OWNER, "max_examples_per_batch", max_examples_per_batch, minimum=1, allow_none=True)
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    if not tensors or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in tensors):
        fail(_OWNER, "inputs", "a tensor or a tuple of tensors with a batch dimension", inputs)
    batch = tensors[0].shape[0]
    if batch == 0:
        return torch.zeros(0, dtype=torch.get_default_dtype(), device=tensors[0].device)
    passes_radius = len(inspect.signature(perturb_func).parameters) > 1
    with torch.no_grad():
        # Captum explains the formatted tuple, even for one input
        original = _as_tuple(explanation_func(tensors, **kwargs))
        flat_original = torch.cat([e.reshape(batch, -1) for e in original], dim=1)
        norms = torch.norm(flat_original, p=norm_ord, dim=1, keepdim=True)
        norms = torch.where(norms == 0, torch.ones_like(norms), norms)
        best: Tensor | None = None
        expanded_for, expanded = None, kwargs
        for k in _captum_chunk_sizes(batch, n_perturb_samples, max_examples_per_batch):
            rows = tuple(x.repeat_interleave(k, dim=0) for x in tensors)
            given = rows[0] if len(rows) == 1 else rows
            perturbed = (
                perturb_func(given, perturb_radius) if passes_radius else perturb_func(given)
            )
            if expanded_for != k:
                expanded_for, expanded = k, _expand_kwargs(kwargs, tensors, k)
            explained = _as_tuple(explanation_func(perturbed, **expanded))
            if len(explained) != len(original):
                fail(
                    _OWNER,
                    "explanation_func",
                    f"a function returning {len(original)} tensor(s) for every call",
                    f"{len(explained)} tensor(s) for perturbed inputs",
                    raw=True,
                )
            # differences against the original explanation broadcast, not repeated
            differences = torch.cat(
                [
                    (e0.reshape(batch, 1, -1) - e.reshape(batch, k, -1)).reshape(batch * k, -1)
                    for e0, e in zip(original, explained)
                ],
                dim=1,
            )
            ratios = torch.norm(differences, p=norm_ord, dim=1, keepdim=True)
            ratios = ratios / norms.repeat_interleave(k, dim=0)
            chunk_max = ratios.reshape(batch, k).max(dim=1).values
            best = chunk_max if best is None else torch.max(best, chunk_max)
    assert best is not None
    return best


def _expand_kwargs(kwargs: dict[str, Any], tensors: tuple[Tensor, ...], k: int) -> dict[str, Any]:
    """``kwargs`` for rows where each example is repeated ``k`` times consecutively.

    Captum's rules: ``additional_forward_args`` tensors (with a dimension) and per-example
    targets (lists, tensors of more than one element) are repeated per example;
    ``baselines`` are, when the first is a tensor shaped like the first input, each
    per-example baseline tensor (first dimension the batch size, > 1).
    """
    out = dict(kwargs)
    if "additional_forward_args" in kwargs and kwargs["additional_forward_args"] is not None:
        extra = kwargs["additional_forward_args"]
        extra = extra if isinstance(extra, tuple) else (extra,)
        out["additional_forward_args"] = tuple(
            a.repeat_interleave(k, dim=0) if isinstance(a, Tensor) and a.dim() > 0 else a
            for a in extra
        )
    if "target" in kwargs:
        target = kwargs["target"]
        if isinstance(target, list):
            out["target"] = [t for t in target for _ in range(k)]
        elif isinstance(target, Tensor) and target.numel() > 1:
            out["target"] = target.repeat_interleave(k, dim=0)
    if "baselines" in kwargs:
        baselines = kwargs["baselines"]
        values = (0,) * len(tensors) if baselines is None else _as_tuple(baselines)
        first = values[0]
        if isinstance(first, Tensor) and first.shape == tensors[0].shape:
            out["baselines"] = tuple(
                b.repeat_interleave(k, dim=0)
                if isinstance(b, Tensor) and b.shape[0] == x.shape[0] and b.shape[0] > 1
                else b
                for x, b in zip(tensors, values)
            )
    return out


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, tuple):
        return value
    if isinstance(value, Tensor):
        return (value,)
    if hasattr(value, "attributions"):  # a native Explanation
        inner = value.attributions
        return inner if isinstance(inner, tuple) else (inner,)
    fail(_OWNER, "explanation_func", "a function returning a tensor or tuple of tensors", value)
    raise AssertionError  # unreachable
