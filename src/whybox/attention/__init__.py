"""Attention of transformers: capture (any attention implementation), rollout, flow and
gradient-weighted rollout, and the attribution methods built on them.

* :func:`capture_attention` -- per-layer ``(batch, heads, query, key)`` weights of a Hugging
  Face model, whatever its attention implementation (the model itself is never switched);
* :func:`attention_rollout`, :func:`attention_flow`, :func:`gradient_weighted_rollout` --
  ``(batch, query, key)`` maps from those weights;
* the registered methods ``"attention_rollout"``, ``"attention_flow"`` and
  ``"gradient_weighted_rollout"`` (``whybox.explain(model, inputs, method=...)``), giving
  ``(batch, tokens)`` attributions of one query token.
"""

from .capture import AttentionCaptureError, EncoderDecoderAttention, capture_attention
from .flow import attention_flow, max_flow
from .methods import (
    ATTENTION_METHODS,
    AttentionFlow,
    AttentionRollout,
    GradientWeightedRollout,
    select_logits,
)
from .rollout import attention_rollout, gradient_weighted_rollout

__all__ = [
    "capture_attention",
    "EncoderDecoderAttention",
    "AttentionCaptureError",
    "attention_rollout",
    "attention_flow",
    "gradient_weighted_rollout",
    "max_flow",
    "AttentionRollout",
    "AttentionFlow",
    "GradientWeightedRollout",
    "select_logits",
    "ATTENTION_METHODS",
]
