"""Views of metric results: the curve, similarity or samples behind a trust score.

Every result of :mod:`whybox.metrics` carries what is needed to draw it (a deletion
curve's points, the per-layer similarities of a randomisation check, each perturbation's
sensitivity...). :func:`plot_metric` draws it with matplotlib, :func:`metric_html` wraps the
drawing and a table of its numbers in self-contained HTML (no scripts, no network) and
:func:`metric_table` returns that table's rows. The results' ``.plot()``, ``.to_html()``
and ``_repr_html_`` call these.

Views depend on results, never the reverse, and this module never imports
:mod:`whybox.metrics`: a result is recognised by the fields it has (duck typing), so any
object with the same fields draws the same way.

Kinds (:func:`metric_kind`):

========================  ============================================================
``"curve"``               deletion / insertion / AOPC / ROAD: ``curve``, ``fractions``
``"randomisation"``       model-parameter randomisation: ``layers``, ``similarity``
``"random_logit"``        random-logit test: ``similarity``, ``random_targets``
``"correlation"``         faithfulness correlation: ``attribution_sums``, ``output_drops``
``"robustness"``          max / avg sensitivity, local Lipschitz: ``samples``, ``radius``
``"text_thresholds"``     comprehensiveness / sufficiency: ``drops``, ``thresholds``
``"text_loo"``            tau-LOO: ``drops`` per token, ``thresholds`` is ``None``
``"non_sensitivity"``     non-sensitivity: ``violations``, ``effects``, ``attributions``
``"invariance"``          input invariance: ``difference``, ``invariant``
========================  ============================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from whybox.core.validation import fail
from whybox.viz import _mpl
from whybox.viz._arrays import NEG_RGB, POS_RGB, to_numpy
from whybox.viz.html import escape, figure_img_tag, fragment, page

__all__ = ["metric_kind", "plot_metric", "metric_html", "metric_table", "KINDS"]

#: kind -> the fields that identify it (checked in this order: the first match wins)
KINDS: dict[str, tuple[str, ...]] = {
    "curve": ("score", "curve", "fractions", "name", "order"),
    "randomisation": ("layers", "similarity", "mode", "threshold"),
    "random_logit": ("similarity", "random_targets"),
    "correlation": ("score", "attribution_sums", "output_drops"),
    "robustness": ("score", "samples", "radius", "name"),
    "text_thresholds": ("score", "drops", "thresholds"),
    "non_sensitivity": ("violations", "effects", "attributions"),
    "invariance": ("difference", "invariant"),
}
#: examples drawn one by one (thin lines, boxes) before the view shows only their summary
MAX_DRAWN = 50
#: per-example scores listed in the HTML table (the summary covers every example)
MAX_LISTED = 1000
_POS = POS_RGB
_NEG = NEG_RGB
_MEAN = "#1f4e9c"
_BOX = (0.45, 0.6, 0.9)  # the boxes' fill (RGB; drawn half transparent)
_CURVE_SCORE = {"aopc": "AOPC"}  # every other curve's score is its area
_X_LABELS = {
    "deletion": "fraction of features removed",
    "insertion": "fraction of features inserted",
    "aopc": "fraction of features removed",
    "road": "fraction of features imputed",
    "comprehensiveness": "fraction of tokens removed",
    "sufficiency": "fraction of tokens kept",
}


# -- recognising a result --------------------------------------------------------------------
def metric_kind(result: Any, *, func: str = "whybox.viz.metric_kind") -> str:
    """The kind of metric result ``result`` is, from the fields it has.

    Parameters
    ----------
    result : object
        A result of :mod:`whybox.metrics` (or any object with the same fields).
    func : str, optional, keyword-only
        The function named in the error message.

    Returns
    -------
    str
        One of :data:`KINDS` or ``"text_loo"`` (a text result without thresholds).
    """
    for kind, names in KINDS.items():
        if all(hasattr(result, name) for name in names):
            if kind == "text_thresholds" and result.thresholds is None:
                return "text_loo"
            return kind
    fail(
        func,
        "result",
        "a result of whybox.metrics (deletion, insertion, aopc, road, faithfulness_correlation, "
        "model_randomisation, random_logit, max/avg_sensitivity, local_lipschitz, "
        "comprehensiveness, sufficiency, tau_loo, non_sensitivity, input_invariance)",
        result,
        type_error=True,
    )
    raise AssertionError("unreachable")  # pragma: no cover - fail always raises


def _values(result: Any, name: str, func: str) -> np.ndarray:
    return to_numpy(getattr(result, name), name, func)


def _rows(result: Any, kind: str, func: str) -> int:
    first = {
        "randomisation": "similarity",
        "random_logit": "similarity",
        "non_sensitivity": "violations",
        "invariance": "difference",
    }.get(kind, "score")
    values = _values(result, first, func)
    return int(values.shape[1] if kind == "randomisation" else values.shape[0])


def _check_example(example: Any, n: int, func: str) -> int | None:
    """``None`` (every example) or a valid row index (negative ones count from the end)."""
    if example is None:
        return None
    if isinstance(example, bool) or not isinstance(example, (int, np.integer)):
        fail(func, "example", "None (every example) or an int", example, type_error=True)
    if not -n <= int(example) < n:
        fail(func, "example", f"an index of one of the result's {n} example(s)", example)
    return int(example) % n


def _label(name: str) -> str:
    return name.replace("_", " ")


# -- drawing -----------------------------------------------------------------------------------
def plot_metric(
    result: Any,
    *,
    example: int | None = None,
    tokens: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
) -> Any:
    """Draw a metric result with matplotlib.

    Parameters
    ----------
    result : metric result
        What a :mod:`whybox.metrics` function returned (see the module's table of kinds).
    example : int, optional, keyword-only
        Draw this example alone. ``None`` (default): every example (thin lines, boxes or
        points) and their mean in bold; results whose points do not share a scale across
        examples (faithfulness correlation's scatter, tau-LOO's tokens, non-sensitivity's
        features) draw the distribution of their per-example scores instead, or example
        0 when there is only one.
    tokens : sequence of str, optional, keyword-only
        tau-LOO only: the example's ``T`` tokens, the bars' labels.
    ax : matplotlib Axes, optional, keyword-only
        Draw into this axes instead of a new figure.
    title : str, optional, keyword-only
        Defaults to the metric's name and its verdict.
    fig_size : (float, float), optional, keyword-only
        Figure size in inches for a new figure.
    use_pyplot : bool, optional, keyword-only
        Create the figure through pyplot (and show it on interactive backends). Default
        ``False``: a bare figure that never pops up or leaks.

    Returns
    -------
    matplotlib.figure.Figure
    """
    func = "whybox.viz.plot_metric"
    kind = metric_kind(result, func=func)
    index = _check_example(example, _rows(result, kind, func), func)
    if tokens is not None and kind != "text_loo":
        fail(func, "tokens", "None except for a tau_loo result", tokens)
    own_figure = ax is None
    if own_figure:
        fig, ax = _mpl.new_figure(fig_size or (6.4, 4.0), use_pyplot)
    else:
        ax = _mpl.first_axis(ax)
        fig = ax.figure
    heading = _DRAW[kind](ax, result, index, tokens, func)
    ax.set_title(title if title is not None else heading)
    if own_figure:
        with warnings.catch_warnings():
            # long layer names can overflow; the figure is still drawn
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
    _mpl.show_if_interactive(use_pyplot)
    return fig


def _lines(ax: Any, x: np.ndarray, rows: np.ndarray, index: int | None, label: str) -> None:
    """Each example's line (thin) and their mean (bold), or one example's line."""
    if index is not None:
        ax.plot(x, rows[index], color=_MEAN, marker="o", markersize=3, label=label)
        return
    for row in rows[:MAX_DRAWN]:
        ax.plot(x, row, color="0.6", linewidth=0.7, alpha=0.5)
    if rows.shape[0]:
        mean = np.nanmean(rows, axis=0) if np.isfinite(rows).any() else rows[0]
        ax.plot(x, mean, color=_MEAN, linewidth=2.2, marker="o", markersize=3, label=label)


def _score_text(scores: np.ndarray, index: int | None) -> str:
    if index is not None:
        return f"{scores[index]:.4g}"
    finite = scores[np.isfinite(scores)]
    return f"{finite.mean():.4g}" if finite.size else "nan"


def _draw_curve(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    name, order = str(result.name), str(result.order)
    scores = _values(result, "score", func)
    rows = _values(result, "curve", func)
    x = _values(result, "fractions", func)
    summary = _CURVE_SCORE.get(name, "AUC")
    who = f"example {index}" if index is not None else f"mean of {rows.shape[0]} example(s)"
    _lines(ax, x, rows, index, f"{who}, {summary} = {_score_text(scores, index)}")
    if index is None and rows.shape[0] and name != "aopc":
        mean = np.nanmean(rows, axis=0) if np.isfinite(rows).any() else rows[0]
        if (mean >= 0).all():  # the area the AUC measures (a probability-like output)
            ax.fill_between(x, mean, alpha=0.12, color=_MEAN)
    ax.set_xlabel(_X_LABELS.get(name, "fraction of features"))
    ax.set_ylabel("model output")
    ax.set_xlim(float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 1.0)
    if rows.shape[0]:
        ax.legend(loc="best", fontsize="small")
    return f"{_label(name)} curve ({order.upper()})"


def _draw_randomisation(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    layers = [str(name) for name in result.layers]
    similarity = _values(result, "similarity", func)  # (n_layers, N)
    threshold = float(result.threshold)
    x = np.arange(len(layers))
    rows = similarity.T  # (N, n_layers)
    label = f"example {index}" if index is not None else f"mean of {rows.shape[0]} example(s)"
    if index is None and rows.shape[0] > 1 and np.isfinite(rows).any():
        low, high = np.nanquantile(rows, [0.25, 0.75], axis=0)
        ax.fill_between(x, low, high, color=_MEAN, alpha=0.15, label="25th-75th percentile")
    _lines(ax, x, rows, index, label)
    ax.axhline(
        threshold, color=_NEG, linestyle="--", linewidth=1.2, label=f"threshold {threshold:g}"
    )
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45 if len(layers) > 4 else 0, ha="right")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel(f"layers randomised ({result.mode}, top first)")
    ax.set_ylabel("Spearman rank correlation")
    ax.legend(loc="best", fontsize="small")
    verdict = "FLAGGED: maps did not change" if _flagged(result) else "passed: maps changed"
    return f"{result.mode} randomisation: {verdict}"


def _flagged(result: Any) -> bool:
    flagged = getattr(result, "flagged", None)
    if isinstance(flagged, bool):
        return flagged
    means = np.nan_to_num(np.nanmean(_values(result, "similarity", "flagged"), axis=1))
    return bool((means >= float(result.threshold)).all())


def _histogram(ax: Any, values: np.ndarray, xlabel: str, *, bounds: Any = None) -> None:
    finite = values[np.isfinite(values)]
    if finite.size:
        bins = 20 if bounds is not None else min(30, max(5, finite.size))
        ax.hist(finite, bins=bins, range=bounds, color=_MEAN, alpha=0.75)
        ax.axvline(
            float(finite.mean()), color=_NEG, linewidth=1.5, label=f"mean {finite.mean():.4g}"
        )
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")


def _draw_random_logit(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    similarity = _values(result, "similarity", func)
    if index is not None:
        other = int(_values(result, "random_targets", func)[index])
        ax.bar([0], [similarity[index]], color=_MEAN)
        ax.set_xticks([0])
        ax.set_xticklabels([f"example {index} vs class {other}"])
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("Spearman rank correlation")
        return f"random logit: similarity {similarity[index]:.4g}"
    _histogram(
        ax,
        similarity,
        "Spearman rank correlation (target map vs random class map)",
        bounds=(-1.0, 1.0),
    )
    return f"random logit: mean similarity {_score_text(similarity, None)}"


def _draw_correlation(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    scores = _values(result, "score", func)
    if index is None and scores.shape[0] != 1:
        _histogram(ax, scores, "faithfulness correlation (Pearson)", bounds=(-1.0, 1.0))
        return f"faithfulness correlation: mean {_score_text(scores, None)}"
    index = 0 if index is None else index
    sums = _values(result, "attribution_sums", func)[index]
    drops = _values(result, "output_drops", func)[index]
    ax.scatter(sums, drops, s=14, color=_MEAN, alpha=0.8)
    if sums.size > 1 and np.ptp(sums) > 0 and np.isfinite(sums).all() and np.isfinite(drops).all():
        slope, intercept = np.polyfit(sums, drops, 1)
        xs = np.linspace(sums.min(), sums.max(), 2)
        ax.plot(xs, slope * xs + intercept, color=_NEG, linewidth=1.2, label="least-squares fit")
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel("sum of attributions of the removed subset")
    ax.set_ylabel("output drop")
    return f"faithfulness correlation, example {index}: r = {scores[index]:.4g}"


def _draw_robustness(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    name = _label(str(result.name))
    scores = _values(result, "score", func)
    samples = _values(result, "samples", func)
    if index is not None:
        _histogram(ax, samples[index], f"{name} of each perturbation")
        ax.axvline(
            scores[index],
            color=_POS,
            linewidth=1.5,
            linestyle="--",
            label=f"score {scores[index]:.4g}",
        )
        ax.legend(loc="best", fontsize="small")
        return f"{name}, example {index} (radius {float(result.radius):g})"
    shown = samples[:MAX_DRAWN]
    columns = [row[np.isfinite(row)] for row in shown]
    positions = np.arange(len(columns))
    kept = [i for i, column in enumerate(columns) if column.size]
    if kept:
        ax.boxplot(
            [columns[i] for i in kept],
            positions=positions[kept],
            widths=0.6,
            patch_artist=True,
            boxprops={"facecolor": (*_BOX, 0.45), "edgecolor": _MEAN},
            medianprops={"color": _MEAN, "linewidth": 1.5},
        )
    ax.scatter(positions, scores[: len(columns)], color=_NEG, s=18, zorder=3, label="score")
    ax.set_xticks(positions)
    ax.set_xticklabels([str(i) for i in positions], fontsize="small")
    ax.set_xlabel("example" + (f" (first {MAX_DRAWN})" if samples.shape[0] > MAX_DRAWN else ""))
    ax.set_ylabel(f"{name} per perturbation")
    if len(columns):
        ax.legend(loc="best", fontsize="small")
    return f"{name}: mean {_score_text(scores, None)} (radius {float(result.radius):g})"


def _draw_text_thresholds(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    name = str(getattr(result, "name", "") or "text faithfulness")
    scores = _values(result, "score", func)
    rows = _values(result, "drops", func)
    x = _values(result, "thresholds", func)
    who = f"example {index}" if index is not None else f"mean of {rows.shape[0]} example(s)"
    _lines(ax, x, rows, index, f"{who}, score = {_score_text(scores, index)}")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel(_X_LABELS.get(name, "fraction of tokens"))
    ax.set_ylabel("drop of the target's output")
    if rows.shape[0]:
        ax.legend(loc="best", fontsize="small")
    return _label(name)


def _draw_text_loo(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    scores = _values(result, "score", func)
    if index is None and scores.shape[0] != 1:
        _histogram(
            ax, scores, "Kendall tau-b (attributions vs leave-one-out effects)", bounds=(-1.0, 1.0)
        )
        return f"tau-LOO: mean {_score_text(scores, None)}"
    index = 0 if index is None else index
    effects = _values(result, "drops", func)[index]
    if tokens is not None:
        tokens = [str(t) for t in tokens]
        if len(tokens) != effects.shape[0]:
            fail(
                func,
                "tokens",
                f"one token per position ({effects.shape[0]})",
                f"{len(tokens)} token(s)",
                raw=True,
            )
    positions = np.arange(effects.shape[0])
    ax.bar(positions, effects, color=[_POS if v >= 0 else _NEG for v in effects])
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xticks(positions)
    ax.set_xticklabels(
        tokens if tokens is not None else [str(i) for i in positions],
        rotation=90 if effects.shape[0] > 8 else 0,
        fontsize="small",
    )
    ax.set_xlabel("token")
    ax.set_ylabel("leave-one-out effect")
    return f"tau-LOO, example {index}: tau = {scores[index]:.4g}"


def _draw_non_sensitivity(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    violations = _values(result, "violations", func)
    if index is None and violations.shape[0] != 1:
        shown = violations[:MAX_DRAWN]
        ax.bar(np.arange(shown.shape[0]), shown, color=_NEG)
        ax.set_xlabel("example")
        ax.set_ylabel("violations")
        return f"non-sensitivity: {int(violations.sum())} violation(s) in {violations.shape[0]} examples"
    index = 0 if index is None else index
    effects = _values(result, "effects", func)[index]
    attributions = np.abs(_values(result, "attributions", func)[index])
    ax.scatter(attributions, effects, s=16, color=_MEAN)
    ax.set_xlabel("|attribution| of the feature")
    ax.set_ylabel("|output change| when the feature is removed")
    return f"non-sensitivity, example {index}: {int(violations[index])} violation(s)"


def _draw_invariance(ax: Any, result: Any, index: int | None, tokens: Any, func: str) -> str:
    difference = _values(result, "difference", func)
    invariant = to_numpy(result.invariant, "invariant", func, dtype=bool)
    chosen = np.arange(difference.shape[0])[:MAX_DRAWN] if index is None else np.array([index])
    ax.bar(
        np.arange(chosen.size),
        difference[chosen],
        color=[_POS if invariant[i] else _NEG for i in chosen],
    )
    ax.set_xticks(np.arange(chosen.size))
    ax.set_xticklabels([str(i) for i in chosen], fontsize="small")
    ax.set_xlabel("example")
    ax.set_ylabel("largest change of an attribution")
    broken = int((~invariant).sum())
    return f"input invariance: {broken} of {invariant.size} example(s) not invariant"


_DRAW = {
    "curve": _draw_curve,
    "randomisation": _draw_randomisation,
    "random_logit": _draw_random_logit,
    "correlation": _draw_correlation,
    "robustness": _draw_robustness,
    "text_thresholds": _draw_text_thresholds,
    "text_loo": _draw_text_loo,
    "non_sensitivity": _draw_non_sensitivity,
    "invariance": _draw_invariance,
}


# -- numbers -----------------------------------------------------------------------------------
def _format(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.6g}"


def _stats(values: np.ndarray) -> list[tuple[str, str]]:
    finite = values[np.isfinite(values)]
    rows = [("examples", str(values.shape[0]))]
    if finite.size:
        rows += [
            ("mean", _format(float(finite.mean()))),
            ("std", _format(float(finite.std()))),
            ("min", _format(float(finite.min()))),
            ("max", _format(float(finite.max()))),
        ]
    if finite.size != values.size:
        rows.append(("undefined (NaN)", str(values.size - finite.size)))
    return rows


def metric_table(result: Any) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """The numbers :func:`metric_html` shows, as strings.

    Parameters
    ----------
    result : metric result

    Returns
    -------
    summary : list of (str, str)
        ``(quantity, value)`` rows: the metric, its verdict and the per-example score's
        count, mean, std, min and max (``NaN`` scores counted apart).
    header : list of str
        Column names of ``points``.
    points : list of list of str
        The points of the mean curve (fraction, mean output), the per-layer mean
        similarity (layer, mean, examples below the threshold) or the per-example
        scores, one row each.
    """
    func = "whybox.viz.metric_table"
    kind = metric_kind(result, func=func)
    if kind == "curve":
        rows = _values(result, "curve", func)
        mean = np.nanmean(rows, axis=0) if rows.shape[0] else np.full(rows.shape[1], np.nan)
        x = _values(result, "fractions", func)
        summary = [("metric", f"{result.name} ({str(result.order).upper()})")]
        summary += [
            (f"{_CURVE_SCORE.get(str(result.name), 'AUC')} {k}" if k != "examples" else k, v)
            for k, v in _stats(_values(result, "score", func))
        ]
        return (
            summary,
            ["fraction", "mean output"],
            [[_format(float(f)), _format(float(m))] for f, m in zip(x, mean)],
        )
    if kind == "randomisation":
        similarity = _values(result, "similarity", func)
        threshold = float(result.threshold)
        with np.errstate(invalid="ignore"):
            means = [
                float(np.nanmean(row)) if np.isfinite(row).any() else np.nan for row in similarity
            ]
        summary = [
            ("metric", f"{result.mode} model-parameter randomisation"),
            ("verdict", "flagged: maps did not change" if _flagged(result) else "passed"),
            ("threshold", _format(threshold)),
            ("examples", str(similarity.shape[1])),
        ]
        points = [
            [str(layer), _format(mean), str(int((row < threshold).sum()))]
            for layer, mean, row in zip(result.layers, means, similarity)
        ]
        return summary, ["layer", "mean similarity", "examples below threshold"], points
    score_name = {
        "random_logit": "similarity",
        "non_sensitivity": "violations",
        "invariance": "difference",
    }.get(kind, "score")
    scores = _values(result, score_name, func)
    title = {
        "random_logit": "random logit (Spearman similarity)",
        "correlation": "faithfulness correlation",
        "text_loo": "tau-LOO",
        "non_sensitivity": "non-sensitivity violations",
        "invariance": "input invariance (largest change)",
    }.get(kind) or _label(str(getattr(result, "name", "") or kind))
    summary = [("metric", title)]
    if kind == "robustness":
        summary.append(("radius", _format(float(result.radius))))
    summary += _stats(scores)
    if scores.shape[0] > MAX_LISTED:
        summary.append(("listed below", f"the first {MAX_LISTED} examples"))
    points = [[str(i), _format(float(v))] for i, v in enumerate(scores[:MAX_LISTED])]
    if kind == "text_thresholds":
        rows = _values(result, "drops", func)
        mean = np.nanmean(rows, axis=0) if rows.shape[0] else np.full(rows.shape[1], np.nan)
        x = _values(result, "thresholds", func)
        return (
            summary,
            ["fraction", "mean drop"],
            [[_format(float(f)), _format(float(m))] for f, m in zip(x, mean)],
        )
    return summary, ["example", score_name], points


def metric_html(
    result: Any,
    *,
    example: int | None = None,
    tokens: Sequence[str] | None = None,
    title: str | None = None,
    full_page: bool = True,
    dpi: float = 100,
    fig_size: tuple[float, float] | None = None,
) -> str:
    """Self-contained HTML of a metric result: its drawing and a table of its numbers.

    Parameters
    ----------
    result : metric result
    example, tokens, fig_size
        As :func:`plot_metric`.
    title : str, optional, keyword-only
        The page heading and the figure's title; defaults to the figure's own.
    full_page : bool, optional, keyword-only
        A complete HTML document (default) or a fragment for a notebook cell.
    dpi : float, optional, keyword-only
        Resolution of the embedded PNG.

    Returns
    -------
    str
        HTML with inline CSS and the figure as a ``data:`` URI: no scripts, no network.
    """
    func = "whybox.viz.metric_html"
    if not isinstance(full_page, bool):
        fail(func, "full_page", "a bool", full_page, type_error=True)
    fig = plot_metric(result, example=example, tokens=tokens, title=title, fig_size=fig_size)
    heading = fig.axes[0].get_title()
    image = figure_img_tag(fig, dpi=dpi, alt=heading)
    summary, header, points = metric_table(result)
    summary_rows = "".join(
        f'<tr><th>{escape(k)}</th><td class="wb-mono">{escape(v)}</td></tr>' for k, v in summary
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body_rows = "".join(
        "<tr>" + "".join(f'<td class="wb-mono">{escape(v)}</td>' for v in row) + "</tr>"
        for row in points
    )
    body = (
        f'<h1>{escape(heading)}</h1>\n<div class="wb-metric-figure">{image}</div>\n'
        f'<table class="wb-records wb-metric-summary">{summary_rows}</table>\n'
        f'<h2 style="font-size:1.05em">{escape(header[1])} per {escape(header[0])}</h2>\n'
        f'<table class="wb-records wb-metric-points"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body_rows}</tbody></table>"
    )
    return page(body, title=heading) if full_page else fragment(body)
