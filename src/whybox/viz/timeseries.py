"""Time-series attribution views (works on every matplotlib >= 3.5, incl. >= 3.9)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from whybox.viz import _mpl
from whybox.viz._arrays import (
    SIGNS,
    TIMESERIES_METHODS,
    check_choice,
    finite,
    get_cmap,
    normalize_attr,
    sign_colormap,
    to_numpy,
)


def _as_2d(x: Any, name: str, func: str) -> np.ndarray:
    arr = to_numpy(x, name, func)
    if arr.ndim == 3 and arr.shape[0] == 1:  # batch of one
        arr = arr[0]
    if arr.ndim == 1:  # a single channel
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"The '{name}' parameter of {func} must have shape (N, C) (or (C, N) with "
            f"channels_last=False). Got shape {tuple(arr.shape)}."
        )
    return arr


def _cell_edges(x: np.ndarray) -> np.ndarray:
    """Edges of the cells centred on ``x`` (midpoints; handles uneven spacing)."""
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[:-1] + x[1:]) / 2.0
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def _shade(ax: Any, x: np.ndarray, values: np.ndarray, cmap: Any, norm: Any, alpha: float) -> None:
    """Colour full-height vertical bands behind the curve, one per time step.

    One PolyCollection instead of one ``axvspan`` per step keeps long series fast.
    """
    from matplotlib.collections import PolyCollection

    edges = _cell_edges(x)
    verts = [
        [(edges[i], 0.0), (edges[i + 1], 0.0), (edges[i + 1], 1.0), (edges[i], 1.0)]
        for i in range(x.size)
    ]
    bands = PolyCollection(
        verts,
        facecolors=cmap(norm(values)),
        edgecolors="none",
        alpha=alpha,
        transform=ax.get_xaxis_transform(),  # x in data units, y spans the whole axes
        zorder=0,
    )
    ax.add_collection(bands, autolim=False)


def render_timeseries_attr(
    attr: Any,
    data: Any,
    *,
    x_values: Any = None,
    method: str = "overlay_individual",
    sign: str = "absolute_value",
    channel_labels: Any = None,
    channels_last: bool = True,
    ax: Any = None,
    outlier_perc: float = 2,
    cmap: Any = None,
    alpha_overlay: float = 0.7,
    show_colorbar: bool = False,
    title: str | None = None,
    fig_size: tuple[float, float] = (6, 6),
    use_pyplot: bool = False,
    func: str = "render_timeseries_attr",
    **pyplot_kwargs: Any,
) -> tuple[Any, Any]:
    """Plot a multichannel series with its attributions.

    Parameters
    ----------
    attr, data : torch.Tensor or numpy.ndarray
        Shape ``(N, C)`` (``channels_last=True``) or ``(C, N)``; a 1-D array is one
        channel and a leading batch dimension of 1 is dropped. Shapes must match.
    x_values : array-like, shape (N,), optional
        x coordinates (may be unevenly spaced); default ``0..N-1``.
    method : {"overlay_individual", "overlay_combined", "colored_graph"}
        One panel per channel with shaded attributions; all channels in one panel
        with the channel-summed attributions; or lines coloured by attribution.
    sign : {"all", "positive", "negative", "absolute_value"}
        Part of the attributions to show.
    channel_labels : sequence of str, optional
        One label per channel (y labels or legend entries).
    channels_last : bool
        Layout of ``attr`` and ``data``.
    ax : Axes or sequence of Axes, optional
        Where to draw: one Axes per panel. A new figure is created when omitted.
    outlier_perc, cmap, alpha_overlay, show_colorbar, title, fig_size, use_pyplot
        As in :func:`whybox.viz.image.render_image_attr`.
    **pyplot_kwargs
        Forwarded to ``Axes.plot`` (or the LineCollection for ``colored_graph``).

    Returns
    -------
    tuple
        ``(figure, axes)``: a single Axes for one panel, else a numpy array of Axes.
    """
    check_choice(method, TIMESERIES_METHODS, "method", func)
    check_choice(sign, SIGNS, "sign", func)
    a = _as_2d(attr, "attr", func)
    d = _as_2d(data, "data", func)
    if a.shape != d.shape:
        raise ValueError(
            f"The 'attr' and 'data' parameters of {func} must have the same shape. "
            f"Got {a.shape} and {d.shape}."
        )
    if channels_last:
        a, d = a.T, d.T  # work channels-first: (C, N)
    a = finite(a, "attr")
    n_channels, length = a.shape
    if n_channels > length:
        warnings.warn(
            f"{func}: {n_channels} channels but only {length} time steps; check 'channels_last'.",
            stacklevel=2,
        )
    if x_values is None:
        x = np.arange(length, dtype=np.float64)
    else:
        x = to_numpy(x_values, "x_values", func).reshape(-1)
        if x.shape[0] != length:
            raise ValueError(
                f"The 'x_values' parameter of {func} must have one value per time step "
                f"({length}). Got {x.shape[0]}."
            )
    if channel_labels is not None and len(channel_labels) != n_channels:
        raise ValueError(
            f"The 'channel_labels' parameter of {func} must have one label per channel "
            f"({n_channels}). Got {len(channel_labels)}."
        )

    combined = method == "overlay_combined"
    if combined:
        a = a.sum(axis=0)
    norm_attr = normalize_attr(a, sign, outlier_perc, func=func)
    n_panels = 1 if combined else n_channels

    if ax is None:
        fig, axes_obj = _mpl.new_figure(fig_size, use_pyplot, nrows=n_panels, sharex=True)
        if n_panels > 1:
            fig.subplots_adjust(hspace=0)
    else:
        axes_obj = ax
    axes = _mpl.axis_list(axes_obj)
    if len(axes) < n_panels:
        raise ValueError(
            f"The 'plt_fig_axis' parameter of {func} needs {n_panels} axes for "
            f"method={method!r}. Got {len(axes)}."
        )
    fig = axes[0].figure

    from matplotlib.colors import Normalize

    default_cmap, vmin, vmax = sign_colormap(sign)
    cmap = get_cmap(default_cmap if cmap is None else cmap)
    cnorm = Normalize(vmin, vmax)

    if method == "overlay_individual":
        for c in range(n_channels):
            axes[c].plot(x, d[c], **pyplot_kwargs)
            _shade(axes[c], x, norm_attr[c], cmap, cnorm, alpha_overlay)
            if channel_labels is not None:
                axes[c].set_ylabel(channel_labels[c])
    elif method == "overlay_combined":
        import matplotlib
        from cycler import cycler

        axes[0].set_prop_cycle(cycler(color=matplotlib.colormaps["Dark2"].colors))
        for c in range(n_channels):
            label = channel_labels[c] if channel_labels is not None else None
            axes[0].plot(x, d[c], label=label, **pyplot_kwargs)
        _shade(axes[0], x, norm_attr, cmap, cnorm, alpha_overlay)
        if channel_labels is not None:
            axes[0].legend(loc="best")
    else:  # colored_graph
        from matplotlib.collections import LineCollection

        for c in range(n_channels):
            pts = np.stack([x, d[c]], axis=1)
            segs = np.stack([pts[:-1], pts[1:]], axis=1)
            lc = LineCollection(segs, cmap=cmap, norm=cnorm, **pyplot_kwargs)
            # One colour per segment: the attribution of its left end point.
            lc.set_array(norm_attr[c, :-1] if length > 1 else norm_attr[c])
            axes[c].add_collection(lc)
            lo, hi = float(d[c].min()), float(d[c].max())
            pad = 0.1 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
            axes[c].set_ylim(lo - pad, hi + pad)
            if channel_labels is not None:
                axes[c].set_ylabel(channel_labels[c])

    for axis in axes[:n_panels]:
        if length > 1:
            axis.set_xlim(float(x[0]), float(x[-1]))
    if show_colorbar:
        from matplotlib.cm import ScalarMappable

        sm = ScalarMappable(norm=cnorm, cmap=cmap)
        bar_alpha = 1.0 if method == "colored_graph" else alpha_overlay
        _mpl.add_bottom_colorbar(fig, axes[n_panels - 1], sm, pad=0.4, alpha=bar_alpha)
    if title:
        axes[0].set_title(title)
    if ax is None:
        return fig, axes_obj
    return fig, ax
