"""Attribution for generative language models (native API).

Explain why a causal LM generated a continuation: which prompt features (tokens,
template segments, image segments) and, step-wise, which earlier generated tokens each
generated token owes its probability to, optionally against an alternative (contrast).

* :class:`LLMPerturbation` -- ablation, Shapley values, LIME, KernelSHAP on perturbed
  prompts; ONE teacher-forced forward per perturbed prompt scores every target token,
  perturbed prompts are batched and share their common prefix's KV cache;
* :class:`LLMGradient` -- Layer Integrated Gradients, gradient x activation, GradientSHAP
  on the input embeddings, every target token from the same forwards;
* :class:`LLMAttention` -- attention, attention rollout and gradient-weighted attention
  of the target positions from one teacher-forced forward, memory-bounded for long
  prompts (only the needed rows of attention weights are formed, in chunks);
* :class:`RemoteLLMPerturbation` -- the same over a log-probability API
  (:class:`VLLMProvider`);
* inputs (:class:`TextTokenInput`, :class:`TextTemplateInput`, :class:`ImageMaskInput`,
  :class:`ProductBaselines`) and the result (:class:`LLMAttributionResult`, with plots, an
  HTML heat map, and token -> word aggregation).

The Captum-compatible classes (``LLMAttribution``, ``LLMGradientAttribution``, ...) are in
:mod:`whybox.attr`.
"""

from .attention import ATTENTION_METHODS, LLMAttention
from .gradient import LLMGradient
from .inputs import (
    ImageMaskInput,
    InterpretableInput,
    ProductBaselines,
    TextTemplateInput,
    TextTokenInput,
)
from .perturbation import LLMPerturbation
from .remote import RemoteLLMPerturbation, RemoteLLMProvider, VLLMProvider
from .result import LLMAttributionResult
from .targets import DEFAULT_GEN_ARGS
from .tokens import pretty_tokens, word_groups

__all__ = [
    "LLMPerturbation",
    "LLMGradient",
    "LLMAttention",
    "ATTENTION_METHODS",
    "RemoteLLMPerturbation",
    "RemoteLLMProvider",
    "VLLMProvider",
    "InterpretableInput",
    "TextTokenInput",
    "TextTemplateInput",
    "ImageMaskInput",
    "ProductBaselines",
    "LLMAttributionResult",
    "DEFAULT_GEN_ARGS",
    "pretty_tokens",
    "word_groups",
]
