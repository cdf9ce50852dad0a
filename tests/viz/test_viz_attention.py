"""Attention views (head_view / model_view): bertviz's signatures, a self-contained page,
escaping, embedded weights, selection of layers/heads/tokens, and clear errors."""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from whybox import viz
from whybox.viz import attention as vatt
from whybox.viz.attention import head_view, model_view

TOKENS = ["[CLS]", "<b>", "</script>", "a&b", "x\u2028y", '"q"', "\u0120hello", "[SEP]"]
N_LAYERS, N_HEADS, BATCH = 3, 4, 2


def make_attention(n_tokens=len(TOKENS), layers=N_LAYERS, heads=N_HEADS, batch=BATCH, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.softmax(3 * torch.randn(batch, heads, n_tokens, n_tokens, generator=g), dim=-1)
        for _ in range(layers)
    )


@pytest.fixture
def attn():
    return make_attention()


class Scripts(HTMLParser):
    """Every <script> element: its attributes and raw text; plus all text outside scripts."""

    def __init__(self):
        super().__init__()
        self.scripts, self.text, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in = [dict(attrs), ""]

    def handle_endtag(self, tag):
        if tag == "script" and self._in is not None:
            self.scripts.append(tuple(self._in))
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            self._in[1] += data
        else:
            self.text.append(data)


def parse(html):
    p = Scripts()
    p.feed(html)
    p.close()
    return p


def payload(html):
    data = [s for a, s in parse(html).scripts if a.get("type") == "application/json"]
    assert len(data) == 1
    return json.loads(data[0])


PRETTY = [t.replace("\u0120", " ") for t in TOKENS]


# ---------------------------------------------------------------------------
# API shape
# ---------------------------------------------------------------------------

BERTVIZ_HEAD = [
    ("attention", None),
    ("tokens", None),
    ("sentence_b_start", None),
    ("prettify_tokens", True),
    ("layer", None),
    ("heads", None),
    ("encoder_attention", None),
    ("decoder_attention", None),
    ("cross_attention", None),
    ("encoder_tokens", None),
    ("decoder_tokens", None),
    ("include_layers", None),
    ("html_action", "view"),
]
BERTVIZ_MODEL = [
    ("attention", None),
    ("tokens", None),
    ("sentence_b_start", None),
    ("prettify_tokens", True),
    ("display_mode", "dark"),
    ("encoder_attention", None),
    ("decoder_attention", None),
    ("cross_attention", None),
    ("encoder_tokens", None),
    ("decoder_tokens", None),
    ("include_layers", None),
    ("include_heads", None),
    ("html_action", "view"),
]


@pytest.mark.parametrize(
    ("func", "expected"), [(head_view, BERTVIZ_HEAD), (model_view, BERTVIZ_MODEL)]
)
def test_signature_is_bertviz_then_keyword_only(func, expected):
    params = list(inspect.signature(func).parameters.values())
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == expected
    extra = [p for p in params if p.kind is not p.POSITIONAL_OR_KEYWORD]
    assert extra and all(p.kind is p.KEYWORD_ONLY for p in extra)
    assert "token_range" in {p.name for p in extra}


def test_exported_from_viz():
    assert viz.head_view is head_view and viz.model_view is model_view
    assert {"head_view", "model_view"} <= set(viz.__all__)


@pytest.mark.parametrize("func", [head_view, model_view])
def test_return_gives_html_object(func, attn):
    out = func(attn, TOKENS, html_action="return")
    assert isinstance(out.data, str) and out.data.startswith('<div class="wbav')
    assert out._repr_html_() == out.data
    page = out.to_page()
    assert page.startswith("<!DOCTYPE html>") and out.data in page


# ---------------------------------------------------------------------------
# Self-contained, escaped page
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("func", [head_view, model_view])
def test_page_is_self_contained(func, attn):
    html = func(attn, TOKENS, html_action="return").to_page()
    low = html.lower()
    assert "http://" not in low and "https://" not in low
    for needle in ("<script src", "<link", "@import", "url(", "require(", "requirejs", "cdn"):
        assert needle not in low, needle
    scripts = parse(html).scripts
    assert [a.get("type") for a, _ in scripts] == ["application/json", None]
    assert all("src" not in a for a, _ in scripts)


@pytest.mark.parametrize("func", [head_view, model_view])
def test_tokens_escaped_everywhere(func, attn):
    html = func(attn, TOKENS, html_action="return").data
    # Exactly our two script elements close: a token "</script>" never ends one early.
    assert html.count("</script>") == 2 and html.count("<script") == 2
    assert "<b>" not in html and "a&b" not in html
    data = [s for a, s in parse(html).scripts if a.get("type")][0]
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in data
    assert "\\u003c/script\\u003e" in data and "\\u003cb\\u003e" in data
    # The static markup shows the tokens as text: escaped, and decoded back exactly.
    assert "&lt;/script&gt;" in html and "&lt;b&gt;" in html and "a&amp;b" in html
    text = "".join(parse(html).text)
    for tok in PRETTY:
        assert tok in text


