"""Text helpers: tokenizer-aware baselines, token -> word aggregation, long-input windows,
output selection and :func:`explain_text`.

The flows these serve (seeds 002-004): pad-token baselines that keep [CLS]/[SEP], reference
token sequences, averaging attributions over a set of neutral sentences, a baseline that
is equally uncertain for every class, texts longer than the model's window, and models
whose forward returns more than logits.

Modules, one idea each:

- :mod:`~whybox.text.baselines`: pad / unk / mask-token baselines keeping special tokens,
  zero embeddings, several baselines averaged, equally uncertain baselines;
- :mod:`~whybox.text.words`: WordPiece ``##`` / BPE ``Ġ`` / SentencePiece ``▁`` tokens
  grouped into words with character offsets back to the text;
- :mod:`~whybox.text.windows`: overlapping windows over long inputs and merging back;
- :mod:`~whybox.text.outputs`: the tensor to explain in a tuple / dict / ``ModelOutput``;
- :mod:`~whybox.text.explain`: :func:`explain_text` for Hugging Face sequence classifiers.
"""

from __future__ import annotations

from .baselines import (
    BASELINE_TOKENS,
    average_over_baselines,
    filler_id,
    mask_baseline,
    pad_baseline,
    special_positions,
    structural_token_ids,
    token_baseline,
    tokenizer_baseline,
    uncertain_baseline,
    uncertain_embedding_baseline,
    uncertain_token_baseline,
    unk_baseline,
    zero_embedding_baseline,
)
from .explain import TOKEN_METHODS, TextExplanation, TextExplanations, explain_text
from .outputs import OutputSelector, SelectedOutput, logits_of, select_output
from .windows import MERGES, TokenWindows, merge_windows, plan_windows, window_weights
from .words import SCHEMES, Word, detect_scheme, group_words, scheme_of, word_scores

__all__ = [
    # baselines
    "BASELINE_TOKENS",
    "token_baseline",
    "structural_token_ids",
    "special_positions",
    "tokenizer_baseline",
    "filler_id",
    "pad_baseline",
    "unk_baseline",
    "mask_baseline",
    "zero_embedding_baseline",
    "average_over_baselines",
    "uncertain_baseline",
    "uncertain_embedding_baseline",
    "uncertain_token_baseline",
    # outputs
    "OutputSelector",
    "select_output",
    "SelectedOutput",
    "logits_of",
    # words
    "SCHEMES",
    "Word",
    "detect_scheme",
    "scheme_of",
    "group_words",
    "word_scores",
    # windows
    "MERGES",
    "TokenWindows",
    "plan_windows",
    "window_weights",
    "merge_windows",
    # one call
    "explain_text",
    "TextExplanation",
    "TextExplanations",
    "TOKEN_METHODS",
]
