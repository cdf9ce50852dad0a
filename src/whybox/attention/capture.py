"""Capture attention weights from Hugging Face models, whatever their attention implementation.

transformers 5 loads most models with SDPA (or flash) attention, which never materialises
the attention weights: ``model(..., output_attentions=True)`` then returns an empty tuple.
:func:`capture_attention` runs the forward on a *private structural copy* of the model:

* every module object (and every config) is copied, while parameters, buffers and tensor
  attributes are shared (no weight is copied, the copy costs milliseconds);
* the copy is switched to eager attention (``set_attn_implementation("eager")``) and asked
  for its attention weights (``output_attentions``);
* the copy is discarded afterwards.

The caller's model is never written to: its attention setting, config, train / eval
modes, ``requires_grad`` flags and hooks stay exactly as they were -- also when the
forward raises -- and a forward of the same model on another thread is never affected
(nothing is switched on the shared object, no global function is patched). transformers
installs its output-recording hooks lazily and permanently on the first
``output_attentions=True`` call; on the copy, they go away with it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "capture_attention",
    "EncoderDecoderAttention",
    "AttentionCaptureError",
    "EagerTwin",
    "run_with_attention",
]


class AttentionCaptureError(RuntimeError):
    """The model's attention weights cannot be captured (the message says why)."""


class EncoderDecoderAttention(NamedTuple):
    """Attention weights of an encoder-decoder model (T5, BART, Marian, ...).

    Attributes
    ----------
    encoder : tuple of Tensor
        Encoder self-attention, one ``(batch, heads, source, source)`` tensor per layer.
    decoder : tuple of Tensor
        Decoder self-attention, one ``(batch, heads, target, target)`` tensor per layer.
    cross : tuple of Tensor
        Decoder-to-encoder attention, one ``(batch, heads, target, source)`` tensor per
        decoder layer.
    """

    encoder: tuple[Tensor, ...]
    decoder: tuple[Tensor, ...]
    cross: tuple[Tensor, ...]


#: what :func:`capture_attention` returns
Attention = tuple[Tensor, ...] | EncoderDecoderAttention


def capture_attention(model: nn.Module, **model_inputs: Any) -> Attention:
    """The attention weights of one forward of ``model`` on ``model_inputs``.

    Parameters
    ----------
    model : nn.Module
        A Hugging Face ``transformers`` model (encoder, decoder or encoder-decoder; any
        attention implementation: eager, SDPA, flash, flex), or an ``nn.Module`` that calls
        exactly one such model in its forward (a user wrapper returning logits).
        A ``torch.compile``'d module is captured through its original module.
    **model_inputs
        The model's keyword inputs, e.g. ``input_ids``, ``attention_mask`` (each
        ``(batch, tokens)``), ``decoder_input_ids``; a tokenizer's ``BatchEncoding`` can be
        passed as ``**encoding``.

    Returns
    -------
    tuple of Tensor or EncoderDecoderAttention
        For encoder-only and decoder-only models one tensor per layer, each
        ``(batch, heads, query, key)``; rows are the softmax weights of each query (padded
        keys get 0). Grouped-query attention is returned per query head (``heads`` is the
        number of query heads). For encoder-decoder models an
        :class:`EncoderDecoderAttention` named tuple ``(encoder, decoder, cross)``.
        The tensors are on the autograd graph when the caller's grad mode and the
        parameters' ``requires_grad`` make them so (wrap the call in ``torch.no_grad()``
        to save memory).

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module`` containing a Hugging Face model, or cannot be
        copied privately.
    AttentionCaptureError
        The model ran but returned no attention weights (its attention implementation
        cannot be switched to eager), or its Hugging Face model ran more than once.

    Notes
    -----
    The forward runs in the model's own mode: in train mode the returned weights are the
    ones after attention dropout (as the eager model returns them); call ``model.eval()``
    first for deterministic weights. The weights are those an eager model with the same
    parameters computes; the model's own (SDPA) outputs are not affected.

    Examples
    --------
    >>> encoding = tokenizer(["a short text", "another one"], padding=True, return_tensors="pt")
    >>> attentions = capture_attention(model, **encoding)
    >>> len(attentions), attentions[0].shape  # doctest: +SKIP
    (6, torch.Size([2, 12, 5, 5]))
    """
    return run_with_attention(model, (), model_inputs, owner="capture_attention").attention


