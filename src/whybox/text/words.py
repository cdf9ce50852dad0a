"""Token -> word aggregation with character offsets back to the text.

Sub-word schemes mark words differently: WordPiece continues a word with ``##``;
byte-level BPE (GPT-2, RoBERTa) starts one with ``Ġ``; SentencePiece (T5, Llama, XLM-R)
starts one with ``▁``. A word is a run of tokens the scheme joins. With the tokenizer's
offset mapping two more rules make the words those of the text itself:

* whitespace between two tokens always separates words, and a token that covers only
  whitespace (``Ġ`` / ``▁`` alone, ``Ċ`` newlines) joins the *next* word (that is where
  BPE and SentencePiece put the space);
* a word's characters are ``text[start:end]``, from its first to its last non-blank token
  (byte-level tokens may overlap inside one character), so words come back exactly as
  written: case, accents and punctuation included.

Special tokens (``[CLS]``, ``<s>``, ...) are words of their own, flagged ``special``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_choice, fail
from whybox.viz.text import is_special_token

__all__ = [
    "SCHEMES",
    "Word",
    "detect_scheme",
    "scheme_of",
    "group_words",
    "word_scores",
]

SCHEMES = ("auto", "wordpiece", "bpe", "sentencepiece", "whitespace", "none")
REDUCTIONS = ("sum", "mean", "max")
_MARKERS = {"wordpiece": "##", "bpe": "\u0120", "sentencepiece": "\u2581"}

Span = tuple[int, int]


@dataclass(frozen=True)
class Word:
    """One word of a text and the tokens it is made of.

    Attributes
    ----------
    text : str
        The word as written (``text[start:end]`` when offsets are known), or the joined
        token pieces without offsets.
    tokens : tuple of int
        Positions of its tokens in the token sequence (at least one).
    start, end : int or None
        Character span in the text; ``None`` without offsets and for special tokens.
    special : bool
        A special token (``[CLS]``, ``</s>``, ...).
    """

    text: str
    tokens: tuple[int, ...]
    start: int | None = None
    end: int | None = None
    special: bool = False


def detect_scheme(tokens: Sequence[str], *, has_offsets: bool = False) -> str:
    """Guess the scheme from token strings: ``"wordpiece"`` (``##``), ``"bpe"`` (``Ġ``),
    ``"sentencepiece"`` (``▁``); otherwise ``"whitespace"`` with offsets, else ``"none"``."""
    if any(t.startswith("##") and len(t) > 2 for t in tokens):
        return "wordpiece"
    if any(t.startswith("\u0120") for t in tokens):
        return "bpe"
    if any(t.startswith("\u2581") for t in tokens):
        return "sentencepiece"
    return "whitespace" if has_offsets else "none"


def scheme_of(tokenizer: Any) -> str | None:
    """The scheme of a Hugging Face fast tokenizer from its pipeline, ``None`` if unknown.

    Parameters
    ----------
    tokenizer : a ``PreTrainedTokenizerFast`` (or a ``tokenizers.Tokenizer``)

    Returns
    -------
    str or None
        ``"wordpiece"``, ``"bpe"`` (byte-level), ``"sentencepiece"`` (``▁``) or
        ``"whitespace"``; ``None`` for slow tokenizers (the tokens decide then).
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    model = getattr(backend, "model", None)
    if model is None or not hasattr(backend, "pre_tokenizer"):
        return None
    if type(model).__name__ == "WordPiece":
        return "wordpiece"
    pipeline = " ".join(
        repr(getattr(backend, part, None)) for part in ("normalizer", "pre_tokenizer", "decoder")
    )
    if "ByteLevel" in pipeline:
        return "bpe"
    if "Metaspace" in pipeline or "\u2581" in pipeline:
        return "sentencepiece"
    return "whitespace"


def group_words(
    tokens: Sequence[str],
    *,
    text: str | None = None,
    offsets: Sequence[Span | None] | Tensor | None = None,
    special: Sequence[bool] | Tensor | None = None,
    scheme: str = "auto",
    tokenizer: Any = None,
) -> list[Word]:
    """Group tokens into words.

    Parameters
    ----------
    tokens : sequence of str, length ``T``
        Token strings (``tokenizer.convert_ids_to_tokens(ids)``).
    text : str, optional
        The text that was tokenized; with ``offsets`` words are cut from it.
    offsets : ``(T, 2)`` spans, optional
        The tokenizer's offset mapping (``return_offsets_mapping=True``); ``None`` or
        ``(0, 0)`` entries for tokens without characters.
    special : ``(T,)`` bools, optional
        Special tokens; default: tokens in ``tokenizer.all_special_tokens``, else tokens
        that look like ``[CLS]`` / ``<s>`` / ``<|endoftext|>``.
    scheme : {"auto", "wordpiece", "bpe", "sentencepiece", "whitespace", "none"}
        ``"whitespace"`` joins tokens whose offsets touch; ``"none"`` makes every token a
        word. ``"auto"`` asks the tokenizer (:func:`scheme_of`), then the token strings.
    tokenizer : a Hugging Face tokenizer, optional
        Used for ``"auto"``, special tokens and, without offsets, to decode byte-level
        pieces into text.

    Returns
    -------
    list of Word
        In token order; every token belongs to exactly one word.
    """
    owner = "group_words"
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        fail(owner, "tokens", "a sequence of token strings", tokens, type_error=True)
    tokens = [str(t) for t in tokens]
    n = len(tokens)
    check_choice(owner, "scheme", scheme, SCHEMES)
    spans = _spans(offsets, n, owner) if offsets is not None else None
    if spans is not None and text is None:
        fail(owner, "text", "the tokenized text when offsets are given", None)
    flags = _special_flags(tokens, special, tokenizer, n, owner)
    if scheme == "auto":
        scheme = scheme_of(tokenizer) if tokenizer is not None else None
        scheme = scheme or detect_scheme(tokens, has_offsets=spans is not None)
    if scheme == "whitespace" and spans is None:
        scheme = "none"  # touching tokens cannot be seen without offsets

    groups: list[tuple[list[int], bool]] = []  # (token positions, special)
    pending: list[int] = []  # blank tokens waiting for the next word
    open_word = False
    prev_end: int | None = None
    for i, token in enumerate(tokens):
        if flags[i]:
            _flush(groups, pending)
            groups.append(([i], True))
            open_word, prev_end = False, None
            continue
        span = spans[i] if spans is not None else None
        if _blank(token, span, text, scheme):
            # whitespace separates words; the space belongs to the word that follows
            pending.append(i)
            open_word = False
            continue
        start = span[0] if span is not None else None
        # whitespace between two tokens always ends a word, whatever the markers say
        gap = (
            start is not None
            and prev_end is not None
            and any(c.isspace() for c in text[prev_end:start])
        )
        if open_word and not gap and _continues(token, scheme):
            groups[-1][0].append(i)
        else:
            groups.append((pending + [i], False))
            pending = []
            open_word = True
        if span is not None:
            # byte-level tokens may overlap inside one character: keep the furthest end
            prev_end = span[1] if prev_end is None else max(prev_end, span[1])
    _flush(groups, pending)
    return [
        _word(ids, is_special, tokens, spans, text, scheme, tokenizer) for ids, is_special in groups
    ]


def word_scores(words: Sequence[Word], token_scores: Tensor, *, reduce: str = "sum") -> Tensor:
    """Per-word scores from per-token scores.

    Parameters
    ----------
    words : sequence of Word
        From :func:`group_words` over the same ``T`` tokens.
    token_scores : ``(T,)`` tensor
    reduce : {"sum", "mean", "max"}
        ``"sum"`` keeps completeness (word scores add up to the token total); ``"max"``
        keeps the token value of largest magnitude.

    Returns
    -------
    Tensor
        ``(len(words),)``, on ``token_scores``' device and dtype.
    """
    owner = "word_scores"
    check_choice(owner, "reduce", reduce, REDUCTIONS)
    if not isinstance(token_scores, Tensor) or token_scores.dim() != 1:
        fail(owner, "token_scores", "a 1-D tensor of per-token scores", token_scores)
    positions = [i for word in words for i in word.tokens]
    if sorted(positions) != list(range(token_scores.shape[0])):
        fail(
            owner,
            "words",
            f"words covering each of the {token_scores.shape[0]} tokens exactly once",
            f"words covering {len(positions)} token positions",
            raw=True,
        )
    if reduce == "max":
        picked = [token_scores[list(word.tokens)] for word in words]
        return torch.stack([p[p.abs().argmax()] for p in picked]) if picked else token_scores[:0]
    device = token_scores.device
    index = torch.tensor([w for w, word in enumerate(words) for _ in word.tokens], device=device)
    ordered = token_scores[torch.tensor(positions, device=device, dtype=torch.long)]
    total = token_scores.new_zeros(len(words)).index_add_(0, index, ordered)
    if reduce == "sum":
        return total
    counts = torch.tensor([len(w.tokens) for w in words], device=token_scores.device)
    return total / counts.to(total.dtype)


# -- helpers ----------------------------------------------------------------------------------
def _spans(offsets: Any, n: int, owner: str) -> list[Span | None]:
    if isinstance(offsets, Tensor):
        offsets = offsets.tolist()
    offsets = list(offsets)
    if len(offsets) != n:
        fail(
            owner,
            "offsets",
            f"one (start, end) span per token ({n})",
            f"{len(offsets)} spans",
            raw=True,
        )
    spans: list[Span | None] = []
    for span in offsets:
        if span is None:
            spans.append(None)
            continue
        start, end = int(span[0]), int(span[1])
        spans.append((start, end))
    return spans


def _special_flags(
    tokens: list[str], special: Any, tokenizer: Any, n: int, owner: str
) -> list[bool]:
    if special is not None:
        flags = [bool(s) for s in (special.tolist() if isinstance(special, Tensor) else special)]
        if len(flags) != n:
            fail(owner, "special", f"one flag per token ({n})", f"{len(flags)} flags", raw=True)
        return flags
    # structural tokens only: [UNK] / <unk> in a text is content and joins its word
    names = ("cls_token", "sep_token", "bos_token", "eos_token", "pad_token")
    known = {str(v) for name in names if (v := getattr(tokenizer, name, None)) is not None}
    if known:
        return [t in known for t in tokens]
    return [is_special_token(t) and t not in ("<unk>", "[UNK]") for t in tokens]


def _continues(token: str, scheme: str) -> bool:
    """Whether the marker rule of ``scheme`` joins ``token`` to the word before it."""
    if scheme == "wordpiece":
        return token.startswith("##") and len(token) > 2
    if scheme in ("bpe", "sentencepiece"):
        return not token.startswith(_MARKERS[scheme])
    return scheme == "whitespace"  # the offsets' gap rule decides; "none" never joins


def _blank(token: str, span: Span | None, text: str | None, scheme: str) -> bool:
    """A token carrying no visible character: a lone space marker or whitespace."""
    if span is not None and text is not None:
        return not text[span[0] : span[1]].strip()
    marker = _MARKERS.get(scheme)
    return (
        bool(marker) and scheme != "wordpiece" and token.strip(marker + " ") == "" and token != ""
    )


def _flush(groups: list[tuple[list[int], bool]], pending: list[int]) -> None:
    """Place blank tokens that no word followed: onto the word just before, else their own group."""
    if not pending:
        return
    if groups and not groups[-1][1]:
        groups[-1][0].extend(pending)
    else:
        groups.append((list(pending), False))
    pending.clear()


def _word(
    ids: list[int],
    is_special: bool,
    tokens: list[str],
    spans: list[Span | None] | None,
    text: str | None,
    scheme: str,
    tokenizer: Any,
) -> Word:
    if spans is not None and text is not None:
        solid = [
            spans[i]
            for i in ids
            if spans[i] is not None and text[spans[i][0] : spans[i][1]].strip()
        ]
        if solid:
            start, end = min(s for s, _ in solid), max(e for _, e in solid)
            piece = text[start:end]
            # strip surrounding whitespace (untrimmed offsets include the leading space)
            start += len(piece) - len(piece.lstrip())
            end -= len(piece) - len(piece.rstrip())
            return Word(text[start:end], tuple(ids), start, end, is_special)
        if not is_special:
            covered = [s for i in ids if (s := spans[i]) is not None]
            if covered:
                start, end = min(s for s, _ in covered), max(e for _, e in covered)
                return Word(text[start:end], tuple(ids), start, end, False)
    if is_special:
        return Word(tokens[ids[0]], tuple(ids), None, None, True)
    pieces = [tokens[i] for i in ids]
    if tokenizer is not None and hasattr(tokenizer, "convert_tokens_to_string"):
        return Word(tokenizer.convert_tokens_to_string(pieces).strip(), tuple(ids))
    marker = _MARKERS.get(scheme, "")
    joined = "".join(p[2:] if scheme == "wordpiece" and p.startswith("##") else p for p in pieces)
    return Word(
        joined.replace(marker, "") if marker and scheme != "wordpiece" else joined, tuple(ids)
    )
