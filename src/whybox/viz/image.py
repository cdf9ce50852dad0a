"""Image attribution views: heat maps, blended overlays, masks and alpha scaling.

All functions accept tensors (any device) or numpy arrays, channels-first or
channels-last, with or without a batch dimension of 1. matplotlib is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from whybox.viz import _mpl
from whybox.viz._arrays import (
    IMAGE_METHODS,
    SIGNS,
    check_choice,
    finite,
    get_cmap,
    match_layout,
    normalize_attr,
    prepare_image,
    reduce_channels,
    sign_colormap,
    to_hwc,
    to_numpy,
)

_NEEDS_IMAGE = ("blended_heat_map", "original_image", "masked_image", "alpha_scaling")


def _load_image(original_image: Any, func: str) -> np.ndarray | None:
    if original_image is None:
        return None
    img = to_hwc(to_numpy(original_image, "original_image", func), "original_image", func)
    return prepare_image(img)


def _load_attr(attr: Any, image: np.ndarray | None, func: str) -> np.ndarray:
    arr = to_hwc(to_numpy(attr, "attr", func), "attr", func)
    arr = match_layout(arr, image, func)
    return finite(reduce_channels(arr), "attr")


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` view of a grey, RGB or RGBA image."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 2:  # grey + alpha
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image[:, :, :3]


def _grey_limits(grey: np.ndarray) -> dict[str, float]:
    """Colour limits of a grey image: autoscaled (its own min..max, as Captum) unless the
    image is constant, which is drawn at its true grey level instead of black."""
    if grey.size and float(grey.min()) == float(grey.max()):
        return {"vmin": 0.0, "vmax": 255.0}
    return {}


def render_image_attr(
    attr: Any,
    original_image: Any = None,
    *,
    method: str = "heat_map",
    sign: str = "absolute_value",
    ax: Any = None,
    outlier_perc: float = 2,
    cmap: Any = None,
    alpha_overlay: float = 0.5,
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6, 6),
    use_pyplot: bool = False,
    func: str = "render_image_attr",
) -> tuple[Any, Any]:
    """Draw one image attribution view and return ``(figure, axes)``.

    Parameters
    ----------
    attr : torch.Tensor or numpy.ndarray or None
        Attributions, shape ``(H, W)``, ``(H, W, C)``, ``(C, H, W)`` or ``(1, C, H, W)``.
        Channels are summed. May be ``None`` only with ``method="original_image"``.
    original_image : torch.Tensor or numpy.ndarray, optional
        Image of the same spatial size in any of the layouts above. Floats in ``[0, 1]``
        or values in ``[0, 255]``; normalised images with negative values are rescaled.
    method : {"heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling"}
        ``heat_map`` colours the normalised map; ``blended_heat_map`` overlays it with
        ``alpha_overlay`` on a grey copy of the image; ``original_image`` shows the image;
        ``masked_image`` multiplies the image by the map; ``alpha_scaling`` uses the map
        as the image's alpha channel.
    sign : {"all", "positive", "negative", "absolute_value"}
        Part of the attributions to show (``all`` is not allowed with masking methods).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created when omitted.
    outlier_perc : float
        Top percentage of total attribution mass that saturates the colour scale.
    cmap : str or matplotlib.colors.Colormap, optional
        Defaults to Greens/Reds/Blues for positive/negative/absolute_value and
        red-white-green for ``all``.
    alpha_overlay : float
        Heat-map opacity for ``blended_heat_map``.
    show_colorbar : bool
        Add a horizontal colorbar below (an empty slot for non-heat-map methods).
    title : str, optional
        Axes title.
    fig_size : tuple of float
        Size of a newly created figure, in inches.
    use_pyplot : bool
        Create the figure through pyplot (and show it on interactive backends).
    func : str
        Public function name for error messages.

    Returns
    -------
    tuple
        ``(figure, axes)``.
    """
    check_choice(method, IMAGE_METHODS, "method", func)
    check_choice(sign, SIGNS, "sign", func)
    if not 0.0 <= float(alpha_overlay) <= 1.0:
        raise ValueError(
            f"The 'alpha_overlay' parameter of {func} must be between 0 and 1. Got {alpha_overlay}."
        )
    if method in ("masked_image", "alpha_scaling") and sign == "all":
        raise ValueError(
            f"The 'sign' parameter of {func} cannot be 'all' with method={method!r}: a mask "
            "cannot show positive and negative values at once. Use 'positive', 'negative' "
            "or 'absolute_value'."
        )
    image = _load_image(original_image, func)
    if method in _NEEDS_IMAGE and image is None:
        raise ValueError(
            f"The 'original_image' parameter of {func} is required for method={method!r}; "
            "only 'heat_map' works without it."
        )
    norm = None
    if attr is not None:
        norm = normalize_attr(_load_attr(attr, image, func), sign, outlier_perc, func=func)
    elif method != "original_image":
        raise ValueError(
            f"The 'attr' parameter of {func} may be None only with method='original_image'."
        )
    if norm is not None and image is not None and norm.shape != image.shape[:2]:
        raise ValueError(
            f"The 'attr' and 'original_image' parameters of {func} must have the same height "
            f"and width. Got attr {norm.shape} and original_image {image.shape[:2]}."
        )

    if ax is None:
        fig, ax = _mpl.new_figure(fig_size, use_pyplot)
    else:
        ax = _mpl.first_axis(ax)
        fig = ax.figure
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)

    default_cmap, vmin, vmax = sign_colormap(sign)
    cmap = get_cmap(default_cmap if cmap is None else cmap)
    mappable = None
    if method == "heat_map":
        mappable = ax.imshow(norm, cmap=cmap, vmin=vmin, vmax=vmax)
    elif method == "blended_heat_map":
        grey = image.mean(axis=2) if image.ndim == 3 else image
        ax.imshow(grey, cmap="gray", **_grey_limits(grey))
        mappable = ax.imshow(norm, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha_overlay)
    elif method == "original_image":
        if image.ndim == 2:
            ax.imshow(image, cmap="gray", **_grey_limits(image))
        else:
            ax.imshow(image)
    elif method == "masked_image":
        masked = _rgb(image).astype(np.float64) * norm[:, :, None]
        ax.imshow(np.clip(np.trunc(masked), 0, 255).astype(np.uint8))
    else:  # alpha_scaling
        alpha = np.clip(np.trunc(norm * 255.0), 0, 255).astype(np.uint8)
        ax.imshow(np.concatenate([_rgb(image), alpha[:, :, None]], axis=2))

    if show_colorbar:
        _mpl.add_bottom_colorbar(fig, ax, mappable)
    if title:
        ax.set_title(title)
    return fig, ax


def render_image_attr_multiple(
    attr: Any,
    original_image: Any,
    *,
    methods: Sequence[str],
    signs: Sequence[str],
    titles: Sequence[str] | None = None,
    fig_size: tuple[float, float] = (8, 6),
    use_pyplot: bool = False,
    func: str = "render_image_attr_multiple",
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Draw ``len(methods)`` views side by side (1 x k grid).

    Parameters
    ----------
    attr, original_image
        As for :func:`render_image_attr`.
    methods, signs : sequence of str
        One method and one sign per panel; lengths must match.
    titles : sequence of str, optional
        One title per panel.
    fig_size : tuple of float
        Figure size in inches.
    use_pyplot : bool
        Create the figure through pyplot.
    **kwargs
        Forwarded to every panel (``outlier_perc``, ``cmap``, ``alpha_overlay``,
        ``show_colorbar``).

    Returns
    -------
    tuple
        ``(figure, axes)`` where axes is one Axes for a single panel, else a list.
    """
    for name, seq in (("methods", methods), ("signs", signs)):
        if isinstance(seq, str) or not isinstance(seq, Sequence):
            raise TypeError(
                f"The '{name}' parameter of {func} must be a list of strings. Got {seq!r}."
            )
    if len(methods) != len(signs):
        raise ValueError(
            f"The 'methods' and 'signs' parameters of {func} must have the same length. "
            f"Got {len(methods)} and {len(signs)}."
        )
    if len(methods) == 0:
        raise ValueError(f"The 'methods' parameter of {func} must not be empty.")
    if titles is not None and len(titles) != len(methods):
        raise ValueError(
            f"The 'titles' parameter of {func} must have one title per method. "
            f"Got {len(titles)} titles for {len(methods)} methods."
        )
    bad = set(kwargs) & {"plt_fig_axis", "use_pyplot", "method", "sign", "title", "ax"}
    if bad:
        raise TypeError(f"{func} got unsupported keyword argument(s) {sorted(bad)}.")
    if use_pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=fig_size)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=fig_size)
    axes = fig.subplots(1, len(methods), squeeze=False)[0].tolist()
    for i, (method, sign) in enumerate(zip(methods, signs)):
        render_image_attr(
            attr,
            original_image,
            method=method,
            sign=sign,
            ax=axes[i],
            title=titles[i] if titles else None,
            func=func,
            **kwargs,
        )
    fig.tight_layout()
    return fig, (axes[0] if len(axes) == 1 else axes)


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """4-connected binary erosion; pixels outside the array count as background."""
    out = mask.copy()
    for _ in range(iterations):
        padded = np.pad(out, 1, constant_values=False)
        out = (
            padded[1:-1, 1:-1]
            & padded[:-2, 1:-1]
            & padded[2:, 1:-1]
            & padded[1:-1, :-2]
            & padded[1:-1, 2:]
        )
    return out


