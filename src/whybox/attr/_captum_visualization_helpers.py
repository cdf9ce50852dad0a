"""The private helpers of Captum's ``captum.attr._utils.visualization``: scaling and
thresholding attributions, preparing images, the colour of a text record, and the
per-method drawing steps of the image and time-series views.

whybox's own views (:mod:`whybox.viz`) differ from Captum where Captum fails (an all-zero
map, for one); these helpers keep Captum's values and errors for code that calls them
directly. matplotlib is imported only by the drawing helpers, when they run.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np

from whybox.attr._assertion_errors import fail_assert

__all__: list[str] = []

#: whether IPython (for showing HTML in a notebook) can be imported
HAS_IPYTHON = importlib.util.find_spec("IPython") is not None

_SIGNS = ("positive", "absolute_value", "negative", "all")


def _sign(sign: str) -> str:
    # Captum looks the name up in its VisualizeSign enum, which raises KeyError
    if sign not in _SIGNS:
        raise KeyError(sign)
    return sign


def _prepare_image(attr_visual: np.ndarray) -> np.ndarray:
    """An image as integers (truncated) clipped to ``[0, 255]``."""
    return np.clip(attr_visual.astype(int), 0, 255)


def _normalize_scale(attr: np.ndarray, scale_factor: float) -> np.ndarray:
    """``attr / scale_factor`` clipped to ``[-1, 1]``; warns for a factor near 0.

    Raises
    ------
    AssertionError
        For a factor of 0.
    """
    if scale_factor == 0:
        fail_assert("_normalize_scale", "scale_factor", "non-zero", scale_factor)
    if abs(scale_factor) < 1e-5:
        warnings.warn(
            "Attempting to normalize by value approximately 0, visualized results may be "
            "misleading. This likely means that attribution values are all close to 0.",
            stacklevel=2,
        )
    return np.clip(attr / scale_factor, -1, 1)


def _cumulative_sum_threshold(values: np.ndarray, percentile: int | float) -> float:
    """The smallest of the (non-negative) ``values`` at which their running sum, in
    increasing order, reaches ``percentile`` percent of the total.

    Raises
    ------
    AssertionError
        For a percentile outside ``[0, 100]``.
    """
    if not 0 <= percentile <= 100:
        fail_assert(
            "_cumulative_sum_threshold", "percentile", "between 0 and 100 inclusive", percentile
        )
    ordered = np.sort(values.flatten())
    running = np.cumsum(ordered)
    first = np.where(running >= running[-1] * 0.01 * percentile)[0][0]
    return ordered[first]


def _normalize_attr(attr: np.ndarray, sign: str, outlier_perc: int | float = 2) -> np.ndarray:
    """Attributions of one sign scaled so that the top ``outlier_perc`` percent of their
    mass saturates: ``[-1, 1]`` for ``"all"``, ``[0, 1]`` otherwise (``"negative"`` keeps
    the negative values, divided by a negative threshold).

    Raises
    ------
    KeyError
        For an unknown sign.
    AssertionError
        For an all-zero map (a threshold of 0) or an outlier percentage outside
        ``[0, 100]``.
    """
    sign = _sign(sign)
    if sign == "positive":
        attr = np.maximum(attr, 0)
    elif sign == "negative":
        attr = np.minimum(attr, 0)
    elif sign == "absolute_value":
        attr = np.abs(attr)
    threshold = _cumulative_sum_threshold(np.abs(attr), 100.0 - outlier_perc)
    if sign == "negative":
        threshold = -threshold
    return _normalize_scale(attr, threshold)


def _get_color(attr: float) -> str:
    """The CSS colour of an attribution in ``[-1, 1]`` (clipped): green for positive,
    red otherwise, lighter towards 0."""
    attr = max(-1, min(1, attr))
    if attr > 0:
        return f"hsl(120, 75%, {100 - int(50 * attr)}%)"
    return f"hsl(0, 75%, {100 - int(-40 * attr)}%)"


# -- the drawing steps of visualize_image_attr ---------------------------------------------
def _create_default_plot(
    plt_fig_axis: tuple[Any, Any] | None,
    use_pyplot: bool,
    fig_size: tuple[int, int],
    **kwargs: Any,
) -> tuple[Any, Any]:
    """``plt_fig_axis`` when given, else a new figure and axes (through pyplot, or a
    detached ``Figure``); ``kwargs`` go to ``subplots``."""
    if plt_fig_axis is not None:
        return plt_fig_axis
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=fig_size, **kwargs)
    from matplotlib.figure import Figure

    figure = Figure(figsize=fig_size)
    return figure, figure.subplots(**kwargs)


def _initialize_cmap_and_vmin_vmax(sign: str) -> tuple[Any, float, float]:
    """The default colormap and range of a sign: red-white-green on ``[-1, 1]`` for
    ``"all"``; Greens, Reds or Blues on ``[0, 1]``.

    Raises
    ------
    KeyError
        For an unknown sign.
    """
    if _sign(sign) == "all":
        from matplotlib.colors import LinearSegmentedColormap

        return LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"]), -1, 1
    return {"positive": "Greens", "negative": "Reds", "absolute_value": "Blues"}[sign], 0, 1


def _visualize_original_image(
    plt_axis: Any, original_image: np.ndarray | None, **kwargs: Any
) -> None:
    """Draw the image (a single channel drawn as a 2-D image).

    Raises
    ------
    AssertionError
        Without an image.
    """
    if original_image is None:
        fail_assert("_visualize_original_image", "original_image", "an image", None)
    if original_image.ndim > 2 and original_image.shape[2] == 1:
        original_image = np.squeeze(original_image, axis=2)
    plt_axis.imshow(original_image)


def _visualize_heat_map(
    plt_axis: Any, norm_attr: np.ndarray, cmap: Any, vmin: float, vmax: float, **kwargs: Any
) -> Any:
    """Draw the normalised attributions as a heat map; returns the ``AxesImage``."""
    return plt_axis.imshow(norm_attr, cmap=cmap, vmin=vmin, vmax=vmax)


def _visualize_blended_heat_map(
    plt_axis: Any,
    original_image: np.ndarray,
    norm_attr: np.ndarray,
    cmap: Any,
    vmin: float,
    vmax: float,
    alpha_overlay: float,
    **kwargs: Any,
) -> Any:
    """Draw the image in grey (its channel mean) with the heat map over it at
    ``alpha_overlay``; returns the heat map's ``AxesImage``.

    Raises
    ------
    AssertionError
        Without an image.
    """
    if original_image is None:
        fail_assert("_visualize_blended_heat_map", "original_image", "an image", None)
    plt_axis.imshow(np.mean(original_image, axis=2), cmap="gray")
    return plt_axis.imshow(norm_attr, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha_overlay)


def _one_signed(owner: str, sign: str) -> None:
    # a mask or an alpha channel needs values in [0, 1], which "all" does not give
    if _sign(sign) == "all":
        fail_assert(owner, "sign", "'positive', 'negative' or 'absolute_value'", sign)


def _visualize_masked_image(
    plt_axis: Any, sign: str, original_image: np.ndarray, norm_attr: np.ndarray, **kwargs: Any
) -> None:
    """Draw the image multiplied by the normalised attributions.

    Raises
    ------
    AssertionError
        For the sign ``"all"``.
    """
    _one_signed("_visualize_masked_image", sign)
    plt_axis.imshow(_prepare_image(original_image * np.expand_dims(norm_attr, 2)))


def _visualize_alpha_scaling(
    plt_axis: Any, sign: str, original_image: np.ndarray, norm_attr: np.ndarray, **kwargs: Any
) -> None:
    """Draw the image with the normalised attributions as its alpha channel.

    Raises
    ------
    AssertionError
        For the sign ``"all"``.
    """
    _one_signed("_visualize_alpha_scaling", sign)
    alpha = _prepare_image(np.expand_dims(norm_attr, 2) * 255)
    plt_axis.imshow(np.concatenate([original_image, alpha], axis=2))


# -- the drawing steps of visualize_timeseries_attr ----------------------------------------
def _plot_attrs_as_axvspan(
    attr_vals: np.ndarray,
    x_vals: np.ndarray,
    ax: Any,
    x_values: np.ndarray,
    cmap: Any,
    cm_norm: Any,
    alpha_overlay: float,
) -> None:
    """Shade one full-height band per point of ``x_vals``, coloured by its attribution.

    Each band is one ``axvspan`` centred on its point, as wide as the first step of
    ``x_values`` (so evenly spaced ``x_values`` are assumed).

    Parameters
    ----------
    attr_vals : numpy.ndarray ``(N,)``
        Normalised attributions, one per point.
    x_vals : numpy.ndarray ``(N,)``
        The band centres.
    ax : matplotlib Axes
    x_values : numpy.ndarray
        The series' x coordinates (their first step sets the band width).
    cmap : matplotlib Colormap
    cm_norm : matplotlib Normalize
        Maps an attribution to ``[0, 1]`` for ``cmap``.
    alpha_overlay : float
        Opacity of the bands.
    """
    half_width = (x_values[1] - x_values[0]) / 2.0
    for i, centre in enumerate(x_vals):
        ax.axvspan(
            xmin=centre - half_width,
            xmax=centre + half_width,
            facecolor=cmap(cm_norm(attr_vals[i])),
            edgecolor=None,
            alpha=alpha_overlay,
        )


def _visualize_overlay_individual(
    num_channels: int,
    plt_axis_list: np.ndarray,
    x_values: np.ndarray,
    data: np.ndarray,
    channel_labels: list[str],
    norm_attr: np.ndarray,
    cmap: Any,
    cm_norm: Any,
    alpha_overlay: float,
    **kwargs: Any,
) -> None:
    """Draw each channel on its own axes with its attributions shaded behind it.

    Parameters
    ----------
    num_channels : int
    plt_axis_list : numpy.ndarray of Axes
        One per channel.
    x_values : numpy.ndarray ``(N,)``
    data : numpy.ndarray ``(C, N)``
    channel_labels : list of str or None
        The y labels.
    norm_attr : numpy.ndarray ``(C, N)``
        Normalised attributions.
    cmap, cm_norm, alpha_overlay
        As in :func:`_plot_attrs_as_axvspan`.
    **kwargs
        ``pyplot_kwargs`` (a dict) goes to ``Axes.plot``; the rest is ignored.
    """
    import matplotlib.pyplot as plt

    pyplot_kwargs = kwargs.get("pyplot_kwargs", {})
    for chan in range(num_channels):
        axis = plt_axis_list[chan]
        axis.plot(x_values, data[chan, :], **pyplot_kwargs)
        if channel_labels is not None:
            axis.set_ylabel(channel_labels[chan])
        _plot_attrs_as_axvspan(
            norm_attr[chan], x_values, axis, x_values, cmap, cm_norm, alpha_overlay
        )
    # as Captum: stacks the panels of pyplot's current figure
    plt.subplots_adjust(hspace=0)


def _visualize_overlay_combined(
    num_channels: int,
    plt_axis_list: np.ndarray,
    x_values: np.ndarray,
    data: np.ndarray,
    channel_labels: list[str],
    norm_attr: np.ndarray,
    cmap: Any,
    cm_norm: Any,
    alpha_overlay: float,
    **kwargs: Any,
) -> None:
    """Draw every channel on the first axes (Dark2 colours, a legend) with the
    channel-summed attributions shaded behind them.

    Parameters
    ----------
    num_channels : int
    plt_axis_list : numpy.ndarray of Axes
        Only the first is drawn on.
    x_values : numpy.ndarray ``(N,)``
    data : numpy.ndarray ``(C, N)``
    channel_labels : list of str or None
        The legend entries.
    norm_attr : numpy.ndarray ``(N,)``
        Normalised attributions summed over channels.
    cmap, cm_norm, alpha_overlay
        As in :func:`_plot_attrs_as_axvspan`.
    **kwargs
        ``pyplot_kwargs`` (a dict) goes to ``Axes.plot``; the rest is ignored.
    """
    import matplotlib
    from cycler import cycler

    pyplot_kwargs = kwargs.get("pyplot_kwargs", {})
    axis = plt_axis_list[0]
    axis.set_prop_cycle(cycler("color", matplotlib.colormaps["Dark2"].colors))
    for chan in range(num_channels):
        label = channel_labels[chan] if channel_labels else None
        axis.plot(x_values, data[chan, :], label=label, **pyplot_kwargs)
    _plot_attrs_as_axvspan(norm_attr, x_values, axis, x_values, cmap, cm_norm, alpha_overlay)
    axis.legend(loc="best")


def _visualize_colored_graph(
    num_channels: int,
    plt_axis_list: np.ndarray,
    x_values: np.ndarray,
    data: np.ndarray,
    channel_labels: list[str],
    norm_attr: np.ndarray,
    cmap: Any,
    cm_norm: Any,
    alpha_overlay: float,
    **kwargs: Any,
) -> None:
    """Draw each channel on its own axes as a line whose segments are coloured by the
    attributions.

    Each channel's ``N - 1`` segments get the ``N`` attributions as their colour array
    (matplotlib uses the first ``N - 1``); the y range is ``1.2`` times the data's
    minimum and maximum.

    Parameters
    ----------
    num_channels : int
    plt_axis_list : numpy.ndarray of Axes
        One per channel.
    x_values : numpy.ndarray ``(N,)``
    data : numpy.ndarray ``(C, N)``
    channel_labels : list of str or None
        The y labels.
    norm_attr : numpy.ndarray ``(C, N)``
        Normalised attributions.
    cmap : matplotlib Colormap
    cm_norm : matplotlib Normalize
    alpha_overlay : float
        Unused (the line is opaque).
    **kwargs
        ``pyplot_kwargs`` (a dict) goes to the ``LineCollection``; the rest is ignored.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    pyplot_kwargs = kwargs.get("pyplot_kwargs", {})
    for chan in range(num_channels):
        points = np.stack([x_values, data[chan, :]], axis=1)[:, None, :]
        segments = np.concatenate([points[:-1], points[1:]], axis=1)
        lines = LineCollection(segments, cmap=cmap, norm=cm_norm, **pyplot_kwargs)
        lines.set_array(norm_attr[chan, :])
        axis = plt_axis_list[chan]
        axis.add_collection(lines)
        axis.set_ylim(1.2 * np.min(data[chan, :]), 1.2 * np.max(data[chan, :]))
        if channel_labels is not None:
            axis.set_ylabel(channel_labels[chan])
    # as Captum: stacks the panels of pyplot's current figure
    plt.subplots_adjust(hspace=0)
