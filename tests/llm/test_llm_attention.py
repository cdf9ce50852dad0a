"""Attention attribution of generated text (:class:`whybox.llm.LLMAttention`) on the trained
toy LM (see ``_toy.py``): equal to the full-matrix capture, chunk-size invariant, and what
it says about the key -> value lookup.

What the committed toy model's attention does (checked, not assumed): the lookup of a key
happens in the FIRST of its two layers -- layer 0's row of the position predicting the first
value peaks at the first key on every prompt tried, and the second value's row at the second
key or at the ``?`` marker, with the second key next. The last layer's attention (the
method's default) does not look up the second key: its second row peaks at the first key or
elsewhere. The tests assert exactly these properties of that one model (its weights are
committed: training is not reproducible across machines).
"""

import pytest
import torch

from whybox.attention import attention_rollout, capture_attention
from whybox.attention.capture import run_with_attention
from whybox.llm import LLMAttention, TextTokenInput
from whybox.llm.attention import ATTENTION_METHODS

# "d3 K5 d1 <unk> K2 d0 ?" -> "V5 V2 ."; feature positions without <bos>
K5, K2 = 1, 4
PROMPTS = [
    ("d3 K5 d1 <unk> K2 d0 ?", "V5 V2"),
    ("d1 K3 d4 d2 d5 K6 ?", "V3 V6"),
    ("K0 d1 d2 K7 ?", "V0 V7"),
    ("d0 d1 K4 d2 d3 K1 d2 ?", "V4 V1"),
    ("K2 K5 d1 d3 ?", "V2 V5"),
]


def _inp(tok, prompt):
    return TextTokenInput(prompt, tok, skip_tokens=["<bos>"])


def _keys(prompt):
    return [i for i, word in enumerate(prompt.split()) if word.startswith("K")]


def _reference(model, tok, prompt, target):
    """Every layer's full (heads, L, L) weights from the eager capture, and the rows of the
    positions predicting the target tokens (``<bos>`` column dropped)."""
    ids = tok.encode(f"{prompt} {target}")
    n_target = len(target.split())
    full = torch.tensor([ids[:-1]])
    with torch.no_grad():
        attentions = capture_attention(model, input_ids=full)
    rows = slice(full.shape[1] - n_target, full.shape[1])
    prompt_columns = slice(1, len(tok.encode(prompt)))
    return attentions, rows, prompt_columns


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("layer", [0, -1])
def test_attention_equals_the_full_capture(toy, prompt, layer, head_fusion):
    model, tok = toy
    attentions, rows, columns = _reference(model, tok, prompt, "V5 V2 .")
    fused = {"mean": torch.mean, "max": torch.amax, "min": torch.amin}[head_fusion]
    expected = fused(attentions[layer], dim=1)[0, rows, columns]
    result = LLMAttention(model, tok, layer=layer, head_fusion=head_fusion).attribute(
        _inp(tok, prompt), target="V5 V2 ."
    )
    torch.testing.assert_close(result.token_attr, expected, atol=1e-6, rtol=0)
    # a sum of up to three rows: float32 rounding of the order of the additions
    torch.testing.assert_close(result.seq_attr, expected.sum(0), atol=1e-6, rtol=1e-6)
    assert result.output_tokens == ["V5", "V2", "."]
    assert bool((result.output_probs > 0.9).all())


@pytest.mark.parametrize("add_residual", [True, False])
def test_rollout_equals_the_full_rollout(toy, prompt, add_residual):
    model, tok = toy
    attentions, rows, columns = _reference(model, tok, prompt, "V5 V2 .")
    expected = attention_rollout(attentions, add_residual=add_residual)[0, rows, columns]
    result = LLMAttention(model, tok, method="rollout", add_residual=add_residual).attribute(
        _inp(tok, prompt), target="V5 V2 ."
    )
    torch.testing.assert_close(result.token_attr, expected, atol=1e-6, rtol=0)


