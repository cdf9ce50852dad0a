"""Text views: Captum parity of visualize_text, escaping, chips, aggregation, top-k chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import re
import sys
import time
import types
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from whybox.attr import visualization as viz
from whybox.viz import text as vtext


class Outline(HTMLParser):
    """Collects header cells, bold cell texts, legend labels and chip texts/colours.

    Tolerant of Captum's unclosed ``<tr>``: every open element accumulates the text
    inside it, and an end tag closes the nearest matching open element.
    """

    def __init__(self):
        super().__init__()
        self.th, self.bold, self.marks, self.mark_colours, self.legend = [], [], [], [], []
        self._open: list[list] = []  # [tag, text, is_legend]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "mark":
            m = re.search(r"background-color:\s*([^;]+);", attrs.get("style", ""))
            self.mark_colours.append(m.group(1).strip() if m else None)
        legend = tag == "div" and "border-top" in (attrs.get("style") or "")
        if tag not in ("br", "img", "meta"):
            self._open.append([tag, "", legend])

    def _in_legend(self):
        return any(entry[2] for entry in self._open)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                _, raw, _ = self._open.pop(i)
                text = " ".join(raw.split())
                if tag == "th":
                    self.th.append(text)
                elif tag == "b" and not self._in_legend():
                    self.bold.append(text)
                elif tag == "mark":
                    self.marks.append(text)
                return

    def handle_data(self, data):
        for entry in self._open:
            entry[1] += data
        if self._in_legend() and data.strip() and self._open[-1][0] != "b":
            self.legend.append(data.strip())


def outline(html):
    p = Outline()
    p.feed(html)
    return p


def records():
    return [
        viz.VisualizationDataRecord(
            torch.tensor([0.1, 0.9, -0.6, 0.0]),
            torch.tensor(0.87),  # seeds pass tensors for the probability...
            "pos",
            "pos",
            "pos",
            torch.tensor(0.4),
            ["It", "was", "horrible", "pad"],
            torch.tensor([1e-4]),
        ),
        viz.VisualizationDataRecord(
            np.array([-1.0, 0.5, 0.25]),
            0.13,
            np.int64(0),  # ...and numpy scalars for classes
            1,
            "neg",
            -1.31,
            ["Best", "film", "ever"],
            0.0,
        ),
    ]


@pytest.fixture
def captum_html(monkeypatch):
    """Captum's visualize_text output, with IPython faked (it is not installed)."""
    from captum.attr._utils import visualization as cv

    class FakeHTML:
        def __init__(self, data):
            self.data = data

    monkeypatch.setattr(cv, "HAS_IPYTHON", True)
    monkeypatch.setattr(cv, "HTML", FakeHTML, raising=False)
    monkeypatch.setattr(cv, "display", lambda obj: None, raising=False)

    def build(recs, legend=True):
        return cv.visualize_text(recs, legend=legend).data

    return build


@pytest.mark.parametrize("legend", [True, False])
def test_visualize_text_structure_matches_captum(captum_html, legend):
    ours = outline(viz.visualize_text(records(), legend=legend).data)
    theirs = outline(captum_html(records(), legend=legend))
    assert (
        ours.th
        == theirs.th
        == [
            "True Label",
            "Predicted Label",
            "Attribution Label",
            "Attribution Score",
            "Word Importance",
        ]
    )
    assert ours.legend == theirs.legend == (["Negative", "Neutral", "Positive"] if legend else [])
    assert ours.bold == theirs.bold  # label cells, probability/score formatting
    assert ours.marks == theirs.marks  # one chip per token, same text
    assert ours.marks == ["It", "was", "horrible", "pad", "Best", "film", "ever"]
    assert ours.bold[:4] == ["pos", "pos (0.87)", "pos", "0.40"]
    assert ours.bold[4:] == ["1", "0 (0.13)", "neg", "-1.31"]
    assert len(ours.mark_colours) == 7 and ours.mark_colours[2] == "hsl(0, 75%, 76%)"
    assert ours.mark_colours == theirs.mark_colours  # same colour scale


