"""Tabular attribution views: bar and waterfall charts of feature contributions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from whybox.viz import _mpl
from whybox.viz._arrays import NEG_RGB, POS_RGB, max_abs, to_numpy
from whybox.viz.html import escape, fragment, page


def feature_values(values: Any, func: str, name: str = "attributions") -> np.ndarray:
    """Flatten ``(F,)`` or ``(1, F)`` attributions to ``(F,)`` (non-finite values become 0)."""
    arr = to_numpy(values, name, func)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(
            f"The '{name}' parameter of {func} must have shape (num_features,) or "
            f"(1, num_features). Got shape {tuple(arr.shape)}."
        )
    return np.where(np.isfinite(arr), arr, 0.0)


def feature_labels(feature_names: Any, n: int, func: str) -> list[str]:
    """Validate ``feature_names`` (or make ``feature 0..n-1``)."""
    if feature_names is None:
        return [f"feature {i}" for i in range(n)]
    if isinstance(feature_names, str):
        raise TypeError(
            f"The 'feature_names' parameter of {func} must be a sequence of strings, not a str."
        )
    names = [str(f) for f in feature_names]
    if len(names) != n:
        raise ValueError(
            f"The 'feature_names' parameter of {func} must have one name per feature ({n}). "
            f"Got {len(names)}."
        )
    return names


def _top(values: np.ndarray, top_k: int | None, func: str) -> np.ndarray:
    """Indices sorted by decreasing |value|, cut to ``top_k``."""
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) < 1):
        raise ValueError(f"The 'top_k' parameter of {func} must be a positive int. Got {top_k!r}.")
    order = np.argsort(-np.abs(values), kind="stable")
    return order if top_k is None else order[: int(top_k)]


def _target_axes(ax: Any, fig_size: tuple[float, float], use_pyplot: bool) -> tuple[Any, Any]:
    if ax is None:
        return _mpl.new_figure(fig_size, use_pyplot)
    ax = _mpl.first_axis(ax)
    return ax.figure, ax


def plot_feature_bar(
    values: Any,
    feature_names: Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    ax: Any = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
    xlabel: str = "attribution",
    func: str = "plot_feature_bar",
) -> Any:
    """Horizontal bar chart of feature contributions, largest magnitude on top.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray, shape (F,) or (1, F)
        One attribution per feature.
    feature_names : sequence of str, optional
        ``F`` names; defaults to ``feature 0..F-1``.
    top_k : int, optional
        Show only the ``top_k`` largest magnitudes.
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    fig_size : tuple of float, optional
        Defaults to a height that fits the bars.
    use_pyplot : bool
        Create the figure through pyplot instead of a bare ``Figure``.
    xlabel : str
        x-axis label.

    Returns
    -------
    matplotlib.figure.Figure
        Positive bars are green, negative bars red.
    """
    vals = feature_values(values, func)
    names = feature_labels(feature_names, vals.size, func)
    idx = _top(vals, top_k, func)[::-1]  # barh draws bottom-up; biggest last = on top
    size = fig_size or (6.0, max(2.0, 0.35 * len(idx) + 1.0))
    fig, ax = _target_axes(ax, size, use_pyplot)
    shown = vals[idx]
    colours = [POS_RGB if v >= 0 else NEG_RGB for v in shown]
    ax.barh(np.arange(len(idx)), shown, color=colours)
    ax.set_yticks(np.arange(len(idx)))
    ax.set_yticklabels([names[i] for i in idx])
    ax.axvline(0.0, color="#444", linewidth=0.8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_waterfall(
    values: Any,
    feature_names: Sequence[str] | None = None,
    *,
    base_value: float = 0.0,
    top_k: int | None = 10,
    ax: Any = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
    func: str = "plot_waterfall",
) -> Any:
    """Waterfall chart: from ``base_value`` to ``base_value + sum(values)`` feature by feature.

    Features are ordered by magnitude (largest at the top); the remaining features beyond
    ``top_k`` are merged into one "other features" step so the end point is exact.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray, shape (F,) or (1, F)
    feature_names : sequence of str, optional
    base_value : float
        Starting value (e.g. the baseline prediction).
    top_k : int or None
        Steps shown individually; ``None`` shows all.
    ax, title, fig_size, use_pyplot
        As in :func:`plot_feature_bar`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    vals = feature_values(values, func)
    names = feature_labels(feature_names, vals.size, func)
    idx = _top(vals, top_k, func)
    steps = [(names[i], float(vals[i])) for i in idx]
    rest = np.setdiff1d(np.arange(vals.size), idx)
    if rest.size:
        steps.append((f"{rest.size} other features", float(vals[rest].sum())))
    steps = steps[::-1]  # drawn bottom-up: the smallest step is at the bottom
    size = fig_size or (6.5, max(2.5, 0.4 * len(steps) + 1.5))
    fig, ax = _target_axes(ax, size, use_pyplot)
    # SHAP-style: the bottom bar starts at base_value, each bar starts where the one
    # below ended, and the top bar ends at base_value + sum(values).
    lefts, widths, colours = [], [], []
    running = float(base_value)
    for _, v in steps:
        lefts.append(running)
        widths.append(v)
        colours.append(POS_RGB if v >= 0 else NEG_RGB)
        running += v
    end = running
    y = np.arange(len(steps))
    ax.barh(y, widths, left=lefts, color=colours)
    span = max_abs(np.asarray(widths)) or 1.0
    for yi, left, w in zip(y, lefts, widths):
        ax.text(
            left + w + (0.01 * span if w >= 0 else -0.01 * span),
            yi,
            f"{w:+.3g}",
            va="center",
            ha="left" if w >= 0 else "right",
            fontsize=8,
        )
    ax.set_yticks(y)
    ax.set_yticklabels([n for n, _ in steps])
    ax.margins(x=0.12)  # room for the value labels at both ends
    ax.axvline(float(base_value), color="#888", linestyle=":", linewidth=1)
    ax.axvline(end, color="#444", linestyle="--", linewidth=1)
    ax.set_xlabel(f"output (base {float(base_value):.3g} \u2192 {end:.3g})")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def tabular_html(
    values: Any,
    feature_names: Sequence[str] | None = None,
    *,
    inputs: Any = None,
    top_k: int | None = None,
    title: str | None = None,
    full_page: bool = True,
) -> str:
    """Self-contained HTML table of feature contributions with CSS bars.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray, shape (F,) or (1, F)
    feature_names : sequence of str, optional
    inputs : torch.Tensor or numpy.ndarray, shape (F,) or (1, F), optional
        Feature values shown next to each name.
    top_k : int, optional
        Rows to show (largest magnitude first).
    title : str, optional
    full_page : bool
        Complete document (default) or styled fragment.

    Returns
    -------
    str
    """
    func = "tabular_html"
    vals = feature_values(values, func)
    names = feature_labels(feature_names, vals.size, func)
    xs = None if inputs is None else feature_values(inputs, func, "inputs")
    if xs is not None and xs.size != vals.size:
        raise ValueError(
            f"The 'inputs' parameter of {func} must have one value per feature ({vals.size}). "
            f"Got {xs.size}."
        )
    scale = max_abs(vals) or 1.0
    rows = []
    for i in _top(vals, top_k, func):
        v = float(vals[i])
        width = 50.0 * abs(v) / scale  # half the cell per side: negatives grow left of centre
        r, g, b = POS_RGB if v >= 0 else NEG_RGB
        colour = f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})"
        pos = "left:50%" if v >= 0 else "right:50%"
        value_cell = "" if xs is None else f'<td class="wb-mono">{xs[i]:.6g}</td>'
        rows.append(
            f"<tr><td>{escape(names[i])}</td>{value_cell}"
            f'<td class="wb-mono">{v:+.4g}</td><td class="wb-bar-cell">'
            f'<span class="wb-bar" style="position:absolute;{pos};top:4px;width:{width:.2f}%;'
            f'background:{colour}" title="{escape(names[i])}: {v:+.4f}"></span></td></tr>'
        )
    head_value = "" if xs is None else "<th>value</th>"
    table = (
        f'<table class="wb-features"><thead><tr><th>feature</th>{head_value}'
        f"<th>attribution</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    body = (f"<h1>{escape(title)}</h1>\n" if title else "") + table
    return page(body, title=title or "whybox feature attribution") if full_page else fragment(body)
