"""Attention views that work offline: bertviz-compatible :func:`head_view` and :func:`model_view`.

Same names, arguments and defaults as bertviz 1.4 (a bertviz user changes only the import
line), but every page is self-contained: the script and styles are inline, there is no
require.js, d3 or CDN, and nothing is fetched, so a view opens offline, in a saved HTML
file and in notebook front ends that block loaders. Tokens are HTML-escaped and embedded
in JSON escaped for ``<script>`` (a token ``</script>`` is just text), and the token
columns are part of the markup, so they show before (or without) any script.

The input is what ``model(..., output_attentions=True).attentions`` returns, or
``whybox.attention.capture_attention(model, **inputs)``: one array per layer, shaped
``(batch, heads, query, key)``. Only one example of the batch is shown (``batch_index``,
the first by default, as bertviz). Torch tensors on any device/dtype and numpy arrays
are accepted.

For long inputs choose what goes into the page: ``include_layers``, ``include_heads``
and ``token_range`` (both keyword-only here). Weights are stored rounded to ``decimals``
(3 by default) as compact JSON.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whybox.viz._arrays import check_choice, is_tensor, to_numpy
from whybox.viz._attention_js import ATTENTION_CSS, ATTENTION_JS
from whybox.viz.html import HTMLView, escape, in_notebook

__all__ = ["head_view", "model_view"]

HTML_ACTIONS = ("view", "return")
DISPLAY_MODES = ("dark", "light")
THUMBNAILS = ("auto", "lines", "matrix")
# Line thumbnails stop being readable around here; "auto" switches to heat maps.
_AUTO_MATRIX_TOKENS = 64
# Above this many embedded weights (~12 MB of HTML) pages get slow to open: warn.
_LARGE_PAGE_WEIGHTS = 2_000_000

_SDPA_TRAP = (
    "attentions is empty: the model ran with SDPA attention; use "
    "whybox.attention.capture_attention(model, **inputs) (or load the model with "
    "attn_implementation='eager' and pass output_attentions=True)"
)

# Characters that must not appear raw inside a <script> element or a JS string literal.
_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


@dataclass
class _Stack:
    """One validated attention argument: per-layer arrays, sliced only when rendered."""

    name: str
    layers: list[Any]
    batched: bool
    n_heads: int
    n_query: int
    n_key: int


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _stack(attention: Any, name: str, func: str, batch_index: int) -> _Stack:
    """Check one attention argument without copying it (long inputs can be large)."""
    if is_tensor(attention) or isinstance(attention, np.ndarray):
        if attention.ndim != 5:
            raise TypeError(
                f"The '{name}' parameter of {func} must be a tuple or list with one "
                f"(batch, heads, query, key) array per layer (as model outputs' .attentions), "
                f"or one stacked (layers, batch, heads, query, key) array. Got a single "
                f"{attention.ndim}-D array of shape {_shape(attention)}"
                + ("; wrap one layer as (tensor,)." if attention.ndim == 4 else ".")
            )
        items: list[Any] = list(attention)
    elif isinstance(attention, (str, bytes)) or not isinstance(attention, Sequence):
        raise TypeError(
            f"The '{name}' parameter of {func} must be a tuple or list with one "
            f"(batch, heads, query, key) array per layer. Got {type(attention).__name__}."
        )
    else:
        items = list(attention)
    if not items:
        raise ValueError(f"The '{name}' parameter of {func} is empty: {_SDPA_TRAP}.")
    layers = []
    for i, item in enumerate(items):
        if item is None:
            raise ValueError(
                f"{name}[{i}] passed to {func} is None: the model returned no attention "
                f"weights for layer {i}; {_SDPA_TRAP}."
            )
        if not (is_tensor(item) or isinstance(item, np.ndarray)):
            item = to_numpy(item, f"{name}[{i}]", func)
        layers.append(item)
    first = _shape(layers[0])
    if len(first) not in (3, 4):
        raise ValueError(
            f"The '{name}' parameter of {func} must hold one (batch, heads, query, key) array "
            f"per layer; {name}[0] has {len(first)} dimensions, shape {first}."
        )
    for i, item in enumerate(layers):
        if _shape(item) != first:
            raise ValueError(
                f"Every layer of '{name}' passed to {func} must have the same shape; "
                f"{name}[{i}] has shape {_shape(item)} but {name}[0] has {first}."
            )
    batched = len(first) == 4
    if batched and not -first[0] <= batch_index < first[0]:
        raise ValueError(
            f"The 'batch_index' parameter of {func} must be in [0, {first[0]}) for '{name}' "
            f"with batch size {first[0]}. Got {batch_index}."
        )
    heads, n_query, n_key = first[-3:]
    return _Stack(name, layers, batched, heads, n_query, n_key)


def _check_tokens(tokens: Any, name: str, func: str) -> list[str]:
    if tokens is None:
        raise ValueError(f"The '{name}' parameter of {func} is required.")
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        if is_tensor(tokens) or isinstance(tokens, np.ndarray):
            raise TypeError(
                f"The '{name}' parameter of {func} must be a list of token strings, not ids; "
                f"use tokenizer.convert_ids_to_tokens(input_ids[0])."
            )
        raise TypeError(
            f"The '{name}' parameter of {func} must be a list of token strings. "
            f"Got {type(tokens).__name__}."
        )
    return [str(t) for t in tokens]


def _match(stack: _Stack, n: int, axis: str, tokens_name: str, func: str) -> None:
    size = stack.n_query if axis == "query" else stack.n_key
    if size != n:
        raise ValueError(
            f"The '{tokens_name}' parameter of {func} has {n} tokens but '{stack.name}' has "
            f"{size} {axis} positions (shape (..., {stack.n_heads}, {stack.n_query}, "
            f"{stack.n_key})); pass the tokens of the same input (batch example)."
        )


def _indices(values: Any, n: int, name: str, func: str, what: str) -> list[int]:
    """Normalise a list of layer/head indices (negatives count from the end)."""
    if values is None:
        return list(range(n))
    if _is_int(values):
        values = [values]
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range, np.ndarray)):
        raise TypeError(f"The '{name}' parameter of {func} must be a list of {what} indices.")
    if not all(_is_int(v) for v in values):
        raise TypeError(f"The '{name}' parameter of {func} must be a list of {what} indices.")
    out = [int(v) for v in values]
    if not out:
        raise ValueError(f"The '{name}' parameter of {func} must name at least one {what}.")
    bad = [v for v in out if not -n <= v < n]
    if bad:
        raise ValueError(
            f"The '{name}' parameter of {func} has {what} index {bad[0]} out of range: "
            f"the attention has {n} {what}s (0 to {n - 1})."
        )
    out = [v % n for v in out]
    if len(set(out)) != len(out):
        raise ValueError(f"The '{name}' parameter of {func} repeats a {what}: {out}.")
    return out


def _token_window(token_range: Any, n: int, func: str) -> tuple[int, int]:
    """``token_range`` (``(start, stop)`` or a slice, Python semantics) clipped to ``n``."""
    if token_range is None:
        return 0, n
    if isinstance(token_range, slice):
        if token_range.step not in (None, 1):
            raise ValueError(f"The 'token_range' parameter of {func} must have step 1.")
        start, stop = token_range.start, token_range.stop
    elif isinstance(token_range, Sequence) and len(token_range) == 2:
        start, stop = token_range
    else:
        raise TypeError(
            f"The 'token_range' parameter of {func} must be (start, stop) or a slice. "
            f"Got {token_range!r}."
        )
    for v in (start, stop):
        if v is not None and not _is_int(v):
            raise TypeError(f"The 'token_range' parameter of {func} must hold ints or None.")
    a, b, _ = slice(start, stop).indices(n)
    if a >= b:
        raise ValueError(
            f"The 'token_range' parameter of {func} selects no tokens: {token_range!r} "
            f"of a {n}-token input."
        )
    return a, b


def _prettify(tokens: list[str]) -> list[str]:
    # Byte-level BPE "Ġ" and SentencePiece "▁" mark a leading space; "</w>" ends a BPE word
    # (bertviz's rules); GPT-2's "Ċ" is a newline, shown as a visible return sign.
    return [
        t.replace("\u0120", " ").replace("\u2581", " ").replace("</w>", "").replace("\u010a", "↵")
        for t in tokens
    ]


# ---------------------------------------------------------------------------
# Page building
# ---------------------------------------------------------------------------


@dataclass
class _Matrix:
    layers: list[int]
    heads: list[int]
    attn: np.ndarray  # (layers, heads, query, key), float64, already windowed
    total_layers: int
    total_heads: int
    total_query: int


def _extract(
    stack: _Stack,
    layers: list[int],
    heads: list[int],
    qwin: tuple[int, int],
    kwin: tuple[int, int],
    batch_index: int,
    func: str,
) -> _Matrix:
    """Slice (example, heads, token window) per layer before converting: only what is shown
    is ever copied to the CPU / float64."""
    out = []
    for li in layers:
        t = stack.layers[li]
        if stack.batched:
            t = t[batch_index]
        t = t[list(heads)][:, qwin[0] : qwin[1], kwin[0] : kwin[1]]
        out.append(to_numpy(t, f"{stack.name}[{li}]", func))
    arr = np.stack(out)
    if not np.isfinite(arr).all():
        li = layers[int(np.argwhere(~np.isfinite(arr))[0][0])]
        raise ValueError(
            f"The '{stack.name}' parameter of {func} holds NaN or infinite weights "
            f"(first in layer {li}); check the attention mask of that input."
        )
    return _Matrix(layers, heads, arr, len(stack.layers), stack.n_heads, stack.n_query)


@functools.lru_cache(maxsize=4)
def _number_table(decimals: int) -> np.ndarray:
    """Shortest JSON text of every multiple of 10**-decimals in [0, 1]: "0", "0.25", "1"."""
    scale = 10**decimals
    return np.array(
        [f"{i / scale:.{decimals}f}".rstrip("0").rstrip(".") for i in range(scale + 1)],
        dtype=object,
    )


def _numbers_json(arr: np.ndarray, decimals: int) -> str:
    """Nested JSON lists of ``arr`` rounded to ``decimals``, in the fewest characters."""
    scale = 10**decimals
    steps = np.rint(arr * scale)
    if decimals <= 4 and arr.size and steps.min() >= 0 and steps.max() <= scale:
        # Attention weights live in [0, 1]: look the text of each rounded value up instead
        # of formatting millions of floats one by one (about 10x faster on long inputs).
        text = _number_table(decimals)[steps.astype(np.int64)]
        nested: Any = np.array(
            ["[" + ",".join(row) + "]" for row in text.reshape(-1, arr.shape[-1])],
            dtype=object,
        ).reshape(arr.shape[:-1])
        while nested.ndim > 1:
            nested = np.array(
                ["[" + ",".join(row) + "]" for row in nested.reshape(-1, nested.shape[-1])],
                dtype=object,
            ).reshape(nested.shape[:-1])
        return "[" + ",".join(nested) + "]"
    text = json.dumps(np.round(arr, decimals).tolist(), separators=(",", ":"))
    # "0.0" -> "0", "1.0" -> "1" (safe: this string holds numbers only).
    return re.sub(r"(?<![\d.])(\d+)\.0(?![\d])", r"\1", text)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _script_json(text: str) -> str:
    """Make JSON text safe inside ``<script>``: no ``</script>``, ``<!--``, ``&`` or U+2028/9."""
    for raw, esc in _JSON_ESCAPES.items():
        text = text.replace(raw, esc)
    return text


def _payload(kind: str, mats: list[_Matrix], views: list[dict], decimals: int, **extra: Any) -> str:
    mats_json = ",".join(
        '{"layers":'
        + _compact(m.layers)
        + ',"heads":'
        + _compact(m.heads)
        + ',"attn":'
        + _numbers_json(m.attn, decimals)
        + "}"
        for m in mats
    )
    rest = json.dumps(
        {"kind": kind, "views": views, **extra}, ensure_ascii=False, separators=(",", ":")
    )
    # Splice the weights in by hand: no placeholder a token could collide with.
    return _script_json('{"mats":[' + mats_json + "]," + rest[1:])


def _token_column(tokens: list[str], side: str, pos0: int) -> str:
    kind = "query" if side == "left" else "key"
    rows = "".join(
        f'<div class="wbav-tok" data-i="{i}" title="{kind} #{pos0 + i}  {escape(t)}">'
        f"{escape(t)}</div>"
        for i, t in enumerate(tokens)
    )
    return f'<div class="wbav-col wbav-{side}">{rows}</div>'


def _static_head(view: dict, title: str, mats_heads: list[int]) -> str:
    # Token columns in the markup itself: visible at once, and where scripts are stripped
    # (untrusted notebooks, static previews) the tokens still show.
    slots = len(mats_heads)
    width = 210 + 2 * max(26, min(80, 8 + 4 * slots))  # as stripWidth() in the script
    return (
        f'<div class="wbav-title">{escape(title)}</div>'
        '<div class="wbav-note">The interactive view needs JavaScript '
        "(a browser, or a trusted notebook).</div>"
        '<div class="wbav-panel">'
        + _token_column(view["left"], "left", view["qpos"])
        + f'<div class="wbav-mid" style="width:{width}px"></div>'
        + _token_column(view["right"], "right", view["kpos"])
        + "</div>"
    )


def _static_model(view: dict, title: str) -> str:
    chips = "".join(
        f'<span class="wbav-chip" data-i="{i}" title="query #{view["qpos"] + i}">{escape(t)}</span>'
        for i, t in enumerate(view["left"])
    )
    return (
        f'<div class="wbav-title">{escape(title)}</div>'
        '<div class="wbav-note">The interactive view needs JavaScript '
        "(a browser, or a trusted notebook).</div>"
        f'<div class="wbav-strip">{chips}</div>'
    )


def _assemble(kind: str, payload: str, static: str, dark: bool) -> str:
    uid = "wbav-" + uuid.uuid4().hex[:16]
    cls = f"wbav wbav-{kind}" + (" wbav-dark" if dark else "")
    return (
        f'<div class="{cls}" id="{uid}">'
        f"<style>{ATTENTION_CSS}</style>"
        f'<div class="wbav-static">{static}</div>'
        f'<script type="application/json" class="wbav-data">{payload}</script>'
        f"<script>{ATTENTION_JS.replace('__WBAV_UID__', uid)}</script>"
        "</div>"
    )


def _checked_size(mats: list[_Matrix], func: str) -> list[_Matrix]:
    weights = sum(m.attn.size for m in mats)
    if weights > _LARGE_PAGE_WEIGHTS:
        warnings.warn(
            f"{func}: the page embeds {weights:,} attention weights (about "
            f"{weights * 6 / 1e6:.0f} MB of HTML) and may be slow to open; choose what to show "
            "with include_layers=, include_heads= or token_range=(start, stop).",
            UserWarning,
            stacklevel=4,
        )
    return mats


def _self_views(
    tokens: list[str], n: int, window: tuple[int, int], sentence_b_start: int | None, func: str
) -> list[dict]:
    """bertviz's views of one self-attention matrix: all, and the four sentence pairs."""
    a0 = window[0]
    views = [{"name": "All", "mat": 0, "q": [0, n], "k": [0, n], "left": tokens, "right": tokens}]
    if sentence_b_start is not None:
        b = min(max(sentence_b_start - a0, 0), n)
        parts = {"A": (0, b), "B": (b, n)}
        for qn, kn in (("A", "A"), ("B", "B"), ("A", "B"), ("B", "A")):
            q, k = parts[qn], parts[kn]
            if q[0] < q[1] and k[0] < k[1]:
                views.append(
                    {
                        "name": f"Sentence {qn} -> Sentence {kn}",
                        "mat": 0,
                        "q": list(q),
                        "k": list(k),
                        "left": tokens[q[0] : q[1]],
                        "right": tokens[k[0] : k[1]],
                    }
                )
    for v in views:
        v["qpos"], v["kpos"] = a0 + v["q"][0], a0 + v["k"][0]
    return views