def test_format_helpers_match_captum_on_plain_input():
    from captum.attr._utils import visualization as cv

    words, imps = ["a", "b", "<s>"], [0.3, -0.8, 2.0]
    assert (
        outline(viz.format_word_importances(words, imps)).marks
        == outline(cv.format_word_importances(words, imps)).marks
        == ["a", "b", "#s"]
    )
    assert viz.format_special_tokens("<pad>") == cv.format_special_tokens("<pad>") == "#pad"
    assert viz.format_special_tokens("word") == "word"
    assert (
        viz.format_word_importances(["a"], [])
        == "<td></td>"
        == cv.format_word_importances(["a"], [])
    )
    assert "7" in viz.format_classname(7) and viz.format_classname(7).startswith("<td>")
    tip = viz.format_tooltip("<b>x</b>", "value <1>")
    assert "<b>x</b>" in tip and "value &lt;1&gt;" in tip and "tooltip" in tip


def test_visualize_text_escapes_tokens_and_is_well_formed():
    rec = viz.VisualizationDataRecord(
        np.array([0.5, -0.5, 0.1]),
        0.5,
        "<b>bold</b>",
        "a&b",
        1,
        0.1,
        ["<script>alert(1)</script>", "x<img src=x onerror=alert(1)>", "&amp;"],
        0.0,
    )
    html = viz.visualize_text([rec]).data
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "a&amp;b" in html and "&amp;amp;" in html
    # Well-formed: every opened element is closed in order.
    stack = []
    for closing, tag in re.findall(r"<(/?)([a-zA-Z]+)[^>]*>", html):
        if closing:
            assert stack and stack.pop() == tag, tag
        else:
            stack.append(tag)
    assert stack == []
    assert "http://" not in html and "https://" not in html


