"""Baselines for text: reference token sequences, zero embeddings, several baselines averaged,
and baselines on which the model is equally unsure of every class.

The flows these serve (seeds 002-004): a pad-token baseline that keeps ``[CLS]`` / ``[SEP]``
in place, reference token sequences, attributions averaged over a set of neutral inputs,
and a baseline "equally uncertain for all classes" (by gradient descent on embeddings, or
by choosing the filler token whose sequence is the most ambiguous).

Why special tokens stay: ``[CLS]`` / ``<s>`` / ``</s>`` carry structure, not content; a
baseline without them is a different kind of input, and with them left in place their
attribution is exactly zero, so every score lands on the text's own tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_int, check_real, fail

from .outputs import OutputSelector, select_output

__all__ = [
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
]

#: named filler tokens of :func:`tokenizer_baseline`
BASELINE_TOKENS = ("pad", "unk", "mask")


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


# -- tokenizer-aware token baselines --------------------------------------------------------
def structural_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Ids of the tokens that frame a sequence: ``[CLS]``, ``[SEP]``, ``<s>``, ``</s>``, pad.

    ``[UNK]`` and ``[MASK]`` are not structural: an unknown word in the text is content and
    is explained like any other token.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer

    Returns
    -------
    tuple of int
    """
    names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id")
    ids = []
    for name in names:
        value = getattr(tokenizer, name, None)
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return tuple(ids)


def special_positions(
    tokenizer: Any, input_ids: Tensor, *, attention_mask: Tensor | None = None
) -> Tensor:
    """Positions a baseline keeps: structural special tokens and padding.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer
    input_ids : ``(N, T)`` long tensor
    attention_mask : ``(N, T)``, optional; zeros (padding) are kept too

    Returns
    -------
    Tensor
        ``(N, T)`` bool tensor, ``True`` where the baseline keeps the input's token.
    """
    _check_ids("special_positions", input_ids)
    keep = torch.zeros_like(input_ids, dtype=torch.bool)
    for token in structural_token_ids(tokenizer):
        keep |= input_ids == token
    if attention_mask is not None:
        keep |= attention_mask.to(input_ids.device) == 0
    return keep


def tokenizer_baseline(
    tokenizer: Any,
    input_ids: Tensor,
    *,
    token: str | int = "pad",
    attention_mask: Tensor | None = None,
    keep: Tensor | None = None,
) -> Tensor:
    """Baseline ids for a Hugging Face tokenizer: content replaced, special tokens in place.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer
    input_ids : ``(N, T)`` long tensor
    token : ``"pad"``, ``"unk"``, ``"mask"``, a token string (``"."``, ``"<bos>"``) or an id
        The filler of every content position.
    attention_mask : ``(N, T)``, optional
        Padding (zeros) is kept.
    keep : ``(N, T)`` bool tensor, optional
        Positions to keep; default :func:`special_positions`.

    Returns
    -------
    Tensor
        ``(N, T)`` long tensor on ``input_ids``' device.
    """
    owner = "tokenizer_baseline"
    _check_ids(owner, input_ids)
    filler = filler_id(tokenizer, token, owner=owner)
    if keep is None:
        keep = special_positions(tokenizer, input_ids, attention_mask=attention_mask)
    elif keep.shape != input_ids.shape or keep.dtype != torch.bool:
        fail(owner, "keep", f"a bool tensor of shape {tuple(input_ids.shape)}", keep)
    return torch.where(keep.to(input_ids.device), input_ids, torch.full_like(input_ids, filler))


def pad_baseline(
    tokenizer: Any, input_ids: Tensor, *, attention_mask: Tensor | None = None
) -> Tensor:
    """:func:`tokenizer_baseline` with the pad token (seed 002); ``(N, T)`` long tensor."""
    return tokenizer_baseline(tokenizer, input_ids, token="pad", attention_mask=attention_mask)


def unk_baseline(
    tokenizer: Any, input_ids: Tensor, *, attention_mask: Tensor | None = None
) -> Tensor:
    """:func:`tokenizer_baseline` with the unknown token; ``(N, T)`` long tensor."""
    return tokenizer_baseline(tokenizer, input_ids, token="unk", attention_mask=attention_mask)


def mask_baseline(
    tokenizer: Any, input_ids: Tensor, *, attention_mask: Tensor | None = None
) -> Tensor:
    """:func:`tokenizer_baseline` with the mask token (masked-LM models); ``(N, T)`` long tensor."""
    return tokenizer_baseline(tokenizer, input_ids, token="mask", attention_mask=attention_mask)