def _build(
    func: str,
    *,
    attention: Any,
    tokens: Any,
    sentence_b_start: Any,
    prettify_tokens: bool,
    encoder_attention: Any,
    decoder_attention: Any,
    cross_attention: Any,
    encoder_tokens: Any,
    decoder_tokens: Any,
    include_layers: Any,
    include_heads: Any,
    token_range: Any,
    batch_index: int,
    decimals: int,
) -> tuple[list[_Matrix], list[dict]]:
    """Validate the bertviz-style arguments; return the matrices and views to embed."""
    if not _is_int(batch_index):
        raise TypeError(f"The 'batch_index' parameter of {func} must be an int.")
    if not _is_int(decimals) or decimals < 1:
        raise ValueError(f"The 'decimals' parameter of {func} must be an int >= 1.")
    pretty = _prettify if prettify_tokens else (lambda t: t)
    enc_dec = (
        encoder_attention,
        decoder_attention,
        cross_attention,
        encoder_tokens,
        decoder_tokens,
    )
    mats: list[_Matrix] = []
    views: list[dict] = []

    def select(stack: _Stack, qwin: tuple[int, int], kwin: tuple[int, int]) -> _Matrix:
        layers = _indices(include_layers, len(stack.layers), "include_layers", func, "layer")
        heads = _indices(include_heads, stack.n_heads, "include_heads", func, "head")
        return _extract(stack, layers, heads, qwin, kwin, batch_index, func)

    if attention is not None:
        if any(x is not None for x in enc_dec):
            raise ValueError(
                f"{func}: if you pass 'attention' you may not pass any encoder-decoder "
                "argument (encoder_attention, decoder_attention, cross_attention, "
                "encoder_tokens, decoder_tokens): 'attention' is for self-attention models."
            )
        toks = _check_tokens(tokens, "tokens", func)
        stack = _stack(attention, "attention", func, batch_index)
        _match(stack, len(toks), "query", "tokens", func)
        _match(stack, len(toks), "key", "tokens", func)
        if sentence_b_start is not None and (
            not _is_int(sentence_b_start) or not 0 <= sentence_b_start <= len(toks)
        ):
            raise ValueError(
                f"The 'sentence_b_start' parameter of {func} must be an int in "
                f"[0, {len(toks)}] (the index of the first token of sentence B). "
                f"Got {sentence_b_start!r}."
            )
        win = _token_window(token_range, len(toks), func)
        mats.append(select(stack, win, win))
        shown = pretty(toks[win[0] : win[1]])
        views = _self_views(shown, len(shown), win, sentence_b_start, func)
        return _checked_size(mats, func), views

    if encoder_attention is None and decoder_attention is None and cross_attention is None:
        raise ValueError(
            f"{func}: pass 'attention' (self-attention models) or at least one of "
            "'encoder_attention', 'decoder_attention', 'cross_attention'."
        )
    enc = dec = None
    if encoder_attention is not None or cross_attention is not None:
        if encoder_tokens is None:
            which = "encoder_attention" if encoder_attention is not None else "cross_attention"
            raise ValueError(f"{func}: 'encoder_tokens' is required with '{which}'.")
        enc = _check_tokens(encoder_tokens, "encoder_tokens", func)
    if decoder_attention is not None or cross_attention is not None:
        if decoder_tokens is None:
            which = "decoder_attention" if decoder_attention is not None else "cross_attention"
            raise ValueError(f"{func}: 'decoder_tokens' is required with '{which}'.")
        dec = _check_tokens(decoder_tokens, "decoder_tokens", func)
    ewin = _token_window(token_range, len(enc), func) if enc is not None else None
    dwin = _token_window(token_range, len(dec), func) if dec is not None else None
    for name, arg, qt, kt, qw, kw in (
        ("Encoder", encoder_attention, enc, enc, ewin, ewin),
        ("Decoder", decoder_attention, dec, dec, dwin, dwin),
        ("Cross", cross_attention, dec, enc, dwin, ewin),
    ):
        if arg is None:
            continue
        param = name.lower() + "_attention"
        stack = _stack(arg, param, func, batch_index)
        q_name = "decoder_tokens" if name != "Encoder" else "encoder_tokens"
        k_name = "encoder_tokens" if name != "Decoder" else "decoder_tokens"
        _match(stack, len(qt), "query", q_name, func)
        _match(stack, len(kt), "key", k_name, func)
        mats.append(select(stack, qw, kw))
        left, right = pretty(qt[qw[0] : qw[1]]), pretty(kt[kw[0] : kw[1]])
        views.append(
            {
                "name": name,
                "mat": len(mats) - 1,
                "q": [0, len(left)],
                "k": [0, len(right)],
                "left": left,
                "right": right,
                "qpos": qw[0],
                "kpos": kw[0],
            }
        )
    return _checked_size(mats, func), views


