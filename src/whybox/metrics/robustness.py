"""Robustness of explanations to small input perturbations (native, seeded forms).

* :func:`max_sensitivity` / :func:`avg_sensitivity` (Yeh et al., 2019): the largest / mean
  ``||Phi(y) - Phi(x)|| / ||Phi(x)||`` over ``y`` drawn uniformly from the L-infinity
  ball of radius ``radius`` around ``x``;
* :func:`local_lipschitz` (Alvarez-Melis & Jaakkola, 2018): the largest
  ``||Phi(y) - Phi(x)||_2 / ||y - x||_2`` over the same draws.

Perturbed rows are sample-major (every example's first perturbation, then every second
one...), drawn one sample at a time from the ``seed``'s generator and explained
``chunk_size`` rows at a time, so the chunk size never changes the numbers. With
``keep_prediction=True`` a perturbation that changes the model's predicted class (the
argmax of its output, evaluated through the engine's chunked evaluator) is left out, as
Quantus' ``return_nan_when_prediction_changes`` does.

Captum's ``sensitivity_max`` (global generator, Captum's draw order) is in
:mod:`whybox.metrics.sensitivity`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call, rows_outputs
from whybox.core.chunks import ChunkSize
from whybox.core.forward import Evaluator
from whybox.core.progress import progress
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.targets import prepare_target
from whybox.core.validation import check_bool, check_int, check_real, fail
from whybox.metrics._views import MetricViews

from ._common import (
    ExplainFn,
    check_like_given,
    check_maps,
    check_norm,
    forward_args_rows,
    given_maps,
    predicted_class,
    resolve_explain,
    select_rows,
)

__all__ = ["RobustnessResult", "max_sensitivity", "avg_sensitivity", "local_lipschitz"]


@dataclass(frozen=True)
class RobustnessResult(MetricViews):
    """A robustness score per example and every sample behind it.

    Attributes
    ----------
    score : Tensor, shape ``(N,)``
        The metric (max or mean over samples); ``NaN`` where every sample was left out.
    samples : Tensor, shape ``(N, n_samples)``
        Each perturbation's ratio (``NaN`` where ``keep_prediction`` left it out), for a
        histogram or box plot.
    radius : float
        Radius of the L-infinity ball the perturbations were drawn from.
    name : str
        ``"max_sensitivity"``, ``"avg_sensitivity"`` or ``"local_lipschitz"``.
    """

    score: Tensor
    samples: Tensor
    radius: float
    name: str


def max_sensitivity(
    model: Callable[..., Any],
    inputs: Any,
    *,
    explain: str | Callable[..., Any] = "saliency",
    explain_options: Mapping[str, Any] | None = None,
    attributions: Any = None,
    target: Any = None,
    forward_args: Any = None,
    radius: float = 0.02,
    n_samples: int = 10,
    norm: str | float = "fro",
    keep_prediction: bool = False,
    chunk_size: ChunkSize = "auto",
    seed: int | torch.Generator | RandomSource | None = None,
    show_progress: bool = False,
) -> RobustnessResult:
    """Maximum relative change of the explanation in an L-infinity ball.

    Parameters
    ----------
    model : callable
        The model the explanation method explains.
    inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
    explain : str or callable
        A registered method name, or ``explain(model, inputs, **kwargs)`` returning
        attributions shaped like ``inputs`` (see
        :func:`whybox.metrics._common.resolve_explain`).
    explain_options : mapping, optional
        Options for every explanation (``baselines``, ``n_steps``, ...); per-example
        tensors (first dimension ``N``) follow their examples into the perturbed rows.
    attributions : Tensor, tuple/dict of Tensor or Explanation, optional
        The explanation of the unperturbed ``inputs`` when it is already at hand (what
        ``explain`` with ``explain_options`` gives for them, as Quantus' ``a_batch``):
        it is used as is, saving one explanation of ``N`` rows. ``None``: computed.
    target, forward_args : optional
        As for the attribution methods; repeated for the perturbed rows.
    radius : float
        Half-width of the uniform perturbation (>= 0).
    n_samples : int
        Perturbations per example.
    norm : "fro" or a number
        ``p`` of :func:`torch.norm` over each example's flattened explanation.
    keep_prediction : bool
        Leave out perturbations that change the predicted class.
    chunk_size : int, "auto" or None
        Perturbed rows per explanation call; never changes the result.
    seed : int, torch.Generator, RandomSource or None
        Source of the perturbations.
    show_progress : bool
        Show a progress bar over the perturbation samples.

    Returns
    -------
    RobustnessResult
        ``score`` of shape ``(N,)``.
    """
    return _robustness(
        "max_sensitivity",
        model,
        inputs,
        explain,
        explain_options,
        attributions,
        target,
        forward_args,
        radius,
        n_samples,
        norm,
        keep_prediction,
        chunk_size,
        seed,
        show_progress,
    )


def avg_sensitivity(
    model: Callable[..., Any],
    inputs: Any,
    *,
    explain: str | Callable[..., Any] = "saliency",
    explain_options: Mapping[str, Any] | None = None,
    attributions: Any = None,
    target: Any = None,
    forward_args: Any = None,
    radius: float = 0.02,
    n_samples: int = 10,
    norm: str | float = "fro",
    keep_prediction: bool = False,
    chunk_size: ChunkSize = "auto",
    seed: int | torch.Generator | RandomSource | None = None,
    show_progress: bool = False,
) -> RobustnessResult:
    """Mean relative change of the explanation in an L-infinity ball.

    Parameters and returns as :func:`max_sensitivity` (``score`` is the mean over the
    kept samples).
    """
    return _robustness(
        "avg_sensitivity",
        model,
        inputs,
        explain,
        explain_options,
        attributions,
        target,
        forward_args,
        radius,
        n_samples,
        norm,
        keep_prediction,
        chunk_size,
        seed,
        show_progress,
    )


def local_lipschitz(
    model: Callable[..., Any],
    inputs: Any,
    *,
    explain: str | Callable[..., Any] = "saliency",
    explain_options: Mapping[str, Any] | None = None,
    attributions: Any = None,
    target: Any = None,
    forward_args: Any = None,
    radius: float = 0.1,
    n_samples: int = 10,
    keep_prediction: bool = False,
    chunk_size: ChunkSize = "auto",
    seed: int | torch.Generator | RandomSource | None = None,
    show_progress: bool = False,
) -> RobustnessResult:
    """Local Lipschitz estimate ``max ||Phi(y) - Phi(x)||_2 / ||y - x||_2``.

    Parameters and returns as :func:`max_sensitivity` (the norms are Euclidean, over all
    inputs' elements together).
    """
    return _robustness(
        "local_lipschitz",
        model,
        inputs,
        explain,
        explain_options,
        attributions,
        target,
        forward_args,
        radius,
        n_samples,
        2,
        keep_prediction,
        chunk_size,
        seed,
        show_progress,
    )


def _robustness(
    name: str,
    model: Any,
    inputs: Any,
    explain: Any,
    explain_options: Mapping[str, Any] | None,
    attributions: Any,
    target: Any,
    forward_args: Any,
    radius: float,
    n_samples: int,
    norm: Any,
    keep_prediction: bool,
    chunk_size: ChunkSize,
    seed: Any,
    show_progress: bool,
) -> RobustnessResult:
    call = prepare_call(
        name,
        model,
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        show_progress=show_progress,
    )
    check_real(name, "radius", radius, minimum=0.0)
    check_norm(name, "norm", norm)
    check_int(name, "n_samples", n_samples, minimum=1)
    check_bool(name, "keep_prediction", keep_prediction)
    check_seed(name, "seed", seed)
    if explain_options is not None and not isinstance(explain_options, Mapping):
        fail(name, "explain_options", "a mapping of option names to values", explain_options)
    fn = resolve_explain(explain, explain_options, owner=name, model=model)
    random = make_random(seed)
    batch = call.batch_size
    if batch == 0:
        empty = torch.zeros(0, dtype=torch.get_default_dtype(), device=call.tensors[0].device)
        return RobustnessResult(empty, empty.reshape(0, n_samples), float(radius), name)
    device = call.tensors[0].device
    every = torch.arange(batch, device=device)
    given = attributions is not None
    if given:
        original = given_maps(name, attributions, rows=batch)
    else:
        original = fn(model, call.inputs.restore(call.tensors), target, forward_args)
        check_maps(name, original, rows=batch)
    flat_original = torch.cat([e.reshape(batch, -1) for e in original], dim=1)
    if name == "local_lipschitz":
        scale = None
    else:
        scale = torch.norm(flat_original, p=norm, dim=1)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    predicted = _predictions(call, call.tensors, every) if keep_prediction else None
    per_chunk = max(1, call.chunk_rows // max(batch, 1))
    columns: list[Tensor] = []
    bar = progress(n_samples, show_progress, f"{name}: perturbation samples")
    try:
        for start in range(0, n_samples, per_chunk):
            k = min(per_chunk, n_samples - start)
            # one draw per sample and input, in sample order: chunking never changes them
            noise = _uniform_rows(call.tensors, k, radius, random)
            # sample-major rows: each input broadcast over the k samples, no tiled copy (the
            # contiguous noise first, so the rows are contiguous as the tiled ones were,
            # whatever the input's memory format)
            rows = tuple(
                _unsample(_by_sample(e.to(x.dtype), k) + x) for x, e in zip(call.tensors, noise)
            )
            # built on the host (targets are selected there) and copied once, no sync
            host_index = torch.arange(batch).repeat(k)
            index = host_index.to(device)
            explained = _explain_rows(
                fn, model, call, rows, index, host_index, explain_options, target
            )
            # a shape mismatch with given maps names 'attributions', else 'explain'
            check_maps(name, explained, rows=k * batch, like=None if given else original)
            if given:
                check_like_given(name, explained, original)
            flat = _flat_rows([e.reshape(k * batch, -1) for e in explained])
            change = torch.norm(_unsample(_by_sample(flat, k) - flat_original), p=norm, dim=1)
            if scale is None:
                step = _flat_rows(
                    [
                        _unsample(_by_sample(r, k) - x).reshape(k * batch, -1)
                        for r, x in zip(rows, call.tensors)
                    ]
                )
                distance = torch.linalg.vector_norm(step, ord=2, dim=1)
                ratio = change / torch.where(distance == 0, torch.ones_like(distance), distance)
            else:
                ratio = change / _tile(scale, k)
            if predicted is not None:
                kept = _predictions(call, rows, index) == _tile(predicted, k)
                ratio = torch.where(kept, ratio, torch.full_like(ratio, float("nan")))
            columns.append(ratio.reshape(k, batch).T)
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    samples = torch.cat(columns, dim=1) if columns else flat_original.new_zeros(batch, 0)
    if name == "avg_sensitivity":
        score = samples.nanmean(dim=1)
    else:
        filled = torch.nan_to_num(samples, nan=float("-inf"))
        score = filled.max(dim=1).values if samples.shape[1] else samples.sum(dim=1)
        score = torch.where(torch.isneginf(score), torch.full_like(score, float("nan")), score)
    return RobustnessResult(score, samples, float(radius), name)


def _explain_rows(
    fn: ExplainFn,
    model: Any,
    call: Call,
    rows: tuple[Tensor, ...],
    index: Tensor,
    host_index: Tensor,
    explain_options: Mapping[str, Any] | None,
    target: Any,
) -> tuple[Tensor, ...]:
    """Explain perturbed rows whose examples are ``index``: targets, extra forward
    arguments and per-example options follow the rows."""
    target_rows = None if target is None else call.target.repeat_for(host_index)
    forward_rows = forward_args_rows(call.extra, index, owner=call.owner)
    if explain_options:
        batch = call.batch_size
        # per-example options (baselines of shape (N, ...)) follow their examples
        options = {k: select_rows(v, index, batch) for k, v in explain_options.items()}
        options = {k: v for k, v in options.items() if v is not explain_options[k]}
        return fn(model, call.inputs.restore(rows), target_rows, forward_rows, options)
    return fn(model, call.inputs.restore(rows), target_rows, forward_rows)


def _predictions(call: Call, rows: tuple[Tensor, ...], index: Tensor) -> Tensor:
    """The predicted class (argmax of the model's flattened output) of each row."""
    argmax = prepare_target(
        lambda output: predicted_class(
            output, owner=call.owner, name="keep_prediction", value=True
        ),
        call.batch_size,
        owner=call.owner,
    )
    evaluator = Evaluator(
        call.evaluator.forward_func, call.inputs.structure, call.extra, argmax, owner=call.owner
    )
    return rows_outputs(replace(call, target=argmax, evaluator=evaluator), rows, index)


def _uniform_rows(tensors: tuple[Tensor, ...], k: int, radius: float, random: Any) -> list[Tensor]:
    """``k`` samples of ``uniform_(-radius, radius)`` noise per input, ``(k * N, ...)``
    each, on the host in the input's float dtype (the default dtype for other inputs),
    then on its device. Drawn in sample order, input by input within a sample, straight
    into each input's rows: the values of ``k`` separate draws concatenated, no copy."""
    out = []
    for x in tensors:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        out.append(torch.empty((k * x.shape[0],) + tuple(x.shape[1:]), dtype=dtype))
    for sample in range(k):
        for x, noise in zip(tensors, out):
            rows = noise[sample * x.shape[0] : (sample + 1) * x.shape[0]]
            rows.uniform_(-radius, radius, generator=random.generator)
    return [noise.to(x.device) for x, noise in zip(tensors, out)]


def _by_sample(rows: Tensor, k: int) -> Tensor:
    """Sample-major ``(k * N, ...)`` rows as ``(k, N, ...)``: an op with an ``(N, ...)``
    tensor broadcasts it over the samples, the values of the op with its :func:`_tile`
    copy, without the copy."""
    return rows.reshape((k, rows.shape[0] // k) + tuple(rows.shape[1:]))


def _unsample(values: Tensor) -> Tensor:
    """``(k, N, ...) -> (k * N, ...)``, sample-major (the inverse of :func:`_by_sample`)."""
    return values.reshape((values.shape[0] * values.shape[1],) + tuple(values.shape[2:]))


def _flat_rows(tables: list[Tensor]) -> Tensor:
    """The ``(rows, D_i)`` tables side by side (one table: itself, not a copy)."""
    return tables[0] if len(tables) == 1 else torch.cat(tables, dim=1)


def _tile(x: Tensor, k: int) -> Tensor:
    """``k`` copies of the batch one after the other (sample-major rows)."""
    return x.repeat(k, *([1] * (x.dim() - 1)))
