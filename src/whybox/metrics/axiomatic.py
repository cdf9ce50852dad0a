"""Axiomatic checks of attributions.

* :func:`completeness` (Sundararajan et al., 2017): ``sum(a) - (f(x) - f(baseline))`` per
  example; 0 for methods that satisfy completeness (IG, DeepLift, Shapley values);
* :func:`non_sensitivity` (Nguyen & Martinez, 2020): how many features break "zero
  attribution exactly where removing the feature does not change the output" (the
  symmetric difference of the two sets, as Quantus counts it);
* :func:`input_invariance` (Kindermans et al., "The (Un)reliability of Saliency
  Methods", 2019): explain ``f`` at ``x`` and ``f2(z) = f(z - c)`` at ``x + c`` -- the same
  function of the data, so a reliable map does not move. Gradients pass; ``x * grad``
  and IG from a fixed zero baseline do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Number
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.call import completeness_delta, prepare_call
from whybox.core.chunks import ChunkSize
from whybox.core.forward import RowBatch
from whybox.core.inputs import prepare_baselines, prepare_inputs
from whybox.core.perturbation import expand_to_elements
from whybox.core.validation import check_real, fail
from whybox.metrics._views import MetricViews

from ._common import as_tensors, check_like, check_maps, per_example, resolve_explain
from .faithfulness import _original, _rows_of, _run, _setup

__all__ = [
    "completeness",
    "non_sensitivity",
    "NonSensitivityResult",
    "input_invariance",
    "InvarianceResult",
]


def completeness(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    chunk_size: ChunkSize = "auto",
) -> Tensor:
    """Completeness gap ``sum(attributions) - (f(inputs) - f(baselines))`` per example.

    Parameters
    ----------
    model : callable
    inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
    attributions : Tensor, tuple/dict of Tensor or Explanation, shaped like ``inputs``
    baselines : optional
        The reference the attributions were computed from (``None``: zeros).
    target, forward_args, chunk_size : optional
        As for the attribution methods.

    Returns
    -------
    Tensor, shape ``(N,)``
    """
    owner = "completeness"
    # no feature scores here (the sums are per example): the call, maps and baselines only
    call = prepare_call(
        owner,
        model,
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        require_float=False,
    )
    attrs = as_tensors(attributions, owner=owner)
    check_like(owner, "attributions", attrs, call.tensors)
    base = prepare_baselines(baselines, call.inputs, owner=owner, allow_callable=False).tensors
    if call.batch_size == 0:
        dtype = attrs[0].dtype if attrs[0].is_floating_point() else torch.get_default_dtype()
        return torch.zeros(0, dtype=dtype, device=call.tensors[0].device)
    return completeness_delta(call, attrs, base)


@dataclass(frozen=True)
class NonSensitivityResult(MetricViews):
    """Non-sensitivity violations per example and the per-feature evidence.

    Attributes
    ----------
    violations : Tensor, shape ``(N,)``, long
        Features with a zero attribution whose removal changes the output, plus features
        with a non-zero attribution whose removal does not.
    effects : Tensor, shape ``(N, M)``
        ``|f(x) - f(x with feature m removed)|``.
    attributions : Tensor, shape ``(N, M)``
        Each feature's summed attribution.
    """

    violations: Tensor
    effects: Tensor
    attributions: Tensor


def non_sensitivity(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    feature_mask: Any = None,
    eps: float = 1e-5,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> NonSensitivityResult:
    """Count features whose attribution disagrees with their effect on the output.

    Parameters
    ----------
    model, inputs, attributions, baselines, target, forward_args
        As for :func:`completeness`.
    feature_mask : optional
        Feature ids per element (as in :func:`whybox.metrics.deletion`); ``None``: every
        element. Removing a feature sets it to the baseline: ``N * M`` rows.
    eps : float
        Attributions and effects at most ``eps`` in magnitude count as zero.
    chunk_size, show_progress : optional

    Returns
    -------
    NonSensitivityResult
    """
    owner = "non_sensitivity"
    check_real(owner, "eps", eps, minimum=0.0)
    setup = _setup(
        owner,
        model,
        inputs,
        attributions,
        baselines,
        target,
        forward_args,
        feature_mask,
        chunk_size,
        show_progress,
    )
    call, scores = setup.call, setup.scores
    batch, n_features = scores.shape
    device = call.tensors[0].device
    if batch == 0:
        empty = scores.new_zeros(0, n_features)
        return NonSensitivityResult(torch.zeros(0, dtype=torch.long), empty, empty)

    def build(start: int, stop: int) -> RowBatch:
        # item m = feature m removed from every example (N rows, feature-major)
        features = torch.arange(start, stop, device=device).repeat_interleave(batch)
        removed = torch.zeros(features.shape[0], n_features, dtype=torch.bool, device=device)
        removed[torch.arange(features.shape[0], device=device), features] = True
        index = torch.arange(batch, device=device).repeat(stop - start)
        masks = expand_to_elements(removed, setup.masks, call.tensors)
        rows = tuple(
            torch.where(r, _rows_of(b, index, batch), x.index_select(0, index))
            for x, b, r in zip(call.tensors, setup.baselines, masks)
        )
        return RowBatch(rows, index)

    outputs = _run(call, n_features, build, rows_per_item=batch, description=owner)
    effects = (_original(call).unsqueeze(1) - outputs.reshape(n_features, batch).T).abs()
    zero_attribution = scores.abs() <= eps
    no_effect = effects <= eps
    return NonSensitivityResult((zero_attribution != no_effect).sum(dim=1), effects, scores)


@dataclass(frozen=True)
class InvarianceResult(MetricViews):
    """How far the explanation moved under a constant input shift.

    Attributes
    ----------
    difference : Tensor, shape ``(N,)``
        Largest absolute change of any attribution.
    invariant : Tensor, shape ``(N,)``, bool
        ``difference <= atol``.
    original, shifted : tuple of Tensor
        The two explanations (each shaped like the inputs).
    """

    difference: Tensor
    invariant: Tensor
    original: tuple[Tensor, ...]
    shifted: tuple[Tensor, ...]


class _Shifted(nn.Module):
    """``f2(z) = f(z - shift)``: the model on shifted data (a module, so module rules
    such as DeepLift's still reach the original layers)."""

    def __init__(self, model: Any, shifts: tuple[Tensor, ...]) -> None:
        super().__init__()
        self.inner = model
        self.shifts = shifts

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        n = len(self.shifts)
        moved = tuple(x - c for x, c in zip(args[:n], self.shifts))
        return self.inner(*moved, *args[n:], **kwargs)


def input_invariance(
    model: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    *,
    explain: str | Callable[..., Any] = "saliency",
    explain_options: Mapping[str, Any] | None = None,
    shift: float | Tensor | tuple[Any, ...] = 1.0,
    target: Any = None,
    forward_args: Any = None,
    atol: float = 1e-5,
) -> InvarianceResult:
    """Whether the explanation survives a constant shift of the data (Kindermans et al.).

    Parameters
    ----------
    model : callable
    inputs : Tensor or tuple of Tensor, each ``(N, ...)``
    explain : str or callable
        A registered method name or ``explain(model, inputs, **kwargs)``.
    explain_options : mapping, optional
        Kept as they are for both explanations (a fixed baseline is part of what is
        tested).
    shift : number, Tensor or tuple of them
        The constant ``c`` added to each input (broadcastable to it).
    target, forward_args : optional
    atol : float
        Tolerance for "unchanged".

    Returns
    -------
    InvarianceResult
    """
    owner = "input_invariance"
    check_real(owner, "atol", atol, minimum=0.0)
    prepared = prepare_inputs(inputs, owner=owner, require_float=True)
    if prepared.structure.kind == "dict":
        fail(owner, "inputs", "a tensor or a tuple of tensors", "a dict", raw=True)
    tensors = prepared.tensors
    shifts = shift if isinstance(shift, tuple) else (shift,) * len(tensors)
    if len(shifts) != len(tensors):
        fail(
            owner,
            "shift",
            f"one shift per input ({len(tensors)})",
            f"{len(shifts)} shifts",
            raw=True,
        )
    as_tensors_ = []
    for c, x in zip(shifts, tensors):
        if isinstance(c, bool) or not isinstance(c, (Number, Tensor)):
            fail(owner, "shift", "a number or a tensor broadcastable to the input", c)
        as_tensors_.append(torch.as_tensor(c, dtype=x.dtype, device=x.device))
    fn = resolve_explain(explain, explain_options, owner=owner, model=model)
    original = fn(model, inputs, target, forward_args)
    check_maps(owner, original, rows=tensors[0].shape[0])
    moved = tuple(x + c for x, c in zip(tensors, as_tensors_))
    shifted_model = _Shifted(model, tuple(as_tensors_))
    if isinstance(model, nn.Module):
        shifted_model.train(model.training)
    shifted = fn(shifted_model, prepared.restore(moved), target, forward_args)
    check_maps(owner, shifted, rows=tensors[0].shape[0], like=original)
    difference = (per_example(original) - per_example(shifted)).abs().amax(dim=1)
    return InvarianceResult(difference, difference <= atol, original, shifted)
