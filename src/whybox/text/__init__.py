"""Text helpers: token baselines, several baselines, a maximally uncertain baseline, and
wrappers for text models whose forward returns more than logits.

The flows these serve (seeds 002-004): pad-token baselines that keep [CLS]/[SEP], reference
token sequences, averaging attributions over a set of neutral sentences, and a baseline that
is equally uncertain for every class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_int, check_real, fail

__all__ = [
    "token_baseline",
    "logits_of",
    "average_over_baselines",
    "uncertain_baseline",
]


def token_baseline(
    input_ids: Tensor,
    reference_token_id: int,
    *,
    keep_token_ids: Sequence[int] = (),
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Baseline ids: every token replaced by ``reference_token_id`` except kept ones.

    Parameters
    ----------
    input_ids : ``(N, T)`` long tensor
    reference_token_id : id of the neutral token (``[PAD]``, ``<unk>``, ...)
    keep_token_ids : ids left in place (e.g. ``[CLS]``, ``[SEP]``), as in seed 002
    attention_mask : ``(N, T)``; positions with 0 (padding) are left in place too

    Returns
    -------
    Tensor
        ``(N, T)`` long tensor.
    """
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point():
        fail("token_baseline", "input_ids", "an integer tensor of token ids", input_ids)
    keep = torch.zeros_like(input_ids, dtype=torch.bool)
    for token in keep_token_ids:
        keep |= input_ids == int(token)
    if attention_mask is not None:
        keep |= attention_mask == 0
    return torch.where(keep, input_ids, torch.full_like(input_ids, int(reference_token_id)))


def logits_of(
    model: Callable[..., Any],
    *,
    index: int | str = 0,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Callable[..., Tensor]:
    """Wrap a model whose forward returns a tuple / dict / ``ModelOutput`` (AWD-LSTM returns
    ``(logits, hidden_states)``; Hugging Face returns ``.logits``) so it returns a tensor,
    optionally transformed (e.g. ``torch.softmax(x, -1)``)."""

    def forward(*args: Any, **kwargs: Any) -> Tensor:
        output = model(*args, **kwargs)
        if isinstance(index, str):
            value = output[index] if isinstance(output, dict) else getattr(output, index)
        elif isinstance(output, Tensor):
            value = output
        else:
            value = output[index]
        return transform(value) if transform is not None else value

    return forward


def average_over_baselines(
    method: Any, inputs: Any, baselines: Sequence[Any], **options: Any
) -> Any:
    """Attributions averaged over several baselines (e.g. a set of neutral sentences).

    Each baseline is used with ``method.attribute(inputs, baselines=b, **options)``; by
    linearity of completeness, the averaged attributions sum to ``f(x) - mean_b f(b)``.
    Returns the native :class:`~whybox.core.result.Explanation` with averaged attributions
    and deltas.
    """
    if not baselines:
        fail("average_over_baselines", "baselines", "a non-empty sequence of baselines", baselines)
    results = [method.attribute(inputs, baselines=b, **options) for b in baselines]
    first = results[0]

    def mean(values: list) -> Any:
        if isinstance(values[0], Tensor):
            return torch.stack(values).mean(0)
        if isinstance(values[0], dict):
            return {k: mean([v[k] for v in values]) for k in values[0]}
        return type(values[0])(mean(list(parts)) for parts in zip(*values))

    first.attributions = mean([r.attributions for r in results])
    if first.delta is not None:
        first.delta = torch.stack([r.delta for r in results]).mean(0)
    first.parameters = dict(first.parameters, n_baselines=len(baselines))
    return first


def uncertain_baseline(
    forward_from_embeddings: Callable[[Tensor], Tensor],
    shape: Sequence[int],
    *,
    init: Tensor | None = None,
    steps: int = 200,
    lr: float = 0.05,
    seed: int | None = 0,
) -> Tensor:
    """An input (e.g. an embedding sequence) on which the model is equally unsure of every
    class: minimises the KL divergence of ``softmax(f(b))`` from uniform by gradient descent.

    Parameters
    ----------
    forward_from_embeddings : maps a float tensor of ``shape`` to logits ``(N, n_classes)``
    shape : shape of the baseline, e.g. ``(1, T, D)``
    init : starting point (default: small Gaussian noise)

    Returns
    -------
    Tensor
        The baseline, detached, of ``shape``.
    """
    check_int("uncertain_baseline", "steps", steps, minimum=1)
    check_real("uncertain_baseline", "lr", lr, minimum=0.0, strict_minimum=True)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    start = (
        init.detach().clone()
        if init is not None
        else 0.01 * torch.randn(tuple(shape), generator=generator)
    )
    baseline = start.requires_grad_(True)
    optimizer = torch.optim.Adam([baseline], lr=lr)
    for _ in range(steps):
        log_probs = torch.log_softmax(forward_from_embeddings(baseline), dim=-1)
        # KL(uniform || p) up to a constant: -mean(log p)
        loss = -log_probs.mean()
        # autograd.grad, not backward(): the model's parameters must not collect gradients
        (baseline.grad,) = torch.autograd.grad(loss, baseline)
        optimizer.step()
    return baseline.detach()
