"""Image segmentations used as feature masks: superpixels, grids, contiguous relabelling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._shape import as_shape

__all__ = ["relabel_contiguous", "grid_superpixels", "superpixels"]


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
    ch, cw = as_shape(cell, 2, "cell", "grid_superpixels")
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
