"""whybox views: images, text, time series and tabular charts; HTML that renders anywhere.

No model code lives here, and matplotlib is only imported inside the functions that
draw, so ``import whybox.viz`` stays cheap and never imports ``matplotlib.pyplot``.

Views of a result: :func:`plot` (matplotlib ``Figure``) and :func:`to_html` (``str``) take an
:class:`~whybox.core.result.Explanation` and draw one example; ``Explanation.plot()`` /
``.to_html()`` call them. Views depend on results, never the reverse.

Native entry points that take plain tensors/arrays plus metadata:

- :func:`plot_attribution` -> matplotlib ``Figure``; :func:`attribution_html` -> ``str``;
  :class:`AttributionView` bundles both for result objects (``.plot()``, ``.to_html()``,
  ``_repr_html_``). The ``auto`` rule: tokens given -> text; 1-D (or ``(1, F)``) ->
  tabular; 2-D/3-D (optionally with a batch of 1) -> image.
- text: :func:`text_html`, :func:`plot_top_tokens`, :func:`aggregate_subwords`,
  :func:`summarize_token_attributions`;
- tabular: :func:`plot_feature_bar`, :func:`plot_waterfall`, :func:`tabular_html`;
- image / time series: :func:`render_image_attr`, :func:`render_image_attr_multiple`,
  :func:`render_timeseries_attr`;
- attention (bertviz-compatible, offline HTML): :func:`head_view`, :func:`model_view`;
- metric results (deletion curves, randomisation checks, sensitivity samples...):
  :func:`plot_metric`, :func:`metric_html`, :func:`metric_table` (``result.plot()``).

The Captum-compatible names live in :mod:`whybox.attr.visualization`.
"""

from whybox.viz._arrays import normalize_attr
from whybox.viz.attention import head_view, model_view
from whybox.viz.auto import AttributionView, attribution_html, infer_kind, plot_attribution
from whybox.viz.explanation import plot, to_html
from whybox.viz.html import HTMLView
from whybox.viz.image import render_image_attr, render_image_attr_multiple
from whybox.viz.metrics import metric_html, metric_kind, metric_table, plot_metric
from whybox.viz.tabular import plot_feature_bar, plot_waterfall, tabular_html
from whybox.viz.text import (
    aggregate_subwords,
    plot_top_tokens,
    summarize_token_attributions,
    text_html,
    text_view,
)
from whybox.viz.timeseries import render_timeseries_attr

__all__ = [
    "AttributionView",
    "HTMLView",
    "aggregate_subwords",
    "attribution_html",
    "head_view",
    "infer_kind",
    "metric_html",
    "metric_kind",
    "metric_table",
    "model_view",
    "normalize_attr",
    "plot",
    "plot_attribution",
    "plot_feature_bar",
    "plot_metric",
    "plot_top_tokens",
    "plot_waterfall",
    "render_image_attr",
    "render_image_attr_multiple",
    "render_timeseries_attr",
    "summarize_token_attributions",
    "tabular_html",
    "text_html",
    "text_view",
    "to_html",
]
