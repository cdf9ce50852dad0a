"""Save and plot the rows of :func:`whybox.metrics.run_benchmark`.

:func:`save_benchmark` writes the rows as CSV, JSON or a Markdown table (by the file's
suffix); :func:`load_benchmark` reads a CSV / JSON file back into rows; :func:`plot_benchmark`
draws one heatmap per metric (methods down, tasks across, each cell annotated), so a
method's faithfulness, agreement and time can be compared at a glance.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from whybox.core.validation import fail

from .benchmark import COLUMNS, REFERENCES

__all__ = ["save_benchmark", "load_benchmark", "plot_benchmark", "PLOT_METRICS", "FORMATS"]

#: file suffix -> format name understood by :func:`save_benchmark`
FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown"}
#: the metrics :func:`plot_benchmark` draws by default (one panel each)
PLOT_METRICS = ("top_k_agreement", "rank_correlation", "deletion_auc", "time_s")
_FIELDS = (*COLUMNS, "note")
# higher is better for these; lower for the others (colour maps point the same way)
#: curve areas depend on each task's model and scale: coloured within each task (column)
_PER_TASK = {"deletion_auc", "insertion_auc"}
_HIGHER_IS_BETTER = {
    "top_k_agreement": True,
    "sign_agreement": True,
    "rank_correlation": True,
    "relevance_mass": True,
    "insertion_auc": True,
    "deletion_auc": False,
    "time_s": False,
}


def save_benchmark(
    rows: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
) -> Path:
    """Write benchmark rows to ``path`` as CSV, JSON or a Markdown table.

    Parameters
    ----------
    rows : iterable of dict
        As returned by :func:`whybox.metrics.run_benchmark` (one per task and method).
    path : str or path-like
        The file to write (parent folders are created).
    format : {"csv", "json", "markdown"}, optional, keyword-only
        ``None``: from the suffix of ``path`` (``.csv``, ``.json``, ``.md``).

    Returns
    -------
    pathlib.Path
        The file written. NaN (not run / undefined) is an empty CSV cell, ``null`` in JSON
        and ``-`` in Markdown.
    """
    rows = [dict(row) for row in rows]
    target = Path(path)
    kind = format if format is not None else FORMATS.get(target.suffix.lower())
    if kind not in set(FORMATS.values()):
        fail(
            "save_benchmark",
            "format" if format is not None else "path",
            f"a format in {sorted(set(FORMATS.values()))} or a path ending in {', '.join(FORMATS)}",
            format if format is not None else str(path),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fields = list(_FIELDS) + sorted({k for row in rows for k in row} - set(_FIELDS))
    if kind == "csv":
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _plain(row.get(k), empty="") for k in fields})
    elif kind == "json":
        data = [{k: _plain(row.get(k), empty=None) for k in fields if k in row} for row in rows]
        target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    else:
        target.write_text(_markdown(rows) + "\n", encoding="utf-8")
    return target


def load_benchmark(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read rows written by :func:`save_benchmark` (CSV or JSON) back.

    Parameters
    ----------
    path : str or path-like
        A ``.csv`` or ``.json`` file.

    Returns
    -------
    list of dict
        Metric columns as floats (``nan`` where empty / ``null``), the others as strings.
    """
    source = Path(path)
    kind = FORMATS.get(source.suffix.lower())
    if kind not in ("csv", "json"):
        fail("load_benchmark", "path", "a .csv or .json file", str(path))
    if kind == "json":
        raw = json.loads(source.read_text(encoding="utf-8"))
    else:
        with source.open(newline="", encoding="utf-8") as handle:
            raw = list(csv.DictReader(handle))
    numeric = set(COLUMNS[3:])
    return [
        {k: (_number(v) if k in numeric else ("" if v is None else v)) for k, v in row.items()}
        for row in raw
    ]


