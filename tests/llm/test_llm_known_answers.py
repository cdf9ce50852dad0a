"""On the trained toy LM the right attributions are known: the first generated value comes
from the first key, the second from the second key (see ``_toy.py``)."""

import pytest
import torch

import whybox.attr as A
from whybox.attr._llm import LLMAttribution, LLMGradientAttribution
from whybox.llm import LLMGradient, LLMPerturbation, TextTemplateInput, TextTokenInput

# "d3 K5 d1 <unk> K2 d0 ?" -> "V5 V2 ."; feature positions without <bos>
K5, K2 = 1, 4


def _inp(tok, prompt):
    return TextTokenInput(prompt, tok, skip_tokens=["<bos>"])


def test_the_toy_model_answers(toy, prompt):
    model, tok = toy
    result = LLMPerturbation(model, tok).attribute(_inp(tok, prompt))
    assert result.output_tokens == ["V5", "V2", "."]
    assert bool((result.output_probs > 0.9).all())


@pytest.mark.parametrize("method", ["feature_ablation", "shapley_value_sampling", "kernel_shap"])
def test_perturbation_points_each_value_at_its_key(toy, prompt, method):
    model, tok = toy
    result = LLMPerturbation(model, tok, method=method).attribute(
        _inp(tok, prompt), target="V5 V2", seed=0
    )
    assert result.token_attr.argmax(dim=1).tolist() == [K5, K2]
    # each key matters more to its value than any distractor (d3 d1 <unk> d0) does
    distractors = result.token_attr[:, [0, 2, 3, 5]].abs().amax(dim=1)
    assert bool((result.token_attr[[0, 1], [K5, K2]] > distractors + 1).all())


def test_facade_methods_point_at_the_keys(toy, prompt):
    model, tok = toy
    inp = _inp(tok, prompt)
    ablation = LLMAttribution(A.FeatureAblation(model), tok).attribute(inp, target="V5 V2")
    assert ablation.token_attr.argmax(dim=1).tolist() == [K5, K2]
    lig = A.LayerIntegratedGradients(model, model.transformer.wte)
    gradient = LLMGradientAttribution(lig, tok).attribute(inp, target="V5 V2", n_steps=16)
    assert gradient.token_attr.argmax(dim=1).tolist() == [K5, K2]


def test_gradient_points_each_value_at_its_key(toy, prompt):
    model, tok = toy
    result = LLMGradient(model, tok).attribute(_inp(tok, prompt), target="V5 V2", n_steps=16)
    assert result.token_attr.argmax(dim=1).tolist() == [K5, K2]
    assert result.output_probs.shape == (2,)


def test_contrast_separates_the_two_candidates(toy, prompt):
    model, tok = toy
    explainer = LLMPerturbation(model, tok)
    inp = _inp(tok, prompt)
    why_v5 = explainer.attribute(inp, target="V5", contrast="V2")
    why_v2 = explainer.attribute(inp, target="V2", contrast="V5")
    # "V5 rather than V2" at the first step is K5's doing; the reverse is its opposite
    assert why_v5.seq_attr.argmax().item() == K5 and why_v5.seq_attr[K5] > 5
    torch.testing.assert_close(why_v2.seq_attr, -why_v5.seq_attr, atol=1e-5, rtol=0)
    assert why_v5.info["contrast"] == ["V2"] and why_v5.output_probs is None
    # log p(V5) - log p(V2): the plain attributions of the two targets, subtracted
    plain = [explainer.attribute(inp, target=t).seq_attr for t in ("V5", "V2")]
    torch.testing.assert_close(why_v5.seq_attr, plain[0] - plain[1], atol=1e-5, rtol=0)
    gradient = LLMGradient(model, tok).attribute(inp, target="V5", contrast="V2", n_steps=16)
    assert gradient.seq_attr.argmax().item() == K5


