"""Shared array logic for every view: conversion, layout, sign handling, normalisation.

Nothing here imports matplotlib at module level; the colormap helper imports
``matplotlib.colors`` lazily (never ``matplotlib.pyplot``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

SIGNS: tuple[str, ...] = ("all", "positive", "negative", "absolute_value")
IMAGE_METHODS: tuple[str, ...] = (
    "heat_map",
    "blended_heat_map",
    "original_image",
    "masked_image",
    "alpha_scaling",
)
TIMESERIES_METHODS: tuple[str, ...] = ("overlay_individual", "overlay_combined", "colored_graph")

# A trailing/leading axis of at most this size is taken to be a colour channel axis.
_MAX_CHANNELS = 4

# Diverging palette shared by image ("all" sign), text chips and bar charts, so a
# colour means the same thing in every view: red = negative, white = 0, green = positive.
NEG_RGB: tuple[float, float, float] = (0.84, 0.15, 0.16)
POS_RGB: tuple[float, float, float] = (0.17, 0.63, 0.17)


def check_choice(value: Any, choices: Sequence[str], param: str, func: str) -> str:
    """Return ``value`` if it is one of ``choices``; raise a ValueError naming ``param`` otherwise."""
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(
        f"The '{param}' parameter of {func} must be one of {list(choices)}. Got {value!r}."
    )


def is_tensor(x: Any) -> bool:
    """True if ``x`` is a ``torch.Tensor`` (without importing torch when it is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str, func: str, *, dtype: Any = np.float64) -> np.ndarray:
    """Convert a tensor (any device, any float dtype), array or nested sequence to numpy.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray or sequence of numbers
        The value to convert. Gradients are detached and the data moved to the CPU.
    name, func : str
        Parameter and function names used in the error message.
    dtype : numpy dtype, optional
        Output dtype. ``None`` keeps the input dtype (used for images).

    Returns
    -------
    numpy.ndarray
    """
    if is_tensor(x):
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"The '{name}' parameter of {func} must be real-valued, got complex.")
        # bfloat16/float16 have no (or lossy) numpy equivalents; widen first.
        if t.is_floating_point() and t.dtype not in (
            _torch_dtype("float32"),
            _torch_dtype("float64"),
        ):
            t = t.float()
        arr = t.cpu().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple)) or np.isscalar(x):
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"The '{name}' parameter of {func} must be a torch.Tensor or numpy.ndarray; "
                f"could not convert the given {type(x).__name__}: {exc}"
            ) from exc
    else:
        raise TypeError(
            f"The '{name}' parameter of {func} must be a torch.Tensor or numpy.ndarray. "
            f"Got {type(x).__name__}."
        )
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(
            f"The '{name}' parameter of {func} must hold numbers. Got dtype {arr.dtype}."
        )
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def _torch_dtype(name: str) -> Any:
    return getattr(sys.modules["torch"], name)


def to_scalar(x: Any) -> Any:
    """Turn 0-d/1-element tensors and arrays into Python numbers; leave other values alone."""
    if is_tensor(x):
        if x.numel() == 1:
            return x.detach().cpu().reshape(()).item()
        return x
    if isinstance(x, np.ndarray) and x.size == 1:
        return x.reshape(()).item()
    if isinstance(x, np.generic):
        return x.item()
    return x


def finite(arr: np.ndarray, name: str) -> np.ndarray:
    """Replace NaN/inf by 0 with a warning, so a single bad value does not blank a plot."""
    mask = ~np.isfinite(arr)
    if mask.any():
        warnings.warn(
            f"{name} contains {int(mask.sum())} non-finite value(s); they are shown as 0.",
            RuntimeWarning,
            stacklevel=3,
        )
        arr = np.where(mask, 0.0, arr)
    return arr


def _is_channel_axis(size: int) -> bool:
    return 1 <= size <= _MAX_CHANNELS


def to_hwc(arr: np.ndarray, name: str, func: str) -> np.ndarray:
    """Bring an image-like array to ``(H, W)`` or ``(H, W, C)``.

    Accepts ``(H, W)``, ``(H, W, C)``, ``(C, H, W)`` and the same with a leading batch
    dimension of 1. The channel axis is recognised by its size (1 to 4); when both ends
    could be channels (e.g. ``(3, 3, 3)``) channels-last is assumed, as Captum does.

    Parameters
    ----------
    arr : numpy.ndarray
        Image or attribution map.
    name, func : str
        Used in error messages.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)`` or ``(H, W, C)``.
    """
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(
                f"The '{name}' parameter of {func} has a batch dimension of {arr.shape[0]}; "
                f"pass a single example (batch size 1). Got shape {tuple(arr.shape)}."
            )
        arr = arr[0]
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3:
        raise ValueError(
            f"The '{name}' parameter of {func} must have shape (H, W), (H, W, C), (C, H, W) "
            f"or (1, C, H, W). Got shape {tuple(arr.shape)}."
        )
    if _is_channel_axis(arr.shape[-1]):
        return arr
    if _is_channel_axis(arr.shape[0]):
        return np.moveaxis(arr, 0, -1)
    # Neither end looks like colour channels (e.g. 64 feature maps): keep Captum's
    # channels-last convention; attributions are summed over that axis anyway.
    return arr


def match_layout(attr: np.ndarray, image: np.ndarray | None, func: str) -> np.ndarray:
    """Move ``attr``'s channel axis so its spatial shape matches ``image`` when that helps.

    Needed for square single-channel maps such as ``(1, H, W)`` vs ``(H, W, 3)``, and
    for maps whose channel count is not recognisable on its own.
    """
    if image is None or attr.ndim != 3:
        return attr
    hw = image.shape[:2]
    if attr.shape[:2] == hw:
        return attr
    if attr.shape[1:] == hw:
        return np.moveaxis(attr, 0, -1)
    return attr


