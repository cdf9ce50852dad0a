"""Text attribution views: saliency chips, Captum-style record tables, top-k bar chart.

Also the helpers users otherwise write by hand: summing token attributions over the
embedding dimension (:func:`summarize_token_attributions`) and merging WordPiece/BPE
sub-word tokens into words (:func:`aggregate_subwords`). All token text is HTML-escaped.

One argument order for every view: attributions first, tokens by keyword
(``text_html(scores, tokens=tokens)``). The earlier ``text_html(tokens, scores)`` order
still works and warns (``DeprecationWarning``).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from whybox.viz._arrays import diverging_rgb, is_tensor, max_abs, to_numpy, to_scalar
from whybox.viz.html import HTMLView, escape, fragment, page

# Standalone special tokens: [CLS], [SEP], [PAD]; <s>, </s>, <pad>, <unk>; <|endoftext|>.
_SPECIAL = re.compile(r"^(\[[A-Za-z_]+\]|</?[A-Za-z_]+>|<\|[^|]+\|>)$")
_BPE_MARKERS = ("\u0120", "\u2581")  # GPT-2 byte-level "Ġ", SentencePiece "▁"
_WORDPIECE = "##"
SCHEMES = ("auto", "wordpiece", "bpe", "none")
REDUCTIONS = ("sum", "mean", "max")


# ---------------------------------------------------------------------------
# Token attribution helpers
# ---------------------------------------------------------------------------


def summarize_token_attributions(attr: Any, dim: int = -1) -> Any:
    """Sum attributions over the embedding dimension and L2-normalise.

    Equivalent to the hand-written ``attr.sum(dim=-1).squeeze(0) / torch.norm(...)`` in
    tutorials, but safe for an all-zero input (returned unchanged instead of NaN).

    Parameters
    ----------
    attr : torch.Tensor or numpy.ndarray
        Shape ``(seq_len, embed_dim)`` or ``(1, seq_len, embed_dim)``.
    dim : int
        Dimension to sum over (the embedding dimension).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Shape ``(seq_len,)``, same type/device as the input, unit L2 norm.
    """
    if is_tensor(attr):
        import torch

        summed = attr.sum(dim=dim)
        if summed.dim() > 1 and summed.shape[0] == 1:
            summed = summed.squeeze(0)
        norm = torch.linalg.vector_norm(summed)
        return summed / norm if bool(norm > 0) else summed
    arr = to_numpy(attr, "attr", "summarize_token_attributions")
    summed = arr.sum(axis=dim)
    if summed.ndim > 1 and summed.shape[0] == 1:
        summed = summed[0]
    norm = float(np.linalg.norm(summed))
    return summed / norm if norm > 0 else summed


def _token_list(tokens: Any, func: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Iterable):
        raise TypeError(
            f"The 'tokens' parameter of {func} must be a sequence of strings "
            f"(one per token). Got {type(tokens).__name__}."
        )
    return [str(t) for t in tokens]


def _values_1d(values: Any, n: int, func: str, name: str = "attributions") -> np.ndarray:
    arr = to_numpy(values, name, func)
    if arr.ndim in (2, 3) and arr.shape[0] == 1 and not (arr.ndim == 2 and n == 1):
        arr = arr[0]  # a batch of one: (1, T) or (1, T, D)
    if arr.ndim == 2 and arr.shape[0] == n:
        arr = arr.sum(axis=1)  # (seq_len, embed_dim): sum the embedding dimension
    if arr.ndim != 1:
        raise ValueError(
            f"The '{name}' parameter of {func} must have shape (num_tokens,) or "
            f"(num_tokens, embed_dim). Got shape {tuple(arr.shape)}."
        )
    if arr.shape[0] != n:
        raise ValueError(
            f"The '{name}' parameter of {func} has {arr.shape[0]} values but 'tokens' has {n}; "
            "they must match one to one."
        )
    return np.where(np.isfinite(arr), arr, 0.0)


def is_special_token(token: str) -> bool:
    """True for tokens such as ``[CLS]``, ``<s>``, ``</s>``, ``<pad>``, ``<|endoftext|>``."""
    return bool(_SPECIAL.match(token))


def detect_scheme(tokens: Sequence[str]) -> str:
    """Guess the sub-word scheme: ``"wordpiece"`` (``##``), ``"bpe"`` (``Ġ``/``▁``) or ``"none"``."""
    if any(t.startswith(_WORDPIECE) and len(t) > 2 for t in tokens):
        return "wordpiece"
    if any(t.startswith(_BPE_MARKERS) for t in tokens):
        return "bpe"
    return "none"


def clean_token(token: str) -> str:
    """Display form of a token: BPE/SentencePiece word markers removed."""
    return token[1:] if token.startswith(_BPE_MARKERS) else token


def aggregate_subwords(
    tokens: Sequence[str],
    attributions: Any,
    *,
    scheme: str = "auto",
    reduce: str = "sum",
    return_groups: bool = False,
) -> Any:
    """Merge sub-word tokens into words and combine their attributions.

    Rules: WordPiece tokens starting with ``##`` continue the previous word; for BPE
    (``Ġ``) and SentencePiece (``▁``) a marker starts a new word and unmarked tokens
    continue the previous one. Special tokens (``[CLS]``, ``<s>``, ...) always stand alone.

    Parameters
    ----------
    tokens : sequence of str
        Tokenizer output, length ``T``.
    attributions : torch.Tensor or numpy.ndarray, shape (T,) or (T, D)
        One value per token (``(T, D)`` is summed over ``D``).
    scheme : {"auto", "wordpiece", "bpe", "none"}
        Sub-word convention; ``auto`` uses :func:`detect_scheme`.
    reduce : {"sum", "mean", "max"}
        How token values combine (``max`` keeps the value with the largest magnitude).
    return_groups : bool
        Also return the token indices of each word.

    Returns
    -------
    words : list of str
    values : numpy.ndarray, shape (num_words,)
    groups : list of list of int
        Only when ``return_groups`` is true.
    """
    func = "aggregate_subwords"
    toks = _token_list(tokens, func)
    vals = _values_1d(attributions, len(toks), func)
    if scheme not in SCHEMES:
        raise ValueError(
            f"The 'scheme' parameter of {func} must be one of {list(SCHEMES)}. Got {scheme!r}."
        )
    if reduce not in REDUCTIONS:
        raise ValueError(
            f"The 'reduce' parameter of {func} must be one of {list(REDUCTIONS)}. Got {reduce!r}."
        )
    if scheme == "auto":
        scheme = detect_scheme(toks)
    groups: list[list[int]] = []
    words: list[str] = []
    prev_special = True
    for i, tok in enumerate(toks):
        special = is_special_token(tok)
        if scheme == "wordpiece":
            cont = tok.startswith(_WORDPIECE) and len(tok) > 2 and not special
            piece = tok[2:] if cont else tok
        elif scheme == "bpe":
            cont = not tok.startswith(_BPE_MARKERS) and not special
            piece = clean_token(tok)
        else:
            cont, piece = False, tok
        if cont and groups and not prev_special:
            groups[-1].append(i)
            words[-1] += piece
        else:
            groups.append([i])
            words.append(piece)
        prev_special = special
    out = np.empty(len(groups), dtype=np.float64)
    for j, idx in enumerate(groups):
        v = vals[idx]
        if reduce == "sum":
            out[j] = v.sum()
        elif reduce == "mean":
            out[j] = v.mean()
        else:
            out[j] = v[np.argmax(np.abs(v))]
    return (words, out, groups) if return_groups else (words, out)


# ---------------------------------------------------------------------------
# Captum-compatible record table
# ---------------------------------------------------------------------------


class VisualizationDataRecord:
    """Everything one row of :func:`records_html` / ``visualize_text`` shows.

    Parameters
    ----------
    word_attributions : torch.Tensor or numpy.ndarray, shape (num_tokens,)
        One importance per token (any device); values outside ``[-1, 1]`` saturate.
    pred_prob : float
        Probability of the predicted class (tensors/arrays of one element accepted).
    pred_class, true_class, attr_class : str or int
        Labels shown in the table.
    attr_score : float
        Total attribution (usually ``word_attributions.sum()``).
    raw_input_ids : sequence of str
        Tokens, at most ``len(word_attributions)``.
    convergence_score : float
        Stored for reference; not shown (as in Captum).
    """

    __slots__ = [
        "word_attributions",
        "pred_prob",
        "pred_class",
        "true_class",
        "attr_class",
        "attr_score",
        "raw_input_ids",
        "convergence_score",
    ]

    def __init__(
        self,
        word_attributions: Any,
        pred_prob: float,
        pred_class: Any,
        true_class: Any,
        attr_class: Any,
        attr_score: float,
        raw_input_ids: Sequence[str],
        convergence_score: float,
    ) -> None:
        self.word_attributions = word_attributions
        self.pred_prob = pred_prob
        self.pred_class = pred_class
        self.true_class = true_class
        self.attr_class = attr_class
        self.attr_score = attr_score
        self.raw_input_ids = raw_input_ids
        self.convergence_score = convergence_score

    def __repr__(self) -> str:
        return (
            f"VisualizationDataRecord(pred_class={self.pred_class!r}, "
            f"true_class={self.true_class!r}, attr_score={to_scalar(self.attr_score)!r}, "
            f"num_tokens={len(self.raw_input_ids)})"
        )


RECORD_COLUMNS = (
    "True Label",
    "Predicted Label",
    "Attribution Label",
    "Attribution Score",
    "Word Importance",
)
LEGEND_LABELS = ("Negative", "Neutral", "Positive")


def record_color(value: float) -> str:
    """CSS colour of a record chip: green lightness for positive, red for negative, white at 0."""
    v = max(-1.0, min(1.0, float(value)))
    # Round before truncating so float32 inputs (0.9 -> 0.8999999762) land on the same step.
    if v > 0:
        return f"hsl(120, 75%, {100 - int(round(50 * v, 4))}%)"
    return f"hsl(0, 75%, {100 - int(round(40 * -v, 4))}%)"


def format_special_tokens(token: str) -> str:
    """Show ``<tag>`` style tokens as ``#tag`` (Captum convention); others unchanged."""
    if token.startswith("<") and token.endswith(">"):
        return "#" + token.strip("<>")
    return token


def format_classname(classname: Any) -> str:
    """A table cell with the class name in bold (escaped)."""
    return f'<td><span style="padding-right:2em"><b>{escape(to_scalar(classname))}</b></span></td>'


def format_tooltip(item: str, text: str) -> str:
    """Wrap ``item`` (HTML) with a hover text (plain text, escaped)."""
    return (
        f'<div class="tooltip" title="{escape(text)}">{item}'
        f'<span class="tooltiptext">{escape(text)}</span></div>'
    )


def format_word_importances(words: Sequence[str], importances: Any) -> str:
    """A ``<td>`` with one coloured ``<mark>`` chip per word (escaped, value on hover).

    Parameters
    ----------
    words : sequence of str
        Tokens to show; ``<tag>`` tokens are shown as ``#tag``.
    importances : torch.Tensor or numpy.ndarray or sequence of float, shape (N,)
        ``N >= len(words)``; extra values are ignored. Values saturate at ``[-1, 1]``.

    Returns
    -------
    str
    """
    func = "format_word_importances"
    if importances is None:
        return "<td></td>"
    vals = to_numpy(importances, "importances", func)
    if vals.size == 0:
        return "<td></td>"
    if vals.ndim != 1:
        raise ValueError(
            f"The 'importances' parameter of {func} must be 1-D. Got shape {tuple(vals.shape)}."
        )
    words = _token_list(words, func)
    if len(words) > len(vals):
        raise ValueError(
            f"The 'words' parameter of {func} has {len(words)} entries but 'importances' only "
            f"{len(vals)}; provide at least one importance per word."
        )
    parts = ["<td>"]
    for word, v in zip(words, vals):
        v = float(v) if np.isfinite(v) else 0.0
        parts.append(
            f'<mark style="background-color: {record_color(v)}; opacity:1.0; '
            f'line-height:1.75" title="{v:.4f}"><font color="black"> '
            f"{escape(format_special_tokens(word))} </font></mark>"
        )
    parts.append("</td>")
    return "".join(parts)


def _fmt2(x: Any) -> str:
    x = to_scalar(x)
    try:
        return f"{float(x):.2f}"
    except (TypeError, ValueError):
        return str(x)


def records_html(datarecords: Iterable[VisualizationDataRecord], legend: bool = True) -> str:
    """Well-formed HTML table for text records (Captum's columns and legend).

    Columns: True Label, Predicted Label (with probability), Attribution Label,
    Attribution Score, Word Importance; an optional Negative/Neutral/Positive legend.

    Parameters
    ----------
    datarecords : iterable of VisualizationDataRecord
    legend : bool

    Returns
    -------
    str
        An HTML fragment (use :class:`whybox.viz.html.HTMLView` to save a full page).
    """
    if isinstance(datarecords, VisualizationDataRecord):
        datarecords = [datarecords]
    dom = ['<div class="whybox-records">']
    if legend:
        dom.append(
            '<div style="border-top: 1px solid; margin-top: 5px; padding-top: 5px; '
            'display: inline-block"><b>Legend: </b>'
        )
        for value, label in zip((-1, 0, 1), LEGEND_LABELS):
            dom.append(
                '<span style="display: inline-block; width: 10px; height: 10px; '
                f'border: 1px solid; background-color: {record_color(value)}"></span> '
                f"{label} "
            )
        dom.append("</div>")
    dom.append('<table style="width: 100%"><thead><tr>')
    dom.extend(f"<th>{c}</th>" for c in RECORD_COLUMNS)
    dom.append("</tr></thead><tbody>")
    for i, rec in enumerate(datarecords):
        if not isinstance(rec, VisualizationDataRecord):
            raise TypeError(
                "The 'datarecords' parameter of visualize_text must contain "
                f"VisualizationDataRecord objects. Item {i} is {type(rec).__name__}."
            )
        dom.append("<tr>")
        dom.append(format_classname(rec.true_class))
        dom.append(format_classname(f"{to_scalar(rec.pred_class)} ({_fmt2(rec.pred_prob)})"))
        dom.append(format_classname(rec.attr_class))
        dom.append(format_classname(_fmt2(rec.attr_score)))
        dom.append(format_word_importances(rec.raw_input_ids, rec.word_attributions))
        dom.append("</tr>")
    dom.append("</tbody></table></div>")
    return "".join(dom)


# ---------------------------------------------------------------------------
# Native saliency chips
# ---------------------------------------------------------------------------


def _chip_css(v: float) -> tuple[str, bool]:
    r, g, b = diverging_rgb(v)
    dark = abs(v) > 0.65  # white text on strong colours keeps contrast
    return f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})", dark


