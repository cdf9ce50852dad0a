"""Time-series views: run on current matplotlib and put colours where attributions are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from whybox.attr import visualization as viz

T = 40


def series():
    x = np.linspace(0, 1, T)
    data = np.stack([np.sin(6 * x), np.cos(6 * x)], axis=1)  # (N, C)
    attr = np.zeros((T, 2))
    attr[: T // 2, 0] = 1.0  # channel 0: first half positive
    attr[T // 2 :, 1] = -1.0  # channel 1: second half negative
    return attr, data


def pixel(fig, ax, x_data, y_axes):
    """RGB at data-x ``x_data`` and axes-fraction ``y_axes``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())
    x = ax.transData.transform((x_data, 0))[0]
    y = ax.transAxes.transform((0, y_axes))[1]
    return buf[int(round(buf.shape[0] - y)), int(round(x)), :3].astype(int)


def test_matplotlib_is_recent_enough_to_break_captum():
    # Captum 0.9 calls cm.get_cmap, removed in matplotlib 3.9; whybox must work here.
    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    assert (major, minor) >= (3, 9)
    assert not hasattr(matplotlib.cm, "get_cmap")


def test_overlay_individual_shades_attributed_steps():
    attr, data = series()
    fig, axes = viz.visualize_timeseries_attr(
        attr, data, sign="all", channel_labels=["sin", "cos"], use_pyplot=False
    )
    assert len(axes) == 2 and [a.get_ylabel() for a in axes] == ["sin", "cos"]
    # Sample near the top edge, away from the curves.
    r, g, b = pixel(fig, axes[0], 5, 0.97)  # positive -> green band
    assert g > r + 40 and g > b + 40
    r, g, b = pixel(fig, axes[0], 30, 0.97)  # zero -> white band
    assert min(r, g, b) > 240
    r, g, b = pixel(fig, axes[1], 30, 0.97)  # negative -> red band
    assert r > g + 40 and r > b + 40


def test_overlay_combined_sums_channels_in_one_panel():
    attr, data = series()
    fig, ax = viz.visualize_timeseries_attr(
        attr,
        data,
        method="overlay_combined",
        sign="all",
        channel_labels=["sin", "cos"],
        use_pyplot=False,
    )
    assert not isinstance(ax, np.ndarray)
    assert len(ax.lines) == 2 and ax.get_legend() is not None
    r, g, b = pixel(fig, ax, 5, 0.97)
    assert g > r + 40
    r, g, b = pixel(fig, ax, 30, 0.97)
    assert r > g + 40


def test_colored_graph_segment_colours():
    attr, data = series()
    fig, axes = viz.visualize_timeseries_attr(
        attr, data, method="colored_graph", sign="positive", use_pyplot=False
    )
    lc = axes[0].collections[0]
    colours = lc.get_colors() if len(lc.get_colors()) > 1 else lc.to_rgba(lc.get_array())
    greens = matplotlib.colormaps["Greens"]
    assert np.allclose(colours[0], greens(1.0)) and np.allclose(colours[-1], greens(0.0))


def test_channels_first_tensor_and_x_values():
    attr, data = series()
    x = np.linspace(10, 20, T) ** 1.5  # uneven spacing is fine
    fig, axes = viz.visualize_timeseries_attr(
        torch.tensor(attr.T)[None],
        torch.tensor(data.T),
        x_values=x,
        channels_last=False,
        show_colorbar=True,
        title="ts",
        use_pyplot=False,
    )
    assert axes[0].get_xlim() == pytest.approx((x[0], x[-1]))
    assert axes[0].get_title() == "ts"
    assert len(fig.axes) == 3  # two panels + colorbar


def test_pyplot_kwargs_and_plt_fig_axis():
    from matplotlib.figure import Figure

    attr, data = series()
    fig = Figure()
    axes = fig.subplots(2)
    out_fig, out_axes = viz.visualize_timeseries_attr(
        attr, data, plt_fig_axis=(fig, axes), use_pyplot=False, linewidth=3, color="black"
    )
    assert out_fig is fig and out_axes is axes
    assert axes[0].lines[0].get_linewidth() == 3


def test_all_zero_attributions_ok():
    # all-zero attributions must not divide by zero: the figure draws the data, finite
    attr, data = series()
    fig, axes = viz.visualize_timeseries_attr(np.zeros_like(attr), data, use_pyplot=False)
    axes = np.atleast_1d(axes)
    drawn = np.concatenate([line.get_ydata() for ax in axes for line in ax.get_lines()])
    assert drawn.size >= data.size and np.isfinite(drawn).all()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    assert np.isfinite(np.asarray(canvas.buffer_rgba(), dtype=float)).all()


@pytest.mark.parametrize(
    "kwargs,exc,fragment",
    [
        ({"method": "bars"}, ValueError, "The 'method' parameter of visualize_timeseries_attr"),
        ({"sign": "pos"}, ValueError, "The 'sign' parameter"),
        ({"x_values": np.arange(3)}, ValueError, "'x_values'"),
        ({"channel_labels": ["a"]}, ValueError, "'channel_labels'"),
        ({"data": np.zeros((T, 3))}, ValueError, "same shape"),
        ({"data": np.zeros((2, T, 2))}, ValueError, "'data' parameter"),
    ],
)
def test_bad_timeseries_input(kwargs, exc, fragment):
    attr, data = series()
    data = kwargs.pop("data", data)
    with pytest.raises(exc) as info:
        viz.visualize_timeseries_attr(attr, data, use_pyplot=False, **kwargs)
    assert fragment in str(info.value)