def _bool_mask(mask: Any, func: str) -> np.ndarray:
    arr = to_numpy(mask, "mask", func, dtype=None)
    if arr.ndim != 2:
        raise ValueError(
            f"The 'mask' parameter of {func} must be a 2-D (H, W) array. Got shape {arr.shape}."
        )
    return arr.astype(bool)


def draw_mask_border(
    ax: Any, mask: Any, border_width: int = 1, border_color: Any = "black"
) -> None:
    """Draw the inner border of a boolean mask region on ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes showing an image of the same ``(H, W)`` size.
    mask : numpy.ndarray or torch.Tensor, shape (H, W)
        Region; treated as boolean. An empty mask draws nothing.
    border_width : int
        Border thickness in pixels (erosion iterations).
    border_color : str or sequence of float
        Any matplotlib colour, or an RGBA array.
    """
    from matplotlib.colors import to_rgba

    m = _bool_mask(mask, "draw_mask_border")
    if not m.any():
        return
    if int(border_width) < 1:
        raise ValueError(
            f"The 'border_width' parameter of draw_mask_border must be >= 1. Got {border_width}."
        )
    rgba = np.asarray(to_rgba(border_color), dtype=np.float64)
    border = m & ~_erode(m, int(border_width))
    # Transparent everywhere except the border, so the image below stays visible.
    layer = border[:, :, None] * rgba[None, None, :]
    ax.imshow(layer)


def draw_mask_legend(
    ax: Any,
    mask: Any,
    label: str,
    fontsize: int = 10,
    text_color: str = "white",
    bbox_facecolor: str = "black",
    bbox_alpha: float = 0.6,
) -> None:
    """Write ``label`` at the centroid of a boolean mask region.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes showing an image of the same ``(H, W)`` size.
    mask : numpy.ndarray or torch.Tensor, shape (H, W)
        Region; an empty mask draws nothing.
    label : str
        Text to draw.
    fontsize, text_color, bbox_facecolor, bbox_alpha
        Text styling.
    """
    m = _bool_mask(mask, "draw_mask_legend")
    if not m.any():
        return
    rows, cols = np.nonzero(m)
    ax.text(
        float(cols.mean()),
        float(rows.mean()),
        label,
        color=text_color,
        fontsize=fontsize,
        ha="center",
        va="center",
        bbox={"boxstyle": "round,pad=0.2", "facecolor": bbox_facecolor, "alpha": bbox_alpha},
    )