def test_step_wise_attributes_to_earlier_generated_tokens(toy, prompt):
    model, tok = toy
    inp = _inp(tok, prompt)
    result = LLMPerturbation(model, tok).attribute(inp, target="V5 V2 .", step_wise=True)
    m = inp.n_itp_features
    assert result.input_tokens == inp.values + ["V5", "V2", "."]
    assert result.token_attr.shape == (3, m + 3)
    generated = result.token_attr[:, m:]
    # a token never depends on itself or later tokens
    assert torch.equal(generated.triu(), torch.zeros_like(generated))
    # the prompt part of the first token is the plain attribution (no earlier tokens)
    plain = LLMPerturbation(model, tok).attribute(inp, target="V5 V2 .")
    torch.testing.assert_close(result.token_attr[0, :m], plain.token_attr[0], atol=1e-5, rtol=0)
    # the second value is still the second key's, and it leans on the first value
    assert result.token_attr[1].argmax().item() == K2 and generated[1, 0] > 1
    gradient = LLMGradient(model, tok).attribute(inp, target="V5 V2 .", step_wise=True, n_steps=8)
    assert gradient.token_attr.shape == (3, m + 3)
    assert torch.equal(gradient.token_attr[:, m:].triu(), torch.zeros(3, 3))


def test_batching_never_changes_the_result(toy, prompt):
    model, tok = toy
    inp = _inp(tok, prompt)
    results = [
        LLMPerturbation(model, tok, method="shapley_values", chunk_size=chunk).attribute(inp)
        for chunk in (1, 3, "auto")
    ]
    for other in results[1:]:
        torch.testing.assert_close(other.token_attr, results[0].token_attr, atol=2e-6, rtol=0)
    facade = LLMAttribution(A.FeatureAblation(model), tok)
    one = facade.attribute(inp, target="V5 V2")
    many = facade.attribute(inp, target="V5 V2", perturbations_per_eval=3)
    torch.testing.assert_close(many.token_attr, one.token_attr, atol=2e-6, rtol=0)
    lig = A.LayerIntegratedGradients(model, model.transformer.wte)
    gradient = LLMGradientAttribution(lig, tok)
    g1 = gradient.attribute(inp, target="V5 V2", n_steps=8, internal_batch_size=3)
    g2 = gradient.attribute(inp, target="V5 V2", n_steps=8)
    torch.testing.assert_close(g1.token_attr, g2.token_attr, atol=1e-5, rtol=0)


def test_shared_prefixes_run_once_and_change_nothing(toy, monkeypatch):
    import whybox.llm.scoring as scoring

    model, tok = toy
    long_prompt = "d1 d2 d3 d4 d5 d6 d7 d8 d9 d0 d1 d2 K3 d4 K6 d5 ?"
    inp = TextTokenInput(long_prompt, tok)
    monkeypatch.setattr(scoring, "_MIN_PREFIX", 4)
    shared = LLMPerturbation(model, tok, chunk_size=4).attribute(inp, target="V3 V6")
    plain = LLMPerturbation(model, tok, chunk_size=4, prefix_cache=False).attribute(
        inp, target="V3 V6"
    )
    torch.testing.assert_close(shared.token_attr, plain.token_attr, atol=1e-5, rtol=0)
    # 19 perturbed prompts in chunks of 4: 5 forwards without sharing; with it, chunks
    # whose rows agree on >= 4 leading tokens add one prefix forward each
    assert plain.info["forwards"] == 5
    assert shared.info["forwards"] > 5


def test_one_forward_scores_every_target_token(toy, prompt):
    model, tok = toy
    inp = TextTemplateInput("{} {} {} {} ?", ["d1", "K5", "d2", "K2"])
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = LLMAttribution(A.FeatureAblation(model), tok).attribute(inp, target="V5 V2 .")
    finally:
        handle.remove()
    # 5 perturbed prompts (the original and 4 ablations) of 2 lengths: 2 batched forwards,
    # where Captum runs 5 * 3 = 15
    assert len(calls) == 2 and result.info["forwards"] == 2
    assert result.token_attr[:2].argmax(dim=1).tolist() == [1, 3]
