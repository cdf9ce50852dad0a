"""Tokens people read: readable output tokens, and prompt tokens grouped into words.

* :func:`pretty_tokens` turns ids into the text each one covers in the decoded string
  (no byte-level ``Ġ`` or ``▁`` markers), the way Captum labels output tokens;
* :func:`word_groups` groups a :class:`~whybox.llm.inputs.TextTokenInput`'s feature tokens
  into words from the tokenizer's character offsets: a ``feature_mask`` that perturbs a
  word's tokens together, and the words' labels. Summing token attributions over the same
  groups (:meth:`~whybox.llm.result.LLMAttributionResult.aggregate`) is the cheap
  alternative;
* :func:`template_token_features` maps the tokens of a filled
  :class:`~whybox.llm.inputs.TextTemplateInput` to its features (attention attribution of
  a template).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["pretty_tokens", "word_groups", "offsets", "template_token_features"]


def offsets(text: str, tokenizer: Any, *, add_special_tokens: bool) -> tuple[list[int], list]:
    """Token ids of ``text`` and each token's ``(start, end)`` characters.

    Tokens with an empty span (special tokens of some tokenizers) get the span up to the
    next token's start, so every token covers some text.
    """
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    ids = list(encoded["input_ids"])
    spans = [tuple(span) for span in encoded["offset_mapping"]]
    fixed = []
    for i, (start, end) in enumerate(spans):
        if start == end:
            end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        fixed.append((start, end))
    return ids, fixed


def _clean(token: str) -> str:
    return token.replace("\n", "\\n").strip()


def pretty_tokens(ids: Tensor | list[int], tokenizer: Any) -> list[str]:
    """Readable labels of token ids: the decoded text each token covers.

    The ids are decoded, the text is re-encoded with character offsets, and each token is
    labelled by its span (stripped; ``" [OVERLAP]"`` marks a span overlapping the previous
    one). Tokenizers without offsets, or whose re-encoding differs, fall back to decoding
    each id on its own.

    Parameters
    ----------
    ids : Tensor ``(T,)`` or list of int
    tokenizer : Hugging Face style tokenizer

    Returns
    -------
    list of str, length ``T``
    """
    ids = [int(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
    text = _decode(tokenizer, ids)
    try:
        again, spans = offsets(text, tokenizer, add_special_tokens=False)
    except (NotImplementedError, TypeError, ValueError, KeyError):
        return _one_by_one(ids, tokenizer)
    labels: list[str] = []
    previous_end = -1
    position = 0
    for token, (start, end) in zip(again, spans):
        if position >= len(ids) or token != ids[position]:
            continue  # a token the re-encoding adds (e.g. a lone space): skip it
        overlap = " [OVERLAP]" if previous_end > start else ""
        labels.append(_clean(text[start:end]) + overlap)
        previous_end = end
        position += 1
    if len(labels) != len(ids):
        warnings.warn(
            f"pretty_tokens: re-encoding the decoded text gave {len(labels)} of {len(ids)} "
            "tokens; labelling each token by decoding it alone.",
            stacklevel=2,
        )
        return _one_by_one(ids, tokenizer)
    return labels


def _one_by_one(ids: list[int], tokenizer: Any) -> list[str]:
    return [_clean(_decode(tokenizer, [i])) for i in ids]


def _decode(tokenizer: Any, ids: list[int]) -> str:
    """``tokenizer.decode`` of ``ids`` given as a ``LongTensor``, as Captum's
    ``TokenizerLike`` takes them (Captum-style tokenizers call ``.tolist()`` on it); as a
    list of ints for tokenizers that refuse a tensor (e.g. a bare ``tokenizers.Tokenizer``)."""
    try:
        return tokenizer.decode(torch.tensor(ids, dtype=torch.long))
    except (TypeError, AttributeError, ValueError):
        return tokenizer.decode(ids)


def word_groups(inp: Any) -> tuple[Tensor, list[str]]:
    """Group a token input's feature tokens into words.

    A word is a run of feature tokens with no whitespace between them in the prompt
    (``"dog!"`` is one word); special and skipped tokens end words, a special feature
    token is a word of its own.

    Parameters
    ----------
    inp : TextTokenInput
        Built with a fast tokenizer (character offsets).

    Returns
    -------
    (Tensor, list of str)
        ``feature_mask`` ``(1, M)`` long, word ids ``0..W-1`` in order (pass it as
        ``feature_mask`` to perturb words together), and the ``W`` words' text.
    """
    text = getattr(inp, "text", None)
    if text is None or not hasattr(inp, "inp_tensor"):
        raise TypeError("word_groups needs a TextTokenInput (its text and tokenizer).")
    ids, spans = offsets(text, inp.tokenizer, add_special_tokens=True)
    if ids != inp.inp_tensor[0].tolist():
        raise ValueError(
            "word_groups: the tokenizer's offsets do not match the input's tokens; group "
            "the features yourself with a feature_mask."
        )
    is_feature = inp.itp_mask[0].tolist() if inp.itp_mask is not None else [True] * len(ids)
    special = set(getattr(inp.tokenizer, "all_special_ids", []) or [])
    word_of: list[int] = []
    words: list[str] = []
    previous_end: int | None = None  # end of the previous feature token of the same word
    for token, (start, end), feature in zip(ids, spans, is_feature):
        if not feature or token in special:
            if feature:  # a special token is a word of its own
                words.append(_decode(inp.tokenizer, [token]).strip() or str(token))
                word_of.append(len(words) - 1)
            previous_end = None
            continue
        piece = text[start:end]
        if previous_end is not None and start <= previous_end and not piece[:1].isspace():
            words[-1] += piece
        else:
            words.append(piece.strip())
        word_of.append(len(words) - 1)
        previous_end = end
    return torch.tensor([word_of], dtype=torch.long), words


def _value_span(text: str, other: str) -> tuple[int, int]:
    """The span of ``text`` that differs from ``other`` (one field filled differently)."""
    prefix = 0
    limit = min(len(text), len(other))
    while prefix < limit and text[prefix] == other[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and text[-1 - suffix] == other[-1 - suffix]:
        suffix += 1
    return prefix, len(text) - suffix


def template_token_features(inp: Any, tokenizer: Any) -> tuple[str, Tensor]:
    """The filled prompt of a template input and the feature each of its tokens belongs to.

    Each value's characters are found by filling the template once more with that value
    replaced by a marker: the text that changes is the value's. A token belongs to the
    value its characters overlap most (tokens of the template's own text and special tokens
    to none), and a value to its feature (values sharing a ``mask`` id form one).

    Parameters
    ----------
    inp : TextTemplateInput
    tokenizer : fast tokenizer (character offsets)

    Returns
    -------
    (str, Tensor)
        The prompt (``inp.to_model_input()``) and ``(L,)`` long feature ids
        ``0..n_itp_features - 1`` of its ``L`` tokens (as ``tokenizer.encode`` gives
        them), ``-1`` for tokens of no feature.

    Raises
    ------
    ValueError
        When a value does not appear verbatim, once, in the prompt (a template function
        that transforms or repeats it), or the offsets do not match the tokens.
    """
    text = inp.to_model_input()
    spans = []
    for i, value in enumerate(inp.values):
        marker = "\x00" * (len(value) + 1)
        filled = list(inp.values)
        filled[i] = marker
        other = inp._fill(filled)
        start, end = _value_span(text, other)
        if text[start:end] != value or other[start : len(other) - (len(text) - end)] != marker:
            raise ValueError(
                f"template_token_features: value {i} ({value!r}) does not appear verbatim "
                "and once in the filled template, so its tokens cannot be found; use a str "
                "template or a TextTokenInput."
            )
        spans.append((start, end))
    ids, token_spans = offsets(text, tokenizer, add_special_tokens=True)
    expected = tokenizer.encode(text)
    if ids != list(expected):
        raise ValueError(
            "template_token_features: the tokenizer's offsets do not match its tokens of the "
            "prompt; use a TextTokenInput."
        )
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    feature_of_value = inp.formatted_mask if inp.mask is not None else list(range(len(spans)))
    features = []
    for token, (start, end) in zip(ids, token_spans):
        overlaps = [max(0, min(end, b) - max(start, a)) for a, b in spans]
        best = max(range(len(spans)), key=overlaps.__getitem__) if spans else -1
        if token in special or best < 0 or overlaps[best] == 0:
            features.append(-1)
        else:
            features.append(feature_of_value[best])
    return text, torch.tensor(features, dtype=torch.long)
