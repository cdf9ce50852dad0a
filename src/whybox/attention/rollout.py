"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020)
and gradient-weighted rollout (Chefer, Gur & Wolf, "Generic Attention-model Explainability
for Interpreting Bi-Modal and Encoder-Decoder Transformers", 2021).

Both take the per-layer attention weights of a self-attention stack, as
:func:`~whybox.attention.capture_attention` returns them (one ``(batch, heads, tokens,
tokens)`` tensor per layer, first layer first), and return a ``(batch, query, key)`` map:
how much each token of the last layer draws on each input token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .capture import EncoderDecoderAttention

__all__ = ["attention_rollout", "gradient_weighted_rollout", "layer_maps", "HEAD_FUSIONS"]

HEAD_FUSIONS = ("mean", "max", "min")


def attention_rollout(
    attentions: Sequence[Tensor] | Tensor,
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
) -> Tensor:
    """Roll attention out through the layers: ``A_L @ ... @ A_2 @ A_1``.

    Each layer's heads are fused (``head_fusion``), the residual connection is modelled by
    adding the identity (``add_residual``: ``A + I``), and every row is renormalised to sum
    to 1, so each layer is a row-stochastic matrix and so is their product.

    Parameters
    ----------
    attentions : sequence of Tensor, or Tensor
        One ``(batch, heads, tokens, tokens)`` tensor per layer (first layer first), or all
        layers stacked as ``(layers, batch, heads, tokens, tokens)``.
    head_fusion : {"mean", "max", "min"}
        How the heads of a layer are combined.
    add_residual : bool
        Add the identity to each layer's fused attention before renormalising.

    Returns
    -------
    Tensor
        ``(batch, query, key)``, in the attentions' dtype: row ``q`` holds how much the
        last layer's token ``q`` draws on each input token; every row sums to 1 (a row of
        all-zero fused weights, possible with ``head_fusion="min"`` and no residual, stays
        zero). Identity attention gives the identity.

    Examples
    --------
    >>> rollout = attention_rollout(capture_attention(model, **encoding))
    >>> cls_scores = rollout[:, 0]  # (batch, tokens): what [CLS] draws on
    """
    maps = layer_maps(
        attentions, head_fusion=head_fusion, add_residual=add_residual, owner="attention_rollout"
    )
    result = maps[0]
    for layer_map in maps[1:]:
        # a later layer's tokens mix the earlier layer's mixtures
        result = layer_map @ result
    return result


def gradient_weighted_rollout(
    attentions: Sequence[Tensor] | Tensor, gradients: Sequence[Tensor] | Tensor
) -> Tensor:
    """Chefer et al.'s relevance of tokens from attention weighted by its gradient.

    ``R = I``; for each layer (first to last) ``A_bar = mean_heads((grad * A)^+)`` and
    ``R = R + A_bar @ R``.

    Parameters
    ----------
    attentions : sequence of Tensor, or Tensor
        One ``(batch, heads, tokens, tokens)`` tensor per layer (first layer first), or
        stacked ``(layers, batch, heads, tokens, tokens)``.
    gradients : sequence of Tensor, or Tensor
        The gradient of the explained output with respect to each layer's attention
        weights, shaped like ``attentions``.

    Returns
    -------
    Tensor
        ``(batch, query, key)`` relevance, non-negative; row ``q`` starts as the identity
        row, so token ``q``'s own entry includes 1 (its residual stream).
    """
    owner = "gradient_weighted_rollout"
    layers = _layers(attentions, owner=owner, name="attentions")
    grads = _layers(gradients, owner=owner, name="gradients")
    if len(grads) != len(layers) or any(g.shape != a.shape for g, a in zip(grads, layers)):
        raise ValueError(
            f"The 'gradients' parameter of {owner} must hold one tensor per layer shaped like "
            f"its attention ({len(layers)} of shape {tuple(layers[0].shape)}). Got "
            f"{[tuple(g.shape) for g in grads]}."
        )
    batch, _, tokens, _ = layers[0].shape
    relevance = _identity(batch, tokens, layers[0])
    for attention, gradient in zip(layers, grads):
        weighted = (gradient.to(attention.dtype) * attention).clamp(min=0).mean(dim=1)
        relevance = relevance + weighted @ relevance
    return relevance


def layer_maps(
    attentions: Sequence[Tensor] | Tensor,
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
    owner: str = "attention_rollout",
) -> list[Tensor]:
    """Each layer's fused, residual-added, row-normalised attention ``(batch, tokens, tokens)``
    (the edges of rollout and of attention flow)."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(
            f"The 'head_fusion' parameter of {owner} must be one of {list(HEAD_FUSIONS)}. "
            f"Got {head_fusion!r}."
        )
    if not isinstance(add_residual, bool):
        raise TypeError(
            f"The 'add_residual' parameter of {owner} must be a bool. Got {add_residual!r}."
        )
    layers = _layers(attentions, owner=owner, name="attentions")
    batch, _, tokens, _ = layers[0].shape
    identity = _identity(batch, tokens, layers[0]) if add_residual else None
    maps = []
    for attention in layers:
        if head_fusion == "mean":
            fused = attention.mean(dim=1)
        elif head_fusion == "max":
            fused = attention.amax(dim=1)
        else:
            fused = attention.amin(dim=1)
        if identity is not None:
            fused = fused + identity
        # rows sum to 1 again (max / min fusion and the residual break it)
        total = fused.sum(dim=-1, keepdim=True)
        maps.append(fused / torch.where(total > 0, total, torch.ones_like(total)))
    return maps


def _identity(batch: int, tokens: int, like: Tensor) -> Tensor:
    eye = torch.eye(tokens, dtype=like.dtype, device=like.device)
    return eye.expand(batch, tokens, tokens)


def _layers(value: Any, *, owner: str, name: str) -> list[Tensor]:
    """Validate one self-attention stack and return it as a list of 4-D tensors."""
    if isinstance(value, EncoderDecoderAttention):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be one self-attention stack; got an "
            "EncoderDecoderAttention: pass its .encoder or .decoder."
        )
    if isinstance(value, Tensor):
        if value.dim() != 5:
            raise ValueError(
                f"The '{name}' parameter of {owner} must be a sequence of (batch, heads, "
                "tokens, tokens) tensors or one (layers, batch, heads, tokens, tokens) "
                f"tensor. Got a tensor of shape {tuple(value.shape)}."
            )
        layers = list(value.unbind(0))
    elif isinstance(value, (tuple, list)):
        layers = list(value)
    else:
        raise TypeError(
            f"The '{name}' parameter of {owner} must be a sequence of tensors (one per "
            f"layer). Got {type(value).__name__}."
        )
    if not layers:
        raise ValueError(f"The '{name}' parameter of {owner} must hold at least one layer.")
    first = layers[0]
    for index, layer in enumerate(layers):
        if not isinstance(layer, Tensor) or layer.dim() != 4:
            got = tuple(layer.shape) if isinstance(layer, Tensor) else type(layer).__name__
            raise ValueError(
                f"The '{name}' parameter of {owner} must hold (batch, heads, tokens, tokens) "
                f"tensors. Got {got} for layer {index}."
            )
        if layer.shape[-1] != layer.shape[-2]:
            raise ValueError(
                f"The '{name}' parameter of {owner} must hold self-attention (query and key "
                f"over the same tokens). Got shape {tuple(layer.shape)} for layer {index} "
                "(cross-attention?)."
            )
        if layer.shape[0] != first.shape[0] or layer.shape[-1] != first.shape[-1]:
            raise ValueError(
                f"The '{name}' parameter of {owner} must hold layers over the same batch "
                f"and tokens. Layer 0 has shape {tuple(first.shape)}, layer {index} "
                f"{tuple(layer.shape)}."
            )
        if not layer.is_floating_point():
            raise TypeError(
                f"The '{name}' parameter of {owner} must hold floating point tensors. "
                f"Got {layer.dtype} for layer {index}."
            )
    return layers