def test_head_view_markup_has_both_token_columns(attn):
    html = head_view(attn, TOKENS, html_action="return").data
    cols = re.findall(r'<div class="wbav-col wbav-(left|right)">(.*?)</div></div>', html)
    # The static fallback renders the columns before any script runs.
    assert [c[0] for c in cols][:2] == ["left", "right"]
    assert len(re.findall(r'class="wbav-tok"', html)) == 2 * len(TOKENS)


@pytest.mark.parametrize("func", [head_view, model_view])
def test_weights_round_trip_all_layers_and_heads(func, attn):
    p = payload(func(attn, TOKENS, html_action="return").data)
    assert p["kind"] == ("head" if func is head_view else "model")
    (mat,) = p["mats"]
    assert mat["layers"] == list(range(N_LAYERS)) and mat["heads"] == list(range(N_HEADS))
    got = np.array(mat["attn"])
    want = torch.stack([a[0] for a in attn]).numpy()
    assert got.shape == want.shape == (N_LAYERS, N_HEADS, len(TOKENS), len(TOKENS))
    assert np.abs(got - want).max() <= 5e-4 + 1e-9
    (view,) = p["views"]
    assert view["left"] == PRETTY and view["right"] == PRETTY


def test_weights_keep_three_decimals_compactly(attn):
    html = model_view(attn, TOKENS, html_action="return").data
    data = [s for a, s in parse(html).scripts if a.get("type")][0]
    numbers = re.findall(r"\d+\.\d+", data)
    assert numbers and max(len(n.split(".")[1]) for n in numbers) == 3
    assert " " not in data.split('"views"')[0]  # compact separators
    finer = payload(model_view(attn, TOKENS, html_action="return", decimals=5).data)
    want = torch.stack([a[0] for a in attn]).numpy()
    assert np.abs(np.array(finer["mats"][0]["attn"]) - want).max() <= 5e-6 + 1e-9


def test_real_size_page_is_reasonable():
    # MiniLM-sized: 6 layers x 12 heads x 24 tokens.
    attn = make_attention(n_tokens=24, layers=6, heads=12, batch=1)
    html = model_view(attn, [f"t{i}" for i in range(24)], html_action="return").data
    assert len(html) < 300_000


def test_large_pages_warn_and_selection_avoids_it(monkeypatch):
    monkeypatch.setattr(vatt, "_LARGE_PAGE_WEIGHTS", 1000)
    attn = make_attention(n_tokens=10, layers=3, heads=4, batch=1)  # 1,200 weights
    toks = [str(i) for i in range(10)]
    with pytest.warns(UserWarning, match="token_range"):
        model_view(attn, toks, html_action="return")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        head_view(attn, toks, include_layers=[0, 1], html_action="return")


def test_prettify_tokens_flag(attn):
    keep = payload(head_view(attn, TOKENS, prettify_tokens=False, html_action="return").data)
    assert keep["views"][0]["left"] == TOKENS
    gpt = ["\u0120a", "\u2581b", "c</w>", "\u010a"]
    p = payload(head_view(make_attention(n_tokens=4), gpt, html_action="return").data)
    assert p["views"][0]["left"] == [" a", " b", "c", "↵"]


def test_each_call_has_its_own_id(attn):
    a = head_view(attn, TOKENS, html_action="return").data
    b = head_view(attn, TOKENS, html_action="return").data
    ida, idb = (re.search(r'id="(wbav-[0-9a-f]+)"', x).group(1) for x in (a, b))
    assert ida != idb and f'"{ida}"' in a  # the script looks its root up by this id


# ---------------------------------------------------------------------------
# Inputs and selection
# ---------------------------------------------------------------------------


def test_batch_index_numpy_stacked_and_low_precision(attn):
    want = torch.stack([a[1] for a in attn]).numpy()
    for given in (
        attn,
        [a.numpy() for a in attn],
        torch.stack(attn),  # (layers, batch, heads, q, k)
        tuple(a.to(torch.bfloat16) for a in attn),
        [a.requires_grad_(True) * 1 for a in attn],
    ):
        p = payload(head_view(given, TOKENS, html_action="return", batch_index=1).data)
        tol = 5e-3 if given[0].dtype == torch.bfloat16 else 5e-4 + 1e-9
        assert np.abs(np.array(p["mats"][0]["attn"]) - want).max() <= tol
    # No batch dimension at all: (heads, q, k) per layer.
    p = payload(head_view([a[1] for a in attn], TOKENS, html_action="return").data)
    assert np.abs(np.array(p["mats"][0]["attn"]) - want).max() <= 5e-4 + 1e-9