def test_visualize_text_without_ipython_returns_and_saves(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    out = viz.visualize_text(records())
    assert out._repr_html_() == out.data and "Word Importance" in out.data
    path = out.save(tmp_path / "t.html")
    page = open(path, encoding="utf-8").read()
    assert (
        page.startswith("<!DOCTYPE html>") and out.data in page and '<meta charset="utf-8">' in page
    )


def test_visualize_text_displays_inside_ipython(monkeypatch):
    shown = []
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: object()  # a running shell
    display_mod = types.ModuleType("IPython.display")
    display_mod.display = shown.append
    fake.display = display_mod
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    out = viz.visualize_text(records())
    assert shown == [out]
    fake.get_ipython = lambda: None  # IPython imported but no shell: plain Python
    viz.visualize_text(records())
    assert len(shown) == 1


def test_visualize_text_bad_records():
    with pytest.raises(TypeError, match="VisualizationDataRecord"):
        viz.visualize_text([{"word_attributions": [1.0]}])
    bad = viz.VisualizationDataRecord([0.1], 0.5, 1, 1, 1, 0.1, ["a", "b"], 0.0)
    with pytest.raises(ValueError, match="'words'"):
        viz.visualize_text([bad])


def test_visualize_text_is_a_real_module_import():
    import importlib

    mod = importlib.import_module("whybox.attr.visualization")
    from whybox.attr.visualization import visualize_text

    assert mod.visualize_text is visualize_text


def test_summarize_token_attributions_matches_seed_recipe():
    torch.manual_seed(0)
    attributions = torch.randn(1, 7, 16, dtype=torch.float64)
    expected = attributions.sum(dim=-1).squeeze(0)
    expected = expected / torch.norm(expected)
    got = viz.summarize_token_attributions(attributions)
    assert isinstance(got, torch.Tensor) and torch.allclose(got, expected)
    got_np = viz.summarize_token_attributions(attributions.numpy())
    assert isinstance(got_np, np.ndarray) and np.allclose(got_np, expected.numpy())
    assert np.isclose(np.linalg.norm(got_np), 1.0)
    zero = viz.summarize_token_attributions(torch.zeros(1, 3, 4))
    assert torch.equal(zero, torch.zeros(3))  # no NaN from 0/0


@pytest.mark.parametrize(
    "tokens,values,words,sums",
    [
        (
            ["[CLS]", "em", "##bed", "##ding", "is", "[SEP]"],
            [0.5, 1.0, 2.0, 3.0, -1.0, 0.25],
            ["[CLS]", "embedding", "is", "[SEP]"],
            [0.5, 6.0, -1.0, 0.25],
        ),
        (
            ["<s>", "Hello", "\u0120wor", "ld", "!", "\u0120ok", "</s>"],
            [0.0, 1.0, 2.0, 3.0, 4.0, -2.0, 0.5],
            ["<s>", "Hello", "world!", "ok", "</s>"],
            [0.0, 1.0, 9.0, -2.0, 0.5],
        ),
        (
            ["\u2581The", "\u2581quick", "est", "\u2581fox"],
            [1.0, 2.0, 3.0, 4.0],
            ["The", "quickest", "fox"],
            [1.0, 5.0, 4.0],
        ),
        (["a", "b"], [1.0, 2.0], ["a", "b"], [1.0, 2.0]),
    ],
)
def test_aggregate_subwords(tokens, values, words, sums):
    got_words, got = viz_text_aggregate(tokens, values)
    assert got_words == words and np.allclose(got, sums)


def viz_text_aggregate(tokens, values):
    return vtext.aggregate_subwords(tokens, torch.tensor(values))


def test_aggregate_reductions_and_groups():
    words, vals, groups = vtext.aggregate_subwords(
        ["un", "##believ", "##able"], [1.0, -4.0, 1.0], reduce="max", return_groups=True
    )
    assert words == ["unbelievable"] and vals.tolist() == [-4.0] and groups == [[0, 1, 2]]
    _, mean = vtext.aggregate_subwords(["un", "##able"], [1.0, 3.0], reduce="mean")
    assert mean.tolist() == [2.0]
    with pytest.raises(ValueError, match="'reduce'"):
        vtext.aggregate_subwords(["a"], [1.0], reduce="median")
    with pytest.raises(ValueError, match="has 1 values but 'tokens' has 2"):
        vtext.aggregate_subwords(["a", "b"], [1.0])
    with pytest.raises(TypeError, match="'tokens'"):
        vtext.aggregate_subwords("ab", [1.0, 2.0])


def chips(html):
    return re.findall(
        r'<span class="wb-chip[^"]*" style="background-color:(rgb\([^)]*\))"[^>]*>([^<]*)</span>',
        html,
    )


def test_text_html_chips_colour_scale_and_hover():
    html = vtext.text_html(
        torch.tensor([2.0, -2.0, 0.0, 1.0]), tokens=["good", "bad", "meh", "<script>"]
    )
    found = chips(html)
    assert [t for _, t in found] == ["good", "bad", "meh", "&lt;script&gt;"]
    (good, _), (bad, _), (meh, _), (half, _) = found
    rgb = [tuple(map(int, re.findall(r"\d+", c))) for c in (good, bad, meh, half)]
    assert rgb[0][1] > rgb[0][0] + 100  # strongest positive: green
    assert rgb[1][0] > rgb[1][1] + 100  # strongest negative: red
    assert rgb[2] == (255, 255, 255)  # zero: white
    assert rgb[3][1] > rgb[3][0] and rgb[3][0] > rgb[0][0]  # half-strength: lighter green
    assert 'title="good: +2.0000"' in html and 'title="&lt;script&gt;: +1.0000"' in html
    assert "<script" not in html.lower()
    assert not re.search(r"https?://", html)


def test_text_html_aggregate_and_fragment():
    html = vtext.text_html(
        [0.0, 1.0, 1.0, 0.0],
        tokens=["[CLS]", "play", "##ing", "[SEP]"],
        aggregate=True,
        full_page=False,
    )
    assert [t for _, t in chips(html)] == ["[CLS]", "playing", "[SEP]"]
    assert not html.startswith("<!DOCTYPE") and "<style>" in html


def test_long_text_is_fast_and_compact():
    rng = np.random.default_rng(0)
    n = 5000
    tokens = [f"tok{i}" for i in range(n)]
    start = time.perf_counter()
    html = vtext.text_html(rng.normal(size=n), tokens=tokens)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert len(chips(html)) == n
    assert len(html) < 250 * n  # one small span per token, no per-token CSS blocks
    assert "overflow-wrap" in html  # long texts wrap instead of overflowing


def test_top_tokens_bar_chart():
    tokens = ["the", "movie", "was", "awful", "the"]
    vals = np.array([0.05, 0.3, -0.01, -0.9, 0.2])
    fig = vtext.plot_top_tokens(vals, tokens=tokens, k=3, title="why")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    assert labels == ["the [4]", "movie", "awful"]  # largest |value| on top
    assert widths == pytest.approx([0.2, 0.3, -0.9])
    assert ax.patches[-1].get_facecolor()[0] > ax.patches[-1].get_facecolor()[1]  # negative red
    assert ax.patches[0].get_facecolor()[1] > ax.patches[0].get_facecolor()[0]  # positive green
    assert ax.get_title() == "why"
