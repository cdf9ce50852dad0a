"""Long inputs: windows cover every token, merging is exact where a window holds a token's
context, and a 2,000-token text is explained on a 512-position BERT instead of failing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whybox.text import explain_text, merge_windows, plan_windows, window_weights

WORDS = "the quiet river ran past an old mill , and nobody ever asked why it kept turning".split()


def long_text(tokenizer, n_tokens):
    words = (WORDS * (n_tokens // len(WORDS) + 2))[: n_tokens + 10]
    text = " ".join(words)
    while len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) > n_tokens:
        text = text.rsplit(" ", 1)[0]
    return text


@settings(max_examples=80, deadline=None)
@given(length=st.integers(0, 400), size=st.integers(1, 64), data=st.data())
def test_windows_cover_every_token(length, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    windows = plan_windows(length, size=size, overlap=overlap)
    spans = windows.spans
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(stop - start == min(size, length) for start, stop in spans)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert s0 < s1 and e0 - s1 >= overlap  # neighbours share at least `overlap`
    for how in ("center", "mean"):
        weights = window_weights(windows, how=how)
        assert weights.shape == (len(windows), length)
        torch.testing.assert_close(weights.sum(0), torch.ones(length, dtype=torch.float64))


def test_merge_rules():
    windows = plan_windows(10, size=6, overlap=2)
    assert windows.spans == [(0, 6), (4, 10)]
    values = [torch.full((6, 2), 1.0), torch.full((6, 2), 3.0)]
    center = merge_windows(values, windows)
    # positions 4 and 5 are shared: each goes to the window where it lies further from a cut
    assert center[:, 0].tolist() == [1, 1, 1, 1, 1, 3, 3, 3, 3, 3]
    assert merge_windows(values, windows, how="mean")[:, 0].tolist() == [
        1,
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        3,
        3,
    ]
    with pytest.raises(ValueError, match="'values'"):
        merge_windows(values[:1], windows)
    with pytest.raises(ValueError, match="'overlap'"):
        plan_windows(10, size=4, overlap=4)


def test_merging_equals_the_full_input_where_windows_hold_the_context(minilm_tokenizer, local_conv):
    tok, model = minilm_tokenizer, local_conv
    text = long_text(tok, 300)
    options = dict(target=1, n_steps=8)
    full = explain_text(model, tok, text, max_length=10_000, **options)
    assert len(full.windows) == 1 and len(full.tokens) == 302
    merged = explain_text(model, tok, text, max_length=64, overlap=16, **options)
    assert len(merged.windows) > 5 and merged.tokens == full.tokens
    # every token sits >= 7 tokens from a cut in its chosen window: IG of a token with a
    # kernel-3 conv depends on tokens 2 away, so all scores equal the full input's
    torch.testing.assert_close(merged.token_scores, full.token_scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(merged.attributions, full.attributions, rtol=1e-9, atol=1e-12)

    # without overlap, tokens next to a cut miss context and differ; the rest still agree
    cut = explain_text(model, tok, text, max_length=64, overlap=0, **options)
    content = torch.arange(1, 301)
    cuts = torch.tensor([start for start, _ in cut.windows[1:]])
    near = (content.unsqueeze(1) - 1 - cuts).abs().min(1).values <= 2  # within 2 of a cut
    near |= ((content.unsqueeze(1) - 1) - (cuts - 1)).abs().min(1).values <= 2
    assert (cut.token_scores[content][near] - full.token_scores[content][near]).abs().max() > 1e-6
    torch.testing.assert_close(cut.token_scores[content][~near], full.token_scores[content][~near])
    # averaging windows blends in edge scores, so "mean" is not exact near cuts
    mean = explain_text(model, tok, text, max_length=64, overlap=16, merge="mean", **options)
    assert (mean.token_scores - full.token_scores).abs().max() > 1e-6


def test_two_thousand_tokens_on_a_512_position_bert(minilm_tokenizer):
    transformers = pytest.importorskip("transformers")
    tok = minilm_tokenizer
    config = transformers.BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    text = long_text(tok, 2000)
    ids = tok(text, return_tensors="pt", verbose=False)["input_ids"]
    assert ids.shape[1] == 2002
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        model(ids)  # the whole text does not fit the model
    result = explain_text(model, tok, text, n_steps=4)
    assert len(result.tokens) == 2002  # nothing truncated
    assert len(result.windows) == 5 and all(b - a == 510 for a, b in result.windows)
    assert torch.isfinite(result.token_scores).all() and result.token_scores[1:-1].abs().sum() > 0
    assert result.delta.shape == (5,) and torch.isfinite(result.delta).all()
    assert result.prediction in (0, 1, 2) and result.probabilities.shape == (3,)
    assert len(result.words) == len(text.split()) + 2  # words of the whole text, [CLS], [SEP]
    assert "5 windows" in result.caption()