def test_include_layers_heads_and_token_range(attn):
    p = payload(
        model_view(
            attn,
            TOKENS,
            include_layers=[2, 0],
            include_heads=[3, 1],
            token_range=(2, 6),
            html_action="return",
        ).data
    )
    mat = p["mats"][0]
    assert mat["layers"] == [2, 0] and mat["heads"] == [3, 1]
    got = np.array(mat["attn"])
    want = torch.stack([attn[2][0], attn[0][0]])[:, [3, 1]][:, :, 2:6, 2:6].numpy()
    assert got.shape == (2, 2, 4, 4) and np.abs(got - want).max() <= 5e-4 + 1e-9
    view = p["views"][0]
    assert view["left"] == PRETTY[2:6] and view["qpos"] == 2 and view["kpos"] == 2
    assert p["note"] == "tokens 2–5 of 8 · layers 2, 0 of 3 · heads 3, 1 of 4"
    full = payload(model_view(attn, TOKENS, html_action="return").data)
    assert full["note"] == "8 tokens · 3 layers · 4 heads"
    # A slice, negative layers and an open-ended range work the same way.
    q = payload(
        head_view(
            attn, TOKENS, include_layers=[-1], token_range=slice(5, None), html_action="return"
        ).data
    )
    assert q["mats"][0]["layers"] == [2] and q["views"][0]["left"] == PRETTY[5:]
    assert q["layer"] == 2


def test_head_view_initial_layer_and_heads(attn):
    p = payload(head_view(attn, TOKENS, layer=1, heads=[2, 0], html_action="return").data)
    assert p["layer"] == 1 and p["heads"] == [0, 2]
    assert payload(head_view(attn, TOKENS, heads=[], html_action="return").data)["heads"] is None
    with pytest.raises(ValueError, match="layer 0 is not in include_layers"):
        head_view(attn, TOKENS, layer=0, include_layers=[1, 2], html_action="return")
    with pytest.raises(ValueError, match="'heads'"):
        head_view(attn, TOKENS, heads=[7], html_action="return")
    with pytest.raises(ValueError, match="'heads'"):
        head_view(attn, TOKENS, heads=[1], include_heads=[0, 2], html_action="return")


def test_sentence_pair_views(attn):
    p = payload(head_view(attn, TOKENS, sentence_b_start=3, html_action="return").data)
    names = [v["name"] for v in p["views"]]
    assert names == [
        "All",
        "Sentence A -> Sentence A",
        "Sentence B -> Sentence B",
        "Sentence A -> Sentence B",
        "Sentence B -> Sentence A",
    ]
    ab = p["views"][3]
    assert ab["q"] == [0, 3] and ab["k"] == [3, 8]
    assert ab["left"] == PRETTY[:3] and ab["right"] == PRETTY[3:] and ab["kpos"] == 3
    # With a token window, sentence B's start moves with it.
    p = payload(
        model_view(attn, TOKENS, sentence_b_start=3, token_range=(1, 5), html_action="return").data
    )
    assert p["views"][3]["q"] == [0, 2] and p["views"][3]["right"] == PRETTY[3:5]


def test_encoder_decoder_views():
    enc, dec = ["a", "b", "<c>"], ["<s>", "x"]
    g = torch.Generator().manual_seed(1)

    def stack(q, k):
        return tuple(torch.rand(1, 2, q, k, generator=g) for _ in range(2))

    e, d, c = stack(3, 3), stack(2, 2), stack(2, 3)
    for func in (head_view, model_view):
        p = payload(
            func(
                encoder_attention=e,
                decoder_attention=d,
                cross_attention=c,
                encoder_tokens=enc,
                decoder_tokens=dec,
                html_action="return",
            ).data
        )
        assert [v["name"] for v in p["views"]] == ["Encoder", "Decoder", "Cross"]
        cross = p["views"][2]
        assert cross["left"] == dec and cross["right"] == enc
        assert (
            np.abs(np.array(p["mats"][2]["attn"]) - torch.stack([x[0] for x in c]).numpy()).max()
            < 1e-3
        )
    with pytest.raises(ValueError, match="'encoder_tokens' is required"):
        head_view(cross_attention=c, decoder_tokens=dec, html_action="return")
    with pytest.raises(ValueError, match="'decoder_tokens' parameter of model_view has 3 tokens"):
        model_view(decoder_attention=d, decoder_tokens=enc, html_action="return")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("func", [head_view, model_view])
