"""The private copy the gradient paths run: oneDNN linear layers and fused activations.

* :class:`OneDNNLinear` computes ``nn.Linear`` / ``Conv1D`` and their input gradients, and
  never a weight gradient;
* :func:`fused_twin` swaps the linear layers of the copy only, shares the weights, keeps
  the attributed layer and hooked modules, and covers models without a GELU (Llama);
* on both model families the copy's attributions are the model's own to float rounding,
  and the user's model (parameters, flags, gradients, hooks) is left as it was.
"""

import pytest
import torch
from torch import nn

from whybox.core.paths import path_plan_tensors
from whybox.llm import LLMGradient, TextTokenInput
from whybox.llm._fused import OneDNNLinear, TanhGELU, fused_twin, onednn_linear_available
from whybox.llm.gradient import PathCounts, TokenLogProbs, shared_path_attributions

needs_onednn = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build has no oneDNN linear kernel"
)

LONG = "d3 K5 d1 <unk> d4 d7 d2 d9 d0 d8 d1 d6 <unk> d5 d3 K2 d0 d4 d2 ?"
TARGET = "V5 V2 ."


@needs_onednn
@pytest.mark.parametrize("shape", [(5, 12), (3, 7, 12), (2, 0, 12)])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_equals_linear_and_its_input_gradient(shape, bias):
    torch.manual_seed(0)
    reference = nn.Linear(12, 9, bias=bias)
    swapped = OneDNNLinear(reference.weight, reference.bias)
    x = torch.randn(shape, requires_grad=True)
    y = torch.randn(shape[:-1] + (9,))
    ours = swapped(x)
    torch.testing.assert_close(ours, reference(x), atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad((ours * y).sum(), x)
    (expected,) = torch.autograd.grad((reference(x) * y).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-5)
    # the weights are detached: a backward pass gives (and computes) no weight gradient
    (swapped(x) * y).sum().backward()
    assert reference.weight.grad is None
    assert all(p.grad is None for p in reference.parameters())


@needs_onednn
def test_onednn_linear_replaces_conv1d():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(1)
    conv = Conv1D(9, 12)  # x @ W + b, W (12, 9)
    nn.init.normal_(conv.bias)
    assert fused_twin(nn.Sequential(conv, nn.Identity()), conv) is None  # nothing else
    twin, layer = fused_twin(nn.Sequential(nn.Linear(12, 12), conv), conv)
    assert isinstance(twin[0], OneDNNLinear)
    assert layer is twin[1] and type(layer) is Conv1D  # the attributed layer is kept
    model = nn.Sequential(nn.Identity(), conv)
    twin, _ = fused_twin(model, model[0])
    swapped = twin[1]
    assert isinstance(swapped, OneDNNLinear)
    assert swapped.weight.data_ptr() == conv.weight.data_ptr()  # a view: weights shared
    x = torch.randn(4, 6, 12, requires_grad=True)
    torch.testing.assert_close(swapped(x), conv(x), atol=1e-5, rtol=1e-5)
    y = torch.randn(4, 6, 9)
    torch.testing.assert_close(
        torch.autograd.grad((swapped(x) * y).sum(), x)[0],
        torch.autograd.grad((conv(x) * y).sum(), x)[0],
        atol=1e-5,
        rtol=1e-5,
    )


def test_non_cpu_float_layers_are_kept():
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4).double())
    assert fused_twin(model, model[0]) is None  # nothing to swap: no twin at all


@needs_onednn
def test_the_twin_swaps_the_copy_only_and_keeps_hooked_modules(toy):
    model, _ = toy
    hooked = model.transformer.h[1].mlp.c_fc
    handle = hooked.register_forward_hook(lambda *_: None)
    try:
        twin, layer = fused_twin(model, model.transformer.wte)
    finally:
        handle.remove()
    for ours, theirs in zip(twin.transformer.h, model.transformer.h):
        assert isinstance(ours.attn.c_attn, OneDNNLinear)
        assert isinstance(ours.mlp.act, TanhGELU)
        assert ours.attn.c_attn.weight.data_ptr() == theirs.attn.c_attn.weight.data_ptr()
        assert not isinstance(theirs.attn.c_attn, OneDNNLinear)  # the user's model as it was
    assert isinstance(twin.lm_head, OneDNNLinear)
    assert type(twin.transformer.h[1].mlp.c_fc) is type(hooked)  # its hook must still fire
    assert isinstance(twin.transformer.h[0].mlp.c_fc, OneDNNLinear)
    assert layer is twin.transformer.wte
    gelu_only, _ = fused_twin(model, model.transformer.wte, linears=False)
    assert not any(isinstance(m, OneDNNLinear) for m in gelu_only.modules())


def _ig(game, layer, *, fuse):
    alphas, weights = path_plan_tensors(
        "gausslegendre", 6, dtype=torch.float32, device=torch.device("cpu"), owner="test"
    )
    counts = PathCounts()
    out = shared_path_attributions(
        game, layer, alphas=alphas, weights=weights, chunk_size=4, counts=counts, fuse=fuse
    )
    return out, counts


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm._toy import VOCAB

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@needs_onednn
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_twin_gives_the_models_own_attributions(toy, family):
    model, tok = toy
    if family == "llama":
        model = _tiny_llama()
    layer = model.get_input_embeddings()
    inp = TextTokenInput(LONG, tok, skip_tokens=["<bos>"])
    game = TokenLogProbs(model, inp, torch.tensor(tok.encode(TARGET, add_special_tokens=False)))
    flags = [p.requires_grad for p in model.parameters()]
    plain, plain_counts = _ig(game, layer, fuse=False)
    fast, counts = _ig(game, layer, fuse=True)
    # a Llama has no GELU: the copy runs for its linear layers alone
    assert counts.fused and not plain_counts.fused
    assert counts.backwards == plain_counts.backwards
    scale = plain.abs().max()
    assert scale > 0
    assert float((fast - plain).abs().max() / scale) < 1e-5
    # the user's model: no gradient accumulated, flags untouched
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


@needs_onednn
def test_the_facade_runs_the_twin_and_leaves_the_model_as_it_was(toy):
    model, tok = toy
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inp = TextTokenInput(LONG, tok, skip_tokens=["<bos>"])
    result = LLMGradient(model, tok).attribute(inp, target=TARGET, n_steps=4)
    assert result.info["fused_activations"]
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, OneDNNLinear) for m in model.modules())
