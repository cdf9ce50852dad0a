"""Teacher forcing on models that are not causal decoders, and tokenizers whose ``decode``
takes a tensor (Captum's ``TokenizerLike``): both met by Captum's newer test_llm_attr.py.

One forward of prompt + continuation scores every target token only when later tokens do
not change earlier positions' logits; for any other model whybox decodes token by token
(what Captum's ``use_cached_outputs=False`` runs), so the numbers are never silently those of
another computation.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from whybox.llm.scoring import TeacherForcing, known_causal
from whybox.llm.tokens import pretty_tokens

VOCAB = 12


class TinyLM(nn.Module):
    """Embedding, one self-attention block (``causal`` or bidirectional), vocabulary head."""

    def __init__(self, causal: bool):
        super().__init__()
        torch.manual_seed(0)
        self.causal = causal
        self.embed = nn.Embedding(VOCAB, 8)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, VOCAB)

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        n = input_ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n) if self.causal else None
        hidden = self.block(self.embed(input_ids), src_mask=mask)
        return SimpleNamespace(logits=self.head(hidden))


def _token_by_token(model, prompts, target):
    """log p(target_k | prompt, target_<k), one forward per token, ``(K, T)``."""
    out = []
    with torch.no_grad():
        for k in range(len(target)):
            rows = torch.cat([prompts, target[:k].expand(len(prompts), k)], dim=1)
            logits = model(input_ids=rows).logits[:, -1]
            out.append(torch.log_softmax(logits, -1)[:, target[k]])
    return torch.stack(out, dim=1)


def _one_pass(model, prompts, target):
    rows = torch.cat([prompts, target[:-1].expand(len(prompts), -1)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=rows).logits[:, -len(target) :]
    return torch.log_softmax(logits, -1).gather(2, target.view(1, -1, 1).expand(len(rows), -1, 1))[
        ..., 0
    ]


PROMPTS = torch.tensor([[1, 4, 5, 6], [1, 7, 2, 3], [1, 9, 9, 8]])
TARGET = torch.tensor([3, 10, 2, 11])


def test_a_bidirectional_model_is_decoded_token_by_token():
    model = TinyLM(causal=False).eval()
    scorer = TeacherForcing(model, None, chunk_size=2)
    scores, _ = scorer.score(PROMPTS, TARGET)
    assert scorer.causal is False
    expected = _token_by_token(model, PROMPTS, TARGET)
    torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-6)
    # the one-pass shortcut would have given other numbers on this model
    assert not torch.allclose(_one_pass(model, PROMPTS, TARGET), expected, atol=1e-4)


def test_a_causal_model_keeps_the_one_pass():
    model = TinyLM(causal=True).eval()
    scorer = TeacherForcing(model, None, chunk_size=3)
    scores, _ = scorer.score(PROMPTS, TARGET)
    assert scorer.causal is True
    # the check's two one-row forwards, then one forward for the three prompts
    assert scorer.n_forwards == 3
    torch.testing.assert_close(scores, _one_pass(model, PROMPTS, TARGET), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(
        scores, _token_by_token(model, PROMPTS, TARGET), atol=1e-5, rtol=1e-5
    )


def test_hugging_face_decoders_need_no_check():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=VOCAB)
    gpt2 = transformers.GPT2LMHeadModel(config).eval()
    assert known_causal(gpt2) is True
    scorer = TeacherForcing(gpt2, None, chunk_size=3, prefix_cache=False)
    scorer.score(PROMPTS, TARGET)
    assert scorer.n_forwards == 1
    bert = dict(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=8)
    encoder = transformers.BertLMHeadModel(transformers.BertConfig(vocab_size=VOCAB, **bert))
    assert known_causal(encoder) is None  # bidirectional unless is_decoder: checked
    decoder = transformers.BertConfig(vocab_size=VOCAB, is_decoder=True, **bert)
    assert known_causal(transformers.BertLMHeadModel(decoder)) is True
    assert known_causal(nn.Linear(2, 2)) is None


class TensorTokenizer:
    """Captum's TokenizerLike: ``decode`` takes a tensor (calls ``.tolist()``)."""

    def decode(self, token_ids):
        ids = token_ids.tolist()
        return " ".join(f"w{i}" for i in ([ids] if isinstance(ids, int) else ids))

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        raise NotImplementedError  # no offsets: each token decoded alone


class ListTokenizer:
    """A tokenizer whose ``decode`` takes a list of ints only (a bare ``tokenizers``)."""

    def decode(self, ids):
        if not isinstance(ids, list):
            raise TypeError("ids must be a list of int")
        return " ".join(f"w{i}" for i in ids)

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        raise NotImplementedError


@pytest.mark.parametrize("tokenizer", [TensorTokenizer(), ListTokenizer()])
def test_pretty_tokens_decode_with_tensor_or_list_tokenizers(tokenizer):
    assert pretty_tokens(torch.tensor([3, 5, 7]), tokenizer) == ["w3", "w5", "w7"]
    assert pretty_tokens([4], tokenizer) == ["w4"]
