"""The shared gradient paths' speed-ups never change a number.

* split forwards (the prompt's first ``P - 1`` positions as a cached forward) and the
  private copy with fused activations give the plain path's numbers and Captum's;
* a split that does not reproduce the whole forward is dropped, not used;
* the user's model is never changed;
* GradientSHAP's shared samples give Captum's draws and the per-token facade's numbers.
"""

import random

import numpy as np
import pytest
import torch

from whybox.core.paths import path_plan_tensors
from whybox.llm import LLMGradient, TextTokenInput
from whybox.llm._fused import TanhGELU, fused_twin
from whybox.llm.gradient import (
    PathCounts,
    TokenLogProbs,
    captum_gradient_shap_draws,
    shared_path_attributions,
    shared_sample_attributions,
    token_attributions,
)

#: 20 prompt words: long enough for the automatic split (P - 1 >= 16), within 32 positions
LONG = "d3 K5 d1 <unk> d4 d7 d2 d9 d0 d8 d1 d6 <unk> d5 d3 K2 d0 d4 d2 ?"
TARGET = "V5 V2 ."


def _seed(value=3):
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def _game(model, tok, prompt=LONG):
    inp = TextTokenInput(prompt, tok, skip_tokens=["<bos>"])
    target = torch.tensor(tok.encode(TARGET, add_special_tokens=False))
    return inp, TokenLogProbs(model, inp, target)


def _ig(game, layer, **options):
    alphas, weights = path_plan_tensors(
        "gausslegendre", 6, dtype=torch.float32, device=torch.device("cpu"), owner="test"
    )
    counts = PathCounts()
    out = shared_path_attributions(
        game, layer, alphas=alphas, weights=weights, chunk_size=4, counts=counts, **options
    )
    return out, counts


@pytest.mark.parametrize("split", [None, True, False])
@pytest.mark.parametrize("fuse", [True, False])
def test_split_and_fused_forwards_give_the_plain_numbers(toy, split, fuse):
    model, tok = toy
    inp, game = _game(model, tok)
    plain, plain_counts = _ig(game, model.transformer.wte, prefix_split=False, fuse=False)
    fast, counts = _ig(game, model.transformer.wte, prefix_split=split, fuse=fuse)
    assert plain_counts.split == 0 and not plain_counts.fused
    assert counts.split == (0 if split is False else game.prompt_length - 1)
    assert counts.fused == fuse
    # 1 + 1 + 2 (or 1 + 2 + 2 x 2 split) forwards, the same 3 x 2 backward passes
    assert counts.backwards == plain_counts.backwards == 3 * 2
    torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5)


def test_the_short_prompt_is_not_split_unless_asked(toy, prompt):
    model, tok = toy
    _, game = _game(model, tok, prompt)
    assert _ig(game, model.transformer.wte)[1].split == 0
    assert _ig(game, model.transformer.wte, prefix_split=True)[1].split == game.prompt_length - 1


class _BrokenCache(TokenLogProbs):
    """A model whose split forward is off (as a cache that mishandles positions would be)."""

    def scores(self, full, *, split=0):
        values = super().scores(full, split=split)
        return values + 0.5 if split else values


def test_a_split_that_disagrees_is_dropped(toy):
    model, tok = toy
    inp, game = _game(model, tok)
    broken = _BrokenCache(model, inp, game.target)
    out, counts = _ig(broken, model.transformer.wte, prefix_split=True, fuse=False)
    assert counts.split == 0
    plain, _ = _ig(game, model.transformer.wte, prefix_split=False, fuse=False)
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)


def test_the_users_model_is_never_changed(toy):
    model, tok = toy
    before = [type(block.mlp.act) for block in model.transformer.h]
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    inp, game = _game(model, tok)
    result = LLMGradient(model, tok).attribute(inp, target=TARGET, n_steps=4)
    assert result.info["fused_activations"] and result.info["prefix_split"]
    assert [type(block.mlp.act) for block in model.transformer.h] == before
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks
    twin, layer = fused_twin(model, model.transformer.wte)
    assert all(isinstance(block.mlp.act, TanhGELU) for block in twin.transformer.h)
    assert layer is twin.transformer.wte and layer is not model.transformer.wte
    assert layer.weight is model.transformer.wte.weight  # weights shared, not copied
    x = torch.linspace(-6, 6, 101)
    torch.testing.assert_close(TanhGELU()(x), model.transformer.h[0].mlp.act(x))


