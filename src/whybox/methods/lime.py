"""LIME (Ribeiro et al., "Why Should I Trust You?", 2016): a weighted linear surrogate
fitted on perturbations of one example.

* :class:`Lime` -- interpretable features are feature-mask groups; a sample keeps some
  groups and puts the baseline into the others. Samples are drawn at once, rows are built
  lazily per chunk, similarities are computed per chunk (vectorised for the kernels of
  :func:`~whybox.core.surrogate.get_exp_kernel_similarity_function`), and the surrogate is
  fitted in torch (:class:`~whybox.core.surrogate.WeightedLasso` by default).
* :class:`LimeBase` -- fully user-defined sampling and transforms (Captum's LimeBase), e.g.
  removing tokens for an ``EmbeddingBag`` model (:func:`token_removal_transform`).

NaN / inf in the inputs, the baselines, the model's outputs or the similarities are a
clear error naming the argument (a surrogate cannot be fitted on them). An empty batch
(``N = 0``) gives zero-row attributions without sampling or fitting.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch, evaluate
from whybox.core.inputs import flatten, prepare_baselines
from whybox.core.masks import coalitions_to_input_masks
from whybox.core.method import Bool, Check, Int, IsCallable
from whybox.core.perturbation import (
    EmptyBatchInBody,
    FlatMasks,
    check_aggregate_masks,
    check_finite,
    check_finite_each,
    coalition_rows,
    empty_leaves,
    expand_to_elements,
    prepare_masks,
    run_items,
)
from whybox.core.randomness import RandomSource, check_seed, is_int_seed, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.surrogate import (
    ExpKernelSimilarity,
    LinearSurrogate,
    WeightedLasso,
    get_exp_kernel_similarity_function,
)
from whybox.core.validation import fail

from .base import Method

__all__ = [
    "Lime",
    "LimeBase",
    "fit_surrogate",
    "default_from_interp_rep_transform",
    "token_removal_transform",
    "baseline_token_transform",
]


def fit_surrogate(model: Any, X: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """Fit an interpretable model and return its coefficients, ``(n_outputs, M)``.

    whybox surrogates are fitted on tensors directly; any other model with Captum's
    ``fit(DataLoader)`` / ``representation()`` interface gets one full-size batch.
    """
    if hasattr(model, "fit_tensors"):
        model.fit_tensors(X, y, weights)
    else:
        from torch.utils.data import DataLoader, TensorDataset

        model.fit(DataLoader(TensorDataset(X, y, weights), batch_size=X.shape[0]))
    return torch.as_tensor(model.representation())


_FINITE_INPUTS = "finite (no NaN or inf): the surrogate cannot be fitted on them"
_FINITE_OUTPUTS = (
    "a model returning finite outputs (no NaN or inf) on the perturbed inputs, which the "
    "surrogate is fitted on"
)
_FINITE_SIMILARITIES = "a function returning finite similarities (no NaN or inf)"
_NON_NEGATIVE_SIMILARITIES = (
    "a function returning similarities >= 0 (they weight the linear surrogate's samples)"
)


def _check_surrogate(owner: str, name: str, value: Any) -> None:
    """Declared check: ``None`` (the default surrogate) or a model with ``fit`` and
    ``representation`` (Captum's interpretable-model contract)."""
    if value is None or (hasattr(value, "fit") and hasattr(value, "representation")):
        return
    fail(owner, name, "a model with fit() and representation() (or None)", value, type_error=True)


def _check_surrogate_given(owner: str, name: str, value: Any) -> None:
    if value is None:
        fail(owner, name, "a model with fit() and representation()", value, type_error=True)
    _check_surrogate(owner, name, value)


def _fit_dtype(tensors: tuple[Tensor, ...]) -> torch.dtype:
    """Surrogates are fitted (and coefficients returned) in float64 for float64 inputs,
    float32 otherwise (token ids, float16, float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _flat_rows(tensors: tuple[Tensor, ...], per: int) -> Tensor:
    """Concatenate the flattened values of ``per``-row groups: ``(rows / per, per * D)``."""
    parts = [t.reshape(t.shape[0] // per, -1) for t in tensors]
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


@register("lime")
class Lime(EmptyBatchInBody, Method):
    """LIME over feature-mask groups with a baseline for absent groups.

    Parameters
    ----------
    model : callable
    interpretable_model : surrogate, keyword-only, optional
        Anything with ``fit`` / ``representation`` (see :mod:`whybox.core.surrogate`).
        Default ``WeightedLasso(alpha=0.01)``, the objective of Captum's default
        ``SkLearnLasso(alpha=0.01)`` solved in torch.
    similarity_func : callable, keyword-only, optional
        ``similarity(original_inp, perturbed_inp, interpretable_sample, **kwargs)``.
        Default: exponential kernel on the cosine distance (width 1).
    perturb_func : callable or generator function, keyword-only, optional
        ``perturb_func(original_inp, **kwargs) -> (1, M)`` binary sample, or a generator
        function yielding such samples. Default: each group kept with probability 1/2.
    """

    parameters = {
        "interpretable_model": Check(_check_surrogate),
        "similarity_func": IsCallable(),
        "perturb_func": IsCallable(),
        "n_samples": Int(minimum=1),
        "seed": Check(check_seed),
        "return_input_shape": Bool(),
    }

    def __init__(
        self,
        model: Any,
        *,
        interpretable_model: Any = None,
        similarity_func: Callable[..., Any] | None = None,
        perturb_func: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model)
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func

    @torch.no_grad()
    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        seed: int | torch.Generator | RandomSource | None = None,
        return_input_shape: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """LIME attributions, one surrogate per example.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : value of absent groups (None: 0; number, tensor or one per input)
        feature_mask : integer tensor per input, broadcastable to it, ids ``0..M-1``
            (shifted to start at 0 with a warning otherwise); default every scalar
        n_samples : perturbed samples per example (>= 1)
        seed : int, ``torch.Generator`` or random source for the default sampler; the
            samples are shared by all examples
        return_input_shape : ``True``: coefficients spread over the inputs' shapes;
            ``False``: ``(N, M)`` coefficients

        Returns
        -------
        Explanation
            ``attributions`` as requested (first dimension 1 for a model that returns
            one scalar per batch: one surrogate for the whole batch).
        """
        owner = self.owner
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=False,
        )
        base = prepare_baselines(baselines, call.inputs, owner=owner).tensors
        masks = prepare_masks(feature_mask, call.tensors, owner=owner, shift_negative=True)
        m = masks.n_features
        n = call.batch_size
        if n == 0:
            return self._empty(call, masks, return_input_shape)
        # the surrogate cannot fit NaN / inf: say which argument holds them, up front
        check_finite_each(
            owner,
            (
                ("inputs", call.tensors, _FINITE_INPUTS),
                # no baselines: zeros, finite without a look
                ("baselines", () if baselines is None else base, _FINITE_INPUTS),
            ),
        )
        if m > 10000:
            warnings.warn(
                f"{owner}: {m} interpretable features make the surrogate slow; group them "
                "with a feature_mask.",
                stacklevel=2,
            )
        aggregate = n > 1 and _is_aggregate(call, base, masks)
        if aggregate:
            check_aggregate_masks(masks, True, owner, "feature_mask")
        kwargs_of = _kwargs_factory(call, base, masks, aggregate)
        design = None  # the samples as the fit's float64 array, when the cache has it
        device = call.tensors[0].device
        if self.perturb_func is None and _cacheable(seed, n_samples, m):
            samples, design = _seeded_samples(
                n_samples, m, int(seed), torch.get_default_dtype(), device
            )
        else:
            samples = self._samples(call, masks, n_samples, seed, aggregate, kwargs_of)
        n_drawn = samples.shape[0]
        groups = 1 if aggregate else n
        # on the inputs' device: each chunk's similarities stay there (no copy to the host)
        similarities = torch.empty(n_drawn, groups, dtype=torch.float64, device=device)
        similarity = self.similarity_func or get_exp_kernel_similarity_function()
        kernel = (
            _RowKernel(similarity, call.tensors, n if aggregate else 1)
            if isinstance(similarity, ExpKernelSimilarity)
            else None
        )
        kernel_dtypes: set[torch.dtype] = set()  # what the kernel computed in

        def build(start: int, stop: int) -> RowBatch:
            # samples: (S, M) shared by all examples, or (S, N, M) one per example
            return coalition_rows(call.tensors, base, masks, samples[start:stop])

        def on_rows(start: int, stop: int, rows: RowBatch) -> None:
            if kernel is not None:
                chunk = kernel(rows.inputs)
                kernel_dtypes.add(chunk.dtype)
                similarities[start:stop] = chunk
                return
            similarities[start:stop] = self._similarities(
                similarity, call, rows, samples[start:stop], aggregate, kwargs_of
            )

        outputs = run_items(call, n_items=n_drawn, build=build, rows_per_item=n, on_rows=on_rows)
        values = outputs.values  # (S, groups)
        surrogate = self.interpretable_model or WeightedLasso(alpha=0.01)
        linear = isinstance(surrogate, LinearSurrogate)
        check_finite_each(
            owner,
            (
                ("forward_func", (values,), _FINITE_OUTPUTS),
                ("similarity_func", (similarities,), _FINITE_SIMILARITIES),
            ),
        )
        if linear and kernel is None and bool((similarities < 0).any()):
            # the linear surrogates' sample weights, checked here and not again in the fit
            # (the exponential kernel is never negative)
            fail(owner, "similarity_func", _NON_NEGATIVE_SIMILARITIES, "negative ones", raw=True)
        dtype = values.dtype if values.is_floating_point() else torch.get_default_dtype()
        if linear:
            # similarities the kernel computed in ``dtype`` are already exact in it
            exact = kernel is not None and kernel_dtypes <= {dtype}
            coef = _fit_linear(
                surrogate, samples, values, similarities, dtype, exact=exact, design=design
            )
        else:
            coefs = []
            for g in range(groups):
                design = samples if samples.dim() == 2 else samples[:, g]
                fitted = fit_surrogate(
                    surrogate,
                    design.to(dtype),
                    values[:, g].to(dtype),
                    similarities[:, g].to(dtype),
                )
                coefs.append(fitted.reshape(-1).to(dtype))
            coef = torch.stack(coefs)
        if coef.device != device:
            coef = coef.to(device)  # (groups, M)
        parameters = {"n_samples": n_drawn}
        extras = {"aggregate_output": aggregate, "interpretable_model": surrogate}
        if not return_input_shape:
            return Explanation(
                attributions=coef,
                inputs=call.inputs.restore(call.tensors),
                target=call.target.raw,
                method=self.name,
                parameters=parameters,
                extras=extras,
            )
        leaves = expand_to_elements(coef, masks, call.tensors)
        return self._result(call, leaves, parameters=parameters, extras=extras)

    def _empty(self, call: Call, masks: FlatMasks, input_shape: bool) -> Explanation:
        """The result for an empty batch: nothing sampled, nothing fitted."""
        leaves = empty_leaves(call.tensors)
        parameters = {"n_samples": 0}
        extras = {"aggregate_output": False, "interpretable_model": self.interpretable_model}
        if input_shape:
            return self._result(call, leaves, parameters=parameters, extras=extras)
        return Explanation(
            attributions=leaves[0].new_zeros(0, masks.n_features),
            inputs=call.inputs.restore(call.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=parameters,
            extras=extras,
        )

    # -- sampling ----------------------------------------------------------------------
    def _samples(self, call, masks, n_samples, seed, aggregate, kwargs_of) -> Tensor:
        """Interpretable samples: ``(S, M)`` shared, or ``(S, N, M)`` per example (bool)."""
        m = masks.n_features
        device = call.tensors[0].device
        if self.perturb_func is None:
            # each group kept with probability 1/2; the source decides the draw order
            surrogate = self.interpretable_model
            return make_random(seed).lime_samples(
                n_samples,
                m,
                1 if aggregate else call.batch_size,
                device=device,
                fit_draws=surrogate is None or hasattr(surrogate, "fit_tensors"),
            )
        owner = self.owner
        groups = 1 if aggregate else call.batch_size
        per_group = []
        for g in range(groups):
            original, kwargs = kwargs_of(g)
            draws = _draw(self.perturb_func, original, kwargs, n_samples, owner)
            per_group.append(draws)
        count = min(d.shape[0] for d in per_group)
        stacked = torch.stack([d[:count] for d in per_group], dim=1)  # (S, groups, M)
        if stacked.shape[-1] != m:
            fail(
                owner,
                "perturb_func",
                f"samples with one entry per interpretable feature ({m})",
                f"samples of shape {tuple(stacked.shape[2:])}",
                raw=True,
            )
        stacked = stacked.bool().to(device)
        return stacked[:, 0] if groups == 1 else stacked

    def _similarities(self, similarity, call, rows, samples, aggregate, kwargs_of) -> Tensor:
        """Similarity of every perturbed example to its original, ``(k, groups)``."""
        n = call.batch_size
        k = rows.inputs[0].shape[0] // n
        per = n if aggregate else 1
        if isinstance(similarity, ExpKernelSimilarity):
            perturbed = _flat_rows(rows.inputs, per)  # (k * groups, D)
            original = _flat_rows(call.tensors, per)  # (groups, D)
            original = original.repeat(k, 1)
            return similarity.batch(original, perturbed).reshape(k, -1).to(torch.float64)
        out = torch.empty(k, 1 if aggregate else n, dtype=torch.float64)
        for j in range(k):
            for g in range(out.shape[1]):
                original, kwargs = kwargs_of(g)
                if aggregate:
                    part = [t[j * n : (j + 1) * n] for t in rows.inputs]
                else:
                    part = [t[j * n + g : j * n + g + 1] for t in rows.inputs]
                perturbed = call.inputs.restore(part)
                sample = samples[j] if samples.dim() == 2 else samples[j, g]
                value = similarity(original, perturbed, sample.long().unsqueeze(0), **kwargs)
                out[j, g] = float(torch.as_tensor(value).reshape(-1)[0])
        return out


#: samples x features up to which the default sampler's draws for an int seed are cached
#: (:func:`_seeded_samples`): tiny jobs, where drawing is a visible share of the call
_CACHED_SAMPLE_CELLS = 2**18


def _cacheable(seed: Any, n_samples: int, m: int) -> bool:
    """Whether the default sampler's draws for ``seed`` depend on the arguments alone (an
    int seed: a fresh generator seeded with it) and are small enough to keep."""
    return is_int_seed(seed) and n_samples * m <= _CACHED_SAMPLE_CELLS


@functools.lru_cache(maxsize=32)
def _seeded_samples(
    n_samples: int, m: int, seed: int, default_dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, np.ndarray | None]:
    """The default sampler's ``(S, M)`` draws for an int seed, cached per arguments (the
    default dtype decides how :func:`~whybox.core.randomness.cpu_bernoulli` draws), with
    their float64 array for the fit on the CPU (``None`` elsewhere).

    What ``make_random(seed).lime_samples`` gives for any number of groups (an int seed's
    source shares one draw among them) and with any surrogate (it draws nothing for the
    fits). LIME only reads them and hands neither out; as tripwires the tensor is an
    inference tensor (an in-place write outside ``torch.inference_mode`` raises) and the
    array is not writeable. ``lru_cache`` is thread-safe (two threads may both draw once:
    the same values).
    """
    drawn = make_random(seed).lime_samples(n_samples, m, 1, device=device)
    with torch.inference_mode():
        samples = drawn.clone()  # never the tensor any other code got
    design = None
    if samples.device.type == "cpu":
        design = samples.to(torch.float64).numpy()  # as ``_fit_linear`` casts them
        design.flags.writeable = False
    return samples, design


class _RowKernel:
    """The exponential kernel of every chunk's perturbed rows to their originals.

    The originals are flattened (and cast) once per call; a chunk's ``k * G`` rows
    (``G`` groups of ``per`` rows each) are compared with them by broadcasting, which gives
    the numbers of :meth:`~whybox.core.surrogate.ExpKernelSimilarity.batch` on repeated
    originals without building them.
    """

    def __init__(self, kernel: ExpKernelSimilarity, originals: tuple[Tensor, ...], per: int):
        self.kernel = kernel
        self.per = per
        self.original = _flat_rows(originals, per)  # (G, D)

    def __call__(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """Similarities ``(k, G)`` of a chunk's rows."""
        groups = self.original.shape[0]
        perturbed = _flat_rows(inputs, self.per)  # (k * G, D)
        perturbed = perturbed.reshape(perturbed.shape[0] // groups, groups, -1)
        return self.kernel.grouped(self.original, perturbed)


def _fit_linear(
    surrogate: LinearSurrogate,
    samples: Tensor,
    values: Tensor,
    weights: Tensor,
    dtype: torch.dtype,
    *,
    exact: bool = False,
    design: np.ndarray | None = None,
) -> Tensor:
    """One linear surrogate per group on LIME's checked data: coefficients ``(groups, M)``.

    The data are what the surrogate would receive in ``dtype`` (the outputs' dtype),
    converted to float64 as its fit does; the surrogate does not check them again.
    ``exact``: the float64 ``weights`` hold values of ``dtype`` already. ``design``: the
    samples as a float64 array already (a cached draw's).
    """
    if (
        (exact or dtype == torch.float64)
        and values.dtype == dtype
        and _host_ready(samples, values, weights)
    ):
        fit_host = getattr(surrogate, "_fit_host_groups", None)
        if fit_host is not None:
            # the very float64 arrays the tensor route below gives the fit (made by the same
            # torch casts, in torch's memory), then no tensor op until the coefficients
            if design is None:
                design = samples.to(torch.float64).numpy()
            targets = values.to(torch.float64)
            if targets.stride(1) == 1:
                columns: Any = targets.numpy()
            else:  # the column views lasso_groups takes for such a layout
                columns = [targets[:, g].unsqueeze(1).numpy() for g in range(targets.shape[1])]
            coef = fit_host(design, columns, weights.numpy(), dtype)
            if coef is not None:
                return coef
    design_t = samples.to(torch.float64)  # 0 / 1, exact in every dtype
    if values.dtype != dtype:
        values = values.to(dtype)
    targets_t = values.to(torch.float64)
    if dtype != torch.float64 and not exact:
        # the similarities the fit sees are rounded to ``dtype`` first, as a fit in it does
        weights = weights.to(dtype).to(torch.float64)
    # a new tensor: results never share the surrogate's memory
    return surrogate._fit_checked_groups(design_t, targets_t, weights, dtype)


def _host_ready(samples: Tensor, values: Tensor, weights: Tensor) -> bool:
    """Whether LIME's fit data are CPU tensors, the samples (bool) and similarities
    (float64) contiguous: numpy then views them with the layouts the tensor route's fit
    reads."""
    return (
        samples.device.type == "cpu"
        and values.device.type == "cpu"
        and weights.device.type == "cpu"
        and samples.dtype == torch.bool
        and weights.dtype == torch.float64
        and samples.is_contiguous()
        and weights.is_contiguous()
        and not (values.requires_grad or weights.requires_grad)
    )


def _is_aggregate(call: Call, base, masks: FlatMasks) -> bool:
    """One forward of the original batch tells per-example from per-batch outputs."""
    keep = torch.ones(1, masks.n_features, dtype=torch.bool, device=call.tensors[0].device)
    outputs = run_items(
        call,
        n_items=1,
        build=lambda start, stop: coalition_rows(call.tensors, base, masks, keep),
        rows_per_item=call.batch_size,
    )
    return outputs.aggregate


def _kwargs_factory(call: Call, base, masks: FlatMasks, aggregate: bool):
    """Captum's keyword arguments for user functions: the example (or the batch), its
    baselines, its feature mask and the number of interpretable features."""
    n = call.batch_size

    def kwargs_of(group: int) -> tuple[Any, dict[str, Any]]:
        rows = slice(None) if aggregate or n == 1 else slice(group, group + 1)
        originals = [x[rows] for x in call.tensors]
        baselines = [b.expand_as(x)[rows] for b, x in zip(base, call.tensors)]
        feature_mask = []
        for x, mask in zip(call.tensors, masks.flat):
            shaped = mask.view((mask.shape[0],) + tuple(x.shape[1:]))
            feature_mask.append(shaped if shaped.shape[0] == 1 else shaped[rows])
        restore = call.inputs.restore
        kwargs = {
            "baselines": restore(baselines),
            "feature_mask": restore(feature_mask),
            "num_interp_features": masks.n_features,
        }
        return restore(originals), kwargs

    return kwargs_of


def _draw(perturb_func: Callable, original: Any, kwargs: dict, n_samples: int, owner: str):
    """``n_samples`` samples from a function, or fewer if a generator runs out."""
    rows = []
    if inspect.isgeneratorfunction(perturb_func):
        generator: Iterator = perturb_func(original, **kwargs)
        for _ in range(n_samples):
            try:
                rows.append(torch.as_tensor(next(generator)).reshape(-1))
            except StopIteration:
                warnings.warn(
                    f"{owner}: the perturb_func generator stopped after {len(rows)} of "
                    f"{n_samples} samples.",
                    stacklevel=4,
                )
                break
    else:
        for _ in range(n_samples):
            rows.append(torch.as_tensor(perturb_func(original, **kwargs)).reshape(-1))
    if not rows:
        fail(owner, "perturb_func", "at least one sample", "none", raw=True)
    return torch.stack(rows)


# ---------------------------------------------------------------------------
# LimeBase
# ---------------------------------------------------------------------------


class LimeBase(EmptyBatchInBody, Method):
    """LIME with user-defined sampling and representation transforms (Captum's LimeBase).

    Parameters
    ----------
    model : callable
    interpretable_model : surrogate with ``fit`` / ``representation``, keyword-only
    similarity_func : ``similarity(original_inp, perturbed_inp, interpretable_sample,
        **kwargs) -> float or Tensor``
    perturb_func : function or generator function ``perturb_func(original_inp, **kwargs)``
        returning a sample in the interpretable space (``perturb_interpretable_space``) or
        in the input space
    perturb_interpretable_space : bool
    from_interp_rep_transform : ``f(sample, original_inp, **kwargs) -> model input``,
        needed when sampling in the interpretable space
    to_interp_rep_transform : ``f(sample, original_inp, **kwargs) -> (1, M)``, needed
        when sampling in the input space
    """

    parameters = {
        "interpretable_model": Check(_check_surrogate_given),
        "similarity_func": IsCallable(allow_none=False),
        "perturb_func": IsCallable(allow_none=False),
        "perturb_interpretable_space": Bool(),
        "from_interp_rep_transform": IsCallable(),
        "to_interp_rep_transform": IsCallable(),
        "n_samples": Int(minimum=1),
    }

    def __init__(
        self,
        model: Any,
        *,
        interpretable_model: Any,
        similarity_func: Callable[..., Any],
        perturb_func: Callable[..., Any],
        perturb_interpretable_space: bool = True,
        from_interp_rep_transform: Callable[..., Any] | None = None,
        to_interp_rep_transform: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model)
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func
        self.perturb_interpretable_space = perturb_interpretable_space
        self.from_interp_rep_transform = from_interp_rep_transform
        self.to_interp_rep_transform = to_interp_rep_transform

    def _validated(self) -> Method:
        """The declared checks, then the one rule that spans two options: the transform
        into the model's input space must exist for the chosen sampling space."""
        runner = super()._validated()
        if self.perturb_interpretable_space and self.from_interp_rep_transform is None:
            fail(
                self.owner,
                "from_interp_rep_transform",
                "a callable when sampling in the interpretable space",
                None,
            )
        if not self.perturb_interpretable_space and self.to_interp_rep_transform is None:
            fail(
                self.owner,
                "to_interp_rep_transform",
                "a callable when sampling in input space",
                None,
            )
        return runner

    @torch.no_grad()
    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        n_samples: int = 50,
        chunk_size: ChunkSize = 1,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Explanation:
        """Fit the surrogate on ``n_samples`` perturbations and return its coefficients.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor (one example, or a batch for models that
            return one scalar per batch)
        n_samples : samples to draw (a generator may stop earlier, with a warning)
        chunk_size : rows per forward, rounded down to whole samples (at least one), as
            for every method. Default 1, i.e. one sample per forward, because user
            transforms may produce inputs of different shapes (e.g. removed tokens) and
            forward functions written for one sample; ``"auto"`` or a larger int batches
            consecutive same-shape samples.
        **kwargs : passed to ``perturb_func``, the transforms and ``similarity_func``

        Returns
        -------
        Explanation
            ``attributions`` = ``interpretable_model.representation()``, ``(1, M)`` for
            one output, float64 for float64 inputs and float32 otherwise. An empty batch
            gives zero-row attributions shaped like the inputs (nothing is sampled).
        """
        owner = self.owner
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=False,
        )
        original = call.inputs.restore(call.tensors)
        dtype = _fit_dtype(call.tensors)
        if call.batch_size == 0:
            leaves = tuple(torch.zeros_like(x, dtype=dtype) for x in call.tensors)
            return self._result(call, leaves, parameters={"n_samples": 0})
        interp, model_inputs = self._draw_all(original, n_samples, kwargs, owner)
        count = len(interp)
        # rows of one sample: the unit chunks are rounded down to (the one chunk rule)
        rows_per_sample = max(flatten(model_inputs[0], owner=owner)[0][0].shape[0], 1)
        similarities = torch.empty(count, dtype=torch.float64)
        outputs = torch.empty(count, dtype=torch.float64)

        def build(start: int, stop: int) -> RowBatch:
            parts = [flatten(model_inputs[i], owner=owner)[0] for i in range(start, stop)]
            shapes = {tuple(tuple(t.shape[1:]) for t in p) for p in parts}
            if len(shapes) > 1:
                fail(
                    owner,
                    "chunk_size",
                    "1 when perturbed inputs differ in shape (they cannot share a forward)",
                    chunk_size,
                )
            for i in range(start, stop):
                value = self.similarity_func(original, model_inputs[i], interp[i], **kwargs)
                similarities[i] = float(torch.as_tensor(value).reshape(-1)[0])
            leaves = tuple(torch.cat(column, dim=0) for column in zip(*parts))
            index = torch.cat([torch.arange(p[0].shape[0]) % call.batch_size for p in parts]).to(
                leaves[0].device
            )
            return RowBatch(leaves, index)

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            if selected.numel() != stop - start:
                fail(
                    owner,
                    "forward_func",
                    "a model returning one scalar per perturbed sample",
                    f"{selected.numel()} values for {stop - start} samples",
                    raw=True,
                )
            outputs[start:stop] = selected.reshape(-1).to(torch.float64)

        evaluate(
            call.evaluator,
            n_items=count,
            build=build,
            consume=consume,
            chunk_rows=call.chunk_rows,
            auto=call.chunk_auto,
            rows_per_item=rows_per_sample,
            progress=call.progress,
            description=owner,
        )
        check_finite(owner, "forward_func", (outputs,), expected=_FINITE_OUTPUTS)
        check_finite(owner, "similarity_func", (similarities,), expected=_FINITE_SIMILARITIES)
        X = torch.cat([torch.as_tensor(s).reshape(1, -1) for s in interp]).to(dtype)
        coef = fit_surrogate(
            self.interpretable_model, X, outputs.to(dtype), similarities.to(dtype)
        ).to(dtype)
        return Explanation(
            attributions=coef,
            inputs=original,
            target=call.target.raw,
            method="lime_base",
            parameters={"n_samples": count},
            extras={"interpretable_model": self.interpretable_model},
        )

    def _draw_all(self, original: Any, n_samples: int, kwargs: dict, owner: str):
        """Samples and their model inputs (interpretable samples are small; model inputs
        are produced by the user's transform, one per sample)."""
        interp, model_inputs = [], []
        generator = None
        if inspect.isgeneratorfunction(self.perturb_func):
            generator = self.perturb_func(original, **kwargs)
        for _ in range(n_samples):
            try:
                sample = (
                    next(generator)
                    if generator is not None
                    else self.perturb_func(original, **kwargs)
                )
            except StopIteration:
                warnings.warn(
                    f"{owner}: the perturb_func generator stopped after {len(interp)} of "
                    f"{n_samples} samples.",
                    stacklevel=3,
                )
                break
            if self.perturb_interpretable_space:
                interp.append(sample)
                model_inputs.append(self.from_interp_rep_transform(sample, original, **kwargs))
            else:
                model_inputs.append(sample)
                interp.append(self.to_interp_rep_transform(sample, original, **kwargs))
        if not interp:
            fail(owner, "perturb_func", "at least one sample", "none", raw=True)
        return interp, model_inputs


