"""Tabular charts, the auto view rule, native entry points and exports."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import base64
import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from whybox import viz

VALS = np.array([0.5, -2.0, 0.1, 1.0, -0.05])
NAMES = ["age", "income", "zip", "score", "tenure"]


def test_feature_bar_order_values_colours():
    fig = viz.plot_feature_bar(torch.tensor(VALS)[None], NAMES, top_k=3, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age", "score", "income"]
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.5, 1.0, -2.0])
    neg = ax.patches[2].get_facecolor()
    pos = ax.patches[1].get_facecolor()
    assert neg[0] > neg[1] and pos[1] > pos[0]


def test_waterfall_runs_from_base_to_total():
    base = 3.0
    fig = viz.plot_waterfall(VALS, NAMES, base_value=base, top_k=2)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["3 other features", "score", "income"]  # largest on top
    bars = ax.patches
    assert bars[0].get_x() == pytest.approx(base)  # bottom bar starts at the base
    for lower, upper in zip(bars, bars[1:]):  # each step starts where the last ended
        assert upper.get_x() == pytest.approx(lower.get_x() + lower.get_width())
    top = bars[-1]
    assert top.get_x() + top.get_width() == pytest.approx(base + VALS.sum())
    assert bars[0].get_width() == pytest.approx(0.5 + 0.1 - 0.05)


def test_tabular_errors():
    with pytest.raises(ValueError, match="one name per feature"):
        viz.plot_feature_bar(VALS, ["a"])
    with pytest.raises(ValueError, match="'top_k'"):
        viz.plot_feature_bar(VALS, top_k=0)
    with pytest.raises(ValueError, match=r"\(num_features,\)"):
        viz.plot_feature_bar(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "shape,tokens,kind",
    [
        ((5,), None, "tabular"),
        ((1, 5), None, "tabular"),
        ((8, 8), None, "image"),
        ((3, 8, 8), None, "image"),
        ((8, 8, 3), None, "image"),
        ((1, 3, 8, 8), None, "image"),
        ((4,), ["a", "b", "c", "d"], "text"),
        ((4, 16), ["a", "b", "c", "d"], "text"),
    ],
)
def test_auto_rule(shape, tokens, kind):
    assert viz.infer_kind(torch.zeros(shape), tokens) == kind


def test_auto_rule_rejects_unknown_shapes():
    with pytest.raises(ValueError, match="kind="):
        viz.infer_kind(np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="'kind'"):
        viz.plot_attribution(VALS, kind="chart")
    with pytest.raises(ValueError, match="'tokens'"):
        viz.attribution_html(VALS, kind="text")


def test_plot_attribution_dispatch():
    img_fig = viz.plot_attribution(torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert isinstance(img_fig, Figure) and len(img_fig.axes[0].images) == 2  # grey + heat
    txt_fig = viz.plot_attribution(torch.tensor([0.1, -0.5]), tokens=["hi", "there"])
    assert len(txt_fig.axes[0].patches) == 2
    tab_fig = viz.plot_attribution(VALS, feature_names=NAMES, chart="waterfall", top_k=2)
    assert len(tab_fig.axes[0].patches) == 3
    fig = Figure()
    ax = fig.subplots()
    assert viz.plot_attribution(VALS, ax=ax) is fig and len(ax.patches) == 5


def test_figures_export_png_and_svg(tmp_path):
    fig = viz.plot_attribution(VALS, feature_names=NAMES)
    fig.savefig(tmp_path / "c.png")
    fig.savefig(tmp_path / "c.svg")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "c.svg").read_text()
    assert "<svg" in svg and "income" in svg


def no_network(html):
    # Self-contained: no http(s) URLs, no scripts, no external stylesheets or sources.
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith("data:")


def test_attribution_html_tabular():
    html = viz.attribution_html(VALS, np.arange(5.0), feature_names=NAMES + [], title="<T>")
    assert html.startswith("<!DOCTYPE html>") and "<h1>&lt;T&gt;</h1>" in html
    rows = re.findall(r"<tr><td>([^<]*)</td>", html)
    assert rows == ["income", "score", "age", "zip", "tenure"]
    no_network(html)


def test_attribution_html_image_embeds_png():
    html = viz.attribution_html(torch.randn(3, 8, 8), torch.rand(3, 8, 8), title="img")
    no_network(html)
    (payload,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert base64.b64decode(payload)[:4] == b"\x89PNG"


def test_attribution_view_object(tmp_path):
    view = viz.AttributionView(torch.tensor([0.3, -0.2]), tokens=["yes", "<no>"], title="v")
    assert view.kind == "text"
    frag = view._repr_html_()
    assert "&lt;no&gt;" in frag and not frag.startswith("<!DOCTYPE")
    assert isinstance(view.plot(), Figure)
    path = view.save_html(tmp_path / "v.html")
    no_network(open(path, encoding="utf-8").read())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_accepted():
    from whybox.attr import visualization as cviz

    dev = torch.device("cuda")
    cviz.visualize_image_attr(
        torch.randn(1, 3, 8, 8, device=dev),
        torch.rand(3, 8, 8, device=dev),
        method="blended_heat_map",
        use_pyplot=False,
    )
    rec = cviz.VisualizationDataRecord(
        torch.tensor([0.2, -0.4], device=dev),
        torch.tensor(0.7, device=dev),
        1,
        1,
        1,
        torch.tensor(-0.2, device=dev),
        ["a", "b"],
        torch.tensor([1e-3], device=dev),
    )
    assert "1 (0.70)" in cviz.visualize_text([rec]).data
    assert "income" in viz.attribution_html(
        torch.ones(2, device=dev), feature_names=["x", "income"]
    )


def test_bfloat16_and_half_tensors():
    html = viz.text_html(torch.tensor([0.5, -0.5], dtype=torch.bfloat16), tokens=["a", "b"])
    assert 'title="a: +0.5000"' in html
    fig = viz.plot_attribution(torch.randn(3, 8, 8, dtype=torch.float16))
    assert len(fig.axes[0].images) == 1