def _deliver(view: HTMLView, html_action: str, func: str) -> HTMLView | None:
    if html_action == "return":
        return view
    if in_notebook():
        try:
            from IPython.display import display
        except ImportError:  # pragma: no cover - in_notebook() implies IPython is loaded
            pass
        else:
            display(view)
            return None
    warnings.warn(
        f"{func}(html_action='view') shows the view in a Jupyter notebook; none is running, "
        "so the view is returned instead: save it with .save('attention.html') "
        "(or pass html_action='return').",
        UserWarning,
        stacklevel=3,
    )
    return view


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(mats: list[_Matrix], views: list[dict]) -> str:
    """What the page holds, e.g. ``tokens 0-39 of 130 · layers 0, 5 of 6 · 12 heads``."""
    m, v = mats[0], views[0]
    n, start = len(v["left"]), v["qpos"]
    toks = (
        _plural(n, "token")
        if n == m.total_query
        else f"tokens {start}–{start + n - 1} of {m.total_query}"
    )

    def part(chosen: list[int], total: int, word: str) -> str:
        if chosen == list(range(total)):
            return _plural(total, word)
        return f"{word}s {', '.join(map(str, chosen))} of {total}"

    return " · ".join(
        [toks, part(m.layers, m.total_layers, "layer"), part(m.heads, m.total_heads, "head")]
    )


