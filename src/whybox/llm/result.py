"""The result of attributing generated text: sequence- and token-level attributions.

:class:`LLMAttributionResult` keeps Captum 0.9's fields and plots (``seq_attr``,
``token_attr``, ``output_probs``, ``input_tokens``, ``output_tokens``, ``inp``,
``seq_attr_dict``, ``plot_token_attr``, ``plot_seq_attr``, ``plot_image_heatmap``) and adds
views and reshaping: :meth:`~LLMAttributionResult.to_html` (a prompt x output heat map with
token highlights, one self-contained HTML file, shown inline in Jupyter),
:meth:`~LLMAttributionResult.aggregate` (sum features into groups) and
:meth:`~LLMAttributionResult.to_words`. matplotlib is imported only by the plots.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["LLMAttributionResult"]


def _as_tensor(value: Any) -> Tensor:
    return value if isinstance(value, Tensor) else torch.tensor(value)


class LLMAttributionResult:
    """Attributions of generated tokens to the features of a prompt.

    Parameters
    ----------
    input_tokens : list of str, length ``M``
        Labels of the input features (prompt tokens, template segments, image segments;
        for step-wise results also the generated tokens).
    output_tokens : list of str, length ``T``
        The explained (generated) tokens.
    seq_attr : array-like, shape ``(M,)``
        Attribution of the whole output sequence to each feature.
    token_attr : array-like, shape ``(T, M)``, optional
        Attribution of each output token (``None`` for methods without one).
    output_probs : array-like, shape ``(T,)``, optional
        Probability of each output token given the unperturbed prompt.
    inp : InterpretableInput, optional
        The explained input (image views use it).

    Attributes
    ----------
    info : dict
        What whybox adds about the run (method, forwards, step-wise layout, contrast);
        empty for results built by hand.
    """

    def __init__(
        self,
        *,
        input_tokens: list[str],
        output_tokens: list[str],
        seq_attr: Any,
        token_attr: Any = None,
        output_probs: Any = None,
        inp: Any = None,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.seq_attr = seq_attr
        self.token_attr = token_attr
        self.output_probs = output_probs
        self.inp = inp
        self.info: dict[str, Any] = {}

    # -- validated fields ---------------------------------------------------------------
    @property
    def seq_attr(self) -> Tensor:
        """``(M,)`` attribution of the output sequence to each input feature."""
        return self._seq_attr

    @seq_attr.setter
    def seq_attr(self, value: Any) -> None:
        value = _as_tensor(value)
        if value.dim() != 1 or value.shape[0] != len(self.input_tokens):
            raise ValueError(
                f"seq_attr must be 1-D with one value per input token "
                f"({len(self.input_tokens)}). Got shape {tuple(value.shape)}."
            )
        self._seq_attr = value

    @property
    def token_attr(self) -> Tensor | None:
        """``(T, M)`` attribution of each output token, or ``None``."""
        return self._token_attr

    @token_attr.setter
    def token_attr(self, value: Any) -> None:
        if value is not None:
            value = _as_tensor(value)
            expected = (len(self.output_tokens), len(self.input_tokens))
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"token_attr must have shape {expected} (output tokens, input tokens). "
                    f"Got {tuple(value.shape)}."
                )
        self._token_attr = value

    @property
    def output_probs(self) -> Tensor | None:
        """``(T,)`` probability of each output token, or ``None``."""
        return self._output_probs

    @output_probs.setter
    def output_probs(self, value: Any) -> None:
        if value is not None:
            value = _as_tensor(value)
            if value.dim() != 1 or value.shape[0] != len(self.output_tokens):
                raise ValueError(
                    f"output_probs must be 1-D with one value per output token "
                    f"({len(self.output_tokens)}). Got shape {tuple(value.shape)}."
                )
        self._output_probs = value

    @property
    def seq_attr_dict(self) -> dict[str, float]:
        """``{input token: sequence attribution}`` (a repeated token keeps its last value)."""
        return dict(zip(self.input_tokens, self.seq_attr.cpu().tolist()))

    def __repr__(self) -> str:
        shape = None if self.token_attr is None else tuple(self.token_attr.shape)
        return (
            f"LLMAttributionResult({len(self.input_tokens)} input features, "
            f"{len(self.output_tokens)} output tokens, token_attr shape {shape})"
        )

    # -- reshaping ----------------------------------------------------------------------
    def aggregate(self, groups: Any, labels: Sequence[str] | None = None) -> LLMAttributionResult:
        """Sum input features into groups (tokens -> words, sentences, fields).

        Exact for attributions that add up (gradients x inputs, Shapley values' sums);
        for ablation it approximates perturbing the group together (pass the groups as a
        ``feature_mask`` for that).

        Parameters
        ----------
        groups : sequence of int or Tensor, length ``M`` (or shape ``(1, M)``)
            Group id ``0..G-1`` of each input feature.
        labels : sequence of str, length ``G``, optional
            Group labels; default the group's tokens joined by spaces.

        Returns
        -------
        LLMAttributionResult
            ``seq_attr`` ``(G,)``, ``token_attr`` ``(T, G)``.
        """
        ids = _as_tensor(groups).reshape(-1).long().cpu()
        if ids.numel() != len(self.input_tokens):
            raise ValueError(
                f"aggregate: 'groups' needs one id per input feature ({len(self.input_tokens)}). "
                f"Got {ids.numel()}."
            )
        n_groups = int(ids.max()) + 1 if ids.numel() else 0
        if labels is None:
            labels = [
                " ".join(t for t, g in zip(self.input_tokens, ids.tolist()) if g == group)
                for group in range(n_groups)
            ]
        elif len(labels) != n_groups:
            raise ValueError(f"aggregate: {n_groups} groups but {len(labels)} labels.")
        onehot = torch.nn.functional.one_hot(ids, n_groups).to(self.seq_attr)  # (M, G)
        token = None if self.token_attr is None else self.token_attr @ onehot.to(self.token_attr)
        result = LLMAttributionResult(
            input_tokens=list(labels),
            output_tokens=self.output_tokens,
            seq_attr=self.seq_attr @ onehot,
            token_attr=token,
            output_probs=self.output_probs,
            inp=self.inp,
        )
        result.info = {**self.info, "aggregated": True}
        return result

    def to_words(self) -> LLMAttributionResult:
        """Token attributions summed into words (a :class:`TextTokenInput` prompt; the
        generated-token columns of a step-wise result stay as they are)."""
        from .tokens import word_groups

        mask, words = word_groups(self.inp)
        ids = mask.reshape(-1)
        extra = len(self.input_tokens) - ids.numel()  # step-wise: generated-token columns
        if extra:
            start = int(ids.max()) + 1 if ids.numel() else 0
            ids = torch.cat([ids, start + torch.arange(extra)])
            words = list(words) + self.input_tokens[-extra:]
        return self.aggregate(ids, words)

    # -- Captum's plots -----------------------------------------------------------------
    def plot_token_attr(self, show: bool = False) -> Any:
        """Heat map of ``token_attr``: output tokens (rows) x input tokens (columns).

        Returns
        -------
        None or (Figure, Axes)
            ``None`` when ``show`` (the plot is shown); otherwise the figure and axes.
        """
        if self.token_attr is None:
            raise ValueError(
                "token_attr is None (this method gives no per-token attribution); use "
                "plot_seq_attr for the sequence attribution."
            )
        from ._plots import token_heatmap

        return token_heatmap(self, show=show)

    def plot_seq_attr(self, show: bool = False) -> Any:
        """Bar chart of ``seq_attr`` over the input tokens (positive blue, negative red).

        Returns
        -------
        None or (Figure, Axes)
        """
        from ._plots import sequence_bars

        return sequence_bars(self, show=show)

    def plot_image_heatmap(
        self,
        show: bool = False,
        target_token_pos: int | tuple[int, int] | None = None,
        border_width: int = 2,
        show_legends: bool = True,
    ) -> Any:
        """The input image overlaid with the attribution of its segments
        (:class:`~whybox.llm.inputs.ImageMaskInput` only).

        Parameters
        ----------
        target_token_pos : None, int or (int, int)
            ``None``: the sequence attribution; an int: that output token's; ``(m, n)``:
            the sum over output tokens ``m .. n - 1``.
        border_width : int
            Segment border width in pixels (0: none).
        show_legends : bool
            Write each segment's id at its centroid.

        Returns
        -------
        None or (Figure, Axes)
        """
        from ._plots import image_heatmap

        return image_heatmap(
            self,
            show=show,
            target_token_pos=target_token_pos,
            border_width=border_width,
            legends=show_legends,
        )

    # -- HTML ---------------------------------------------------------------------------
    def to_html(self, *, title: str = "Attribution of generated text", full_page: bool = False):
        """A prompt x output heat map with token highlights, self-contained.

        Parameters
        ----------
        title : str, keyword-only
        full_page : bool, keyword-only
            Return a complete HTML document instead of a view.

        Returns
        -------
        HTMLView or str
            A view (``.save(path)``, shown inline in Jupyter), or the page's text.
        """
        from whybox.viz.html import HTMLView, fragment, page

        body = _heatmap_html(self, title)
        if full_page:
            return page(body, title=title, extra_css=_CSS)
        return HTMLView(fragment(f"<style>{_CSS}</style>" + body), title=title)

    def _repr_html_(self) -> str:
        return self.to_html().data


# -- HTML rendering (red = negative, white = 0, green = positive, as Captum's plots) -------
_CSS = """
table.wb-llm { border-collapse: collapse; font-size: 13px; }
table.wb-llm th, table.wb-llm td { border: 1px solid #ddd; padding: 3px 6px; text-align: center;
  white-space: pre; }
table.wb-llm th.wb-in { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: 500; }
table.wb-llm th.wb-out { text-align: right; }
.wb-llm-note { color: #555; font-size: 12px; }
""".strip()


def _color(value: float, scale: float) -> tuple[str, bool]:
    """Background colour for ``value`` on ``[-scale, scale]`` and whether text is light."""
    v = 0.0 if scale <= 0 else max(-1.0, min(1.0, value / scale))
    if v < 0:  # white -> red
        r, g, b = 255, round(255 * (1 + v)), round(255 * (1 + v))
    else:  # white -> green (0, 128, 0)
        r, g, b = round(255 * (1 - v)), round(255 - 127 * v), round(255 * (1 - v))
    return f"rgb({r},{g},{b})", abs(v) > 0.6


def _cell(tag: str, text: str, value: float, scale: float, cls: str = "") -> str:
    background, light = _color(value, scale)
    style = f"background:{background};" + ("color:#fff;" if light else "")
    klass = f' class="{cls}"' if cls else ""
    tip = html.escape(f"{value:.4g}", quote=True)
    return f'<{tag}{klass} style="{style}" title="{tip}">{html.escape(text)}</{tag}>'


def _heatmap_html(result: LLMAttributionResult, title: str) -> str:
    seq = result.seq_attr.detach().float().cpu()
    token = None if result.token_attr is None else result.token_attr.detach().float().cpu()
    scale = float(seq.abs().max()) if seq.numel() else 0.0
    parts = [f"<h1>{html.escape(title)}</h1>"]
    # the prompt's tokens highlighted by the sequence attribution
    chips = " ".join(
        _cell("span", tok, float(v), scale, "wb-chip")
        for tok, v in zip(result.input_tokens, seq.tolist())
    )
    parts.append(f'<p class="wb-text">{chips}</p>')
    outputs = " ".join(html.escape(t) for t in result.output_tokens)
    parts.append(f'<p class="wb-llm-note">Output: <span class="wb-mono">{outputs}</span></p>')
    if token is not None:
        scale_t = float(token.abs().max()) if token.numel() else 0.0
        header = "".join(f'<th class="wb-in">{html.escape(t)}</th>' for t in result.input_tokens)
        rows = []
        probs = None if result.output_probs is None else result.output_probs.float().tolist()
        for i, out in enumerate(result.output_tokens):
            label = out if probs is None else f"{out} (p={probs[i]:.3g})"
            cells = "".join(_cell("td", f"{v:.3f}", v, scale_t) for v in token[i].tolist())
            rows.append(f'<tr><th class="wb-out">{html.escape(label)}</th>{cells}</tr>')
        parts.append(f'<table class="wb-llm"><tr><th></th>{header}</tr>{"".join(rows)}</table>')
    parts.append(
        '<p class="wb-llm-note">red: against the output, green: for it '
        f"(scale &plusmn;{scale:.3g} for the prompt highlights)</p>"
    )
    return "\n".join(parts)