def filler_id(tokenizer: Any, token: str | int, *, owner: str = "tokenizer_baseline") -> int:
    """The id of a filler given by name (``"pad"``, ``"unk"``, ``"mask"``), token or id."""
    if isinstance(token, bool):
        fail(owner, "token", "'pad', 'unk', 'mask', a token string or a token id", token)
    if isinstance(token, int):
        return token
    if not isinstance(token, str):
        fail(
            owner,
            "token",
            "'pad', 'unk', 'mask', a token string or a token id",
            token,
            type_error=True,
        )
    if token in BASELINE_TOKENS:
        value = getattr(tokenizer, f"{token}_token_id", None)
        if not isinstance(value, int):
            fail(owner, "token", f"a token the tokenizer has (it has no {token} token)", token)
        return value
    value = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(value, int) or (
        value == unk and token != getattr(tokenizer, "unk_token", None)
    ):
        fail(owner, "token", "'pad', 'unk', 'mask' or a token of the tokenizer's vocabulary", token)
    return value


def zero_embedding_baseline(embeddings: Tensor, keep: Tensor | None = None) -> Tensor:
    """Zero embeddings at content positions, the input's own embeddings where ``keep``.

    Parameters
    ----------
    embeddings : ``(N, T, D)`` float tensor
        The input's embeddings (e.g. ``model.get_input_embeddings()(input_ids)``).
    keep : ``(N, T)`` bool tensor, optional
        Positions left as they are (special tokens, padding; see :func:`special_positions`).

    Returns
    -------
    Tensor
        ``(N, T, D)``, detached.
    """
    owner = "zero_embedding_baseline"
    if (
        not isinstance(embeddings, Tensor)
        or embeddings.dim() != 3
        or not embeddings.is_floating_point()
    ):
        fail(owner, "embeddings", "a float tensor of shape (N, T, D)", embeddings)
    embeddings = embeddings.detach()
    if keep is None:
        return torch.zeros_like(embeddings)
    if keep.shape != embeddings.shape[:2]:
        fail(owner, "keep", f"a bool tensor of shape {tuple(embeddings.shape[:2])}", keep)
    return torch.where(keep.to(embeddings.device).unsqueeze(-1), embeddings, 0.0)


# -- several baselines -----------------------------------------------------------------------
def average_over_baselines(
    method: Any, inputs: Any, baselines: Sequence[Any], **options: Any
) -> Any:
    """Attributions averaged over several baselines (e.g. a set of neutral sentences).

    Each baseline is used with ``method.attribute(inputs, baselines=b, **options)``; by
    linearity of completeness, the averaged attributions sum to ``f(x) - mean_b f(b)``.

    Parameters
    ----------
    method : a native method (``whybox.methods.IntegratedGradients(...)``)
    inputs : as ``method.attribute`` takes them, each ``(N, ...)``
    baselines : sequence of baselines, each as ``method.attribute`` takes it
    **options : further call options of ``method.attribute``

    Returns
    -------
    Explanation
        The native :class:`~whybox.core.result.Explanation` with averaged attributions and
        deltas; ``parameters["n_baselines"]`` records how many.
    """
    if not baselines:
        fail("average_over_baselines", "baselines", "a non-empty sequence of baselines", baselines)
    results = [method.attribute(inputs, baselines=b, **options) for b in baselines]
    first = results[0]
    first.attributions = mean_of([r.attributions for r in results])
    if first.delta is not None:
        first.delta = torch.stack([r.delta for r in results]).mean(0)
    first.parameters = dict(first.parameters, n_baselines=len(baselines))
    return first


def mean_of(values: list) -> Any:
    """Element-wise mean of equally structured tensors / tuples / dicts of tensors."""
    if isinstance(values[0], Tensor):
        return torch.stack(values).mean(0)
    if isinstance(values[0], dict):
        return {k: mean_of([v[k] for v in values]) for k in values[0]}
    return type(values[0])(mean_of(list(parts)) for parts in zip(*values))


