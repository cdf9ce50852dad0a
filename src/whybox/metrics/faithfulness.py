"""Faithfulness: does removing what the attribution calls important change the output?

* :func:`deletion` / :func:`insertion` (Petsiuk et al., RISE, 2018; pixel flipping, Bach
  et al., 2015): remove (or insert, starting from the baseline) features in attribution
  order, MoRF (most relevant first), LeRF (least relevant first) or a random order, and
  record the output after each step; the score is the area under the curve;
* :func:`aopc` (Samek et al., 2017): mean output drop ``f(x) - f(x^(k))`` over the steps;
* :func:`faithfulness_correlation` (Bhatt et al., 2020): Pearson correlation, over random
  feature subsets, between the attributions' sum on a subset and the output drop when
  that subset is removed;
* :func:`road` (Rong et al., "A Consistent and Efficient Evaluation Strategy for
  Attribution Methods", ICML 2022): deletion where removed pixels are filled by noisy
  linear imputation from their neighbours, so the removal itself leaks no shape.

Every curve runs as one lazy table of ``N * (n_steps + 1)`` rows through the engine's
chunked evaluator (rows built per chunk from integer ranks by one ``torch.where``), on the
inputs' device. Features are single elements, or the groups of a ``feature_mask`` (ids
``0..M-1``, shared by all examples ``(1, ...)`` or per example ``(N, ...)``), ranked by
the sum of their attributions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.chunks import ChunkSize
from whybox.core.forward import RowBatch, evaluate
from whybox.core.inputs import prepare_baselines
from whybox.core.perturbation import expand_to_elements, prepare_masks
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.validation import check_choice, check_int, check_real, fail
from whybox.metrics._views import MetricViews

from ._common import (
    argsort_rows,
    as_tensors,
    check_like,
    counts_for,
    fractions_grid,
    pearson,
    predicted_class,
    rows2d,
)

__all__ = [
    "CurveResult",
    "CorrelationResult",
    "deletion",
    "insertion",
    "aopc",
    "faithfulness_correlation",
    "road",
    "noisy_linear_impute",
]

ORDERS = ("morf", "lerf", "random")


@dataclass(frozen=True)
class CurveResult(MetricViews):
    """A score per example and the curve it summarises.

    Attributes
    ----------
    score : Tensor, shape ``(N,)``
        Area under the curve (deletion, insertion, ROAD) or mean output drop (AOPC).
    curve : Tensor, shape ``(N, n_steps + 1)``
        The model's selected output (ROAD with ``measure="accuracy"``: 1.0 where the
        prediction is the target) after removing / inserting each fraction of features.
    fractions : Tensor, shape ``(n_steps + 1,)``
        The fraction of features removed / inserted at each point (the curve's x axis).
    name : str
        ``"deletion"``, ``"insertion"``, ``"aopc"`` or ``"road"``.
    order : str
        ``"morf"``, ``"lerf"`` or ``"random"``.
    """

    score: Tensor
    curve: Tensor
    fractions: Tensor
    name: str
    order: str

    @property
    def mean_curve(self) -> Tensor:
        """``(n_steps + 1,)``: the curve averaged over examples."""
        return self.curve.mean(dim=0)


@dataclass(frozen=True)
class CorrelationResult(MetricViews):
    """Faithfulness correlation per example and the points behind it.

    Attributes
    ----------
    score : Tensor, shape ``(N,)``
        Pearson correlation (``NaN`` when either side is constant).
    attribution_sums : Tensor, shape ``(N, n_samples)``
        Sum of the attributions over each random subset (a scatter plot's x).
    output_drops : Tensor, shape ``(N, n_samples)``
        ``f(x) - f(x with the subset removed)`` (its y).
    """

    score: Tensor
    attribution_sums: Tensor
    output_drops: Tensor


# -- public metrics ------------------------------------------------------------------------
def deletion(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    feature_mask: Any = None,
    n_steps: int = 20,
    order: str = "morf",
    seed: int | torch.Generator | RandomSource | None = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> CurveResult:
    """Deletion curve: remove features (set them to the baseline) in attribution order.

    Parameters
    ----------
    model : callable
    inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
    attributions : Tensor, tuple/dict of Tensor or Explanation, shaped like ``inputs``
    baselines : optional
        What a removed feature becomes (``None``: zeros; a number, a shared or
        per-example tensor, one per input).
    target, forward_args : optional
        As for the attribution methods.
    feature_mask : Tensor or tuple of Tensor, optional
        Feature ids ``0..M-1`` per element (broadcastable to each input); ``None``: every
        element is a feature. Features are ranked by the sum of their attributions.
    n_steps : int
        Points after the start: fractions ``0, 1/n_steps, ..., 1`` of the features.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a random order (a reference
        curve; drawn from ``seed``).
    seed : optional
        Source of the random order.
    chunk_size : int, "auto" or None
        Rows per model call; never changes the result.
    show_progress : bool

    Returns
    -------
    CurveResult
        ``score``: the area under the curve (``(N,)``; low is faithful for MoRF).
    """
    return _removal(
        "deletion",
        model,
        inputs,
        attributions,
        baselines,
        target,
        forward_args,
        feature_mask,
        n_steps,
        order,
        seed,
        chunk_size,
        show_progress,
        insert=False,
    )


def insertion(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    feature_mask: Any = None,
    n_steps: int = 20,
    order: str = "morf",
    seed: int | torch.Generator | RandomSource | None = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> CurveResult:
    """Insertion curve: start from the baseline and put features back in attribution order.

    Parameters and returns as :func:`deletion` (high area is faithful for MoRF; pass a
    blurred copy of the images as per-example ``baselines`` for RISE's insertion).
    """
    return _removal(
        "insertion",
        model,
        inputs,
        attributions,
        baselines,
        target,
        forward_args,
        feature_mask,
        n_steps,
        order,
        seed,
        chunk_size,
        show_progress,
        insert=True,
    )


def aopc(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    feature_mask: Any = None,
    n_steps: int = 20,
    order: str = "morf",
    seed: int | torch.Generator | RandomSource | None = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> CurveResult:
    """Area over the perturbation curve: ``mean_{k=0..n_steps} f(x) - f(x^(k))``.

    Parameters as :func:`deletion`. ``score`` is the AOPC (``(N,)``; high is faithful for
    MoRF); ``curve`` is the deletion curve it comes from.
    """
    result = _removal(
        "aopc",
        model,
        inputs,
        attributions,
        baselines,
        target,
        forward_args,
        feature_mask,
        n_steps,
        order,
        seed,
        chunk_size,
        show_progress,
        insert=False,
    )
    drops = result.curve[:, :1] - result.curve
    return CurveResult(drops.mean(dim=1), result.curve, result.fractions, "aopc", order)


def faithfulness_correlation(
    model: Callable[..., Any],
    inputs: Any,
    attributions: Any,
    *,
    baselines: Any = None,
    target: Any = None,
    forward_args: Any = None,
    feature_mask: Any = None,
    subset_size: int | None = None,
    n_samples: int = 50,
    seed: int | torch.Generator | RandomSource | None = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> CorrelationResult:
    """Correlation between attribution sums and output drops over random feature subsets.

    Parameters
    ----------
    model, inputs, attributions, baselines, target, forward_args, feature_mask
        As for :func:`deletion`.
    subset_size : int, optional
        Features per random subset (``None``: a tenth of the features, at least 1).
    n_samples : int
        Random subsets per example (>= 2).
    seed : optional
        Source of the subsets (one ``(N, M)`` draw per sample, so the chunk size never
        changes them).
    chunk_size : int, "auto" or None
    show_progress : bool

    Returns
    -------
    CorrelationResult
        ``score`` of shape ``(N,)`` and the ``(N, n_samples)`` points behind it.
    """
    owner = "faithfulness_correlation"
    check_int(owner, "n_samples", n_samples, minimum=2)
    check_int(owner, "subset_size", subset_size, minimum=1, allow_none=True)
    check_seed(owner, "seed", seed)
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
    call, scores, masks = setup.call, setup.scores, setup.masks
    batch, n_features = scores.shape
    if batch == 0:
        empty = scores.new_zeros(0, n_samples)
        return CorrelationResult(empty.sum(dim=1), empty, empty)
    size = subset_size if subset_size is not None else max(1, round(0.1 * n_features))
    if size > n_features:
        fail(owner, "subset_size", f"an int <= the number of features ({n_features})", size)
    random = make_random(seed)
    device = scores.device
    subsets: list[Tensor] = []

    def build(start: int, stop: int) -> RowBatch:
        # one item = one subset for every example (N rows, sample-major)
        drawn = []
        for _ in range(start, stop):
            keys = torch.rand(batch, n_features, generator=random.generator)
            chosen = torch.zeros(batch, n_features, dtype=torch.bool)
            chosen.scatter_(1, keys.topk(size, dim=1).indices, True)
            drawn.append(chosen.to(device))
        removed_features = torch.cat(drawn, dim=0)  # (k * N, M)
        subsets.append(removed_features)
        index = torch.arange(batch, device=device).repeat(stop - start)
        removed = expand_to_elements(removed_features, masks, call.tensors)
        rows = tuple(
            torch.where(r, _rows_of(b, index, batch), x.index_select(0, index))
            for x, b, r in zip(call.tensors, setup.baselines, removed)
        )
        return RowBatch(rows, index)

    outputs = _run(call, n_samples, build, rows_per_item=batch, description=owner)
    removed_all = torch.cat(subsets, dim=0).reshape(n_samples, batch, n_features)
    sums = (removed_all.to(scores.dtype) * scores.unsqueeze(0)).sum(dim=2).T  # (N, S)
    original = _original(call)
    drops = original.unsqueeze(1) - outputs.reshape(n_samples, batch).T
    return CorrelationResult(pearson(sums, drops), sums, drops)


def road(
    model: Callable[..., Any],
    inputs: Tensor,
    attributions: Any,
    *,
    target: Any = None,
    forward_args: Any = None,
    n_steps: int = 10,
    order: str = "morf",
    measure: str = "output",
    noise_std: float = 0.01,
    solver: str = "auto",
    max_iterations: int | None = None,
    seed: int | torch.Generator | RandomSource | None = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> CurveResult:
    """ROAD: remove pixels in attribution order, filling them by noisy linear imputation.

    Each removed pixel becomes the weighted mean of its 8 neighbours (direct ones weigh
    1/6, diagonal ones 1/12; Rong et al.'s weights), solved jointly for all removed
    pixels of an image (an exact solve on the CPU, batched conjugate gradients elsewhere:
    see :func:`noisy_linear_impute`), plus Gaussian noise.

    Parameters
    ----------
    model : callable
    inputs : Tensor, shape ``(N, C, H, W)``
    attributions : Tensor ``(N, C, H, W)`` (or an Explanation of it)
        Pixels are ranked by their attributions summed over channels.
    target, forward_args : optional
    n_steps : int
        Points after the start (fractions ``0 .. 1`` of the pixels).
    order : {"morf", "lerf", "random"}
    measure : {"output", "accuracy"}
        Record the selected output, or whether the predicted class (argmax) is still
        the target (then ``target`` must give one class per example).
    noise_std : float
        Standard deviation of the noise added to imputed values (one field per example,
        drawn from ``seed``).
    solver : {"auto", "direct", "cg"}
        How the imputation's linear system is solved (see :func:`noisy_linear_impute`).
    max_iterations : int, optional
        Conjugate-gradient iterations per solve with ``solver="cg"`` (``None``:
        ``20 * (H + W)``).
    seed, chunk_size, show_progress
        As for :func:`deletion`.

    Returns
    -------
    CurveResult
        ``score``: the area under the curve (``(N,)``).
    """
    owner = "road"
    check_choice(owner, "measure", measure, ("output", "accuracy"))
    check_real(owner, "noise_std", noise_std, minimum=0.0)
    check_choice(owner, "solver", solver, SOLVERS)
    check_int(owner, "max_iterations", max_iterations, minimum=1, allow_none=True)
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        fail(owner, "inputs", "an image tensor of shape (N, C, H, W)", inputs)
    _, channels, height, width = inputs.shape
    pixels = torch.arange(height * width, device=inputs.device).view(1, 1, height, width)
    random = make_random(seed)
    noise = torch.randn(tuple(inputs.shape), generator=random.generator)
    noise = (noise * noise_std).to(device=inputs.device, dtype=_float_dtype(inputs))

    def fill(rows: Tensor, removed: Tensor, index: Tensor) -> Tensor:
        return noisy_linear_impute(
            rows,
            removed[:, :1],
            noise=noise.index_select(0, index),
            solver=solver,
            max_iterations=max_iterations,
        )

    return _removal(
        owner,
        model,
        inputs,
        attributions,
        None,
        target,
        forward_args,
        pixels,
        n_steps,
        order,
        random,
        chunk_size,
        show_progress,
        insert=False,
        fill=fill,
        measure=measure,
    )


SOLVERS = ("auto", "direct", "cg")

#: the 8 neighbours of a pixel and their weights (Rong et al.: 1/6 direct, 1/12 diagonal)
_NEIGHBOURS = tuple(
    (di, dj, 1 / 12 if di and dj else 1 / 6) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj
)


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    *,
    noise: Tensor | None = None,
    solver: str = "auto",
    max_iterations: int | None = None,
    tolerance: float = 1e-6,
) -> Tensor:
    """Fill removed pixels with the weighted mean of their neighbours (plus noise).

    Solves, per image and channel, ``d_i u_i - sum_j w_ij u_j = sum_k w_ik x_k`` for the
    removed pixels ``i`` (``j`` removed and ``k`` kept neighbours, ``w`` 1/6 for direct and
    1/12 for diagonal neighbours, ``d_i`` the in-image weight sum): the harmonic fill Rong
    et al.'s ROAD (and Quantus' ``noisy_linear_imputation``) uses. The system is symmetric
    positive definite unless every pixel of an image is removed; such an image has no
    information left and its pixels become 0 (plus noise).

    Parameters
    ----------
    images : Tensor, shape ``(R, C, H, W)``
    removed : Tensor, bool, shape ``(R, 1, H, W)`` or ``(R, C, H, W)``
        ``(R, 1, H, W)``: one mask per image, shared by its channels (one factorisation
        serves all channels).
    noise : Tensor, optional
        Added to the imputed pixels (broadcastable to ``images``).
    solver : {"auto", "direct", "cg"}, keyword-only
        ``"direct"``: exact to round-off in float64, on the host: for images whose
        shorter side is at most 128 pixels, LAPACK's banded Cholesky per (image, mask)
        when threadpoolctl can hold BLAS to one thread; else one sparse LU factorisation
        (SciPy's SuperLU, symmetric mode, the unknowns in a geometric nested-dissection
        order computed once per image size) of the block-diagonal system of all images.
        ``"cg"``: batched conjugate gradients in torch on the images' device, to
        ``tolerance``. ``"auto"``: ``"direct"`` for CPU tensors when SciPy is
        importable (measured several times faster on one CPU thread, see
        ``benchmarks/metrics.py``), else ``"cg"``.
    max_iterations : int, optional, keyword-only
        Conjugate-gradient iterations at most (``None``: ``20 * (H + W)``); a solve that
        has not reached ``tolerance`` by then raises instead of returning a rough fill.
    tolerance : float, keyword-only
        ``"cg"`` stops when every residual is below ``tolerance`` times its right-hand
        side (the default gives values within about 1e-4 of the exact solve in float32).

    Returns
    -------
    Tensor, shape ``(R, C, H, W)``
        ``images`` with removed pixels imputed (kept pixels are returned unchanged).
    """
    owner = "noisy_linear_impute"
    check_choice(owner, "solver", solver, SOLVERS)
    check_int(owner, "max_iterations", max_iterations, minimum=1, allow_none=True)
    check_real(owner, "tolerance", tolerance, minimum=0.0)
    if not isinstance(images, Tensor) or images.dim() != 4:
        fail(owner, "images", "an image tensor of shape (R, C, H, W)", images)
    rows, channels, height, width = images.shape
    if (
        not isinstance(removed, Tensor)
        or removed.dim() != 4
        or removed.shape[0] != rows
        or removed.shape[1] not in (1, channels)
        or tuple(removed.shape[2:]) != (height, width)
    ):
        fail(
            owner,
            "removed",
            f"a boolean tensor (R, 1 or C, H, W) = ({rows}, 1 or {channels}, {height}, {width})",
            removed,
        )
    removed = removed.to(device=images.device, dtype=torch.bool)
    if solver == "auto":
        solver = "direct" if images.device.type == "cpu" and _have_scipy() else "cg"
    if solver == "direct":
        imputed = _direct_impute(images, removed, noise)
        if imputed is not None:
            return imputed
        filled = _direct_fill(images, removed)
    else:
        filled = _cg_fill(images, removed, max_iterations or 20 * (height + width), tolerance)
    if noise is not None:
        filled = filled + noise
    mask = removed.expand(rows, channels, height, width)
    return torch.where(mask, filled.to(images.dtype), images)


def _have_scipy() -> bool:
    try:
        import scipy.sparse.linalg  # noqa: F401
    except ImportError:
        return False
    return True


#: unknowns per sparse factorisation: images are grouped into block-diagonal systems up to
#: this size (one SuperLU call for many small images)
_DIRECT_BLOCK = 16384

#: largest box of pixels the nested dissection leaves in row-major order (measured on
#: 224x224 masks: 4 factorises ~10% faster than 64 and ~2x faster than SuperLU's own
#: minimum-degree ordering)
_DISSECTION_LEAF = 4

#: images whose shorter side is at most this are solved by banded Cholesky (measured on
#: 28 masks, one thread: ~2x faster than the sparse LU at 32-96 px, even at 128 px, slower
#: at 224 px, where the band is wide and nested dissection pays)
_BANDED_MAX_SIDE = 128

#: SuperLU's supernode relaxation and panel size (keyword arguments of ``splu``; measured
#: ~15-20% faster factorisations than its defaults on 32x32 and 224x224 masks, one thread)
_SUPERLU_TUNING: dict[str, int] = {"relax": 1, "panel_size": 4}


def _direct_fill(images: Tensor, removed: Tensor) -> Tensor:
    """The exact harmonic fill (float64), each (image, mask) group solved for all channels
    sharing the mask at once: banded Cholesky per group for narrow images (see
    :func:`_banded_fill`), else sparse LU of block-diagonal systems of groups."""
    import numpy as np

    rows, channels, height, width = images.shape
    masks = removed.shape[1]
    groups, per = rows * masks, channels // masks
    pixels = height * width
    x = images.detach().to("cpu", torch.float64).reshape(groups, per, pixels).numpy()
    rem = removed.detach().cpu().reshape(groups, pixels).numpy()
    rem = rem & ~rem.all(axis=1, keepdims=True)  # nothing kept: no equation pins the fill
    out = np.zeros((groups, per, pixels))
    limit = _blas_single_thread() if min(height, width) <= _BANDED_MAX_SIDE else None
    if limit is not None:
        with limit():
            _banded_fill(x, rem, out, height, width)
        filled = torch.from_numpy(out).reshape(rows, masks, per, height, width)
        return filled.reshape(rows, channels, height, width).to(images.device)
    counts = rem.sum(axis=1)
    start = 0
    while start < groups:
        stop, total = start + 1, int(counts[start])
        while stop < groups and total + int(counts[stop]) <= _DIRECT_BLOCK:
            total += int(counts[stop])
            stop += 1
        if total:
            _direct_block(x[start:stop], rem[start:stop], out[start:stop], height, width)
        start = stop
    filled = torch.from_numpy(out).reshape(rows, masks, per, height, width)
    return filled.reshape(rows, channels, height, width).to(images.device)


def _direct_impute(images: Tensor, removed: Tensor, noise: Tensor | None) -> Tensor | None:
    """:func:`noisy_linear_impute`'s result by the banded route, or ``None`` where that route
    does not apply (a side over :data:`_BANDED_MAX_SIDE`, or BLAS cannot be held to one
    thread). The same numbers as :func:`_direct_fill` followed by the noise and
    ``torch.where``, but only the removed entries are computed, moved and written: the fill
    comes back in mask order (:func:`_banded_values`) and is put in place by one
    ``index_copy_`` (measured: the dense float64 fill, its noise sum and ``torch.where``
    took ~0.3 ms of the ~6 ms imputation of a 32x32 ROAD call, this ~0.1 ms)."""
    import numpy as np

    rows, channels, height, width = images.shape
    if noise is not None and (not isinstance(noise, Tensor) or noise.dim() > 4):
        return None  # left to the dense route's broadcasting
    limit = _blas_single_thread() if min(height, width) <= _BANDED_MAX_SIDE else None
    if limit is None:
        return None
    masks = removed.shape[1]
    groups, per = rows * masks, channels // masks
    pixels = height * width
    x = images.detach().to("cpu", torch.float64).reshape(groups, per, pixels).numpy()
    rem = removed.detach().cpu().reshape(groups, pixels).numpy()
    with limit():
        values = _banded_values(x, rem, height, width)
    # the flat (R, C, H, W) positions of the removed entries, in mask (row-major) order
    where = np.flatnonzero(np.broadcast_to(rem[:, None], (groups, per, pixels)))
    where_t = torch.from_numpy(where).to(images.device)
    filled = torch.from_numpy(values).to(images.device)
    if noise is not None:  # float64 + noise, as the dense route's ``filled + noise``
        full = noise.to(images.device).expand(rows, channels, height, width)
        filled = filled + full.reshape(-1).index_select(0, where_t)
    out = images.clone(memory_format=torch.contiguous_format)
    out.view(-1).index_copy_(0, where_t, filled.to(images.dtype))
    return out


@functools.lru_cache(maxsize=16)
def _dissection_order(height: int, width: int) -> Any:
    """``(H * W,)`` int64: the grid's pixels in geometric nested-dissection order.

    A box of pixels is split across its longer side by one line of pixels (with 8
    neighbours a full line separates the two halves); each half is ordered the same way,
    then the line. Any mask's unknowns taken in this order are still ordered by nested
    dissection (dropping known pixels keeps every separator a separator), so the order is
    computed once per image size and serves every mask, channel and percentage.
    """
    import numpy as np

    parts: list[Any] = []
    # an explicit stack of boxes (i0, i1, j0, j1); a separator is queued as a ready part,
    # and the later of the halves is pushed first so the earlier is ordered first
    stack: list[Any] = [(0, height, 0, width)]
    while stack:
        item = stack.pop()
        if not isinstance(item, tuple):
            parts.append(item)
            continue
        i0, i1, j0, j1 = item
        if i1 <= i0 or j1 <= j0:
            continue
        if (i1 - i0) * (j1 - j0) <= _DISSECTION_LEAF:
            box = np.arange(i0, i1)[:, None] * width + np.arange(j0, j1)[None, :]
            parts.append(box.reshape(-1))
        elif i1 - i0 >= j1 - j0:
            m = (i0 + i1) // 2
            separator = m * width + np.arange(j0, j1)
            stack.extend([separator, (m + 1, i1, j0, j1), (i0, m, j0, j1)])
        else:
            m = (j0 + j1) // 2
            separator = np.arange(i0, i1) * width + m
            stack.extend([separator, (i0, i1, m + 1, j1), (i0, i1, j0, m)])
    order = np.concatenate(parts).astype(np.int64)
    order.flags.writeable = False  # shared by every call
    return order


@functools.lru_cache(maxsize=16)
def _grid_degree(height: int, width: int) -> Any:
    """``(H * W,)`` float64: each pixel's summed in-image neighbour weights."""
    import numpy as np

    degree = np.zeros((height, width))
    for di, dj, weight in _NEIGHBOURS:
        degree[max(0, -di) : height - max(0, di), max(0, -dj) : width - max(0, dj)] += weight
    degree = degree.reshape(-1)
    degree.flags.writeable = False  # shared by every call
    return degree


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (made once: ~1 ms), or
    ``None`` when SciPy or threadpoolctl is missing."""
    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS before it is looked up)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _blas_single_thread() -> Callable[[], Any] | None:
    """A factory of contexts holding BLAS to one thread, or ``None`` when that cannot be
    done. Banded factorisations this narrow are too small for BLAS threads to pay:
    measured, two OpenBLAS threads spent ~6x the CPU time of one on 32x32 masks; without
    the limit the sparse LU (which is not sensitive to it) is used instead. The limit is
    process-wide while it holds, as threadpoolctl's limits are."""
    controller = _blas_controller()
    if controller is None:
        return None
    return lambda: controller.limit(limits=1, user_api="blas")


def _known_sums(x: Any, rem: Any, height: int, width: int) -> Any:
    """``(G, per, H * W)``: each pixel's weighted sum of its kept in-image neighbours
    (the right-hand side of its equation), by shifted slices of a zero-padded grid."""
    import numpy as np

    groups, per, pixels = x.shape
    kept = x.reshape(groups, per, height, width) * ~rem.reshape(groups, 1, height, width)
    grid = np.zeros((groups, per, height + 2, width + 2))
    grid[:, :, 1:-1, 1:-1] = kept
    total = np.zeros((groups, per, height, width))
    for di, dj, weight in _NEIGHBOURS:
        total += weight * grid[:, :, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width]
    return total.reshape(groups, per, pixels)


#: the neighbours after a pixel in row-major order: the upper triangle of the system
_LATER_NEIGHBOURS = ((0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


def _banded_fill(x: Any, rem: Any, out: Any, height: int, width: int) -> None:
    """Solve each group's system by LAPACK's banded Cholesky; writes the fill into ``out``
    (arguments as :func:`_direct_block`). :func:`_banded_values`, scattered."""
    import numpy as np

    values = _banded_values(x, rem, height, width)
    out[np.broadcast_to(rem[:, None], out.shape)] = values


def _banded_values(x: Any, removed: Any, height: int, width: int) -> Any:
    """The harmonic fill of every removed entry, in mask order, by banded Cholesky.

    ``x``: ``(G, per, H * W)`` float64, ``removed``: ``(G, H * W)`` bool. Returns float64
    ``(sum_g per * count_g,)``: group by group, channel by channel, the removed pixels
    row-major (the order of ``x[broadcast removed]``); a group with every pixel removed
    has no equation pinning its fill and gets 0.

    Each group's unknowns are numbered row-major along the image's longer side (the image
    transposed when it is taller than wide), so every neighbour pair is at most one
    short-side line apart: the band is the number of unknowns in one line, plus one. All
    groups' right-hand sides, neighbour pairs and band entries are built in one vectorised
    pass; the loop only solves (LAPACK's ``pbsv``, one factorisation for all channels of a
    group, on a band written into one scratch buffer reused across groups). The band
    holds the same entries, in the same order, as one matrix per group built alone, so the
    numbers are those of ``solveh_banded`` on it, to the bit.
    """
    import numpy as np

    groups, per, pixels = x.shape
    counts = np.count_nonzero(removed, axis=1)
    offsets = np.zeros(groups + 1, dtype=np.int64)  # each group's slice of the result
    np.cumsum(counts * per, out=offsets[1:])
    values = np.zeros(int(offsets[-1]))
    solvable = np.flatnonzero((counts > 0) & (counts < pixels))
    if solvable.size == 0:
        return values
    if height > width:  # the stencil is symmetric under transposition
        shape = (groups, per, pixels)
        flipped = np.zeros(shape)
        xt = x.reshape(groups, per, height, width).transpose(0, 1, 3, 2).reshape(shape)
        rt = removed.reshape(groups, height, width).transpose(0, 2, 1).reshape(groups, pixels)
        flipped[np.broadcast_to(rt[:, None], shape)] = _banded_values(xt, rt, width, height)
        flipped = flipped.reshape(groups, per, width, height).transpose(0, 1, 3, 2)
        return flipped.reshape(shape)[np.broadcast_to(removed[:, None], shape)]
    systems = solvable.size
    if systems < groups:
        x, rem, sizes_n = x[solvable], removed[solvable], counts[solvable]
    else:
        rem, sizes_n = removed, counts
    flat = np.flatnonzero(rem)  # every system's unknowns, system-major, row-major within
    n = flat.size
    group, pixel = np.divmod(flat, pixels)
    starts = np.zeros(systems + 1, dtype=np.int64)
    np.cumsum(sizes_n, out=starts[1:])
    local = np.arange(n)
    local -= starts[group]  # the unknown's number in its system
    # right-hand sides: each unknown's weighted sum of its kept in-image neighbours, by
    # shifted slices of zero-padded grids (channel-major), summed in _NEIGHBOURS' order
    # from the first term on (the products as weight * kept value, as _known_sums)
    hp, wp = height + 2, width + 2
    grid = np.zeros((per, systems, hp, wp))
    np.multiply(
        x.reshape(systems, per, height, width).transpose(1, 0, 2, 3),
        ~rem.reshape(systems, height, width),
        out=grid[:, :, 1:-1, 1:-1],
    )
    scaled = {1 / 6: grid * (1 / 6)}
    scaled[1 / 12] = np.multiply(grid, 1 / 12, out=grid)
    terms = [
        scaled[weight][:, :, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width]
        for di, dj, weight in _NEIGHBOURS
    ]
    total = np.add(terms[0], terms[1])
    for term in terms[2:]:
        total += term
    rhs = total.reshape(per, systems * pixels)[:, flat]
    rhs += 0.0  # -0.0 (all terms -0.0) to +0.0, as a sum started from zeros gives
    # band entries: the 4 later neighbours' gaps (0: kept or outside) and the diagonal,
    # from the unknowns' numbers on a grid padded by -1 (one flat offset per neighbour)
    position = np.full(systems * hp * wp, -1, dtype=np.int64)
    at = group * (hp * wp) + (pixel // width + 1) * wp + (pixel % width + 1)
    position[at] = local
    steps = np.array([di * wp + dj for di, dj, _ in _LATER_NEIGHBOURS])
    gaps = position[at[:, None] + steps]
    gaps -= local[:, None]
    np.maximum(gaps, 0, out=gaps)
    bands = np.maximum.reduceat(gaps.reshape(-1), 4 * starts[:-1])
    # LAPACK's upper band storage, column-major: A[i, j] (i <= j) at j * (band + 1) +
    # band + i - j; the pair (p, p + gap) at diagonal(p) + gap * band
    band_of = bands[group]
    diagonal = local * (band_of + 1)
    diagonal += band_of
    gaps *= band_of[:, None]
    gaps += diagonal[:, None]  # a missing neighbour lands on the diagonal, written after
    weights = np.array([-weight for _, _, weight in _LATER_NEIGHBOURS])
    pair_values = np.broadcast_to(weights, gaps.shape)
    degree = _grid_degree(height, width)[pixel]
    sizes = (bands + 1) * sizes_n
    scratch = np.empty(int(sizes.max()))
    pbsv = _pbsv()
    bounds, widths, lengths = starts.tolist(), bands.tolist(), sizes.tolist()
    slots, owners = offsets.tolist(), solvable.tolist()
    for k in range(systems):
        lo, hi, band, g = bounds[k], bounds[k + 1], widths[k], owners[k]
        m = hi - lo
        storage = scratch[: lengths[k]]
        storage.fill(0.0)
        storage[gaps[lo:hi]] = pair_values[lo:hi]
        storage[diagonal[lo:hi]] = degree[lo:hi]
        ab = storage.reshape(m, band + 1).T  # Fortran-ordered: LAPACK takes it as it is
        block = values[slots[g] : slots[g + 1]].reshape(per, m)
        block[...] = rhs[:, lo:hi]
        b = block.T  # Fortran-ordered (m, per): solved in place
        if band >= 2:  # _banded_solve's direct call: lower=0, ldab, overwrite ab and b
            _, solution, info = pbsv(ab, b, 0, band + 1, 1, 1)
            if info != 0:
                from scipy.linalg import LinAlgError

                raise LinAlgError(
                    f"noisy_linear_impute: the banded system is not positive definite ({info})"
                )
        else:
            solution = _banded_solve(ab, b)
        if solution is not b:
            b[...] = solution
    return values


def _banded_solve(ab: Any, rhs: Any) -> Any:
    """``solveh_banded(ab, rhs)`` (upper form; ``ab`` and ``rhs`` are scratch): LAPACK's
    ``pbsv``, which it calls for bands wider than one, called directly, without its Python
    layers (validation, batching, a look-up of the routine; ~20 us a call, a few percent of
    a 32x32 ROAD call's 28 solves). Tridiagonal systems (``ptsv``) keep the wrapper."""
    import numpy as np

    if ab.shape[0] <= 2 or ab.dtype != np.float64 or rhs.dtype != np.float64:
        from scipy.linalg import solveh_banded

        return solveh_banded(ab, rhs, check_finite=False)
    _, solution, info = _pbsv()(ab, rhs, lower=0, overwrite_ab=1, overwrite_b=0)
    if info != 0:
        from scipy.linalg import LinAlgError

        raise LinAlgError(
            f"noisy_linear_impute: the banded system is not positive definite ({info})"
        )
    return solution


@functools.lru_cache(maxsize=1)
def _pbsv() -> Any:
    """LAPACK's double-precision banded Cholesky solver (looked up once)."""
    from scipy.linalg import lapack

    return lapack.dpbsv


def _direct_block(x: Any, rem: Any, out: Any, height: int, width: int) -> None:
    """Assemble and solve one block-diagonal system; writes the fill into ``out``.

    ``x``: ``(G, per, H * W)`` float64 values, ``rem``: ``(G, H * W)`` removed pixels (no
    group entirely removed), ``out``: ``(G, per, H * W)``, written in place. The unknowns
    are numbered in nested-dissection order (:func:`_dissection_order`), which SuperLU
    keeps (``NATURAL``): its own minimum-degree ordering costs more than it saves here.
    """
    import numpy as np

    try:
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import splu
    except ImportError:
        fail("noisy_linear_impute", "solver", "'cg' (solver='direct' needs SciPy)", "direct")
    groups, per, pixels = x.shape
    order = _dissection_order(height, width)
    # unknowns group by group, each group's in dissection order (row-major nonzero)
    group, rank = np.nonzero(rem[:, order])
    pixel = order[rank]
    n = group.size
    # variable numbers on a grid padded by one pixel (-1: known or outside), so every
    # neighbour is one flat offset away and needs no bounds check
    padded_w = width + 2
    cells = (height + 2) * padded_w
    pi, pj = np.divmod(pixel, width)
    at = group * cells + (pi + 1) * padded_w + (pj + 1)
    position = np.full(groups * cells, -1, dtype=np.int64)
    position[at] = np.arange(n)
    rhs = _known_sums(x, rem, height, width)[group, :, pixel]  # (n, per)
    rows_, cols_, values_ = [np.arange(n)], [np.arange(n)], [_grid_degree(height, width)[pixel]]
    for di, dj, weight in _NEIGHBOURS:
        neighbour = position[at + (di * padded_w + dj)]
        unknown = np.flatnonzero(neighbour >= 0)
        rows_.append(unknown)
        cols_.append(neighbour[unknown])
        values_.append(np.full(unknown.size, -weight))
    system = csc_matrix(
        (np.concatenate(values_), (np.concatenate(rows_), np.concatenate(cols_))), shape=(n, n)
    )
    # symmetric positive definite: no pivoting, the dissection order as it is
    factor = splu(
        system,
        permc_spec="NATURAL",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
        **_SUPERLU_TUNING,
    )
    out[group, :, pixel] = factor.solve(rhs)


def _cg_fill(images: Tensor, removed: Tensor, max_iterations: int, tolerance: float) -> Tensor:
    """The harmonic fill by batched conjugate gradients on the images' device."""
    rows, channels, height, width = images.shape
    dtype = _float_dtype(images)
    x = images.to(dtype).reshape(rows * channels, 1, height, width)
    m = removed.expand(rows, channels, height, width).reshape(rows * channels, 1, height, width)
    m = m.to(dtype)
    kernel = torch.tensor(
        [[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]],
        dtype=dtype,
        device=images.device,
    ).view(1, 1, 3, 3)

    def neighbours(u: Tensor) -> Tensor:
        return F.conv2d(u, kernel, padding=1)  # zero padding drops out-of-image neighbours

    degree = neighbours(torch.ones(1, 1, height, width, dtype=dtype, device=images.device))

    def operator(u: Tensor) -> Tensor:
        return m * (degree * u - neighbours(m * u))

    rhs = m * neighbours((1 - m) * x)
    # start from a coarse-to-fine estimate: CG then mostly removes high frequencies
    u = m * _push_pull(x * (1 - m), 1 - m)
    r = rhs - operator(u)
    p = r.clone()
    rs = r.square().sum(dim=(1, 2, 3), keepdim=True)
    bound = (tolerance * rhs.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()).square()
    converged = bool((rs <= bound).all())
    for step in range(max_iterations):
        if converged:
            break
        ap = operator(p)
        curvature = (p * ap).sum(dim=(1, 2, 3), keepdim=True)
        alpha = torch.where(curvature > 0, rs / torch.where(curvature > 0, curvature, 1), 0)
        u = u + alpha * p
        r = r - alpha * ap
        rs_next = r.square().sum(dim=(1, 2, 3), keepdim=True)
        # a host sync every 8 steps only: checking every step would stall the device
        if step % 8 == 7 or step == max_iterations - 1:
            converged = bool((rs_next <= bound).all())
        beta = torch.where(rs > 0, rs_next / torch.where(rs > 0, rs, 1), 0)
        p = r + beta * p
        rs = rs_next
    if not converged:
        worst = float((rs / bound.clamp_min(torch.finfo(dtype).tiny)).max().sqrt()) * tolerance
        raise RuntimeError(
            f"noisy_linear_impute: conjugate gradients reached a relative residual of "
            f"{worst:.1e}, not 'tolerance' = {tolerance:g}, within 'max_iterations' = "
            f"{max_iterations}; raise 'max_iterations' or use solver='direct'"
        )
    return u.reshape(rows, channels, height, width)


def _push_pull(values: Tensor, known: Tensor) -> Tensor:
    """Fill unknown pixels by averaging known ones down an image pyramid and
    interpolating back up (``values`` and ``known`` ``(B, 1, H, W)``, ``known`` 0 / 1)."""
    height, width = values.shape[-2:]
    if height <= 1 and width <= 1:
        return values
    num = F.avg_pool2d(values * known, 2, ceil_mode=True)
    den = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    filled = _push_pull(coarse, (den > 0).to(values.dtype))
    up = F.interpolate(filled, size=(height, width), mode="bilinear", align_corners=False)
    return torch.where(known > 0, values, up)


# -- the shared engine ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Setup:
    call: Call
    scores: Tensor  # (N, M) attribution per feature
    masks: Any  # FlatMasks
    baselines: tuple[Tensor, ...]


def _setup(
    owner: str,
    model: Any,
    inputs: Any,
    attributions: Any,
    baselines: Any,
    target: Any,
    forward_args: Any,
    feature_mask: Any,
    chunk_size: ChunkSize,
    show_progress: bool,
) -> _Setup:
    call = prepare_call(
        owner,
        model,
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        show_progress=show_progress,
        require_float=False,
    )
    attrs = as_tensors(attributions, owner=owner, maps=True)
    check_like(owner, "attributions", attrs, call.tensors)
    base = prepare_baselines(baselines, call.inputs, owner=owner, allow_callable=False).tensors
    masks = prepare_masks(feature_mask, call.tensors, owner=owner)
    batch = call.batch_size
    dtype = _float_dtype(attrs[0])
    device = call.tensors[0].device  # the model's inputs' device, whatever the maps'
    if masks.starts is not None and all(a.shape[0] == batch for a in attrs):
        # every element its own feature, input i's ids the columns after input i - 1's:
        # the sums are the values themselves, joined; ``+ 0.0`` is what adding each into
        # zeros does (-0.0 becomes +0.0) and makes the table the metric's own
        parts = [rows2d(a).to(device=device, dtype=dtype) for a in attrs]
        scores = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)) + 0.0
        return _Setup(call, scores, masks, base)
    scores = torch.zeros(batch, masks.n_features, dtype=dtype, device=device)
    for a, ids in zip(attrs, masks.flat):
        ids = ids.to(device).expand(batch, ids.shape[1])
        scores.scatter_add_(1, ids, rows2d(a).to(device=device, dtype=dtype))
    return _Setup(call, scores, masks, base)


def _removal(
    name: str,
    model: Any,
    inputs: Any,
    attributions: Any,
    baselines: Any,
    target: Any,
    forward_args: Any,
    feature_mask: Any,
    n_steps: int,
    order: str,
    seed: Any,
    chunk_size: ChunkSize,
    show_progress: bool,
    *,
    insert: bool,
    fill: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    measure: str = "output",
) -> CurveResult:
    """One removal curve: ``N * (n_steps + 1)`` rows, example-major, built lazily."""
    check_int(name, "n_steps", n_steps, minimum=1)
    check_choice(name, "order", order, ORDERS)
    check_seed(name, "seed", seed)
    setup = _setup(
        name,
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
    fractions = fractions_grid(n_steps, device=device, dtype=scores.dtype)
    points = n_steps + 1
    if batch == 0:
        empty = scores.new_zeros(0, points)
        return CurveResult(empty.sum(dim=1), empty, fractions, name, order)
    ranks = _ranks(scores, order, seed)  # (N, M): 0 = first removed
    element_ranks = expand_to_elements(ranks, setup.masks, call.tensors)
    counts = counts_for(fractions, n_features).to(device)
    bitwise = [
        _bitwise_plan(x, b, er, counts, n_features, insert) if fill is None else None
        for x, b, er in zip(call.tensors, setup.baselines, element_ranks)
    ]

    def build(start: int, stop: int) -> RowBatch:
        # every point of the examples the chunk touches, by broadcasting (no per-row
        # gathers of ranks or inputs), then the chunk's rows sliced out
        first, last = start // points, (stop - 1) // points + 1  # (0, 0) for no rows
        low, high = start - first * points, stop - first * points
        # each row's example: the touched examples' ids, one per point (no division)
        index = torch.arange(first, last, device=device).repeat_interleave(points)[low:high]
        rows = []
        for x, b, er, plan in zip(call.tensors, setup.baselines, element_ranks, bitwise):
            if plan is not None:
                rows.append(_bitwise_rows(plan, first, last)[low:high])
                continue
            tail = (1,) * (x.dim() - 1)
            er_block = er[first:last].unsqueeze(1)
            step_counts = counts.view((1, points) + tail)
            x_block = x[first:last].unsqueeze(1)
            if fill is None and b.dim() == 0 and b.dtype == x.dtype and b.device == x.device:
                # one baseline value (the default zeros): fill the removed (deletion) or
                # not yet inserted elements of broadcast copies of the inputs; the same
                # values as torch.where's three-way broadcast, measured ~2x faster
                hidden = er_block >= step_counts if insert else er_block < step_counts
                block = x_block.masked_fill(hidden, b)
                rows.append(block.reshape((-1,) + block.shape[2:])[low:high])
                continue
            chosen = er_block < step_counts
            if fill is not None:
                block = chosen.shape
                x_rows = x_block.expand(block).reshape((-1,) + block[2:])[low:high]
                chosen = chosen.reshape((-1,) + block[2:])[low:high]
                rows.append(fill(x_rows, chosen, index))
                continue
            if b.dim() == x.dim():  # (N or 1, ...): per-example rows follow their examples
                b = (b[first:last] if b.shape[0] == batch else b).unsqueeze(1)
            block = torch.where(chosen, x_block, b) if insert else torch.where(chosen, b, x_block)
            rows.append(block.reshape((-1,) + block.shape[2:])[low:high])
        return RowBatch(tuple(rows), index)

    if measure == "accuracy":
        call, classes = _accuracy_call(call, name)
        values = _run(call, batch * points, build, rows_per_item=1, description=name)
        curve = (values.reshape(batch, points) == classes.unsqueeze(1)).to(scores.dtype)
    else:
        values = _run(call, batch * points, build, rows_per_item=1, description=name)
        curve = values.reshape(batch, points)
    score = torch.trapezoid(curve.to(fractions.dtype), fractions, dim=1)
    return CurveResult(score, curve, fractions, name, order)


#: the signed integer type of a float type's bits (the removal rows' bitwise fill)
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}
#: their exponent bits: all set in an inf or a NaN
_EXPONENT = {torch.float32: 0x7F800000, torch.float64: 0x7FF0000000000000}


@dataclass(frozen=True)
class _BitwisePlan:
    """One input's removal rows as bits: ``keep`` is all ones where an element keeps its
    value (``counts`` and ``ranks`` in the bits' integer type, arranged so that ``counts -
    ranks`` is negative exactly there) and the row is ``fill ^ ((x ^ fill) & keep)``."""

    x_bits: Tensor  # (N, ...) the inputs' bits
    ranks: Tensor  # (N, ...) each element's removal rank, as the bits' integer type
    counts: Tensor  # (1, points, 1, ...) per point, as the bits' integer type
    fill: int  # the baseline's bits
    shift: int  # bits per element - 1: the sign
    negate: bool  # ``ranks - counts`` (insertion) instead of ``counts - ranks``
    dtype: torch.dtype


def _bitwise_plan(
    x: Tensor, b: Tensor, ranks: Tensor, counts: Tensor, n_features: int, insert: bool
) -> _BitwisePlan | None:
    """The bitwise fill of one input's rows, where it gives masked_fill's bits.

    A shared 0-d finite baseline on the CPU, float32 / float64 inputs that need no
    gradient: every element is either the input's value or the baseline's, both copied bit
    for bit (what masked_fill writes, a finite float32 / float64 value exactly through its
    double), from integer subtractions, shifts and ands over the step rows (measured ~2x
    faster than a broadcast comparison and masked_fill for (256, 13, 12) rows).
    """
    ints = _BITS.get(x.dtype)
    if (
        ints is None
        or type(x) is not Tensor
        or x.requires_grad
        or x.device.type != "cpu"
        or b.dim() != 0
        or b.dtype != x.dtype
        or b.device != x.device
        or ranks.shape != x.shape
    ):
        return None
    width = torch.iinfo(ints).bits
    fill = int(b.detach().view(ints).item())
    exponent = _EXPONENT[x.dtype]
    if fill & exponent == exponent or n_features >= 2 ** (width - 1) - 1:
        # an inf or NaN baseline (masked_fill's NaN goes through a double), or ranks and
        # counts (at most n_features) that could overflow the bits' integer type
        return None
    # deletion keeps elements whose rank is at least the count: (count - 1) - rank < 0;
    # insertion keeps those below it: rank - count < 0
    steps = (counts if insert else counts - 1).to(ints)
    steps = steps.view((1, counts.shape[0]) + (1,) * (x.dim() - 1))
    return _BitwisePlan(
        x.detach().view(ints),
        ranks.to(ints),
        steps,
        fill,
        width - 1,
        insert,
        x.dtype,
    )


def _bitwise_rows(plan: _BitwisePlan, first: int, last: int) -> Tensor:
    """Every point's rows of examples ``first .. last - 1`` (example-major), flattened."""
    ranks = plan.ranks[first:last].unsqueeze(1)
    if plan.negate:
        keep = torch.sub(ranks, plan.counts)
    else:
        keep = torch.sub(plan.counts, ranks)
    keep >>= plan.shift  # all ones where negative (kept), else zeros
    x_bits = plan.x_bits[first:last].unsqueeze(1)
    if plan.fill == 0:
        keep &= x_bits
    else:
        keep &= x_bits ^ plan.fill
        keep ^= plan.fill
    block = keep.view(plan.dtype)
    return block.reshape((-1,) + tuple(block.shape[2:]))


def _ranks(scores: Tensor, order: str, seed: Any) -> Tensor:
    """``(N, M)`` removal rank of each feature (ties keep feature order: stable sort)."""
    if order == "random":
        random = make_random(seed)
        keys = torch.rand(scores.shape, generator=random.generator).to(scores.device)
        sequence = keys.argsort(dim=1)
    else:
        sequence = argsort_rows(scores, descending=order == "morf")
    ranks = torch.empty_like(sequence)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(sequence)
    return ranks.scatter_(1, sequence, positions)


def _run(
    call: Call,
    n_items: int,
    build: Callable[[int, int], RowBatch],
    *,
    rows_per_item: int,
    description: str,
) -> Tensor:
    """Selected outputs of every row, ``(n_items * rows_per_item,)``, through the engine."""
    parts: list[Tensor] = []

    def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
        if selected.dim() == 0 or selected.numel() != (stop - start) * rows_per_item:
            fail(
                call.owner,
                "model",
                "a model returning one value per example (after 'target' selection)",
                f"{selected.numel()} value(s) for {(stop - start) * rows_per_item} rows",
                raw=True,
            )
        parts.append(selected.reshape(-1))

    evaluate(
        call.evaluator,
        n_items=n_items,
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        auto=call.chunk_auto,
        rows_per_item=rows_per_item,
        progress=call.progress,
        description=description,
    )
    return torch.cat(parts)


def _original(call: Call) -> Tensor:
    batch = call.batch_size
    index = torch.arange(batch, device=call.tensors[0].device)

    def build(start: int, stop: int) -> RowBatch:
        return RowBatch(tuple(x[start:stop] for x in call.tensors), index[start:stop])

    return _run(call, batch, build, rows_per_item=1, description=call.owner)


def _accuracy_call(call: Call, owner: str) -> tuple[Call, Tensor]:
    """A call whose selected output is the predicted class, and the target classes."""
    from dataclasses import replace

    from whybox.core.forward import Evaluator
    from whybox.core.targets import prepare_target

    target = call.target
    batch = call.batch_size
    if target.kind == "index" and len(target.index) == 1:
        classes = torch.full((batch,), target.index[0], dtype=torch.long)
    elif target.kind == "per_example" and target.per_example.shape[1] == 1:
        classes = target.per_example[:, 0]
    else:
        fail(owner, "target", "one class index per example with measure='accuracy'", target.raw)
    argmax = prepare_target(
        lambda out: predicted_class(out, owner=owner, name="measure", value="accuracy"),
        batch,
        owner=owner,
    )
    evaluator = Evaluator(
        call.evaluator.forward_func, call.inputs.structure, call.extra, argmax, owner=owner
    )
    return replace(call, target=argmax, evaluator=evaluator), classes.to(call.tensors[0].device)


def _rows_of(value: Tensor, index: Tensor, batch: int) -> Tensor:
    """Rows ``index`` of a per-example tensor; a shared one (first dimension 1) broadcasts."""
    if value.dim() >= 1 and value.shape[0] == batch and batch != 1:
        return value.index_select(0, index)
    if value.dim() >= 1 and value.shape[0] == 1 and batch == 1:
        return value.expand((index.shape[0],) + tuple(value.shape[1:]))
    return value


def _float_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()
