"""``.plot()``, ``.to_html()`` and ``_repr_html_`` for metric results.

Views depend on results, never the reverse: these look :mod:`whybox.viz.metrics` up at
run time (a dispatch, as :class:`~whybox.core.result.Explanation` does, not an import
edge from the metrics to the views), so ``import whybox.metrics`` never loads matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MetricViews"]


class MetricViews:
    """Mixin (no fields) giving a metric result its views."""

    __slots__ = ()

    def plot(self, **options: Any) -> Any:
        """Draw the result; shorthand for :func:`whybox.viz.metrics.plot_metric`.

        ``options``: ``example`` (one example; default every example and their mean),
        ``tokens``, ``ax``, ``title``, ``fig_size``, ``use_pyplot``. Returns a matplotlib
        Figure.
        """
        return importlib.import_module("whybox.viz.metrics").plot_metric(self, **options)

    def to_html(self, **options: Any) -> str:
        """Self-contained HTML (drawing and numbers); :func:`whybox.viz.metrics.metric_html`."""
        return importlib.import_module("whybox.viz.metrics").metric_html(self, **options)

    def _repr_html_(self) -> str | None:
        try:
            # a fragment: a notebook cell embeds it in its own page
            return self.to_html(full_page=False)
        except (ValueError, TypeError, ImportError):
            # Jupyter falls back to repr when the result cannot be drawn
            return None