# ---------------------------------------------------------------------------
# Public views
# ---------------------------------------------------------------------------


def head_view(
    attention: Any = None,
    tokens: Sequence[str] | None = None,
    sentence_b_start: int | None = None,
    prettify_tokens: bool = True,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    encoder_attention: Any = None,
    decoder_attention: Any = None,
    cross_attention: Any = None,
    encoder_tokens: Sequence[str] | None = None,
    decoder_tokens: Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    html_action: str = "view",
    *,
    include_heads: Sequence[int] | None = None,
    token_range: tuple[int | None, int | None] | slice | None = None,
    batch_index: int = 0,
    decimals: int = 3,
) -> HTMLView | None:
    """Attention of one layer, every head at once: lines from each token to the tokens it attends.

    The bertviz 1.4 ``head_view`` (same positional arguments and defaults), rendered as one
    self-contained page: a layer selector, a coloured toggle per head (click to toggle,
    double-click to show only that head), query tokens on the left and key tokens on the
    right joined by lines whose opacity is the attention weight. Hovering a token keeps only
    its lines, shows per-head weight boxes on the other side and lists its strongest
    partners with their weights.

    Parameters
    ----------
    attention : sequence of torch.Tensor or numpy.ndarray, optional
        Self-attention weights, one ``(batch, heads, query, key)`` array per layer
        (``model(..., output_attentions=True).attentions`` or
        ``whybox.attention.capture_attention(model, **inputs)``). A stacked
        ``(layers, batch, heads, query, key)`` array also works.
    tokens : sequence of str, optional
        One token per position (``tokenizer.convert_ids_to_tokens(input_ids[0])``);
        required with ``attention``.
    sentence_b_start : int, optional
        Index of the first token of sentence B for a sentence pair; adds the
        ``Sentence A -> Sentence B`` etc. views.
    prettify_tokens : bool
        Replace the BPE / SentencePiece space markers ``Ġ`` and ``▁`` by a space, drop
        ``</w>``, and show GPT-2's newline marker ``Ċ`` as ``↵``.
    layer : int, optional
        Layer selected at first (a model layer number; must be in ``include_layers``).
        Defaults to the first included layer.
    heads : sequence of int, optional
        Heads switched on at first (model head numbers). Defaults to all.
    encoder_attention, decoder_attention, cross_attention : sequence of arrays, optional
        For encoder-decoder models, instead of ``attention``: encoder self-attention
        ``(batch, heads, enc, enc)``, decoder self-attention ``(batch, heads, dec, dec)`` and
        cross-attention ``(batch, heads, dec, enc)`` per layer.
    encoder_tokens, decoder_tokens : sequence of str, optional
        Tokens of the encoder and decoder inputs.
    include_layers : sequence of int, optional
        Layers embedded in the page (all by default). Fewer layers make long inputs faster.
    html_action : {"view", "return"}
        ``"view"`` displays the view in Jupyter (outside a notebook it warns and returns
        the view); ``"return"`` returns it.
    include_heads : sequence of int, optional
        Keyword-only. Heads embedded in the page (all by default).
    token_range : (int, int) or slice, optional
        Keyword-only. Show only tokens ``start:stop`` (Python slice semantics) on both
        sides, e.g. ``(0, 64)`` for the first 64 tokens of a long input; for
        encoder-decoder inputs the range applies to the encoder and the decoder tokens.
        Weights are not renormalised: the lines show the original weights.
    batch_index : int
        Keyword-only. Which example of the batch to show (bertviz shows the first).
    decimals : int
        Keyword-only. Decimals kept for the embedded weights (3 by default).

    Returns
    -------
    whybox.viz.HTMLView or None
        With ``html_action="return"``: an object with ``.data`` (the HTML fragment),
        ``_repr_html_``, ``.to_page()`` and ``.save(path)``. ``None`` after displaying it.

    Raises
    ------
    ValueError
        Empty ``attention`` (the model ran with SDPA attention), a token count that does
        not match the weights, wrong dimensions, unknown layers/heads or options.
    TypeError
        Arguments of the wrong type (e.g. token ids instead of token strings).

    Examples
    --------
    >>> out = model(input_ids, output_attentions=True)  # doctest: +SKIP
    >>> tokens = tokenizer.convert_ids_to_tokens(input_ids[0])  # doctest: +SKIP
    >>> head_view(out.attentions, tokens)  # doctest: +SKIP
    """
    func = "head_view"
    check_choice(html_action, HTML_ACTIONS, "html_action", func)
    mats, views = _build(
        func,
        attention=attention,
        tokens=tokens,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        encoder_attention=encoder_attention,
        decoder_attention=decoder_attention,
        cross_attention=cross_attention,
        encoder_tokens=encoder_tokens,
        decoder_tokens=decoder_tokens,
        include_layers=include_layers,
        include_heads=include_heads,
        token_range=token_range,
        batch_index=batch_index,
        decimals=decimals,
    )
    first = mats[0]
    start_layer = first.layers[0]
    if layer is not None:
        if not _is_int(layer):
            raise TypeError(f"The 'layer' parameter of {func} must be an int. Got {layer!r}.")
        if int(layer) not in first.layers:
            raise ValueError(
                f"The 'layer' parameter of {func}: layer {layer} is not in include_layers: "
                f"{first.layers}."
            )
        start_layer = int(layer)
    start_heads = None
    if heads is not None and len(heads) > 0:  # bertviz: an empty list means all heads
        if isinstance(heads, (str, bytes)) or not all(_is_int(h) for h in heads):
            raise TypeError(f"The 'heads' parameter of {func} must be a list of head numbers.")
        missing = [h for h in heads if int(h) not in first.heads]
        if missing:
            raise ValueError(
                f"The 'heads' parameter of {func} names head {missing[0]}, which is not "
                f"among the heads shown: {first.heads}."
            )
        start_heads = sorted({int(h) for h in heads})
    payload = _payload(
        "head",
        mats,
        views,
        decimals,
        view=0,
        layer=start_layer,
        heads=start_heads,
        note=_summary(mats, views),
    )
    static = _static_head(views[0], "Head view · " + _summary(mats, views), mats[0].heads)
    view = HTMLView(_assemble("head", payload, static, dark=False), title="whybox head view")
    return _deliver(view, html_action, func)