def test_split_fused_layer_ig_equals_captum(toy):
    captum = pytest.importorskip("captum.attr")
    import whybox.attr as A
    from whybox.attr._llm import LLMGradientAttribution

    model, tok = toy
    inp = TextTokenInput(LONG, tok, skip_tokens=["<bos>"])
    ours = LLMGradientAttribution(
        A.LayerIntegratedGradients(model, model.transformer.wte), tok
    ).attribute(inp, target=TARGET, n_steps=8)
    theirs = captum.LLMGradientAttribution(
        captum.LayerIntegratedGradients(model, model.transformer.wte), tok
    ).attribute(captum.TextTokenInput(LONG, tok, skip_tokens=["<bos>"]), target=TARGET, n_steps=8)
    torch.testing.assert_close(ours.token_attr, theirs.token_attr, atol=1e-4, rtol=1e-4)


BASELINES = [
    (torch.zeros(1, 7), 0.0),
    # some baseline rows keep tokens: the points are several distinct sequences
    (torch.tensor([[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0], [1.0] * 7]), 0.0),
    (torch.zeros(2, 7), 0.1),  # noise: every entry != 1, so every token is removed
]


@pytest.mark.parametrize("baselines, stdevs", BASELINES)
def test_shared_gradient_shap_draws_like_captum_and_equals_the_per_token_facade(
    toy, prompt, baselines, stdevs, monkeypatch
):
    captum = pytest.importorskip("captum.attr")
    import whybox.attr as A
    from whybox.attr._llm import LLMGradientAttribution

    model, tok = toy
    inp, game = _game(model, tok, prompt)
    options = {"baselines": baselines, "n_samples": 5, "stdevs": stdevs}
    _seed()
    facade = LLMGradientAttribution(A.LayerGradientShap(model, model.transformer.wte), tok)
    shared_facade = facade.attribute(inp, target=TARGET, **options)  # the shared path
    after_shared = (torch.get_rng_state(), np.random.get_state()[1].copy())
    # the per-token path (one LayerGradientShap call per token), as when the shared one
    # declines: the generators are rewound first
    monkeypatch.setattr("whybox.attr._llm.shared_sample_attributions", lambda *a, **k: None)
    _seed()
    per_token = facade.attribute(inp, target=TARGET, **options)
    monkeypatch.undo()
    state = (torch.get_rng_state(), np.random.get_state()[1].copy())
    assert torch.equal(after_shared[0], state[0])
    assert np.array_equal(after_shared[1], state[1])
    torch.testing.assert_close(shared_facade.token_attr, per_token.token_attr, atol=1e-5, rtol=1e-4)
    _seed()
    theirs = captum.LLMGradientAttribution(
        captum.LayerGradientShap(model, model.transformer.wte), tok
    ).attribute(captum.TextTokenInput(prompt, tok, skip_tokens=["<bos>"]), target=TARGET, **options)
    _seed()
    points, starts, ends = captum_gradient_shap_draws(
        inp.to_tensor(), baselines, n_samples=5, stdevs=stdevs, n_targets=3
    )
    # the generators end where Captum's per-token calls leave them
    assert torch.equal(torch.get_rng_state(), state[0])
    assert np.array_equal(np.random.get_state()[1], state[1])
    counts = PathCounts()
    layer_attr = shared_sample_attributions(
        game, model.transformer.wte, points=points, starts=starts, ends=ends, counts=counts
    )
    shared = token_attributions(layer_attr, game)
    torch.testing.assert_close(shared, per_token.token_attr, atol=1e-5, rtol=1e-4)
    # the first token is Captum's; Captum 0.9 expands its target tokens with the samples
    # (additional_forward_args repeat_interleave), so its later tokens score other tokens
    torch.testing.assert_close(shared[0], theirs.token_attr[0], atol=1e-4, rtol=1e-4)
    # every target's samples share the distinct point sequences' forwards
    assert counts.backwards <= 3 * len(torch.unique(points.eq(1).flatten(0, 1), dim=0))


def test_gradient_shap_is_shared_and_equals_the_per_token_engine(toy, prompt):
    model, tok = toy
    inp = TextTokenInput(prompt, tok, skip_tokens=["<bos>"])
    explainer = LLMGradient(model, tok, method="gradient_shap")
    fast = explainer.attribute(inp, target=TARGET, n_samples=4, seed=0)
    assert fast.info["shared_forwards"] and fast.info["backwards"] == 3
    again = explainer.attribute(inp, target=TARGET, n_samples=4, seed=0, chunk_size=1)
    torch.testing.assert_close(fast.token_attr, again.token_attr, atol=1e-6, rtol=1e-5)
