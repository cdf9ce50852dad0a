"""Native text views: a Layer IG result shaped (1, T, D) draws itself as text (embedding
dimension summed and normalised, batch of one dropped), and every view takes attributions
first and tokens by keyword."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import re
import warnings

import numpy as np
import pytest
import torch

import whybox
from whybox import viz
from whybox.text import pad_baseline

CHIP = re.compile(
    r'<span class="wb-chip[^"]*" style="[^"]*" data-v="([^"]*)" title="[^"]*">([^<]*)</span>'
)


@pytest.fixture(scope="module")
def lig(minilm):
    tok, model = minilm
    batch = tok(["a wonderful film"], return_tensors="pt")
    ids = batch["input_ids"]
    result = whybox.explain(
        model,
        ids,
        method="integrated_gradients",
        layer=model.bert.embeddings,
        baselines=pad_baseline(tok, ids),
        target=1,
        n_steps=8,
        forward_args={"attention_mask": batch["attention_mask"]},
    )
    return result, tok.convert_ids_to_tokens(ids[0])


def test_layer_ig_result_to_html_with_tokens(lig):
    result, tokens = lig
    assert result.attributions.shape == (1, len(tokens), 384)
    html = result.to_html(tokens=tokens)
    chips = CHIP.findall(html)
    assert [t for _, t in chips] == tokens
    expected = result.attributions.sum(-1).squeeze(0)
    expected = expected / torch.norm(expected)  # the seeds' summarize_attributions
    np.testing.assert_allclose([float(v) for v, _ in chips], expected.numpy(), rtol=1e-4, atol=1e-6)
    # and the same from the Explanation's index, and as a plot
    assert CHIP.findall(result[0].to_html(tokens=tokens)) == chips
    figure = result.plot(tokens=tokens)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert set(labels) <= set(tokens) and len(labels) == len(tokens)


def test_repr_html_of_a_text_result_is_a_text_view(lig):
    result, tokens = lig
    html = result._repr_html_()
    chips = CHIP.findall(html)
    assert [t for _, t in chips] == [f"#{int(i)}" for i in result.inputs[0]]  # ids label the chips
    assert "<img" not in html  # not an image of a (T, D) matrix
    result.extras["tokens"] = [tokens]
    try:
        assert [t for _, t in CHIP.findall(result._repr_html_())] == tokens
    finally:
        del result.extras["tokens"]
    with pytest.raises(ValueError, match="'tokens'"):
        result.to_html(tokens=tokens[:-1])


def test_attributions_first_tokens_by_keyword():
    tokens, values = ["good", "bad", "<b>"], torch.tensor([1.0, -2.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = viz.text_html(values, tokens=tokens, title="t")
        assert viz.text_html(values, tokens, title="t") == new  # second positional is fine too
        viz.text_view(values, tokens=tokens)
        viz.plot_top_tokens(values, tokens=tokens, k=2)
    with pytest.warns(DeprecationWarning, match=r"text_html\(attributions, tokens=tokens\)"):
        old = viz.text_html(tokens, values, title="t")
    assert old == new
    with pytest.warns(DeprecationWarning):
        assert viz.text_view(tokens, values).data == viz.text_view(values, tokens=tokens).data
    with pytest.warns(DeprecationWarning):
        viz.plot_top_tokens(tokens, np.asarray(values), k=2)
    with pytest.raises(TypeError, match="tokens"):
        viz.text_html(values)
    # a batch of one and an embedding dimension are reduced by the view itself
    embedded = torch.randn(1, 3, 5, dtype=torch.float64)
    assert CHIP.findall(viz.text_html(embedded, tokens=tokens)) == CHIP.findall(
        viz.text_html(embedded[0].sum(-1), tokens=tokens)
    )
    caption = viz.text_html(values, tokens=tokens, caption="p=0.9 <x>")
    assert '<p class="wb-caption">p=0.9 &lt;x&gt;</p>' in caption
