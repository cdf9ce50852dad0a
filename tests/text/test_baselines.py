"""Tokenizer-aware baselines: special tokens and padding stay in place, fillers by name,
zero embeddings, and baselines on which the model is equally unsure of every class."""

from __future__ import annotations

import pytest
import torch

from whybox.text import (
    mask_baseline,
    pad_baseline,
    special_positions,
    structural_token_ids,
    tokenizer_baseline,
    uncertain_embedding_baseline,
    uncertain_token_baseline,
    unk_baseline,
    zero_embedding_baseline,
)

TEXTS = ["a wonderful film", "the plot, sadly, was dull and far too long"]


@pytest.mark.parametrize(
    "fixture", ["minilm_tokenizer", "bpe_tokenizer", "sentencepiece_tokenizer"]
)
def test_special_tokens_and_padding_stay_in_place(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    frame = batch["special_tokens_mask"].bool() | (mask == 0)  # what the tokenizer added
    for token in ("pad", "unk"):
        baseline = tokenizer_baseline(tokenizer, ids, token=token, attention_mask=mask)
        filler = getattr(tokenizer, f"{token}_token_id")
        assert baseline.shape == ids.shape and baseline.dtype == ids.dtype
        assert torch.equal(baseline[frame], ids[frame])  # [CLS]/[SEP], <s>/</s>, pads kept
        assert (baseline[~frame] == filler).all()  # every content token replaced
    assert torch.equal(special_positions(tokenizer, ids, attention_mask=mask), frame)


def test_named_fillers_and_errors(minilm_tokenizer):
    tok = minilm_tokenizer
    ids = tok(["good film"], return_tensors="pt")["input_ids"]
    assert structural_token_ids(tok) == (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    assert pad_baseline(tok, ids)[0, 1:-1].tolist() == [tok.pad_token_id] * 2
    assert unk_baseline(tok, ids)[0, 1:-1].tolist() == [tok.unk_token_id] * 2
    assert mask_baseline(tok, ids)[0].tolist() == [
        tok.cls_token_id,
        tok.mask_token_id,
        tok.mask_token_id,
        tok.sep_token_id,
    ]
    dot = tok.convert_tokens_to_ids(".")
    assert tokenizer_baseline(tok, ids, token=".")[0, 1].item() == dot
    assert tokenizer_baseline(tok, ids, token=7)[0, 1].item() == 7
    # an unknown word is content: [UNK] in the input is replaced like any token
    unknown = torch.tensor([[tok.cls_token_id, tok.unk_token_id, tok.sep_token_id]])
    assert pad_baseline(tok, unknown)[0, 1].item() == tok.pad_token_id
    with pytest.raises(ValueError, match="'token'"):
        tokenizer_baseline(tok, ids, token="<not in the vocabulary>")
    with pytest.raises(ValueError, match="'input_ids'"):
        pad_baseline(tok, ids.float())


def test_sentencepiece_without_mask_token_says_so(sentencepiece_tokenizer):
    ids = sentencepiece_tokenizer(["a film"], return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="no mask token"):
        mask_baseline(sentencepiece_tokenizer, ids)


def test_zero_embedding_baseline_keeps_special_embeddings(minilm):
    tok, model = minilm
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    embeddings = model.get_input_embeddings()(batch["input_ids"])
    keep = special_positions(tok, batch["input_ids"], attention_mask=batch["attention_mask"])
    baseline = zero_embedding_baseline(embeddings, keep)
    assert not baseline.requires_grad and baseline.shape == embeddings.shape
    assert torch.equal(baseline[keep], embeddings[keep].detach())
    assert baseline[~keep].abs().max() == 0
    assert zero_embedding_baseline(embeddings).abs().max() == 0


def test_uncertain_embedding_baseline_is_uniform(minilm):
    tok, model = minilm
    batch = tok(TEXTS[:1], return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    baseline = uncertain_embedding_baseline(model, tok, ids, attention_mask=mask, steps=40, lr=0.05)
    with torch.no_grad():
        start = torch.softmax(model(pad_baseline(tok, ids), attention_mask=mask).logits, -1)
        probs = torch.softmax(model(inputs_embeds=baseline, attention_mask=mask).logits, -1)
    assert (probs - 0.5).abs().max() < 0.02 < (start - 0.5).abs().max()
    embeddings = model.get_input_embeddings()(ids)
    torch.testing.assert_close(
        baseline[0, [0, -1]], embeddings[0, [0, -1]].detach()
    )  # [CLS], [SEP]
    assert all(
        torch.equal(p, before[name]) and p.grad is None for name, p in model.named_parameters()
    )


def test_uncertain_token_baseline_picks_the_most_ambiguous_filler(minilm):
    tok, model = minilm
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    candidates = ["[PAD]", "[UNK]", ".", "wonderful", "terrible"]
    baseline = uncertain_token_baseline(model, tok, ids, attention_mask=mask, candidates=candidates)
    keep = special_positions(tok, ids, attention_mask=mask)
    assert torch.equal(baseline[keep], ids[keep])

    def entropy(filled):
        with torch.no_grad():
            p = torch.softmax(model(filled, attention_mask=mask).logits, -1)
        return -(p * p.log()).sum(-1)

    chosen = entropy(baseline)
    for token in candidates:
        assert (
            chosen >= entropy(tokenizer_baseline(tok, ids, token=token, keep=keep)) - 1e-6
        ).all()
    fillers = baseline[~keep]
    assert "wonderful" not in tok.convert_ids_to_tokens(
        fillers.tolist()
    )  # a sentiment word is no neutral filler
