"""Long prompts in bounded memory: attention and gradient attribution of a 2000-token prompt
on a tiny GPT-2, and the shared-forward gradient path against the per-token engine.

Memory is measured, not estimated: a ``TorchDispatchMode`` sees every tensor each torch op
returns during the call, and the largest must stay far below one ``(L, L)`` attention
matrix (4 million entries; an eager capture holds ``layers x heads`` of them) and must not
grow with the number of target tokens or integration steps.
"""

import random

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from whybox.llm import LLMAttention, LLMGradient, TextTokenInput
from whybox.llm.attention import ATTENTION_METHODS
from whybox.llm.gradient import PathCounts, TokenLogProbs, shared_path_attributions

N_PROMPT = 2000


class LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an op returned while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


@pytest.fixture(scope="module")
def long_case():
    """A random-weight 2-layer GPT-2 (16 wide, 2 heads, 2048 positions) on the toy
    vocabulary, and a 2000-word prompt."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from llm._toy import VOCAB, tokenizer

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(VOCAB),
        n_positions=2048,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    tok = tokenizer()
    rng = random.Random(0)
    prompt = " ".join(rng.choice(VOCAB[4:]) for _ in range(N_PROMPT))
    return model, tok, TextTokenInput(prompt, tok, skip_tokens=["<bos>"])


@pytest.mark.parametrize("method", ATTENTION_METHODS)
def test_attention_of_a_long_prompt_is_memory_bounded(long_case, method):
    model, tok, inp = long_case
    length = N_PROMPT + 1 + 4  # <bos>, the prompt, target[:-1]
    explainer = LLMAttention(model, tok, method=method)
    with LargestTensor() as measured:
        result = explainer.attribute(inp, target="V1 V2 V3 V4 V5", chunk_size=16)
    counts = result.info["counts"]
    assert result.token_attr.shape == (5, N_PROMPT)
    assert counts.forwards == 1 and counts.layers == 2
    # at most chunk_size query rows of weights at once (the 5 target rows for the gradient)
    assert counts.max_rows <= (5 if method == "gradient_attention" else 16)
    assert counts.max_elements <= 2 * 16 * length
    # no op ever returned anything near one (L, L) matrix: the largest tensor is an
    # activation (L x 4 x hidden) or a block of weights
    assert measured.largest <= max(length * 4 * 16, 2 * 16 * length)
    assert measured.largest < length * length // 10
    # the chunked result is the unchunked one
    whole = explainer.attribute(inp, target="V1 V2 V3 V4 V5", chunk_size=length)
    torch.testing.assert_close(result.token_attr, whole.token_attr, atol=1e-6, rtol=0)


def test_gradients_of_a_long_prompt_are_memory_bounded(long_case):
    model, tok, inp = long_case
    length = N_PROMPT + 1 + 2
    explainer = LLMGradient(model, tok)
    with LargestTensor() as measured:
        result = explainer.attribute(inp, target="V1 V2 V3", n_steps=4, chunk_size=2)
    info = result.info
    assert result.token_attr.shape == (3, N_PROMPT)
    # one endpoint forward, the same pair split before the prompt's last token on the copy
    # with fused activations (checked against it), then n_steps / chunk_size split
    # forwards, each shared by the 3 targets
    assert info["prefix_split"] == N_PROMPT and info["fused_activations"]
    assert info["shared_forwards"] and info["forwards"] == 1 + 2 + 2 * 2
    assert info["backwards"] == 3 * 2 and info["max_rows_per_forward"] == 2
    # the largest tensor: a chunk's MLP activations (rows x L x 4 hidden) or the
    # (T, L, hidden) sum of gradients, not steps x targets sequences
    assert measured.largest <= max(2 * length * 4 * 16, 3 * length * 16)
    # chunking never changes the numbers
    other = explainer.attribute(inp, target="V1 V2 V3", n_steps=4, chunk_size=3)
    assert other.info["max_rows_per_forward"] == 3
    torch.testing.assert_close(other.token_attr, result.token_attr, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "method", ["integrated_gradients", "gradient_x_activation", "gradient_shap"]
)
@pytest.mark.parametrize("options", [{}, {"step_wise": True}, {"contrast": "V2 V5 V2"}])
def test_shared_forwards_equal_the_per_token_engine(toy, prompt, method, options):
    model, tok = toy
    inp = TextTokenInput(prompt, tok, skip_tokens=["<bos>"])
    explainer = LLMGradient(model, tok, method=method)
    kwargs = {"n_steps": 8} if method == "integrated_gradients" else {}
    fast = explainer.attribute(inp, target="V5 V2 .", **kwargs, **options)
    assert fast.info["shared_forwards"]
    game = TokenLogProbs(
        model,
        inp,
        torch.tensor(tok.encode("V5 V2 .", add_special_tokens=False)),
        contrast=(
            torch.tensor(tok.encode(options["contrast"], add_special_tokens=False))
            if "contrast" in options
            else None
        ),
        step_wise=options.get("step_wise", False),
        generated_baseline=0,
    )
    from whybox.llm.gradient import token_attributions

    slow = token_attributions(
        explainer._per_token_rows(game, 3, 8, "gausslegendre", 5, None, "auto"), game
    )
    torch.testing.assert_close(fast.token_attr, slow, atol=1e-5, rtol=1e-4)


def test_shared_path_declines_a_layer_it_cannot_substitute(toy, prompt):
    model, tok = toy
    inp = TextTokenInput(prompt, tok)
    game = TokenLogProbs(model, inp, torch.tensor([22]))
    counts = PathCounts()
    unused = torch.nn.Linear(2, 2)  # never called by the model
    result = shared_path_attributions(
        game, unused, alphas=torch.ones(1), weights=torch.ones(1), counts=counts
    )
    assert result is None and counts.forwards == 1
    # LLMGradient then falls back to the engine (one example per target token)
    block = model.transformer.h[0]  # returns a tuple in some versions: handled either way
    fallback = LLMGradient(model, tok, layer=block).attribute(inp, target="V5", n_steps=4)
    assert fallback.token_attr.shape == (1, inp.n_itp_features)


def test_facade_layer_ig_runs_one_forward_per_step_chunk(toy, prompt):
    import whybox.attr as A
    from whybox.attr._llm import LLMGradientAttribution

    model, tok = toy
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        lig = A.LayerIntegratedGradients(model, model.transformer.wte)
        LLMGradientAttribution(lig, tok).attribute(
            TextTokenInput(prompt, tok), target="V5 V2 .", n_steps=8, internal_batch_size=4
        )
    finally:
        handle.remove()
    # the endpoints, their check on the copy with fused activations (the copy keeps the
    # model's hooks), then 8 steps in chunks of 4: all 3 target tokens share them; the
    # prompt is too short to split
    assert len(calls) == 1 + 1 + 2