def test_gradient_attention_equals_the_eager_gradient(toy, prompt):
    model, tok = toy
    ids = tok.encode(f"{prompt} V5 V2 .")
    full, target = torch.tensor([ids[:-1]]), torch.tensor(ids[-3:])
    # the eager capture, on the autograd graph (the parameters require gradients)
    run = run_with_attention(model, (), {"input_ids": full}, owner="test")
    logits = run.output.logits[0, -3:]
    value = torch.log_softmax(logits, -1).gather(1, target.view(-1, 1)).sum()
    last = run.attention[-1]
    (gradient,) = torch.autograd.grad(value, last)
    expected = (gradient * last).clamp(min=0).mean(dim=1)[0, -3:, 1:8].detach()
    result = LLMAttention(model, tok, method="gradient_attention").attribute(
        _inp(tok, prompt), target="V5 V2 ."
    )
    torch.testing.assert_close(result.token_attr, expected, atol=1e-9, rtol=1e-4)


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_chunk_size_never_changes_the_result(toy, prompt, method):
    model, tok = toy
    inp = _inp(tok, prompt)
    results = [
        LLMAttention(model, tok, method=method).attribute(
            inp, target="V5 V2 .", chunk_size=chunk, step_wise=True
        )
        for chunk in (1, 2, 5, "auto")
    ]
    for other in results[1:]:
        torch.testing.assert_close(other.token_attr, results[0].token_attr, atol=1e-6, rtol=0)
    if method != "gradient_attention":  # its T target rows are formed together
        assert results[0].info["counts"].max_rows == 1
        assert results[1].info["counts"].max_rows == 2


def test_layer_zero_points_each_value_at_its_key(toy):
    """The true property of this toy model: its first layer does the lookup (the second
    value's row may put the ``?`` marker, the last prompt position, first)."""
    model, tok = toy
    explainer = LLMAttention(model, tok, layer=0)
    for prompt, target in PROMPTS:
        first_key, second_key = _keys(prompt)
        rows = explainer.attribute(_inp(tok, prompt), target=target).token_attr
        assert rows[0].argmax().item() == first_key, prompt
        without_marker = rows[1, :-1]
        assert without_marker.argmax().item() == second_key, prompt
        assert rows[1].argmax().item() in (second_key, rows.shape[1] - 1), prompt


def test_last_layer_points_the_first_value_at_its_key(toy, prompt):
    """The default (last layer, heads averaged) points V5 at K5; V2's row does not point at
    K2 in this model (its last layer looks at K5 and ``?``), which is reported, not hidden."""
    model, tok = toy
    inp = _inp(tok, prompt)
    for method in ("attention", "rollout", "gradient_attention"):
        result = LLMAttention(model, tok, method=method).attribute(inp, target="V5 V2")
        assert result.token_attr[0].argmax().item() == K5, method
    last = LLMAttention(model, tok).attribute(inp, target="V5 V2")
    assert last.token_attr[1].argmax().item() != K2


def test_step_wise_columns_and_rows(toy, prompt):
    model, tok = toy
    inp = _inp(tok, prompt)
    m = inp.n_itp_features
    for method in ATTENTION_METHODS:
        result = LLMAttention(model, tok, method=method).attribute(
            inp, target="V5 V2 .", step_wise=True
        )
        assert result.input_tokens == inp.values + ["V5", "V2", "."]
        generated = result.token_attr[:, m:]
        # causal: a token's position never attends to itself or later generated tokens
        assert torch.equal(generated.triu(), torch.zeros_like(generated)), method
        plain = LLMAttention(model, tok, method=method).attribute(inp, target="V5 V2 .")
        torch.testing.assert_close(result.token_attr[:, :m], plain.token_attr, atol=1e-7, rtol=0)
    # without skipped tokens, an attention row over the whole context sums to 1
    full = LLMAttention(model, tok).attribute(
        TextTokenInput(prompt, tok), target="V5 V2 .", step_wise=True
    )
    torch.testing.assert_close(full.token_attr.sum(1), torch.ones(3), atol=1e-6, rtol=0)


def test_gradient_attention_contrast(toy, prompt):
    model, tok = toy
    inp = _inp(tok, prompt)
    result = LLMAttention(model, tok, method="gradient_attention").attribute(
        inp, target="V5", contrast="V2"
    )
    assert result.output_probs is None and result.info["contrast"] == ["V2"]
    plain = LLMAttention(model, tok, method="gradient_attention").attribute(inp, target="V5")
    assert result.token_attr.shape == plain.token_attr.shape
    assert bool((result.token_attr >= 0).all())
    # explaining log p(V5) - log p(V2) is not explaining log p(V5) ...
    assert not torch.allclose(result.token_attr, plain.token_attr, atol=1e-6)
    # ... and against itself the explained difference is 0, so is its gradient
    same = LLMAttention(model, tok, method="gradient_attention").attribute(
        inp, target="V5", contrast="V5"
    )
    assert torch.equal(same.token_attr, torch.zeros_like(same.token_attr))


