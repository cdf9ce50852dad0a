"""Native entry points that pick an image, text or tabular view from the data.

The ``auto`` rule (see :func:`infer_kind`):

1. ``tokens`` given -> ``"text"``;
2. otherwise drop a leading batch dimension of size 1 from ``(1, F)`` / ``(1, C, H, W)``;
3. 1-D ``(F,)`` -> ``"tabular"``; 2-D ``(H, W)`` or 3-D ``(C, H, W)`` / ``(H, W, C)`` ->
   ``"image"``; anything else is an error asking for an explicit ``kind``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from whybox.viz._arrays import to_numpy
from whybox.viz.html import escape, figure_img_tag, fragment, page

KINDS = ("auto", "image", "text", "tabular")


def infer_kind(attributions: Any, tokens: Sequence[str] | None = None) -> str:
    """Apply the ``auto`` rule and return ``"image"``, ``"text"`` or ``"tabular"``.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
    tokens : sequence of str, optional

    Returns
    -------
    str
    """
    if tokens is not None:
        return "text"
    shape = to_numpy(attributions, "attributions", "infer_kind", dtype=None).shape
    if len(shape) in (2, 4) and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 1:
        return "tabular"
    if len(shape) in (2, 3):
        return "image"
    raise ValueError(
        "Cannot choose a view for attributions of shape "
        f"{tuple(shape)}: pass kind='image', 'text' or 'tabular' (and tokens for text)."
    )


def _kind(kind: str, attributions: Any, tokens: Any, func: str) -> str:
    if kind not in KINDS:
        raise ValueError(
            f"The 'kind' parameter of {func} must be one of {list(KINDS)}. Got {kind!r}."
        )
    kind = infer_kind(attributions, tokens) if kind == "auto" else kind
    if kind == "text" and tokens is None:
        raise ValueError(f"The 'tokens' parameter of {func} is required for kind='text'.")
    return kind


def plot_attribution(
    attributions: Any,
    inputs: Any = None,
    *,
    kind: str = "auto",
    tokens: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    ax: Any = None,
    method: str | None = None,
    sign: str = "all",
    chart: str = "bar",
    top_k: int | None = None,
    base_value: float = 0.0,
    outlier_perc: float = 2,
    cmap: Any = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
) -> Any:
    """Plot attributions with matplotlib, choosing the view from the data.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
        Image ``(C, H, W)``/``(H, W, C)``/``(H, W)`` (optional batch of 1), tokens
        ``(T,)``/``(T, D)``, or features ``(F,)``/``(1, F)``.
    inputs : torch.Tensor or numpy.ndarray, optional
        The explained input (image underneath the heat map; unused for text/tabular).
    kind : {"auto", "image", "text", "tabular"}
        View; ``auto`` follows the rule in the module docstring.
    tokens : sequence of str, optional
        Token strings (text view).
    feature_names : sequence of str, optional
        Feature names (tabular view).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new bare ``Figure`` otherwise.
    method : str, optional
        Image method; default ``blended_heat_map`` with ``inputs``, else ``heat_map``.
    sign : {"all", "positive", "negative", "absolute_value"}
        Image sign.
    chart : {"bar", "waterfall"}
        Tabular chart.
    top_k : int, optional
        Bars to show (text default 10, tabular: all for bar, 10 for waterfall).
    base_value : float
        Waterfall start.
    outlier_perc, cmap
        Image normalisation and colormap.
    title : str, optional
    fig_size : tuple of float, optional
    use_pyplot : bool
        Create the figure through pyplot.

    Returns
    -------
    matplotlib.figure.Figure
        Export with ``fig.savefig("out.png")`` or ``"out.svg"``.
    """
    func = "plot_attribution"
    kind = _kind(kind, attributions, tokens, func)
    if kind == "image":
        from whybox.viz.image import render_image_attr

        if method is None:
            method = "blended_heat_map" if inputs is not None else "heat_map"
        fig, _ = render_image_attr(
            attributions,
            inputs,
            method=method,
            sign=sign,
            ax=ax,
            outlier_perc=outlier_perc,
            cmap=cmap,
            show_colorbar=True,
            title=title,
            fig_size=fig_size or (6, 6),
            use_pyplot=use_pyplot,
            func=func,
        )
        return fig
    if kind == "text":
        from whybox.viz.text import plot_top_tokens

        return plot_top_tokens(
            attributions,
            tokens=tokens,
            k=top_k or 10,
            ax=ax,
            title=title,
            fig_size=fig_size,
            use_pyplot=use_pyplot,
        )
    from whybox.viz.tabular import plot_feature_bar, plot_waterfall

    if chart == "bar":
        return plot_feature_bar(
            attributions,
            feature_names,
            top_k=top_k,
            ax=ax,
            title=title,
            fig_size=fig_size,
            use_pyplot=use_pyplot,
            func=func,
        )
    if chart == "waterfall":
        return plot_waterfall(
            attributions,
            feature_names,
            base_value=base_value,
            top_k=top_k if top_k is not None else 10,
            ax=ax,
            title=title,
            fig_size=fig_size,
            use_pyplot=use_pyplot,
            func=func,
        )
    raise ValueError(
        f"The 'chart' parameter of {func} must be one of ['bar', 'waterfall']. Got {chart!r}."
    )


def attribution_html(
    attributions: Any,
    inputs: Any = None,
    *,
    kind: str = "auto",
    tokens: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    full_page: bool = True,
    aggregate: bool = False,
    top_k: int | None = None,
    sign: str = "all",
) -> str:
    """Self-contained HTML view of attributions (no scripts, no network, opens offline).

    Text becomes saliency chips with hover values, tabular data a table with CSS bars,
    and images an embedded PNG (base64 ``data:`` URI) of the input and its heat map.

    Parameters
    ----------
    attributions, inputs, kind, tokens, feature_names
        As in :func:`plot_attribution`.
    title : str, optional
        Page heading (escaped).
    full_page : bool
        Complete ``<!DOCTYPE html>`` document (default) or a fragment for notebooks.
    aggregate : bool
        Text: merge WordPiece/BPE sub-words into words.
    top_k : int, optional
        Tabular: rows to show.
    sign : str
        Image: sign of the heat map.

    Returns
    -------
    str
    """
    func = "attribution_html"
    kind = _kind(kind, attributions, tokens, func)
    if kind == "text":
        from whybox.viz.text import text_html

        return text_html(
            attributions, tokens=tokens, title=title, aggregate=aggregate, full_page=full_page
        )
    if kind == "tabular":
        from whybox.viz.tabular import tabular_html

        return tabular_html(
            attributions,
            feature_names,
            inputs=inputs,
            top_k=top_k,
            title=title,
            full_page=full_page,
        )
    from whybox.viz.image import render_image_attr_multiple

    # the heat map panel is the one the colour bar describes (white at zero); the overlay
    # blends it over the input, where zero shows the input's own grey
    methods = ["heat_map"]
    titles = None
    if inputs is not None:
        methods = ["original_image", "heat_map", "blended_heat_map"]
        titles = ["input", f"attribution ({sign})", "overlay"]
    fig, _ = render_image_attr_multiple(
        attributions,
        inputs,
        methods=methods,
        signs=[sign] * len(methods),
        titles=titles,
        fig_size=(4.0 * len(methods), 4.4),
        show_colorbar=True,
        func=func,
    )
    body = (f"<h1>{escape(title)}</h1>\n" if title else "") + figure_img_tag(fig)
    return page(body, title=title or "whybox image attribution") if full_page else fragment(body)


class AttributionView:
    """Bundle of attributions + metadata with ``.plot()``, ``.to_html()`` and notebook display.

    The engine's result objects can delegate to this (it has no engine dependency).

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
    inputs : torch.Tensor or numpy.ndarray, optional
    kind : {"auto", "image", "text", "tabular"}
    tokens : sequence of str, optional
    feature_names : sequence of str, optional
    title : str, optional
    """

    def __init__(
        self,
        attributions: Any,
        inputs: Any = None,
        *,
        kind: str = "auto",
        tokens: Sequence[str] | None = None,
        feature_names: Sequence[str] | None = None,
        title: str | None = None,
    ) -> None:
        self.attributions = attributions
        self.inputs = inputs
        self.tokens = tokens
        self.feature_names = feature_names
        self.title = title
        self.kind = _kind(kind, attributions, tokens, "AttributionView")

    def plot(self, **kwargs: Any) -> Any:
        """Matplotlib figure; keyword options as in :func:`plot_attribution`."""
        kwargs.setdefault("title", self.title)
        return plot_attribution(
            self.attributions,
            self.inputs,
            kind=self.kind,
            tokens=self.tokens,
            feature_names=self.feature_names,
            **kwargs,
        )

    def to_html(self, *, full_page: bool = True, **kwargs: Any) -> str:
        """Self-contained HTML; keyword options as in :func:`attribution_html`."""
        kwargs.setdefault("title", self.title)
        return attribution_html(
            self.attributions,
            self.inputs,
            kind=self.kind,
            tokens=self.tokens,
            feature_names=self.feature_names,
            full_page=full_page,
            **kwargs,
        )

    def _repr_html_(self) -> str:
        return self.to_html(full_page=False)

    def save_html(self, path: str | os.PathLike[str]) -> str:
        """Write the full page to ``path``; returns the path."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_html(full_page=True))
        return os.fspath(path)
