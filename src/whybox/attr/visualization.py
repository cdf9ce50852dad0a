"""Captum-compatible visualization API (``captum.attr.visualization`` names and defaults).

A thin facade over :mod:`whybox.viz`. Same names, signatures and defaults as
Captum 0.9, with these differences (all places where Captum 0.9 fails):

- ``visualize_image_attr(None, img, method="original_image")`` works;
- an all-zero attribution map draws an empty map instead of raising;
- ``visualize_timeseries_attr`` works on matplotlib >= 3.9;
- ``visualize_text`` works without IPython: it returns an object with ``.data`` (HTML),
  ``_repr_html_`` and ``.save(path)``, and only displays itself inside IPython/Jupyter;
- token text is HTML-escaped and the table is well-formed;
- inputs may be tensors on any device or arrays, channels-first or channels-last,
  with or without a batch dimension of 1;
- bad arguments raise ``ValueError``/``TypeError`` naming the parameter.

Importing this module does not import ``matplotlib.pyplot`` (nor matplotlib at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from whybox.viz import _mpl
from whybox.viz.html import HTMLView
from whybox.viz.image import (
    draw_mask_border,
    draw_mask_legend,
    render_image_attr,
    render_image_attr_multiple,
)
from whybox.viz.text import (
    VisualizationDataRecord,
    format_classname,
    format_special_tokens,
    format_tooltip,
    format_word_importances,
    records_html,
    summarize_token_attributions,
)
from whybox.viz.timeseries import render_timeseries_attr

__all__ = [
    "ImageVisualizationMethod",
    "TimeseriesVisualizationMethod",
    "VisualizeSign",
    "VisualizationDataRecord",
    "TextVisualization",
    "visualize_image_attr",
    "visualize_image_attr_multiple",
    "visualize_timeseries_attr",
    "visualize_text",
    "format_classname",
    "format_special_tokens",
    "format_tooltip",
    "format_word_importances",
    "draw_mask_border",
    "draw_mask_legend",
    "summarize_token_attributions",
]


class ImageVisualizationMethod(Enum):
    """Methods accepted by :func:`visualize_image_attr` (pass the member name as a string)."""

    heat_map = 1
    blended_heat_map = 2
    original_image = 3
    masked_image = 4
    alpha_scaling = 5


class TimeseriesVisualizationMethod(Enum):
    """Methods accepted by :func:`visualize_timeseries_attr`."""

    overlay_individual = 1
    overlay_combined = 2
    colored_graph = 3


class VisualizeSign(Enum):
    """Signs accepted by the image and time-series views."""

    positive = 1
    absolute_value = 2
    negative = 3
    all = 4


def _name(value: Any) -> Any:
    """Accept enum members as well as their names."""
    return value.name if isinstance(value, Enum) else value


def visualize_image_attr(
    attr: Any,
    original_image: Any = None,
    method: str = "heat_map",
    sign: str = "absolute_value",
    plt_fig_axis: tuple[Any, Any] | None = None,
    outlier_perc: float = 2,
    cmap: Any = None,
    alpha_overlay: float = 0.5,
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6, 6),
    use_pyplot: bool = True,
) -> tuple[Any, Any]:
    """Visualize an image attribution map (Captum-compatible).

    Parameters
    ----------
    attr : torch.Tensor or numpy.ndarray or None
        ``(H, W)``, ``(H, W, C)``, ``(C, H, W)`` or ``(1, C, H, W)``; channels are summed.
        ``None`` is allowed with ``method="original_image"``.
    original_image : torch.Tensor or numpy.ndarray, optional
        Same layouts; floats in ``[0, 1]`` or values in ``[0, 255]``. Required for every
        method except ``heat_map``.
    method : {"heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling"}
    sign : {"all", "positive", "negative", "absolute_value"}
        ``all`` is not allowed with ``masked_image`` / ``alpha_scaling``.
    plt_fig_axis : tuple, optional
        ``(figure, axis)`` to draw on; created when ``None``.
    outlier_perc : float
        Top percentage of total attribution mass that saturates the colour scale.
    cmap : str or Colormap, optional
        Default: Greens (positive), Reds (negative), Blues (absolute_value),
        red-white-green (all).
    alpha_overlay : float
        Heat-map alpha for ``blended_heat_map``.
    show_colorbar : bool
        Horizontal colorbar below the image.
    title : str, optional
    fig_size : tuple
        Size of a new figure.
    use_pyplot : bool
        Create the figure with pyplot and ``plt.show()`` it (skipped on headless
        backends such as Agg); ``False`` builds a bare ``matplotlib.figure.Figure``.

    Returns
    -------
    tuple
        ``(figure, axis)``; the given ones when ``plt_fig_axis`` is passed.
    """
    func = "visualize_image_attr"
    ax = None
    fig_in = None
    if plt_fig_axis is not None:
        fig_in, ax = _mpl.unpack_fig_axis(plt_fig_axis, "plt_fig_axis", func)
        ax = _mpl.first_axis(ax)
    fig, ax = render_image_attr(
        attr,
        original_image,
        method=_name(method),
        sign=_name(sign),
        ax=ax,
        outlier_perc=outlier_perc,
        cmap=cmap,
        alpha_overlay=alpha_overlay,
        show_colorbar=show_colorbar,
        title=title,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
        func=func,
    )
    _mpl.show_if_interactive(use_pyplot)
    return (fig_in if fig_in is not None else fig), ax


def visualize_image_attr_multiple(
    attr: Any,
    original_image: Any,
    methods: list[str],
    signs: list[str],
    titles: list[str] | None = None,
    fig_size: tuple[float, float] = (8, 6),
    use_pyplot: bool = True,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Several image views side by side in a 1 x k grid (Captum-compatible).

    Parameters
    ----------
    attr, original_image
        As in :func:`visualize_image_attr`.
    methods, signs : list of str
        One method and one sign per panel (equal lengths).
    titles : list of str, optional
        One title per panel.
    fig_size : tuple
    use_pyplot : bool
    **kwargs
        Passed to every panel (``outlier_perc``, ``cmap``, ``alpha_overlay``,
        ``show_colorbar``).

    Returns
    -------
    tuple
        ``(figure, axes)``: an Axes for one method, else a list of Axes.
    """
    fig, axes = render_image_attr_multiple(
        attr,
        original_image,
        methods=[_name(m) for m in methods] if isinstance(methods, list) else methods,
        signs=[_name(s) for s in signs] if isinstance(signs, list) else signs,
        titles=titles,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
        func="visualize_image_attr_multiple",
        **kwargs,
    )
    _mpl.show_if_interactive(use_pyplot)
    return fig, axes


