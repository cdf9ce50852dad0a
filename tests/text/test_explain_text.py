"""explain_text on MiniLM with a trained sentiment head: Layer IG converges, batching never
changes a text's result, outputs are selected without wrappers, and the view shows it all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import whybox
from whybox.text import TextExplanations, explain_text, pad_baseline

TEXTS = [
    "the film was wonderful",
    "An awful, boring story; the acting was dreadful and the ending painful.",
    "great",
]


def test_head_learned_sentiment(minilm):
    tokenizer, model = minilm
    results = explain_text(
        model, tokenizer, ["the story was delightful", "the film was horrible"], n_steps=8
    )
    assert [r.label for r in results] == ["positive", "negative"]
    assert [r.target for r in results] == [r.prediction for r in results] == [1, 0]


def test_layer_ig_on_minilm_embeddings_converges(minilm):
    tokenizer, model = minilm
    batch = tokenizer([TEXTS[1]], return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    baseline = pad_baseline(tokenizer, ids)
    result = whybox.explain(
        model,
        ids,
        method="integrated_gradients",
        layer=model.bert.embeddings,  # seed 002's layer: word + position + type, LayerNorm
        baselines=baseline,
        target=0,
        n_steps=64,
        forward_args={"attention_mask": mask},
    )
    with torch.no_grad():
        gap = (
            model(ids, attention_mask=mask).logits - model(baseline, attention_mask=mask).logits
        )[0, 0]
    assert abs(float(gap)) > 0.5  # a real difference to explain
    assert abs(float(result.delta[0])) < 2e-3 * abs(float(gap))
    # delta = sum of attributions - (f(x) - f(baseline))
    torch.testing.assert_close(
        result.attributions.sum(), gap + result.delta[0], rtol=1e-4, atol=1e-5
    )

    # the same through explain_text, by layer name
    text = explain_text(model, tokenizer, TEXTS[1], target=0, layer="bert.embeddings", n_steps=64)
    torch.testing.assert_close(text.attributions, result.attributions[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(text.delta, result.delta, rtol=1e-3, atol=1e-6)


def test_default_is_layer_ig_on_word_embeddings_and_specials_get_nothing(minilm):
    tokenizer, model = minilm
    result = explain_text(model, tokenizer, TEXTS[0], n_steps=32)
    batch = tokenizer([TEXTS[0]], return_tensors="pt")
    reference = whybox.explain(
        model,
        batch["input_ids"],
        method="integrated_gradients",
        layer=model.get_input_embeddings(),
        baselines=pad_baseline(tokenizer, batch["input_ids"]),
        target=result.target,
        n_steps=32,
        forward_args={"attention_mask": batch["attention_mask"]},
    )
    torch.testing.assert_close(result.attributions, reference.attributions[0], rtol=1e-4, atol=1e-6)
    # [CLS] and [SEP] stay in the baseline, so their attribution is exactly zero
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    assert result.special.tolist() == [True] + [False] * (len(result.tokens) - 2) + [True]
    assert result.token_scores[result.special].abs().max() == 0
    assert result.token_scores[~result.special].abs().min() > 0
    # word scores are sums of token scores; words are the text's own
    assert [w.text for w in result.words] == ["[CLS]", "the", "film", "was", "wonderful", "[SEP]"]
    torch.testing.assert_close(result.word_scores.sum(), result.token_scores.sum())
    # completeness for the explained text: scores - delta = f(x) - f(baseline)
    with torch.no_grad():
        base = model(pad_baseline(tokenizer, batch["input_ids"])).logits[0, result.target]
    torch.testing.assert_close(
        result.token_scores.sum() - result.delta[0],
        result.logits[result.target] - base,
        rtol=1e-4,
        atol=1e-5,
    )


def test_many_texts_equal_separate_calls(minilm):
    tokenizer, model = minilm
    together = explain_text(model, tokenizer, TEXTS, n_steps=16, batch_size=3, show_progress=False)
    assert isinstance(together, TextExplanations) and len(together) == 3
    for text, batched in zip(TEXTS, together):
        alone = explain_text(model, tokenizer, text, n_steps=16)
        assert batched.text == text and batched.tokens == alone.tokens
        assert batched.prediction == alone.prediction and batched.target == alone.target
        scale = alone.token_scores.abs().max()
        torch.testing.assert_close(
            batched.token_scores, alone.token_scores, rtol=0, atol=1e-4 * scale
        )
        torch.testing.assert_close(
            batched.word_scores, alone.word_scores, rtol=0, atol=1e-4 * scale
        )
        torch.testing.assert_close(batched.delta, alone.delta, rtol=0, atol=1e-4 * scale)
        torch.testing.assert_close(batched.logits, alone.logits, rtol=1e-5, atol=1e-5)
    # targets per text, by label name, and a progress bar over several batches
    named = explain_text(
        model,
        tokenizer,
        TEXTS[:2],
        target=["negative", 1],
        n_steps=4,
        batch_size=1,
        show_progress=True,
    )
    assert [r.target for r in named] == [0, 1]


def test_baselines_averaged_and_zero(minilm):
    tokenizer, model = minilm
    pad = explain_text(model, tokenizer, TEXTS[0], target=1, n_steps=32)
    unk = explain_text(model, tokenizer, TEXTS[0], target=1, n_steps=32, baseline="unk")
    both = explain_text(model, tokenizer, TEXTS[0], target=1, n_steps=32, baseline=["pad", "unk"])
    torch.testing.assert_close(both.token_scores, (pad.token_scores + unk.token_scores) / 2)
    assert both.parameters["baseline"] == "pad + unk"
    zero = explain_text(model, tokenizer, TEXTS[0], target=1, n_steps=32, baseline="zero")
    assert zero.token_scores[zero.special].abs().max() == 0  # zeros only where the content is
    assert abs(float(zero.delta[0])) < 1e-2
    with pytest.raises(ValueError, match="'baseline'"):
        explain_text(model, tokenizer, TEXTS[0], baseline="zero", layer="bert.embeddings")
    with pytest.raises(ValueError, match="'token'"):
        explain_text(model, tokenizer, TEXTS[0], baseline="<no such token>")


class TupleOut(nn.Module):
    """A classifier returning ``(logits, hidden)`` (AWD-LSTM style) or a dict of scores."""

    def __init__(self, inner: nn.Module, as_dict: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.as_dict = as_dict

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        logits = self.inner(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        )
        hidden = torch.zeros(logits.shape[0], 3, dtype=logits.dtype)
        return {"hidden": hidden, "scores": logits} if self.as_dict else (logits, hidden)


def test_tuple_and_dict_outputs_need_no_wrapper(minilm_tokenizer, local_conv):
    tok, plain = minilm_tokenizer, local_conv
    text = "a wonderful film with a terrible ending"
    tuple_model, dict_model = TupleOut(plain).eval(), TupleOut(plain, as_dict=True).eval()
    expected = explain_text(plain, tok, text, target=1, n_steps=8)
    by_position = explain_text(tuple_model, tok, text, target=1, n_steps=8, output_selector=0)
    by_default = explain_text(tuple_model, tok, text, target=1, n_steps=8)  # the first tensor
    by_key = explain_text(dict_model, tok, text, target=1, n_steps=8, output_selector="scores")
    for result in (by_position, by_default, by_key):
        torch.testing.assert_close(result.token_scores, expected.token_scores)
        torch.testing.assert_close(result.logits, expected.logits)
    with pytest.raises(TypeError, match="'output_selector'"):
        explain_text(dict_model, tok, text, output_selector="missing")
    with pytest.warns(UserWarning, match="training mode"):
        explain_text(TupleOut(plain), tok, text, n_steps=2)


def test_other_methods_run_on_token_ids(minilm_tokenizer, local_conv):
    tok, model = minilm_tokenizer, local_conv
    ablation = explain_text(model, tok, "good film , bad plot", method="feature_ablation", target=1)
    assert ablation.attributions.shape == (len(ablation.tokens),)
    assert ablation.token_scores[ablation.special].abs().max() == 0  # specials are never replaced
    saliency = explain_text(model, tok, "good film , bad plot", method="saliency", target=1)
    assert saliency.attributions.shape == (len(saliency.tokens), 8)
    uncertain = explain_text(
        model, tok, "good film , bad plot", method="feature_ablation", baseline="uncertain"
    )
    assert torch.isfinite(uncertain.token_scores).all()


def test_view_and_errors(minilm):
    tokenizer, model = minilm
    result = explain_text(model, tokenizer, "the <b>film</b> was wonderful", n_steps=8)
    html = result.to_html()
    assert html.startswith("<!DOCTYPE html>") and "wonderful" in html
    assert "<b>" not in html and 'title="&lt;: ' in html  # tokens are escaped
    assert "prediction 1 positive" in html and "delta" in html
    fragment = result._repr_html_()
    assert not fragment.startswith("<!DOCTYPE") and fragment.count('class="wb-chip') == len(
        result.words
    )
    tokens_html = result.to_html(level="tokens", full_page=False)
    assert tokens_html.count('class="wb-chip') == len(result.tokens)
    assert "TextExplanation(" in repr(result) and "windows=1" in repr(result)
    many = explain_text(model, tokenizer, ["good", "bad"], n_steps=4)
    assert many._repr_html_().count("prediction") == 2
    figure = result.plot(k=3)
    assert len(figure.axes[0].patches) == 3
    with pytest.raises(ValueError, match="'method'"):
        explain_text(model, tokenizer, "x", method="no_such_method")
    with pytest.raises(ValueError, match="'target'"):
        explain_text(model, tokenizer, "x", target=7)
    with pytest.raises(TypeError, match="'texts'"):
        explain_text(model, tokenizer, [1, 2])
    with pytest.raises(TypeError, match="n_stepz"):
        explain_text(model, tokenizer, "x", n_stepz=3)


@pytest.mark.parametrize("fixture", ["bpe_tokenizer", "sentencepiece_tokenizer"])
def test_words_of_bpe_and_sentencepiece_texts(fixture, request, local_conv):
    tokenizer = request.getfixturevalue(fixture)
    text = "Unbelievable results, don't panic!!  the lazy dog"
    # the conv model's vocabulary is larger than these tokenizers': any id is valid
    result = explain_text(local_conv, tokenizer, text, target=0, n_steps=4, baseline="pad")
    words = [w for w in result.words if not w.special]
    assert [w.text for w in words] == text.split()
    assert all(text[w.start : w.end] == w.text for w in words)
    assert [t for t, s in zip(result.tokens, result.special.tolist()) if s] == [
        w.text for w in result.words if w.special
    ]
    torch.testing.assert_close(result.word_scores.sum(), result.token_scores.sum())
