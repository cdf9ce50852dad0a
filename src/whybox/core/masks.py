"""Feature masks, sliding windows, superpixels and coalitions.

Shared by every perturbation method (feature ablation, occlusion, Shapley sampling,
LIME, KernelSHAP). Conventions:

* A *feature mask* is an integer tensor (or a tuple of them, one per input) whose
  values are feature ids ``0..M-1`` and which broadcasts to its input
  (``(batch or 1, ...)``).
* A *coalition* is a boolean row of length ``M``: ``True`` keeps the feature's
  original value, ``False`` replaces it with the baseline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .inputs import broadcasts_to

__all__ = [
    "SlidingWindows",
    "sliding_window_masks",
    "relabel_contiguous",
    "grid_superpixels",
    "superpixels",
    "FeatureGroups",
    "feature_groups",
    "validate_feature_mask",
    "num_features",
    "coalitions_to_input_masks",
    "enumerate_coalitions",
    "sample_permutations",
    "shapley_kernel_weight",
    "Coalitions",
    "kernel_shap_coalitions",
]

_MAX_ENUMERATE = 30  # 2**30 rows of bool would already be ~30 GB


def _as_shape(value: int | Sequence[int], ndim: int, name: str, fn: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ValueError(f"The '{name}' parameter of {fn} must be an int or a tuple of ints.")
    if isinstance(value, int):
        return (value,) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise ValueError(
            f"The '{name}' parameter of {fn} must have {ndim} entries (one per input "
            f"dimension). Got {len(out)}: {tuple(value)}."
        )
    return out


# ---------------------------------------------------------------------------
# Sliding windows (Occlusion)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SlidingWindows:
    """Compact description of all occlusion windows over one input.

    Each window is stored by its start offsets only; full-size masks are built on
    demand for the windows of one batch (:meth:`masks`). The window grid is separable,
    so the per-element coverage count is an outer product (:meth:`coverage`).

    Attributes
    ----------
    input_shape : tuple of int
        Shape of one example (no batch dimension).
    window_shape, strides : tuple of int
    counts : tuple of int
        Number of window positions along each dimension,
        ``ceil((size - window) / stride) + 1`` (as Captum's Occlusion): the last window
        may stick out of the input and is then clipped, so every element is covered.
    starts : Tensor, shape (n_windows, ndim), long
        Start offset of each window. Window ``i`` is Captum's feature ``i``: the first
        dimension varies fastest.
    """

    input_shape: tuple[int, ...]
    window_shape: tuple[int, ...]
    strides: tuple[int, ...]
    counts: tuple[int, ...]
    starts: Tensor

    @property
    def n_windows(self) -> int:
        """Number of windows, ``prod(counts)``."""
        return self.starts.shape[0]

    def __len__(self) -> int:
        return self.n_windows

    def slices(self, index: int) -> tuple[slice, ...]:
        """Index of window ``index`` into one example, clipped to the input."""
        start = self.starts[index].tolist()
        return tuple(
            slice(s, min(s + w, size))
            for s, w, size in zip(start, self.window_shape, self.input_shape)
        )

    def dim_masks(self, dim: int, *, device: torch.device | str | None = None) -> Tensor:
        """Membership along one dimension, shape ``(counts[dim], input_shape[dim])``, bool."""
        pos = torch.arange(self.input_shape[dim], device=device)
        first = torch.arange(self.counts[dim], device=device) * self.strides[dim]
        return (pos >= first[:, None]) & (pos < first[:, None] + self.window_shape[dim])

    def masks(
        self,
        indices: Tensor | Sequence[int] | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Full boolean masks of some windows.

        Parameters
        ----------
        indices : Tensor or sequence of int, optional
            Window ids; default all (beware of memory for big inputs).
        device : keyword-only, optional

        Returns
        -------
        Tensor, shape (len(indices), *input_shape), bool
            ``True`` inside the window.
        """
        device = self.starts.device if device is None else device
        if indices is None:
            idx = torch.arange(self.n_windows, device=device)
        else:
            idx = torch.as_tensor(indices, dtype=torch.long, device=device).reshape(-1)
        starts = self.starts.to(device)[idx]  # (k, ndim)
        ndim = len(self.input_shape)
        out = torch.ones((idx.shape[0],) + (1,) * ndim, dtype=torch.bool, device=device)
        for d, size in enumerate(self.input_shape):
            pos = torch.arange(size, device=device)
            s = starts[:, d : d + 1]
            inside = (pos >= s) & (pos < s + self.window_shape[d])  # (k, size)
            view = [idx.shape[0]] + [1] * ndim
            view[d + 1] = size
            out = out & inside.reshape(view)  # separable: AND of per-dim memberships
        return out

    def coverage(self, *, device: torch.device | str | None = None) -> Tensor:
        """How many windows cover each element, shape ``input_shape``, long."""
        out = torch.ones((), dtype=torch.long, device=device)
        for d in range(len(self.input_shape)):
            per_dim = self.dim_masks(d, device=device).sum(dim=0)
            view = [1] * len(self.input_shape)
            view[d] = self.input_shape[d]
            out = out * per_dim.reshape(view)
        return out


def sliding_window_masks(
    input_shape: Sequence[int],
    window_shape: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
) -> SlidingWindows:
    """All positions of a sliding window over one example, Captum Occlusion semantics.

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one example, without the batch dimension.
    window_shape : int or sequence of int
        Window extent per dimension (an int applies to every dimension).
    strides : int or sequence of int, optional
        Step per dimension; default 1. A stride may exceed the window only along a
        dimension the window spans entirely (else elements would be skipped).

    Returns
    -------
    SlidingWindows
    """
    fn = "sliding_window_masks"
    shape = tuple(int(s) for s in input_shape)
    ndim = len(shape)
    window = _as_shape(window_shape, ndim, "window_shape", fn)
    stride = _as_shape(1 if strides is None else strides, ndim, "strides", fn)
    counts = []
    for d, (size, w, s) in enumerate(zip(shape, window, stride)):
        if w < 1 or w > size:
            raise ValueError(
                f"The 'window_shape' parameter of {fn} must be between 1 and the input size "
                f"in every dimension. Got {window} for input shape {shape} (dimension {d})."
            )
        if s < 1:
            raise ValueError(f"The 'strides' parameter of {fn} must be >= 1. Got {stride}.")
        if s > w and size != w:
            raise ValueError(
                f"The 'strides' parameter of {fn} cannot exceed the window in dimension {d} "
                f"(stride {s} > window {w}), or some elements would never be occluded."
            )
        counts.append(-(-(size - w) // s) + 1)  # ceil division
    # Mixed-radix decomposition of the window id, first dimension fastest (Captum order).
    ids = torch.arange(math.prod(counts))
    starts = []
    for c, s in zip(counts, stride):
        starts.append((ids % c) * s)
        ids = ids // c
    starts_t = torch.stack(starts, dim=1) if starts else torch.zeros(1, 0, dtype=torch.long)
    return SlidingWindows(shape, window, stride, tuple(counts), starts_t)


# ---------------------------------------------------------------------------
# Segmentations
# ---------------------------------------------------------------------------


def relabel_contiguous(segments: Tensor) -> tuple[Tensor, Tensor]:
    """Map arbitrary segment ids to ``0..K-1``, keeping their sorted order.

    Parameters
    ----------
    segments : Tensor, integer, any shape
        E.g. VOC class ids ``{0, 15, 255}``.

    Returns
    -------
    relabeled : Tensor, same shape, long
        ``relabeled == i`` where ``segments == mapping[i]``.
    mapping : Tensor, shape (K,)
        Original id of each new id, ascending; ``mapping[relabeled]`` equals ``segments``.
    """
    segments = torch.as_tensor(segments)
    if segments.is_floating_point() or segments.is_complex():
        raise ValueError(
            "The 'segments' parameter of relabel_contiguous must be an integer tensor. "
            f"Got dtype {segments.dtype}."
        )
    mapping, inverse = torch.unique(segments, sorted=True, return_inverse=True)
    return inverse.reshape(segments.shape).long(), mapping


def grid_superpixels(
    image_shape: Sequence[int], cell: int | Sequence[int], *, device: Any = None
) -> Tensor:
    """Square (or rectangular) grid segmentation.

    Parameters
    ----------
    image_shape : sequence of int
        ``(H, W)`` or any shape ending in ``H, W`` (e.g. ``(C, H, W)``).
    cell : int or (int, int)
        Cell height and width; edge cells may be smaller.
    device : keyword-only, optional

    Returns
    -------
    Tensor, shape (H, W), long
        Cell ids ``0..K-1`` in row-major order of the cells.
    """
    if len(image_shape) < 2:
        raise ValueError(
            "The 'image_shape' parameter of grid_superpixels must end with (H, W). "
            f"Got {tuple(image_shape)}."
        )
    h, w = int(image_shape[-2]), int(image_shape[-1])
    ch, cw = _as_shape(cell, 2, "cell", "grid_superpixels")
    if ch < 1 or cw < 1:
        raise ValueError(f"The 'cell' parameter of grid_superpixels must be >= 1. Got {cell}.")
    n_cols = -(-w // cw)
    rows = torch.arange(h, device=device) // ch
    cols = torch.arange(w, device=device) // cw
    return rows[:, None] * n_cols + cols[None, :]


def _import_skimage_segmentation() -> Any:
    try:
        import skimage.segmentation
    except ImportError as err:
        raise ImportError(
            "superpixels(method='slic' or 'quickshift') needs scikit-image. Install it with "
            "`pip install whybox[image]` (or `pip install scikit-image`), or use "
            "method='grid'."
        ) from err
    return skimage.segmentation


def superpixels(image: Tensor, method: str = "slic", **kwargs: Any) -> Tensor:
    """Segment an image into superpixels to use as a feature mask.

    Parameters
    ----------
    image : Tensor, shape (H, W), (C, H, W) or (1, C, H, W)
        Channel-first image, as fed to the model.
    method : {"slic", "quickshift", "grid"}
        ``"slic"`` / ``"quickshift"`` call ``skimage.segmentation`` (optional
        dependency, ``whybox[image]``); ``"grid"`` needs ``cell=...``.
    **kwargs
        Passed to the segmentation function (e.g. ``n_segments``, ``compactness``,
        ``kernel_size``, ``max_dist``, ``cell``).

    Returns
    -------
    Tensor, shape (H, W), long, on the image's device
        Segment ids ``0..K-1``. Use ``mask[None, None]`` to broadcast over
        ``(N, C, H, W)`` inputs.
    """
    image = torch.as_tensor(image)
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() not in (2, 3):
        raise ValueError(
            "The 'image' parameter of superpixels must have shape (H, W), (C, H, W) or "
            f"(1, C, H, W). Got {tuple(image.shape)}."
        )
    if method == "grid":
        if "cell" not in kwargs:
            raise ValueError("superpixels(method='grid') needs the 'cell' keyword argument.")
        return grid_superpixels(image.shape, kwargs["cell"], device=image.device)
    if method not in ("slic", "quickshift"):
        raise ValueError(
            "The 'method' parameter of superpixels must be 'slic', 'quickshift' or 'grid'. "
            f"Got {method!r}."
        )
    seg = _import_skimage_segmentation()
    array = image.detach().to("cpu", torch.float64)
    if array.dim() == 3:
        array = array.permute(1, 2, 0)  # skimage wants channels last
    np_img = array.numpy()
    if method == "slic":
        if np_img.ndim == 3 and np_img.shape[-1] == 1:
            np_img = np_img[..., 0]
        opts = {"start_label": 0, "channel_axis": -1 if np_img.ndim == 3 else None}
        opts.update(kwargs)
        labels = seg.slic(np_img, **opts)
    else:
        # quickshift works in a 3-channel (Lab) space: replicate gray images.
        if np_img.ndim == 2:
            np_img = np_img[..., None]
        if np_img.shape[-1] == 1:
            np_img = np_img.repeat(3, axis=-1)
        if np_img.shape[-1] != 3:
            raise ValueError(
                "superpixels(method='quickshift') needs a 1- or 3-channel image. "
                f"Got {np_img.shape[-1]} channels."
            )
        labels = seg.quickshift(np_img, **kwargs)
    relabeled, _ = relabel_contiguous(torch.as_tensor(labels).long())
    return relabeled.to(image.device)


# ---------------------------------------------------------------------------
# Feature masks
# ---------------------------------------------------------------------------


def _as_tuple(value: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (value,) if isinstance(value, Tensor) else tuple(value)


def validate_feature_mask(
    feature_mask: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor] | None = None,
    *,
    name: str = "feature_mask",
) -> tuple[Tensor, ...]:
    """Check that feature masks are integer tensors that broadcast to their inputs.

    Parameters
    ----------
    feature_mask : Tensor or sequence of Tensor
        One mask per input.
    inputs : Tensor or sequence of Tensor, optional
        The (batched) inputs, or shapes; when given, each mask must broadcast to its
        input and the counts must agree.
    name : str, keyword-only
        Parameter name used in error messages.

    Returns
    -------
    tuple of Tensor
        The masks (unchanged) as a tuple.
    """
    masks = _as_tuple(feature_mask)
    for i, m in enumerate(masks):
        where = f"'{name}'" if len(masks) == 1 else f"'{name}[{i}]'"
        if not isinstance(m, Tensor):
            raise ValueError(f"{where} must be a torch.Tensor. Got {type(m).__name__}.")
        if m.dtype == torch.bool or m.is_floating_point() or m.is_complex():
            raise ValueError(
                f"{where} must be an integer tensor of feature ids (e.g. torch.long). "
                f"Got dtype {m.dtype}."
            )
    if inputs is not None:
        inps = _as_tuple(inputs)
        if len(inps) != len(masks):
            raise ValueError(
                f"'{name}' must have one mask per input: got {len(masks)} mask(s) for "
                f"{len(inps)} input(s)."
            )
        for i, (m, x) in enumerate(zip(masks, inps)):
            shape = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
            if not broadcasts_to(tuple(m.shape), shape):
                where = f"'{name}'" if len(masks) == 1 else f"'{name}[{i}]'"
                raise ValueError(
                    f"{where} of shape {tuple(m.shape)} does not broadcast to the input of "
                    f"shape {shape}."
                )
    return masks


def num_features(feature_mask: Tensor | Sequence[Tensor]) -> int:
    """Number of interpretable features, ``max(feature id) + 1`` over all masks."""
    masks = validate_feature_mask(feature_mask)
    maxima = [int(m.max()) for m in masks if m.numel()]
    return max(maxima) + 1 if maxima else 0


@dataclass(frozen=True)
class FeatureGroups:
    """Feature masks with per-feature index lists, computed once by a single sort.

    Attributes
    ----------
    masks : tuple of Tensor
        The validated masks, long.
    n_features : int
        ``max id + 1`` (ids absent from every mask are allowed and have empty groups).
    """

    masks: tuple[Tensor, ...]
    n_features: int
    _indices: tuple[tuple[Tensor, ...], ...]

    def indices(self, feature: int) -> tuple[Tensor, ...]:
        """Flat positions of ``feature`` in each mask (``mask.reshape(-1)[pos]``)."""
        return tuple(per_mask[feature] for per_mask in self._indices)

    def sizes(self) -> Tensor:
        """Number of mask elements per feature, shape (n_features,), summed over masks."""
        total = torch.zeros(self.n_features, dtype=torch.long)
        for m in self.masks:
            total += torch.bincount(m.reshape(-1).cpu(), minlength=self.n_features)
        return total

    def present(self) -> Tensor:
        """Which ids occur in some mask, shape (n_features,), bool."""
        return self.sizes() > 0

    def tensors_of(self, feature: int) -> list[int]:
        """Indices of the masks (inputs) that contain ``feature``."""
        return [i for i, pos in enumerate(self.indices(feature)) if pos.numel() > 0]


def feature_groups(
    feature_mask: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor] | None = None,
) -> FeatureGroups:
    """Group mask positions by feature id.

    Parameters
    ----------
    feature_mask : Tensor or sequence of Tensor
        Non-negative integer ids (shift negative masks first, as Captum does with a
        warning).
    inputs : optional
        Inputs the masks must broadcast to (see :func:`validate_feature_mask`).

    Returns
    -------
    FeatureGroups
    """
    masks = tuple(m.long() for m in validate_feature_mask(feature_mask, inputs))
    for m in masks:
        if m.numel() and int(m.min()) < 0:
            raise ValueError(
                "'feature_mask' must contain non-negative feature ids. "
                f"Got minimum {int(m.min())}; subtract it first."
            )
    n = num_features(masks)
    per_mask = []
    for m in masks:
        flat = m.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=n).tolist() if flat.numel() else [0] * n
        per_mask.append(tuple(torch.split(order, counts)))
    return FeatureGroups(masks, n, tuple(per_mask))


def coalitions_to_input_masks(
    coalitions: Tensor, feature_mask: Tensor | Sequence[Tensor]
) -> tuple[Tensor, ...]:
    """Expand coalitions over interpretable features to element-wise keep-masks.

    Parameters
    ----------
    coalitions : Tensor, shape (k, M), bool or 0/1
    feature_mask : Tensor or sequence of Tensor
        Ids in ``0..M-1``, shapes ``S_i``.

    Returns
    -------
    tuple of Tensor, shapes (k, *S_i), bool
        ``True`` where the original input is kept. Combine as
        ``keep * x + ~keep * baseline`` (with ``S_i`` broadcasting to the input).
    """
    coal = torch.as_tensor(coalitions).bool()
    if coal.dim() == 1:
        coal = coal.unsqueeze(0)
    masks = validate_feature_mask(feature_mask)
    return tuple(coal[:, m.to(coal.device).long()] for m in masks)


# ---------------------------------------------------------------------------
# Coalitions and permutations
# ---------------------------------------------------------------------------


def _check_n_features(n_features: int, fn: str, *, minimum: int = 1) -> int:
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < minimum:
        raise ValueError(
            f"The 'n_features' parameter of {fn} must be an int >= {minimum}. Got {n_features!r}."
        )
    return n_features


def enumerate_coalitions(n_features: int, *, device: Any = None) -> Tensor:
    """All ``2**M`` coalitions.

    Parameters
    ----------
    n_features : int
        ``M``, at most 30.
    device : keyword-only, optional

    Returns
    -------
    Tensor, shape (2**M, M), bool
        Row ``i`` contains feature ``j`` iff bit ``j`` of ``i`` is set (row 0 is empty,
        the last row is full).
    """
    m = _check_n_features(n_features, "enumerate_coalitions", minimum=0)
    if m > _MAX_ENUMERATE:
        raise ValueError(
            f"enumerate_coalitions: 2**{m} coalitions do not fit in memory; use "
            "kernel_shap_coalitions or sample_permutations to sample instead."
        )
    rows = torch.arange(2**m, device=device)
    bits = 2 ** torch.arange(m, device=device)
    return (rows[:, None] & bits[None, :]) != 0


def sample_permutations(
    n_features: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    *,
    device: Any = None,
) -> Tensor:
    """Uniformly random feature orderings (Shapley value sampling).

    Parameters
    ----------
    n_features : int
    n_samples : int
    generator : torch.Generator, optional
        For reproducibility; must be on ``device`` (CPU by default).
    device : keyword-only, optional

    Returns
    -------
    Tensor, shape (n_samples, n_features), long
        Each row a permutation of ``0..n_features-1``.
    """
    m = _check_n_features(n_features, "sample_permutations")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(
            "The 'n_samples' parameter of sample_permutations must be an int >= 0. "
            f"Got {n_samples!r}."
        )
    keys = torch.rand(n_samples, m, generator=generator, device=device)
    return torch.argsort(keys, dim=1)


def shapley_kernel_weight(n_features: int, sizes: Tensor | int) -> Tensor:
    """Shapley kernel ``(M-1) / (C(M, s) * s * (M-s))`` for coalition sizes ``s``.

    Sizes 0 and ``M`` get ``inf``: those coalitions are constraints, not samples.

    Returns
    -------
    Tensor, float64, shape of ``sizes``
    """
    m = _check_n_features(n_features, "shapley_kernel_weight")
    s = torch.as_tensor(sizes).long()
    if bool(((s < 0) | (s > m)).any()):
        raise ValueError(
            f"The 'sizes' parameter of shapley_kernel_weight must lie in [0, {m}]. Got {sizes}."
        )
    # Exact integer binomials (float64 lookup table), so weights are exact to rounding.
    table = [math.inf] + [(m - 1) / (math.comb(m, k) * k * (m - k)) for k in range(1, m)]
    table.append(math.inf)
    return torch.tensor(table, dtype=torch.float64)[s.cpu()]


class Coalitions(NamedTuple):
    """Output of :func:`kernel_shap_coalitions`.

    Attributes
    ----------
    masks : Tensor, shape (n, M), bool
        Coalitions; neither the empty nor the full one is included.
    weights : Tensor, shape (n,), float64
        Shapley-kernel regression weights. Enumerated rows get the exact kernel
        weight; sampled rows share the kernel mass of the sizes not enumerated
        (duplicates are merged and their weights added). Whenever some budget is left
        for sampling (or everything is enumerated) the weights sum to the total kernel
        mass ``sum_{s=1}^{M-1} (M-1) / (s (M-s))``.
    n_enumerated : int
        The first ``n_enumerated`` rows are exhaustive enumerations of whole sizes.
    """

    masks: Tensor
    weights: Tensor
    n_enumerated: int


def _combinations_mask(m: int, size: int) -> Tensor:
    """All coalitions of exactly ``size`` features, shape (C(m, size), m), bool.

    Built from ``itertools.combinations`` (``torch.combinations`` materializes an
    ``m**size`` grid). Only called for sizes whose count fits the sample budget.
    """
    idx = torch.tensor(list(itertools.combinations(range(m), size)), dtype=torch.long)
    out = torch.zeros(idx.shape[0], m, dtype=torch.bool)
    if size > 0:
        out.scatter_(1, idx, True)
    return out


def kernel_shap_coalitions(
    n_features: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    *,
    paired: bool = True,
) -> Coalitions:
    """Coalitions and Shapley-kernel weights for KernelSHAP.

    Strategy (the standard KernelSHAP one): coalition sizes are taken in pairs
    ``(s, M - s)`` from the smallest ``s``, which carry the most kernel mass. A size
    pair is enumerated exhaustively when its share of the remaining budget, in
    proportion to its kernel mass, covers all its coalitions; the remaining budget is
    then drawn at random from the sizes left (size pair with probability proportional
    to its kernel mass, members uniformly), as antithetic pairs ``(z, ~z)`` when
    ``paired``, which cancels the even part of the sampling error.

    If ``n_samples >= 2**M - 2`` every proper non-empty coalition is enumerated with its
    exact weight; with :func:`~whybox.core.surrogate.solve_constrained_wls` this gives
    the exact Shapley values.

    Parameters
    ----------
    n_features : int
        ``M >= 1``.
    n_samples : int
        Budget of coalitions (model evaluations), excluding the empty and full ones.
    generator : torch.Generator, optional
        CPU generator for reproducible sampling.
    paired : bool, keyword-only
        Antithetic sampling; sampled rows ``2i`` and ``2i+1`` (after the enumerated
        ones) are complements. Default True.

    Returns
    -------
    Coalitions
        ``masks`` has at most ``n_samples`` rows (fewer when sampled duplicates merge).
    """
    m = _check_n_features(n_features, "kernel_shap_coalitions")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(
            "The 'n_samples' parameter of kernel_shap_coalitions must be an int >= 0. "
            f"Got {n_samples!r}."
        )
    empty = Coalitions(torch.zeros(0, m, dtype=torch.bool), torch.zeros(0, dtype=torch.float64), 0)
    if m == 1 or n_samples == 0:
        return empty

    sizes = torch.arange(1, m, dtype=torch.float64)
    mass = (m - 1) / (sizes * (m - sizes))  # kernel mass of each size s = 1..M-1
    total_mass = float(mass.sum())

    def mass_of(s: int) -> float:
        return float(mass[s - 1])

    # Size "groups": {s, M-s} when paired (one group when s == M-s), else {s}.
    if paired:
        groups = [(s, m - s) if s != m - s else (s,) for s in range(1, m // 2 + 1)]
    else:
        groups = [(s,) for s in range(1, m)]
        groups.sort(key=lambda g: min(g[0], m - g[0]))  # most massive sizes first

    blocks: list[Tensor] = []
    weights: list[Tensor] = []
    budget = n_samples
    remaining_mass = total_mass
    left = list(groups)
    exhaustive = n_samples >= 2**m - 2
    while left:
        g = left[0]
        g_count = sum(math.comb(m, s) for s in g)
        g_mass = sum(mass_of(s) for s in g)
        if not (exhaustive or budget * g_mass / remaining_mass >= g_count - 1e-9):
            break
        for s in g:
            rows = _combinations_mask(m, s)
            blocks.append(rows)
            w_s = mass_of(s) / math.comb(m, s)
            weights.append(torch.full((rows.shape[0],), w_s, dtype=torch.float64))
        budget -= g_count
        remaining_mass -= g_mass
        left.pop(0)
    n_enum = sum(b.shape[0] for b in blocks)

    if left and budget > 0:
        g_masses = torch.tensor([sum(mass_of(s) for s in g) for g in left], dtype=torch.float64)
        n_draws = budget // 2 if paired else budget
        if n_draws > 0:
            pick = torch.multinomial(g_masses, n_draws, replacement=True, generator=generator)
            if paired:
                # Draw the smaller size of the pair; the complement provides the other one.
                draw_size = torch.tensor([min(g) for g in left])[pick]
            else:
                draw_size = torch.tensor([g[0] for g in left])[pick]
            keys = torch.rand(n_draws, m, generator=generator, dtype=torch.float64)
            ranks = torch.argsort(torch.argsort(keys, dim=1), dim=1)
            first = ranks < draw_size[:, None]  # uniform subset of the drawn size
            if paired:
                # Canonical orientation for the self-complementary size M/2 so that a pair
                # and its mirror image merge as duplicates.
                flip = (draw_size * 2 == m) & ~first[:, 0]
                first = torch.where(flip[:, None], ~first, first)
            uniq, counts = torch.unique(first, dim=0, return_counts=True)
            # Merge duplicate draws (rows come back sorted, which keeps runs reproducible).
            per_draw_w = remaining_mass / (n_draws * (2 if paired else 1))
            w = counts.to(torch.float64) * per_draw_w
            if paired:
                rows = torch.stack([uniq, ~uniq], dim=1).reshape(-1, m)
                w = w.repeat_interleave(2)
            else:
                rows = uniq
            blocks.append(rows)
            weights.append(w)

    if not blocks:
        return empty
    masks = torch.cat(blocks)
    w_all = torch.cat(weights).to(torch.float64)
    return Coalitions(masks, w_all, n_enum)