# ---------------------------------------------------------------------------
# Transforms (Captum's default, and text helpers)
# ---------------------------------------------------------------------------


def default_from_interp_rep_transform(
    curr_sample: Tensor, original_inputs: Any, **kwargs: Any
) -> Any:
    """Lime's transform: keep the groups set in ``curr_sample``, baseline the others.

    Parameters
    ----------
    curr_sample : Tensor, shape ``(1, M)``, binary
    original_inputs : Tensor or tuple of Tensor
    feature_mask : keyword, Tensor or tuple of Tensor (ids ``0..M-1``)
    baselines : keyword, number / Tensor or a tuple of them

    Returns
    -------
    Tensor or tuple of Tensor
        The perturbed inputs, shaped like ``original_inputs``.
    """
    for key in ("feature_mask", "baselines"):
        if key not in kwargs:
            raise ValueError(
                f"default_from_interp_rep_transform needs the '{key}' keyword argument."
            )
    sample = torch.as_tensor(curr_sample).reshape(-1).bool()
    single = isinstance(original_inputs, Tensor)
    originals = (original_inputs,) if single else tuple(original_inputs)
    masks = kwargs["feature_mask"]
    masks = (masks,) if isinstance(masks, Tensor) else tuple(masks)
    baselines = kwargs["baselines"]
    if single or not isinstance(baselines, (tuple, list)):
        baselines = (baselines,) * len(originals) if not single else (baselines,)
    # groups -> element-wise keep flags: the masks' helper (validates the masks too)
    keeps = coalitions_to_input_masks(sample.to(originals[0].device).unsqueeze(0), masks)
    out = []
    for x, keep, base in zip(originals, keeps, baselines):
        keep = keep[0].to(x.device)
        base = torch.as_tensor(base, dtype=x.dtype, device=x.device)
        out.append(torch.where(keep, x, base))
    return out[0] if single else tuple(out)