# -- equally uncertain baselines (seed 003) ---------------------------------------------------
def uncertain_baseline(
    forward_from_embeddings: Callable[[Tensor], Tensor],
    shape: Sequence[int],
    *,
    init: Tensor | None = None,
    fixed: Tensor | None = None,
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
    fixed : bool tensor broadcastable to ``shape``, optional
        Elements held at ``init`` (e.g. ``keep[..., None]`` for special tokens).
    steps, lr : Adam iterations and learning rate
    seed : seed of the initial noise (``None``: the global generator)

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
        (grad,) = torch.autograd.grad(loss, baseline)
        if fixed is not None:
            # a gradient that is always zero keeps Adam's step at exactly zero there
            grad = grad.masked_fill(fixed.to(grad.device), 0.0)
        baseline.grad = grad
        optimizer.step()
    return baseline.detach()


def uncertain_embedding_baseline(
    model: Any,
    tokenizer: Any,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
    keep: Tensor | None = None,
    steps: int = 100,
    lr: float = 0.05,
    output_selector: OutputSelector = None,
) -> Tensor:
    """Input embeddings on which a Hugging Face classifier is equally unsure of every class.

    Starts from the pad baseline's embeddings and moves the content positions by
    :func:`uncertain_baseline`; special tokens and padding keep their embeddings.

    Parameters
    ----------
    model : a Hugging Face model (``get_input_embeddings()``, ``inputs_embeds=``)
    tokenizer : its tokenizer
    input_ids : ``(N, T)`` long tensor
    attention_mask : ``(N, T)``, optional
    keep : ``(N, T)`` bool tensor, optional; default :func:`special_positions`
    steps, lr : Adam iterations and learning rate
    output_selector : see :func:`whybox.text.outputs.select_output`

    Returns
    -------
    Tensor
        ``(N, T, D)`` embeddings, detached, to use as ``inputs_embeds`` baselines.
    """
    _check_ids("uncertain_embedding_baseline", input_ids)
    if keep is None:
        keep = special_positions(tokenizer, input_ids, attention_mask=attention_mask)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        start = embed(tokenizer_baseline(tokenizer, input_ids, keep=keep))
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}

    def forward(embeddings: Tensor) -> Tensor:
        return select_output(model(inputs_embeds=embeddings, **kwargs), output_selector)

    return uncertain_baseline(
        forward, tuple(start.shape), init=start, fixed=keep.unsqueeze(-1), steps=steps, lr=lr
    )


def uncertain_token_baseline(
    model: Any,
    tokenizer: Any,
    input_ids: Tensor,
    *,
    attention_mask: Tensor | None = None,
    keep: Tensor | None = None,
    candidates: Sequence[str | int] | None = None,
    output_selector: OutputSelector = None,
) -> Tensor:
    """Baseline ids filled with the candidate token on which the model is most unsure.

    Seed 003's recipe: repeat one token whose sequence leaves the class probabilities as
    close to uniform as possible (the highest entropy), per example.

    Parameters
    ----------
    model : a Hugging Face classifier (or any model of ``(input_ids, attention_mask=)``)
    tokenizer : its tokenizer
    input_ids : ``(N, T)`` long tensor
    attention_mask : ``(N, T)``, optional
    keep : ``(N, T)`` bool tensor, optional; default :func:`special_positions`
    candidates : filler tokens to try (names, tokens or ids); default pad, unk, mask and
        common neutral tokens (``.``, ``,``, ``the``, ``a``) the vocabulary has
    output_selector : see :func:`whybox.text.outputs.select_output`

    Returns
    -------
    Tensor
        ``(N, T)`` long tensor.
    """
    owner = "uncertain_token_baseline"
    _check_ids(owner, input_ids)
    if keep is None:
        keep = special_positions(tokenizer, input_ids, attention_mask=attention_mask)
    ids = (
        [filler_id(tokenizer, c, owner=owner) for c in candidates]
        if candidates
        else _neutral_ids(tokenizer)
    )
    if not ids:
        fail(owner, "candidates", "at least one token the tokenizer has", candidates)
    options = [tokenizer_baseline(tokenizer, input_ids, token=i, keep=keep) for i in ids]
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    entropies = []
    with torch.no_grad():
        for option in options:
            log_p = torch.log_softmax(select_output(model(option, **kwargs), output_selector), -1)
            entropies.append(-(log_p.exp() * log_p).sum(-1))
    best = torch.stack(entropies).argmax(0)  # (N,): the most uncertain candidate per example
    stacked = torch.stack(options)  # (K, N, T)
    return stacked[best, torch.arange(input_ids.shape[0], device=best.device)]


def _neutral_ids(tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for name in BASELINE_TOKENS:
        value = getattr(tokenizer, f"{name}_token_id", None)
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    for word in (".", ",", " the", " a"):
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


def _check_ids(owner: str, input_ids: Any) -> None:
    if not isinstance(input_ids, Tensor) or input_ids.is_floating_point() or input_ids.dim() != 2:
        fail(owner, "input_ids", "an integer tensor of token ids of shape (N, T)", input_ids)