def test_empty_attention_explains_the_sdpa_trap(func):
    msg = (
        "attentions is empty: the model ran with SDPA attention; use "
        "whybox.attention.capture_attention(model, **inputs)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)) as err:
        func((), TOKENS, html_action="return")
    assert "'attention'" in str(err.value)
    with pytest.raises(ValueError, match="SDPA"):
        func(encoder_attention=[], encoder_tokens=TOKENS, html_action="return")


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (
            {"tokens": TOKENS[:-1]},
            ValueError,
            r"'tokens' parameter .* has 7 tokens but 'attention' has 8",
        ),
        ({"tokens": None}, ValueError, "'tokens'"),
        ({"tokens": "a b c"}, TypeError, "'tokens'"),
        ({"tokens": torch.arange(8)}, TypeError, "convert_ids_to_tokens"),
        ({"attention": [torch.rand(8, 8)] * 2}, ValueError, r"\(batch, heads, query, key\)"),
        ({"attention": [torch.rand(1, 1, 1, 8, 8)] * 2}, ValueError, "'attention'"),
        ({"attention": torch.rand(1, 2, 8, 8)}, TypeError, r"wrap one layer as \(tensor,\)"),
        ({"attention": [torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)]}, ValueError, "same shape"),
        ({"attention": [torch.rand(1, 2, 8, 8), None]}, ValueError, r"attention\[1\] .* is None"),
        ({"attention": [torch.rand(1, 2, 8, 7)]}, ValueError, "7 key positions"),
        ({"attention": 3}, TypeError, "'attention'"),
        ({"attention": [torch.full((1, 2, 8, 8), float("nan"))]}, ValueError, "NaN"),
        ({"batch_index": 2}, ValueError, "'batch_index'"),
        ({"include_layers": [3]}, ValueError, "'include_layers'.*out of range"),
        ({"include_layers": []}, ValueError, "'include_layers'"),
        ({"include_layers": [0, 0]}, ValueError, "repeats"),
        ({"include_heads": ["0"]}, TypeError, "'include_heads'"),
        ({"token_range": (5, 5)}, ValueError, "'token_range'.*selects no tokens"),
        ({"token_range": (0, 4, 1)}, TypeError, "'token_range'"),
        ({"sentence_b_start": 9}, ValueError, "'sentence_b_start'"),
        ({"html_action": "show"}, ValueError, "'html_action'"),
        ({"decimals": 0}, ValueError, "'decimals'"),
        ({"encoder_tokens": TOKENS}, ValueError, "encoder-decoder"),
        ({"attention": None}, ValueError, "at least one"),
    ],
)
@pytest.mark.parametrize("func", [head_view, model_view])
def test_bad_arguments_raise_clear_errors(func, attn, kwargs, exc, pattern):
    args = {"attention": attn, "tokens": TOKENS, "html_action": "return", **kwargs}
    with pytest.raises(exc, match=pattern):
        func(**args)


def test_model_view_options_checked(attn):
    with pytest.raises(ValueError, match="'display_mode'"):
        model_view(attn, TOKENS, display_mode="grey", html_action="return")
    with pytest.raises(ValueError, match="'thumbnail'"):
        model_view(attn, TOKENS, thumbnail="dots", html_action="return")
    light = model_view(attn, TOKENS, display_mode="light", html_action="return").data
    assert "wbav-dark" not in light.split(">")[0]
    assert "wbav-dark" in model_view(attn, TOKENS, html_action="return").data.split(">")[0]
    long = make_attention(n_tokens=80, layers=1, heads=1, batch=1)
    toks = [str(i) for i in range(80)]
    assert payload(model_view(long, toks, html_action="return").data)["thumb"] == "matrix"
    assert payload(model_view(attn, TOKENS, html_action="return").data)["thumb"] == "lines"


# ---------------------------------------------------------------------------
# html_action="view"
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("func", [head_view, model_view])
def test_view_outside_notebook_warns_and_returns(func, attn, monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    with pytest.warns(UserWarning, match="save"):
        out = func(attn, TOKENS)
    assert out is not None and "wbav" in out.data


@pytest.mark.parametrize("func", [head_view, model_view])
def test_view_in_notebook_displays(func, attn, monkeypatch):
    shown = []
    ipy = types.ModuleType("IPython")
    ipy.get_ipython = lambda: object()
    disp = types.ModuleType("IPython.display")
    disp.display = shown.append
    ipy.display = disp
    monkeypatch.setitem(sys.modules, "IPython", ipy)
    monkeypatch.setitem(sys.modules, "IPython.display", disp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert func(attn, TOKENS) is None
    assert len(shown) == 1 and "wbav" in shown[0]._repr_html_()


def test_sdpa_message_constant_is_used():
    assert "capture_attention(model, **inputs)" in vatt._SDPA_TRAP