# -- the run on a private copy -------------------------------------------------------------
@dataclass
class AttentionRun:
    """One forward of the private copy: what the model returned and its attention."""

    #: the model's own output (a ``ModelOutput`` for a Hugging Face model)
    output: Any
    #: the attention weights (see :func:`capture_attention`)
    attention: Attention


class EagerTwin:
    """A private eager copy of a model that reports its attention weights on every call.

    Built once (a structural copy sharing the model's tensors, switched to eager attention,
    with a recording hook on its Hugging Face model) and called once per chunk of rows.

    Parameters
    ----------
    model : nn.Module
        As for :func:`capture_attention`.
    owner : str
        The name used in error messages.
    track_gradients : bool
        Make the attention weights part of the autograd graph even when no parameter
        requires a gradient (the copy's input embeddings' output is made to require one),
        so a target can be differentiated with respect to them. The caller's tensors and
        parameters are never changed.
    """

    def __init__(self, model: Any, *, owner: str, track_gradients: bool = False) -> None:
        root = _unwrap(model, owner)
        if not _hf_models(root):
            raise TypeError(
                f"{owner} needs a Hugging Face transformers model (an nn.Module with a "
                "`config` and `set_attn_implementation`), or an nn.Module that calls one; "
                f"got {type(root).__name__}, which contains none."
            )
        self.owner = owner
        self.twin = _private_copy(root, owner)
        self.outermost = _hf_models(self.twin)
        _switch_to_eager(self.twin, self.outermost, owner)
        self._recorded: list[Any] = []
        for hf_model in self.outermost:
            hf_model.register_forward_hook(self._record)
            if track_gradients:
                _track_embeddings(hf_model)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._recorded.append(output)

    def __call__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> AttentionRun:
        """Run ``model(*args, **kwargs)`` on the copy; its output and attention weights."""
        call_kwargs = dict(kwargs)
        if _is_hf_model(self.twin):
            # the root is the Hugging Face model itself: ask for the weights in a ModelOutput
            call_kwargs.update(output_attentions=True, return_dict=True)
        self._recorded.clear()
        output = self.twin(*args, **call_kwargs)
        recorded, self._recorded = list(self._recorded), []
        if len(recorded) != 1:
            raise AttentionCaptureError(
                f"{self.owner} captures one run of a Hugging Face model; in this forward "
                f"{type(self.outermost[0]).__name__} ran {len(recorded)} times."
            )
        return AttentionRun(output, _attention_of(recorded[0], self.outermost[0], self.owner))


def run_with_attention(
    model: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    owner: str,
    track_gradients: bool = False,
) -> AttentionRun:
    """Run ``model(*args, **kwargs)`` once on a private eager copy (see :class:`EagerTwin`)."""
    return EagerTwin(model, owner=owner, track_gradients=track_gradients)(args, kwargs)


# -- helpers -------------------------------------------------------------------------------
def _unwrap(model: Any, owner: str) -> nn.Module:
    # the eager module behind torch.compile: the copy runs eagerly, which is what we need
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise TypeError(
            f"{owner} cannot switch the attention of a TorchScript module; pass the eager "
            "Hugging Face model before torch.jit.script / trace."
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{owner} needs an nn.Module (a Hugging Face transformers model); got "
            f"{type(model).__name__}. A plain function hides the model's attention modules."
        )
    return model


def _is_hf_model(module: nn.Module) -> bool:
    # duck-typed, so whybox never imports transformers
    return hasattr(module, "config") and callable(getattr(module, "set_attn_implementation", None))