def plot_benchmark(
    rows: Iterable[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = PLOT_METRICS,
    path: str | os.PathLike[str] | None = None,
    references: bool = True,
    use_pyplot: bool = False,
) -> Any:
    """One heatmap per metric: methods down, tasks across, every cell annotated.

    Parameters
    ----------
    rows : iterable of dict
        As returned by :func:`whybox.metrics.run_benchmark`.
    metrics : sequence of str, keyword-only
        Columns to draw, one panel each (see :data:`whybox.metrics.benchmark.COLUMNS`).
    path : str or path-like, optional, keyword-only
        Also save the figure there (``.png``, ``.svg``, ``.pdf``: matplotlib's formats).
    references : bool, keyword-only
        Keep the ``"random"`` / ``"ground_truth"`` rows (they frame the numbers).
    use_pyplot : bool, keyword-only
        Build the figure through pyplot (for notebooks that display it); a bare ``Figure``
        otherwise (never pops up, never leaks in loops).

    Returns
    -------
    matplotlib.figure.Figure
        Cells of methods that did not run on a task are grey. Better is yellow, worse is
        dark blue (viridis) in every panel: higher is better except for ``deletion_auc``
        and ``time_s`` (drawn on a log scale). The curve areas (``deletion_auc``,
        ``insertion_auc``) depend on each task's model, so their colours are scaled within
        each task; the other panels share one scale.
    """
    import numpy as np
    from matplotlib.colors import LogNorm

    from whybox.viz._mpl import new_figure

    rows = [dict(row) for row in rows]
    known = set(COLUMNS[3:])
    bad = [m for m in metrics if m not in known]
    if not metrics or bad:
        fail("plot_benchmark", "metrics", f"names from {sorted(known)}", bad or metrics)
    if not references:
        rows = [r for r in rows if r.get("method") not in REFERENCES]
    ran = [r for r in rows if r.get("status") == "ok"]
    if not ran:
        fail("plot_benchmark", "rows", "at least one row with status 'ok'", len(rows))
    tasks = list(dict.fromkeys(str(r["task"]) for r in ran))
    methods = list(dict.fromkeys(str(r["method"]) for r in ran))
    index = {(str(r["task"]), str(r["method"])): r for r in ran}
    width = max(4.0, 1.1 * len(tasks) + 2.2)
    height = max(3.0, 0.32 * len(methods) + 1.6)
    fig, axes = new_figure(
        (width * len(metrics), height), use_pyplot, nrows=1, ncols=len(metrics), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics):
        values = np.full((len(methods), len(tasks)), np.nan)
        for i, method in enumerate(methods):
            for j, task in enumerate(tasks):
                row = index.get((task, method))
                if row is not None:
                    values[i, j] = _number(row.get(metric))
        better_high = _HIGHER_IS_BETTER.get(metric, True)
        per_task = metric in _PER_TASK
        shown = _per_column(values) if per_task else values
        finite = shown[np.isfinite(shown)]
        norm = None
        if metric == "time_s" and finite.size and (finite > 0).any():
            positive = finite[finite > 0]
            norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 1.01))
            shown = np.where(shown > 0, shown, np.nan)
        cmap = _cmap(better_high)
        image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(methods)):
            for j in range(len(tasks)):
                if np.isfinite(values[i, j]) and np.isfinite(shown[i, j]):
                    shade = image.norm(shown[i, j])
                    dark = (shade < 0.45) if better_high else (shade > 0.55)
                    ax.text(
                        j,
                        i,
                        _short(values[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
        ax.set_xticks(range(len(tasks)), tasks, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        direction = "higher" if better_high else "lower"
        scope = "; colour per task" if per_task else ""
        ax.set_title(f"{metric} ({direction} is better{scope})", fontsize=9)
        if not per_task:
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _per_column(values: Any) -> Any:
    """``values`` min-max scaled to [0, 1] within each column (NaN kept; a constant
    column is 0.5)."""
    import numpy as np

    out = np.full_like(values, np.nan)
    for j in range(values.shape[1]):
        column = values[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        low, high = column[finite].min(), column[finite].max()
        span = high - low
        out[finite, j] = (column[finite] - low) / span if span > 0 else 0.5
    return out


def _cmap(higher_is_better: bool) -> Any:
    import matplotlib

    cmap = matplotlib.colormaps["viridis" if higher_is_better else "viridis_r"].copy()
    cmap.set_bad("#dddddd")
    return cmap


def _markdown(rows: list[dict[str, Any]]) -> str:
    columns = [c for c in COLUMNS if any(c in row for row in rows)] + ["note"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _plain(value: Any, *, empty: Any) -> Any:
    """A JSON / CSV-ready value: NaN becomes ``empty``, numbers stay numbers."""
    if isinstance(value, float) and math.isnan(value):
        return empty
    if value is None:
        return empty
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _short(value: float) -> str:
    if abs(value) >= 100 or (0 < abs(value) < 0.01):
        return f"{value:.1e}"
    return f"{value:.2f}"