_F = TypeVar("_F", bound=Callable[..., Any])


def _looks_like_tokens(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in ("U", "S", "O")
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _attributions_first(func: _F) -> _F:
    """Accept ``func(attributions, tokens=...)`` and, deprecated, ``func(tokens, attributions)``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) >= 2 and "tokens" not in kwargs:
            first, second, *rest = args
            if _looks_like_tokens(first) and not _looks_like_tokens(second):
                warnings.warn(
                    f"{func.__name__}(tokens, attributions) is deprecated; pass the "
                    f"attributions first and the tokens by keyword: "
                    f"{func.__name__}(attributions, tokens=tokens).",
                    DeprecationWarning,
                    stacklevel=2,
                )
                first, second = second, first
            args, kwargs = (first, *rest), dict(kwargs, tokens=second)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _required_tokens(tokens: Any, func: str) -> list[str]:
    if tokens is None:
        raise TypeError(f"{func} needs the tokens: {func}(attributions, tokens=tokens).")
    return _token_list(tokens, func)


@_attributions_first
def text_html(
    attributions: Any,
    *,
    tokens: Sequence[str],
    title: str | None = None,
    caption: str | None = None,
    aggregate: bool = False,
    scheme: str = "auto",
    vmax: float | None = None,
    full_page: bool = True,
) -> str:
    """Self-contained HTML of tokens highlighted by attribution (saliency chips).

    Colour scale is diverging: red for negative, white for 0, green for positive,
    saturating at ``vmax`` (default: the largest absolute value). Hovering a chip shows
    the token and its exact value. No scripts and no external resources; thousands of
    tokens produce one compact inline-styled span each.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray, shape (T,), (T, D) or (1, T, D)
        One value per token; an embedding dimension ``D`` is summed, a batch of one dropped.
    tokens : sequence of str, length T
        By keyword. (``text_html(tokens, attributions)``, the earlier order, still works
        with a ``DeprecationWarning``.)
    title : str, optional
        Heading (escaped).
    caption : str, optional
        A line under the heading (escaped), e.g. the prediction and convergence delta.
    aggregate : bool
        Merge WordPiece/BPE sub-words into words first (:func:`aggregate_subwords`).
    scheme : {"auto", "wordpiece", "bpe", "none"}
        Sub-word convention used when ``aggregate`` is true.
    vmax : float, optional
        Value that maps to full colour.
    full_page : bool
        Return a complete ``<!DOCTYPE html>`` page (default) or a styled fragment.

    Returns
    -------
    str
    """
    func = "text_html"
    toks = _required_tokens(tokens, func)
    vals = _values_1d(attributions, len(toks), func)
    if aggregate:
        toks, vals = aggregate_subwords(toks, vals, scheme=scheme)
    else:
        toks = [clean_token(t) for t in toks]
    scale = float(vmax) if vmax is not None else max_abs(vals)
    if vmax is not None and not scale > 0:
        raise ValueError(f"The 'vmax' parameter of {func} must be > 0. Got {vmax}.")
    chips = []
    for tok, v in zip(toks, vals):
        colour, dark = _chip_css(v / scale if scale > 0 else 0.0)
        cls = "wb-chip wb-dark" if dark else "wb-chip"
        text = escape(tok)
        chips.append(
            f'<span class="{cls}" style="background-color:{colour}" data-v="{v:.6g}" '
            f'title="{text}: {v:+.4f}">{text}</span>'
        )
    head = f"<h1>{escape(title)}</h1>\n" if title else ""
    if caption:
        head += f'<p class="wb-caption">{escape(caption)}</p>\n'
    legend = (
        '<div class="wb-legend">'
        f'<span class="wb-mono">{-scale:+.3g}</span> <span class="wb-scale"></span> '
        f'<span class="wb-mono">{scale:+.3g}</span> &nbsp; '
        f"{len(toks)} {'words' if aggregate else 'tokens'}, total {float(vals.sum()):+.4f}; "
        "hover a token for its value</div>\n"
    )
    body = f'{head}{legend}<div class="wb-text">{" ".join(chips)}</div>'
    return page(body, title=title or "whybox text attribution") if full_page else fragment(body)


@_attributions_first
def text_view(attributions: Any, *, tokens: Sequence[str], **kwargs: Any) -> HTMLView:
    """:func:`text_html` as an :class:`HTMLView` (notebook display and ``.save``).

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray, shape (T,), (T, D) or (1, T, D)
    tokens : sequence of str, length T (by keyword)
    **kwargs
        Options of :func:`text_html` (``title``, ``aggregate``, ``vmax``...).
    """
    kwargs["full_page"] = False
    return HTMLView(
        text_html(attributions, tokens=tokens, **kwargs), title=kwargs.get("title") or "whybox"
    )


# ---------------------------------------------------------------------------
# Top-k bar chart
# ---------------------------------------------------------------------------


@_attributions_first
def plot_top_tokens(
    attributions: Any,
    *,
    tokens: Sequence[str],
    k: int = 10,
    ax: Any = None,
    title: str | None = None,
    fig_size: tuple[float, float] | None = None,
    use_pyplot: bool = False,
) -> Any:
    """Horizontal bar chart of the ``k`` tokens with the largest absolute attribution.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray, shape (T,), (T, D) or (1, T, D)
    tokens : sequence of str, length T
        By keyword (the earlier ``plot_top_tokens(tokens, attributions)`` order warns).
    k : int
        Number of bars; the largest magnitude is drawn at the top.
    ax : matplotlib.axes.Axes, optional
    title : str, optional
    fig_size : tuple of float, optional
        Defaults to a height that fits ``k`` labels.
    use_pyplot : bool
        Create the figure through pyplot instead of a bare ``Figure``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from whybox.viz.tabular import plot_feature_bar

    func = "plot_top_tokens"
    toks = [clean_token(t) for t in _required_tokens(tokens, func)]
    vals = _values_1d(attributions, len(toks), func)
    # Repeated tokens ("the" twice) need distinct bar labels.
    counts: dict[str, int] = {}
    for t in toks:
        counts[t] = counts.get(t, 0) + 1
    labels = [f"{t} [{i}]" if counts[t] > 1 else t for i, t in enumerate(toks)]
    return plot_feature_bar(
        vals,
        labels,
        top_k=k,
        ax=ax,
        title=title,
        fig_size=fig_size,
        use_pyplot=use_pyplot,
        xlabel="attribution",
        func=func,
    )