def visualize_timeseries_attr(
    attr: Any,
    data: Any,
    x_values: Any = None,
    method: str = "overlay_individual",
    sign: str = "absolute_value",
    channel_labels: list[str] | None = None,
    channels_last: bool = True,
    plt_fig_axis: tuple[Any, Any] | None = None,
    outlier_perc: float = 2,
    cmap: Any = None,
    alpha_overlay: float = 0.7,
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6, 6),
    use_pyplot: bool = True,
    **pyplot_kwargs: Any,
) -> tuple[Any, Any]:
    """Visualize attributions of a multichannel time series (Captum-compatible).

    Parameters
    ----------
    attr, data : torch.Tensor or numpy.ndarray
        ``(N, C)`` with ``channels_last=True`` (default) or ``(C, N)``; shapes must match.
    x_values : array-like, shape (N,), optional
    method : {"overlay_individual", "overlay_combined", "colored_graph"}
    sign : {"all", "positive", "negative", "absolute_value"}
    channel_labels : list of str, optional
    channels_last : bool
    plt_fig_axis : tuple, optional
        ``(figure, axes)`` with one Axes per panel.
    outlier_perc, cmap, alpha_overlay, show_colorbar, title, fig_size, use_pyplot
        As in :func:`visualize_image_attr` (``alpha_overlay`` defaults to 0.7 here).
    **pyplot_kwargs
        Forwarded to ``Axes.plot`` (e.g. ``linewidth=3``).

    Returns
    -------
    tuple
        ``(figure, axes)``: one Axes for a single panel, else an array of Axes.
    """
    func = "visualize_timeseries_attr"
    ax = None
    fig_in = None
    if plt_fig_axis is not None:
        fig_in, ax = _mpl.unpack_fig_axis(plt_fig_axis, "plt_fig_axis", func)
    fig, axes = render_timeseries_attr(
        attr,
        data,
        x_values=x_values,
        method=_name(method),
        sign=_name(sign),
        channel_labels=channel_labels,
        channels_last=channels_last,
        ax=ax,
        outlier_perc=outlier_perc,
        cmap=cmap,
        alpha_overlay=alpha_overlay,
        show_colorbar=show_colorbar,
        title=title,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
        func=func,
        **pyplot_kwargs,
    )
    _mpl.show_if_interactive(use_pyplot)
    return (fig_in if fig_in is not None else fig), axes


class TextVisualization(HTMLView):
    """Result of :func:`visualize_text`: ``.data`` (HTML), ``_repr_html_``, ``.save(path)``."""


def visualize_text(
    datarecords: Iterable[VisualizationDataRecord], legend: bool = True
) -> TextVisualization:
    """HTML table of text attributions (Captum's columns and legend), usable anywhere.

    Columns: True Label, Predicted Label (probability), Attribution Label,
    Attribution Score, Word Importance (one coloured, escaped chip per token; the
    value shows on hover). Inside IPython/Jupyter the table is also displayed.

    Parameters
    ----------
    datarecords : iterable of VisualizationDataRecord
    legend : bool
        Show the Negative / Neutral / Positive legend.

    Returns
    -------
    TextVisualization
        ``.data`` is the HTML fragment; ``.save(path)`` writes a self-contained page.
    """
    view = TextVisualization(records_html(datarecords, legend=legend), title="Text attributions")
    view.display()
    return view
