"""Explanation infidelity (Yeh et al., "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019).

``INFD(Phi, f, x) = E_I[(I . Phi(x) - (f(x) - f(x - I)))^2]``: how badly the attribution
predicts the output change under random perturbations ``I``.

Two doors over one loop:

* :func:`infidelity` and :func:`infidelity_perturb_func_decorator` -- Captum 0.9's
  signatures, defaults and numbers: ``perturb_func`` is called once per chunk of
  ``max_examples_per_batch`` examples, on example-major (``repeat_interleave``) rows, so
  a perturbation function drawing from global generators gives Captum's draws;
* :func:`infidelity_score` -- the native form: keyword-only, ``seed=``, one ``chunk_size``
  knob, Gaussian perturbations drawn chunk by chunk in a fixed order (the chunk size
  never changes the numbers).

The model is called through the engine's chunked evaluator in both.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from numbers import Number
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call, rows_outputs
from whybox.core.chunks import ChunkSize
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.validation import check_bool, check_int, check_real, fail

from ._common import as_tensors, check_like

__all__ = ["infidelity", "infidelity_perturb_func_decorator", "infidelity_score"]

_OWNER = "infidelity"


# -- Captum's decorator ----------------------------------------------------------------------
def infidelity_perturb_func_decorator(multiply_by_inputs: bool = True) -> Callable:
    """Turn a function returning perturbed inputs into one returning
    ``(perturbations, perturbed_inputs)``, as :func:`infidelity` expects (Captum 0.9).

    Parameters
    ----------
    multiply_by_inputs : bool
        ``True`` (global attributions such as ``x * grad`` or IG): the perturbation is
        ``(x - x_perturbed) / (x - baseline)`` (``/ x`` without baselines), where the
        denominator is 0 the numerator is kept; ``False`` (local attributions such as
        Saliency): ``x - x_perturbed``.

    Returns
    -------
    callable
        A decorator: ``decorated(inputs, baselines=None) -> (tuple of Tensor, tuple of
        Tensor)``, perturbations and perturbed inputs, one tensor per input.
    """
    check_bool("infidelity_perturb_func_decorator", "multiply_by_inputs", multiply_by_inputs)

    def decorate(perturb_func: Callable[..., Any]) -> Callable[..., Any]:
        def with_perturbations(inputs: Any, baselines: Any = None) -> tuple[tuple, tuple]:
            perturbed = (
                perturb_func(inputs) if baselines is None else perturb_func(inputs, baselines)
            )
            perturbed_t = _as_tuple(perturbed)
            inputs_t = _as_tuple(inputs)
            if baselines is None:
                references: tuple = (0,) * len(inputs_t)
            else:
                references = _as_tuple(baselines)
            perturbations = tuple(
                _safe_div(x - xp, x - b) if multiply_by_inputs else x - xp
                for x, xp, b in zip(inputs_t, perturbed_t, references)
            )
            return perturbations, perturbed_t

        return with_perturbations

    return decorate


# -- Captum's function -----------------------------------------------------------------------
def infidelity(
    forward_func: Callable[..., Tensor],
    perturb_func: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    attributions: Tensor | tuple[Tensor, ...],
    baselines: Any = None,
    additional_forward_args: Any = None,
    target: Any = None,
    n_perturb_samples: int = 10,
    max_examples_per_batch: int | None = None,
    normalize: bool = False,
) -> Tensor:
    """Infidelity of ``attributions`` per example, as ``captum.metrics.infidelity``.

    Parameters
    ----------
    forward_func : callable
        The model.
    perturb_func : callable
        ``perturb_func(inputs[, baselines]) -> (perturbations, perturbed_inputs)`` (a
        tensor each for one input, a tuple each for several); decorate a function
        returning only perturbed inputs with :func:`infidelity_perturb_func_decorator`.
        It is called once per chunk, on every example repeated ``k`` times consecutively
        (``repeat_interleave``): rows ``(N * k, ...)``.
    inputs : Tensor or tuple of Tensor, each ``(N, ...)``
    attributions : Tensor or tuple of Tensor
        Shaped like ``inputs``.
    baselines : number, Tensor or tuple of them, optional
        Passed to ``perturb_func`` (per-example tensors repeated like the inputs).
    additional_forward_args : optional
        Extra model arguments (Captum's convention).
    target : optional
        Which output to explain (Captum's forms).
    n_perturb_samples : int
        Perturbations per example.
    max_examples_per_batch : int, optional
        At most this many perturbed rows per ``perturb_func`` call (``None``: all
        ``N * n_perturb_samples`` at once). Never changes the result for a deterministic
        ``perturb_func``.
    normalize : bool
        Rescale the attributions by the optimal factor
        ``beta = E[I.Phi (f(x) - f(x - I))] / E[(I.Phi)^2]`` first, so infidelity does not
        depend on the attributions' scale.

    Returns
    -------
    Tensor, shape ``(N,)``
        Infidelity per example.
    """
    call = prepare_call(
        _OWNER,
        forward_func,
        inputs,
        target=target,
        forward_args=additional_forward_args,
        require_float=False,
    )
    check_int(_OWNER, "n_perturb_samples", n_perturb_samples, minimum=1)
    check_int(_OWNER, "max_examples_per_batch", max_examples_per_batch, minimum=1, allow_none=True)
    check_bool(_OWNER, "normalize", normalize)
    if not callable(perturb_func):
        fail(_OWNER, "perturb_func", "a callable", perturb_func, type_error=True)
    attrs = as_tensors(attributions, owner=_OWNER)
    check_like(_OWNER, "attributions", attrs, call.tensors)
    base = None if baselines is None else _captum_baselines(baselines, len(call.tensors))
    batch = call.batch_size
    if batch == 0:
        return torch.zeros(0, dtype=_result_dtype(attrs))
    single = len(call.tensors) == 1

    def chunks() -> Iterator[tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]]:
        for k in _captum_chunk_sizes(batch, n_perturb_samples, max_examples_per_batch):
            rows_in = tuple(x.repeat_interleave(k, dim=0) for x in call.tensors)
            rows_base = None
            if base is not None:
                rows_base = tuple(
                    b.repeat_interleave(k, dim=0)
                    if isinstance(b, Tensor) and b.shape[0] == x.shape[0] and b.shape[0] > 1
                    else b
                    for x, b in zip(call.tensors, base)
                )
            given_in = rows_in[0] if single else rows_in
            given_base = None if rows_base is None else (rows_base[0] if single else rows_base)
            produced = (
                perturb_func(given_in) if given_base is None else perturb_func(given_in, given_base)
            )
            perturbations, perturbed = _split_perturb_output(produced, call)
            index = torch.arange(batch, device=call.tensors[0].device).repeat_interleave(k)
            yield perturbations, perturbed, index

    with torch.no_grad():
        return _infidelity(call, attrs, chunks(), n_perturb_samples, normalize, example_major=True)


# -- the native form -------------------------------------------------------------------------
def infidelity_score(
    model: Callable[..., Tensor],
    inputs: Any,
    attributions: Any,
    *,
    target: Any = None,
    forward_args: Any = None,
    baselines: Any = None,
    noise_std: float = 0.1,
    multiply_by_inputs: bool = False,
    n_samples: int = 10,
    normalize: bool = False,
    chunk_size: ChunkSize = "auto",
    seed: int | torch.Generator | RandomSource | None = None,
    show_progress: bool = False,
) -> Tensor:
    """Infidelity under Gaussian perturbations (native form).

    Each perturbed row is ``x - eps`` with ``eps ~ N(0, noise_std^2)`` elementwise; the
    perturbation paired with the attributions is ``eps`` (``multiply_by_inputs=False``,
    for local attributions such as gradients) or ``eps / (x - baseline)`` (``True``, for
    attributions that already multiply by ``x - baseline``; a zero denominator keeps
    ``eps``). With either pairing a linear model's exact attribution has infidelity 0.

    Parameters
    ----------
    model : callable
    inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
    attributions : Tensor, tuple/dict of Tensor or Explanation, shaped like ``inputs``
    target, forward_args : optional
        As for the attribution methods.
    baselines : optional
        Only used with ``multiply_by_inputs=True`` (``None``: zeros).
    noise_std : float
        Standard deviation of the perturbation (> 0).
    multiply_by_inputs : bool
    n_samples : int
        Perturbations per example.
    normalize : bool
        Rescale the attributions by the optimal factor first (see :func:`infidelity`).
    chunk_size : int, "auto" or None
        Rows per model call; never changes the result.
    seed : int, torch.Generator, RandomSource or None
        Source of the perturbations (``None``: seeded from torch's global generator).

    Returns
    -------
    Tensor, shape ``(N,)``
    """
    owner = "infidelity_score"
    call = prepare_call(
        owner,
        model,
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        show_progress=show_progress,
    )
    check_real(owner, "noise_std", noise_std, minimum=0.0, strict_minimum=True)
    check_bool(owner, "multiply_by_inputs", multiply_by_inputs)
    check_int(owner, "n_samples", n_samples, minimum=1)
    check_bool(owner, "normalize", normalize)
    check_seed(owner, "seed", seed)
    attrs = as_tensors(attributions, owner=owner)
    check_like(owner, "attributions", attrs, call.tensors)
    batch = call.batch_size
    if batch == 0:
        return torch.zeros(0, dtype=_result_dtype(attrs))
    random = make_random(seed)
    denominators = None
    if multiply_by_inputs:
        from whybox.core.inputs import prepare_baselines

        refs = prepare_baselines(baselines, call.inputs, owner=owner).tensors
        denominators = tuple(x - b for x, b in zip(call.tensors, refs))
    samples_per_chunk = max(1, call.chunk_rows // batch)
    device = call.tensors[0].device

    def chunks() -> Iterator[tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]]:
        # sample-major rows; one draw per sample and input, in sample order, so the
        # chunk size never changes which numbers are drawn
        for start in range(0, n_samples, samples_per_chunk):
            k = min(samples_per_chunk, n_samples - start)
            draws = [
                [random.normal(x.shape, noise_std, like=x) for x in call.tensors] for _ in range(k)
            ]
            noises = [torch.cat([d[i] for d in draws]) for i in range(len(call.tensors))]
            perturbed = tuple(_tile(x, k) - e for x, e in zip(call.tensors, noises))
            if denominators is None:
                perturbations = tuple(noises)
            else:
                perturbations = tuple(
                    _safe_div(e, _tile(d, k)) for e, d in zip(noises, denominators)
                )
            yield perturbations, perturbed, torch.arange(batch, device=device).repeat(k)

    with torch.no_grad():
        return _infidelity(call, attrs, chunks(), n_samples, normalize, example_major=False)


# -- the shared loop -------------------------------------------------------------------------
def _infidelity(
    call: Call,
    attributions: tuple[Tensor, ...],
    chunks: Iterator[tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]],
    n_samples: int,
    normalize: bool,
    *,
    example_major: bool,
) -> Tensor:
    """Sum the squared error (or, to normalise, its three polynomial terms) over chunks.

    Each chunk is ``(perturbations, perturbed_inputs, example_index)`` with ``R = N * k``
    rows, example-major (``[e0 s0, e0 s1, ...]``) or sample-major (``[s0 e0, s0 e1, ...]``).
    """
    batch = call.batch_size
    device = call.tensors[0].device
    original = rows_outputs(call, call.tensors, torch.arange(batch, device=device))
    if original.dim() == 0:
        fail(
            call.owner,
            "forward_func",
            "a model returning one value per example (infidelity compares examples' outputs)",
            "a model returning one scalar for the whole batch",
            raw=True,
        )
    flat_attrs = [a.reshape(batch, 1, -1) for a in attributions]
    totals: list[Tensor] | None = None
    for perturbations, perturbed, example_index in chunks:
        rows = example_index.shape[0]
        k = rows // batch
        outputs = rows_outputs(call, perturbed, example_index)
        if example_major:
            drops = original.unsqueeze(1) - outputs.reshape(batch, k)
        else:
            drops = (original.unsqueeze(0) - outputs.reshape(k, batch)).T
        # sum_j Phi_j I_j per row, input by input (attributions broadcast, not repeated)
        explained = None
        for a, p in zip(flat_attrs, perturbations):
            p = p.expand((rows,) + tuple(p.shape[1:])) if p.shape[0] == 1 else p
            if example_major:
                term = (a * p.reshape(batch, k, -1)).sum(dim=2)
            else:
                term = (a.transpose(0, 1) * p.reshape(k, batch, -1)).sum(dim=2).T
            explained = term if explained is None else explained + term
        if normalize:
            parts = [
                explained.square().sum(dim=1),
                (explained * drops).sum(dim=1),
                drops.square().sum(dim=1),
            ]
        else:
            parts = [(explained - drops).square().sum(dim=1)]
        totals = parts if totals is None else [t + p for t, p in zip(totals, parts)]
    assert totals is not None
    if normalize:
        aa, ab, bb = totals
        beta = _safe_div(ab, aa)
        values = beta * beta * aa - 2 * beta * ab + bb
    else:
        values = totals[0]
    return values / n_samples


def _split_perturb_output(
    produced: Any, call: Call
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Check ``perturb_func``'s ``(perturbations, perturbed_inputs)`` and tuple both."""
    if not isinstance(produced, (tuple, list)) or len(produced) != 2:
        fail(
            _OWNER,
            "perturb_func",
            "a function returning (perturbations, perturbed_inputs) (decorate one that "
            "returns only perturbed inputs with infidelity_perturb_func_decorator)",
            produced,
        )
    perturbations, perturbed = _as_tuple(produced[0]), _as_tuple(produced[1])
    n_inputs = len(call.tensors)
    if len(perturbations) != n_inputs or len(perturbed) != n_inputs:
        fail(
            _OWNER,
            "perturb_func",
            f"a function returning one perturbation and one perturbed input per input ({n_inputs})",
            f"{len(perturbations)} perturbation(s) and {len(perturbed)} perturbed input(s)",
            raw=True,
        )
    for index, (p, xp, x) in enumerate(zip(perturbations, perturbed, call.tensors)):
        if not isinstance(p, Tensor) or not isinstance(xp, Tensor):
            fail(_OWNER, "perturb_func", "a function returning tensors", produced, type_error=True)
        if tuple(p.shape[1:]) != tuple(xp.shape[1:]) or tuple(xp.shape[1:]) != tuple(x.shape[1:]):
            fail(
                _OWNER,
                "perturb_func",
                f"a function whose perturbation and perturbed input {index} have one "
                f"example's shape {tuple(x.shape[1:])} per row",
                f"shapes {tuple(p.shape)} and {tuple(xp.shape)}",
                raw=True,
            )
    return perturbations, perturbed


def _captum_chunk_sizes(batch: int, n_samples: int, max_examples: int | None) -> list[int]:
    """Samples per example in each chunk, in Captum's order: ``k, k, ..., remainder``."""
    if max_examples is not None and not 1 <= max_examples // batch <= n_samples:
        warnings.warn(
            f"max_examples_per_batch ({max_examples}) should be between the batch size "
            f"({batch}) and batch size * n_perturb_samples ({batch * n_samples}): each chunk "
            "holds at least one perturbation of every example and at most all of them.",
            stacklevel=4,
        )
    k = n_samples if max_examples is None else min(max(max_examples // batch, 1), n_samples)
    sizes = [k] * (n_samples // k)
    if n_samples % k:
        sizes.append(n_samples % k)
    return sizes


def _captum_baselines(baselines: Any, n_inputs: int) -> tuple[Any, ...]:
    """Captum's baseline format: a tuple of tensors or numbers (numbers stay numbers,
    since they are passed on to the user's ``perturb_func``)."""
    values = baselines if isinstance(baselines, tuple) else (baselines,)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (Tensor, Number)):
            fail(_OWNER, "baselines", "a tensor, a number or a tuple of them", baselines)
    if len(values) != n_inputs:
        fail(
            _OWNER,
            "baselines",
            f"one baseline per input ({n_inputs})",
            f"{len(values)} baselines",
            raw=True,
        )
    return values


def _as_tuple(value: Any) -> tuple:
    return (
        value if isinstance(value, tuple) else tuple(value) if isinstance(value, list) else (value,)
    )


def _safe_div(numerator: Tensor, denominator: Tensor | Number) -> Tensor:
    """``numerator / denominator``, dividing by 1 where the denominator is 0."""
    if not isinstance(denominator, Tensor):
        return numerator / (denominator if denominator != 0 else 1.0)
    one = torch.ones((), dtype=denominator.dtype, device=denominator.device)
    return numerator / torch.where(denominator != 0, denominator, one)


def _result_dtype(attributions: tuple[Tensor, ...]) -> torch.dtype:
    dtype = attributions[0].dtype
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _tile(x: Tensor, k: int) -> Tensor:
    """``k`` copies of the batch one after the other (sample-major rows)."""
    return x.repeat(k, *([1] * (x.dim() - 1)))