def reduce_channels(attr: np.ndarray) -> np.ndarray:
    """Sum attributions over the channel axis: ``(H, W, C) -> (H, W)``."""
    return attr.sum(axis=2) if attr.ndim == 3 else attr


def apply_sign(attr: np.ndarray, sign: str) -> np.ndarray:
    """Keep the requested part of the attributions.

    ``positive`` keeps values > 0, ``negative`` keeps the magnitude of values < 0 (so the
    result is non-negative, ready for a 0..1 colormap), ``absolute_value`` takes ``|a|`` and
    ``all`` keeps everything.
    """
    if sign == "all":
        return attr
    if sign == "positive":
        return np.maximum(attr, 0.0)
    if sign == "negative":
        return -np.minimum(attr, 0.0)
    if sign == "absolute_value":
        return np.abs(attr)
    raise ValueError(f"The 'sign' parameter must be one of {list(SIGNS)}. Got {sign!r}.")


def outlier_threshold(magnitudes: np.ndarray, outlier_perc: float) -> float:
    """Scale value that leaves the top ``outlier_perc`` percent of total mass saturated.

    Sorts the non-negative ``magnitudes`` and returns the smallest value at which the
    running sum reaches ``(100 - outlier_perc)`` percent of the total. Returns 0.0 for
    an all-zero input (the caller then shows an empty map rather than failing).
    """
    flat = np.sort(magnitudes, axis=None)
    if flat.size == 0:
        return 0.0
    running = np.cumsum(flat)
    total = running[-1]
    if total <= 0:
        return 0.0
    idx = int(np.searchsorted(running, total * (100.0 - outlier_perc) / 100.0, side="left"))
    return float(flat[min(idx, flat.size - 1)])


def normalize_attr(
    attr: np.ndarray, sign: str, outlier_perc: float = 2, *, func: str = "normalize_attr"
) -> np.ndarray:
    """Sign-filter and scale attributions to ``[-1, 1]`` (sign ``all``) or ``[0, 1]``.

    Parameters
    ----------
    attr : numpy.ndarray
        Attributions of any shape (typically ``(H, W)`` or ``(C, N)``).
    sign : {"all", "positive", "negative", "absolute_value"}
        Which part of the attributions to keep (see :func:`apply_sign`).
    outlier_perc : float
        Percentage of total absolute attribution treated as outliers: the values making
        up the top ``outlier_perc`` percent saturate at 1.
    func : str
        Name of the public caller, for error messages.

    Returns
    -------
    numpy.ndarray
        Same shape as ``attr``; all zeros when ``attr`` is all zero (Captum asserts).
    """
    check_choice(sign, SIGNS, "sign", func)
    if isinstance(outlier_perc, bool) or not isinstance(outlier_perc, (int, float, np.number)):
        raise TypeError(
            f"The 'outlier_perc' parameter of {func} must be a number in [0, 100]. "
            f"Got {type(outlier_perc).__name__}."
        )
    if not 0 <= outlier_perc <= 100:
        raise ValueError(
            f"The 'outlier_perc' parameter of {func} must be between 0 and 100. Got {outlier_perc}."
        )
    kept = apply_sign(np.asarray(attr, dtype=np.float64), sign)
    scale = outlier_threshold(np.abs(kept), float(outlier_perc))
    if scale == 0.0:
        return np.zeros_like(kept)
    return np.clip(kept / scale, -1.0, 1.0)


def sign_colormap(sign: str) -> tuple[Any, float, float]:
    """Default ``(cmap, vmin, vmax)`` for a sign: Greens/Reds/Blues, or red-white-green."""
    if sign == "all":
        from matplotlib.colors import LinearSegmentedColormap

        cmap = LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])
        return cmap, -1.0, 1.0
    return {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign], 0.0, 1.0


def get_cmap(cmap: Any) -> Any:
    """Resolve a colormap name or object; uses the registry present on every matplotlib >= 3.5."""
    import matplotlib

    if isinstance(cmap, str):
        return matplotlib.colormaps[cmap]
    return cmap


def prepare_image(image: np.ndarray) -> np.ndarray:
    """Convert an image to displayable ``uint8``.

    Floats in ``[0, 1]`` are scaled by 255; data already in ``[0, 255]`` is clipped.
    Images with negative values (e.g. ImageNet-normalised tensors) are min-max
    rescaled so they remain recognisable. A single channel axis is dropped.
    """
    img = np.asarray(image, dtype=np.float64)
    img = np.where(np.isfinite(img), img, 0.0)
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if lo < 0:
        img = (img - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(img)
    elif hi <= 1.0:
        img = img * 255.0
    out = np.clip(np.trunc(img), 0, 255).astype(np.uint8)  # truncation, as Captum
    if out.ndim == 3 and out.shape[2] == 1:
        out = out[:, :, 0]
    return out


def diverging_rgb(value: float) -> tuple[float, float, float]:
    """Colour for a value in ``[-1, 1]``: red (negative) - white (0) - green (positive)."""
    v = max(-1.0, min(1.0, float(value)))
    end = POS_RGB if v >= 0 else NEG_RGB
    t = abs(v)
    r, g, b = (1.0 + (c - 1.0) * t for c in end)
    return (r, g, b)


def max_abs(values: np.ndarray) -> float:
    """Largest absolute value (0.0 for an empty array)."""
    return float(np.max(np.abs(values))) if values.size else 0.0
