"""Token -> word aggregation: words come back exactly as written, for WordPiece (MiniLM's
tokenizer), byte-level BPE and SentencePiece-style tokenizers built offline."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whybox.text import Word, detect_scheme, group_words, scheme_of, word_scores

TEXT = "Unbelievable results, don't panic!!  Héllo\n\nwörld 2,000 tokens\tlater."


def words_of(tokenizer, text):
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    words = group_words(
        tokens,
        text=text,
        offsets=encoding["offset_mapping"],
        special=encoding["special_tokens_mask"],
        tokenizer=tokenizer,
    )
    return tokens, words


def assert_rebuilds(text, words, n_tokens):
    """Words are text slices, in order, separated only by whitespace, covering every
    visible character; every token belongs to exactly one word."""
    assert sorted(i for w in words for i in w.tokens) == list(range(n_tokens))
    content = [w for w in words if not w.special and w.text.strip()]
    rebuilt, cursor = [], 0
    for word in content:
        assert word.start is not None and text[word.start : word.end] == word.text
        gap = text[cursor : word.start]
        assert gap.strip() == "", (gap, word)
        rebuilt += [gap, word.text]
        cursor = word.end
    assert text[cursor:].strip() == ""
    assert "".join(rebuilt) + text[cursor:] == text


def test_wordpiece_minilm_words_are_the_texts_words(minilm_tokenizer):
    tokens, words = words_of(minilm_tokenizer, TEXT)
    assert scheme_of(minilm_tokenizer) == "wordpiece"
    assert any(t.startswith("##") for t in tokens)  # sub-words were merged
    assert_rebuilds(TEXT, words, len(tokens))
    content = [w.text for w in words if not w.special]
    # BERT's words: runs of letters / digits, and each punctuation mark on its own
    assert content == re.findall(r"\w+|[^\w\s]", TEXT)
    assert [w.text for w in words if w.special] == ["[CLS]", "[SEP]"]
    # original case and accents, though the model saw "hello" lower-cased
    assert "Héllo" in content and "Unbelievable" in content


@pytest.mark.parametrize("fixture", ["bpe_tokenizer", "bpe_tokenizer_untrimmed"])
def test_byte_level_bpe_words(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    tokens, words = words_of(tokenizer, TEXT)
    assert scheme_of(tokenizer) == "bpe" and any(t.startswith("\u0120") for t in tokens)
    assert_rebuilds(TEXT, words, len(tokens))
    # BPE words are whitespace-separated: punctuation stays with its word
    assert [w.text for w in words if not w.special] == TEXT.split()
    assert [w.text for w in words if w.special] == ["<s>", "</s>"]


def test_sentencepiece_words(sentencepiece_tokenizer):
    tokens, words = words_of(sentencepiece_tokenizer, TEXT)
    assert scheme_of(sentencepiece_tokenizer) == "sentencepiece"
    assert any(t.startswith("\u2581") for t in tokens)
    assert_rebuilds(TEXT, words, len(tokens))
    # Metaspace splits on spaces only; the newline tokens still end a word
    assert [w.text for w in words if not w.special] == TEXT.split()


ALPHABET = st.sampled_from(list("abcdeéxyz ABZ,.!'-\n\t0123") + ["  ", "ü", "ß", "\u00a0"])


@settings(max_examples=60, deadline=None)
@given(text=st.lists(ALPHABET, min_size=0, max_size=40).map("".join))
def test_words_rebuild_any_text(text, minilm_tokenizer, bpe_tokenizer, sentencepiece_tokenizer):
    for tokenizer in (minilm_tokenizer, bpe_tokenizer, sentencepiece_tokenizer):
        tokens, words = words_of(tokenizer, text)
        assert_rebuilds(text, words, len(tokens))


def test_without_offsets_markers_decide():
    wordpiece = ["[CLS]", "em", "##bed", "##ding", "is", "[SEP]"]
    assert [w.text for w in group_words(wordpiece)] == ["[CLS]", "embedding", "is", "[SEP]"]
    assert detect_scheme(wordpiece) == "wordpiece"
    bpe = ["<s>", "Hello", "\u0120wor", "ld", "!", "\u0120", "\u0120ok", "</s>"]
    words = group_words(bpe)
    assert [w.text for w in words] == ["<s>", "Hello", "world!", "ok", "</s>"]
    assert words[3].tokens == (5, 6)  # a lone space marker joins the next word
    assert all(w.start is None for w in words)
    sp = ["\u2581The", "\u2581quick", "est", "\u2581fox"]
    assert [w.text for w in group_words(sp)] == ["The", "quickest", "fox"]
    assert [w.text for w in group_words(["a", "b"])] == ["a", "b"]


def test_word_scores_reductions_and_errors():
    words = [Word("[CLS]", (0,), special=True), Word("unable", (1, 2)), Word("x", (3,))]
    scores = torch.tensor([0.5, 1.0, -4.0, 2.0], dtype=torch.float64)
    assert word_scores(words, scores).tolist() == [0.5, -3.0, 2.0]
    assert word_scores(words, scores, reduce="mean").tolist() == [0.5, -1.5, 2.0]
    assert word_scores(words, scores, reduce="max").tolist() == [0.5, -4.0, 2.0]
    assert word_scores(words, scores).dtype == torch.float64
    with pytest.raises(ValueError, match="'reduce'"):
        word_scores(words, scores, reduce="median")
    with pytest.raises(ValueError, match="exactly once"):
        word_scores(words[:2], scores)
    with pytest.raises(ValueError, match="'scheme'"):
        group_words(["a"], scheme="morse")
    with pytest.raises(ValueError, match="'offsets'"):
        group_words(["a", "b"], text="a b", offsets=[(0, 1)])
    with pytest.raises(TypeError, match="'tokens'"):
        group_words("ab")