def _hf_models(root: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face models in ``root`` (``root`` itself if it is one)."""
    if _is_hf_model(root):
        return [root]
    found: list[nn.Module] = []
    for child in root.children():
        found.extend(_hf_models(child))
    return found


def _shared_tensors(root: nn.Module) -> Iterator[Tensor]:
    for module in root.modules():
        yield from (t for t in module._parameters.values() if t is not None)
        yield from (t for t in module._buffers.values() if t is not None)
        yield from (v for v in vars(module).values() if isinstance(v, Tensor))


def _private_copy(root: nn.Module, owner: str) -> nn.Module:
    """A copy of every module and config of ``root`` that shares its tensors."""
    memo: dict[int, Any] = {id(t): t for t in _shared_tensors(root)}
    try:
        return copy.deepcopy(root, memo)
    except Exception as error:  # any object deepcopy cannot handle
        raise TypeError(
            f"{owner} runs a private copy of the model's modules (sharing its weights) so "
            f"that the model itself is never switched; {type(root).__name__} cannot be "
            f"copied: {type(error).__name__}: {error}"
        ) from error


def _configs(module: nn.Module) -> Iterator[Any]:
    """Every config of the Hugging Face models in ``module`` and their sub-configs."""
    seen: set[int] = set()
    pending = [m.config for m in module.modules() if _is_hf_model(m)]
    while pending:
        config = pending.pop()
        if config is None or id(config) in seen:
            continue
        seen.add(id(config))
        yield config
        for key in getattr(config, "sub_configs", {}) or {}:
            pending.append(getattr(config, key, None))


def _switch_to_eager(twin: nn.Module, outermost: list[nn.Module], owner: str) -> None:
    for hf_model in outermost:
        hf_model.set_attn_implementation("eager")
    for config in _configs(twin):
        try:
            # a wrapper calls its Hugging Face model without output_attentions=True
            config.output_attentions = True
        except ValueError as error:  # transformers refuses it for a non-eager attention
            raise AttentionCaptureError(
                f"{owner} could not switch {type(outermost[0]).__name__} to eager attention "
                f"(its attention implementation stays {config._attn_implementation!r}): {error}"
            ) from error


def _track_embeddings(hf_model: nn.Module) -> None:
    """Make the copy's input embeddings require a gradient, so the attention weights are on
    the graph even for a model whose parameters are all frozen."""
    try:
        embeddings = hf_model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return
    if not isinstance(embeddings, nn.Module):
        return

    def require_grad(module: nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, Tensor) and output.is_floating_point() and not output.requires_grad:
            return output.detach().requires_grad_(True)
        return output

    embeddings.register_forward_hook(require_grad)


def _weights(output: Any, key: str) -> tuple[Tensor, ...]:
    value = output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
    return tuple(value) if value else ()


def _attention_of(output: Any, hf_model: nn.Module, owner: str) -> Attention:
    name = type(hf_model).__name__
    if not isinstance(output, Mapping) and not hasattr(output, "attentions"):
        raise AttentionCaptureError(
            f"{owner} reads the attention weights from {name}'s ModelOutput, but it returned "
            f"a {type(output).__name__} (call it with return_dict=True)."
        )
    encoder = _weights(output, "encoder_attentions")
    if encoder:
        found: Attention = EncoderDecoderAttention(
            encoder, _weights(output, "decoder_attentions"), _weights(output, "cross_attentions")
        )
        tensors = [t for part in found for t in part]
    else:
        found = _weights(output, "attentions")
        tensors = list(found)
    if not tensors:
        raise AttentionCaptureError(
            f"{owner}: {name} returned no attention weights even with eager attention "
            f"(attention implementation {hf_model.config._attn_implementation!r}); its "
            "attention layers do not report their weights."
        )
    for tensor in tensors:
        if not isinstance(tensor, Tensor) or tensor.dim() != 4:
            raise AttentionCaptureError(
                f"{owner}: {name} returned attention weights that are not "
                "(batch, heads, query, key) tensors."
            )
    return found