def token_removal_transform(curr_sample: Tensor, original_input: Tensor, **kwargs: Any) -> Tensor:
    """Drop absent tokens (for bag-of-words models such as ``nn.EmbeddingBag``).

    Parameters
    ----------
    curr_sample : Tensor, shape ``(1, M)``, binary -- one entry per token, or per token
        group when ``feature_mask`` (``(1, T)`` ids ``0..M-1``) is passed as a keyword
    original_input : Tensor, shape ``(1, T)`` of token ids

    Returns
    -------
    Tensor, shape ``(1, T')``
        The kept tokens in their original order.
    """
    keep = torch.as_tensor(curr_sample).reshape(-1).bool().to(original_input.device)
    mask = kwargs.get("feature_mask")
    if isinstance(mask, Tensor):
        keep = keep[mask.reshape(-1).long().to(keep.device)]
    if keep.numel() != original_input.reshape(-1).numel():
        raise ValueError(
            "token_removal_transform: the sample has one entry per token "
            f"({original_input.reshape(-1).numel()}) unless a 'feature_mask' maps tokens to "
            f"groups. Got {keep.numel()} entries."
        )
    return original_input.reshape(-1)[keep].view(original_input.shape[0], -1)


def baseline_token_transform(baseline_token_id: int) -> Callable[..., Tensor]:
    """A transform replacing absent tokens by ``baseline_token_id`` (e.g. ``[PAD]``).

    Returns
    -------
    callable
        ``transform(curr_sample (1, M), original_input (1, T), **kwargs) -> (1, T)``;
        a ``feature_mask`` keyword maps tokens to groups as in
        :func:`token_removal_transform`.
    """
    if isinstance(baseline_token_id, bool) or not isinstance(baseline_token_id, int):
        raise TypeError(
            "The 'baseline_token_id' parameter of baseline_token_transform must be an int. "
            f"Got {baseline_token_id!r}."
        )

    def transform(curr_sample: Tensor, original_input: Tensor, **kwargs: Any) -> Tensor:
        keep = torch.as_tensor(curr_sample).reshape(-1).bool().to(original_input.device)
        mask = kwargs.get("feature_mask")
        if isinstance(mask, Tensor):
            keep = keep[mask.reshape(-1).long().to(keep.device)]
        keep = keep.view(original_input.shape)
        return torch.where(keep, original_input, torch.full_like(original_input, baseline_token_id))

    return transform