def test_the_model_is_never_switched(toy, prompt):
    model, tok = toy
    before = model.config._attn_implementation
    hooks = len(model._forward_hooks)
    LLMAttention(model, tok, method="gradient_attention").attribute(_inp(tok, prompt), target="V5")
    assert model.config._attn_implementation == before
    assert len(model._forward_hooks) == hooks
    # the model's own forwards are plain SDPA ones, even after the registration
    ids = torch.tensor([tok.encode(prompt)])
    assert model(input_ids=ids).logits.shape[1] == ids.shape[1]


def test_views_work(toy, prompt):
    model, tok = toy
    result = LLMAttention(model, tok, method="rollout").attribute(_inp(tok, prompt), target="V5 V2")
    assert "<table" in result.to_html().data
    assert result.to_words().token_attr.shape == (2, 7)


def test_bad_options_are_refused(toy, prompt):
    model, tok = toy
    with pytest.raises(ValueError, match="method"):
        LLMAttention(model, tok, method="flow")
    with pytest.raises(ValueError, match="layer"):
        LLMAttention(model, tok, method="rollout", layer=0)
    with pytest.raises(ValueError, match="layer"):
        LLMAttention(model, tok, layer=5).attribute(_inp(tok, prompt), target="V5")
    with pytest.raises(ValueError, match="contrast"):
        LLMAttention(model, tok).attribute(_inp(tok, prompt), target="V5", contrast="V2")
    with pytest.raises(ValueError, match="chunk_size"):
        LLMAttention(model, tok).attribute(_inp(tok, prompt), target="V5", chunk_size=0)
    with pytest.raises(TypeError, match="TextTokenInput"):
        LLMAttention(model, tok).attribute(prompt, target="V5")


# -- template inputs: each feature gets the attention on its values' tokens --------------
TEMPLATE = "d3 {} d1 <unk> {} d0 ?"  # filled with ["K5", "K2"]: the fixture's prompt


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_template_input_attributes_each_key_feature(toy, prompt, method):
    from whybox.llm import TextTemplateInput

    model, tok = toy
    explainer = LLMAttention(model, tok, method=method, layer=0 if method == "attention" else -1)
    template = explainer.attribute(TextTemplateInput(TEMPLATE, ["K5", "K2"]), target="V5 V2")
    tokens = explainer.attribute(TextTokenInput(prompt, tok), target="V5 V2")
    assert template.input_tokens == ["K5", "K2"] and template.token_attr.shape == (2, 2)
    # the features are the keys' token columns (<bos> is position 0 of the token input)
    expected = tokens.token_attr[:, [1 + K5, 1 + K2]]
    torch.testing.assert_close(template.token_attr, expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(template.seq_attr, expected.sum(0), atol=1e-7, rtol=0)
    # the first value is attributed to its key rather than the other key
    assert template.token_attr[0, 0] > template.token_attr[0, 1], method


def test_template_values_of_several_tokens_masks_and_dicts(toy, prompt):
    from whybox.llm import TextTemplateInput

    model, tok = toy
    explainer = LLMAttention(model, tok, method="rollout")
    tokens = explainer.attribute(TextTokenInput(prompt, tok), target="V5 V2", step_wise=True)
    cols = tokens.token_attr
    # "K5 d1" covers tokens 2 and 3; the template's own text ("d3", "<unk>", ...) no feature
    multi = explainer.attribute(
        TextTemplateInput("d3 {} <unk> {} d0 ?", ["K5 d1", "K2"]), target="V5 V2", step_wise=True
    )
    n = tokens.token_attr.shape[1] - 2  # prompt token columns (step-wise: 2 generated more)
    expected = torch.stack([cols[:, 2] + cols[:, 3], cols[:, 5]], dim=1)
    torch.testing.assert_close(multi.token_attr[:, :2], expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(multi.token_attr[:, 2:], cols[:, n:], atol=1e-7, rtol=0)
    assert multi.input_tokens == ["K5 d1", "K2", "V5", "V2"]
    # values sharing a mask id form one feature; each value reports the feature's sum
    masked = explainer.attribute(
        TextTemplateInput(
            "d3 {a} d1 <unk> {b} d0 ?", {"a": "K5", "b": "K2"}, mask={"a": 0, "b": 0}
        ),
        target="V5 V2",
    )
    both = (cols[:, 2] + cols[:, 5])[:, None].expand(2, 2)
    torch.testing.assert_close(masked.token_attr, both, atol=1e-7, rtol=0)


def test_template_function_that_repeats_a_value_is_refused(toy):
    from whybox.llm import TextTemplateInput

    model, tok = toy
    inp = TextTemplateInput(lambda key: f"{key} d1 {key} ?", ["K5"])
    with pytest.raises(ValueError, match="verbatim"):
        LLMAttention(model, tok).attribute(inp, target="V5")
