"""Sliding windows over one example (Occlusion): compact starts, masks built on demand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..validation import ParameterError
from ._shape import as_shape

__all__ = ["SlidingWindows", "sliding_window_masks"]


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
    window = as_shape(window_shape, ndim, "window_shape", fn)
    stride = as_shape(1 if strides is None else strides, ndim, "strides", fn)
    counts = []
    for d, (size, w, s) in enumerate(zip(shape, window, stride)):
        if w < 1 or w > size:
            raise ParameterError(
                f"The 'window_shape' parameter of {fn} must be between 1 and the input size "
                f"in every dimension. Got {window} for input shape {shape} (dimension {d}).",
                parameter="window_shape",
            )
        if s < 1:
            raise ParameterError(
                f"The 'strides' parameter of {fn} must be >= 1. Got {stride}.", parameter="strides"
            )
        if s > w and size != w:
            raise ParameterError(
                f"The 'strides' parameter of {fn} cannot exceed the window in dimension {d} "
                f"(stride {s} > window {w}), or some elements would never be occluded.",
                parameter="strides",
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