def model_view(
    attention: Any = None,
    tokens: Sequence[str] | None = None,
    sentence_b_start: int | None = None,
    prettify_tokens: bool = True,
    display_mode: str = "dark",
    encoder_attention: Any = None,
    decoder_attention: Any = None,
    cross_attention: Any = None,
    encoder_tokens: Sequence[str] | None = None,
    decoder_tokens: Sequence[str] | None = None,
    include_layers: Sequence[int] | None = None,
    include_heads: Sequence[int] | None = None,
    html_action: str = "view",
    *,
    token_range: tuple[int | None, int | None] | slice | None = None,
    batch_index: int = 0,
    decimals: int = 3,
    thumbnail: str = "auto",
) -> HTMLView | None:
    """Every layer and head at once: a grid of thumbnails (layers x heads), click to enlarge.

    The bertviz 1.4 ``model_view`` (same positional arguments and defaults), rendered as
    one self-contained page. Each thumbnail draws one head's attention (query tokens on the
    left, key tokens on the right); clicking it opens that head full size below its row,
    with tokens and hover. Hovering a token in the token strip above the grid traces that
    token's attention in every head at once.

    Parameters
    ----------
    attention : sequence of torch.Tensor or numpy.ndarray, optional
        Self-attention weights, one ``(batch, heads, query, key)`` array per layer.
        A stacked ``(layers, batch, heads, query, key)`` array also works.
    tokens : sequence of str, optional
        One token per position; required with ``attention``.
    sentence_b_start : int, optional
        Index of the first token of sentence B for a sentence pair.
    prettify_tokens : bool
        Replace the space markers ``Ġ`` / ``▁`` by a space, drop ``</w>``, show ``Ċ`` as ``↵``.
    display_mode : {"dark", "light"}
        Colour scheme.
    encoder_attention, decoder_attention, cross_attention : sequence of arrays, optional
        For encoder-decoder models, instead of ``attention`` (see :func:`head_view`).
    encoder_tokens, decoder_tokens : sequence of str, optional
        Tokens of the encoder and decoder inputs.
    include_layers, include_heads : sequence of int, optional
        Layers / heads shown (all by default); fewer make long inputs faster.
    html_action : {"view", "return"}
        ``"view"`` displays the view in Jupyter (outside a notebook it warns and returns
        the view); ``"return"`` returns it.
    token_range : (int, int) or slice, optional
        Keyword-only. Show only tokens ``start:stop`` on both sides (see :func:`head_view`).
    batch_index : int
        Keyword-only. Which example of the batch to show.
    decimals : int
        Keyword-only. Decimals kept for the embedded weights (3 by default).
    thumbnail : {"auto", "lines", "matrix"}
        Keyword-only. Thumbnails as bertviz-style lines, or as query x key heat maps,
        which stay readable for long inputs (each scaled to its largest weight);
        ``"auto"`` uses lines up to 64 tokens.

    Returns
    -------
    whybox.viz.HTMLView or None
        With ``html_action="return"``: an object with ``.data``, ``_repr_html_``,
        ``.to_page()`` and ``.save(path)``. ``None`` after displaying it.

    Raises
    ------
    ValueError
        Empty ``attention`` (the model ran with SDPA attention), a token count that does
        not match the weights, wrong dimensions, unknown layers/heads or options.
    TypeError
        Arguments of the wrong type.
    """
    func = "model_view"
    check_choice(html_action, HTML_ACTIONS, "html_action", func)
    check_choice(display_mode, DISPLAY_MODES, "display_mode", func)
    check_choice(thumbnail, THUMBNAILS, "thumbnail", func)
    mats, views = _build(
        func,
        attention=attention,
        tokens=tokens,
        sentence_b_start=sentence_b_start,
        prettify_tokens=prettify_tokens,
        encoder_attention=encoder_attention,
        decoder_attention=decoder_attention,
        cross_attention=cross_attention,
        encoder_tokens=encoder_tokens,
        decoder_tokens=decoder_tokens,
        include_layers=include_layers,
        include_heads=include_heads,
        token_range=token_range,
        batch_index=batch_index,
        decimals=decimals,
    )
    if thumbnail == "auto":
        longest = max(max(len(v["left"]), len(v["right"])) for v in views)
        thumbnail = "matrix" if longest > _AUTO_MATRIX_TOKENS else "lines"
    payload = _payload(
        "model",
        mats,
        views,
        decimals,
        view=0,
        mode=display_mode,
        thumb=thumbnail,
        note=_summary(mats, views),
    )
    static = _static_model(views[0], "Model view · " + _summary(mats, views))
    html = _assemble("model", payload, static, dark=display_mode == "dark")
    view = HTMLView(html, title="whybox model view")
    return _deliver(view, html_action, func)
