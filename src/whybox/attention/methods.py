"""Attention-based attribution methods in the registry.

``attention_rollout``, ``attention_flow`` and ``gradient_weighted_rollout`` explain a Hugging
Face transformer's token inputs by one query token's row of a ``(query, key)`` map: the
attribution of input token ``t`` is how much the chosen query (default position 0, the
``[CLS]`` / first token; ``"last"``: each example's last real token, for decoders) draws
on ``t`` through the layers. Like every method they run through
``whybox.explain(model, inputs, method=NAME, ...)``:

>>> encoding = tokenizer(texts, padding=True, return_tensors="pt")
>>> result = whybox.explain(model, dict(encoding), method="attention_rollout")
>>> result.attributions.shape  # (batch, tokens)

The model is called by keyword with a dict of inputs (``input_ids``, ``attention_mask``,
...), or positionally with a tensor plus ``forward_args``; its attention weights come from
:class:`~whybox.attention.capture.EagerTwin` (a private eager copy: the model itself
is never switched). Rows go through the model in chunks (``chunk_size``) by the one engine
(:func:`whybox.core.forward.evaluate`); chunking never changes the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.call import Call, prepare_call
from whybox.core.chunks import ChunkSize, counting
from whybox.core.forward import RowBatch, evaluate
from whybox.core.method import Bool, Check, Choice, IsCallable
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import fail
from whybox.methods.base import Method

from .capture import EagerTwin, EncoderDecoderAttention
from .flow import attention_flow
from .rollout import HEAD_FUSIONS, attention_rollout, gradient_weighted_rollout

__all__ = [
    "AttentionRollout",
    "AttentionFlow",
    "GradientWeightedRollout",
    "select_logits",
    "ATTENTION_METHODS",
]

#: the names this module registers
ATTENTION_METHODS = ("attention_rollout", "attention_flow", "gradient_weighted_rollout")


def select_logits(output: Any) -> Tensor:
    """The tensor to take targets from in a model's output.

    A tensor is returned as it is; a Hugging Face ``ModelOutput`` (or any mapping / object)
    gives its ``logits``, else its first tensor; a tuple or list its first element.

    Raises
    ------
    TypeError
        No tensor can be found (pass ``output_selector=``).
    """
    if isinstance(output, Tensor):
        return output
    logits = output.get("logits") if isinstance(output, Mapping) else None
    if logits is None:
        logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    items = list(output.values()) if isinstance(output, Mapping) else output
    if isinstance(items, (tuple, list)):
        for item in items:
            if isinstance(item, Tensor):
                return item
    raise TypeError(
        f"Cannot find the tensor to explain in a model output of type {type(output).__name__}; "
        "pass output_selector=lambda output: ... returning a (batch, ...) tensor."
    )


def _check_query(owner: str, name: str, value: Any) -> None:
    if isinstance(value, str) and value == "last":
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(owner, name, "an int (a token position) or 'last'", value, type_error=True)


class _Recorder:
    """The attention of the chunk being evaluated (a tap for the engine's gradients)."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.mask: Tensor | None = None


class _AttentionMethod(Method):
    """What the attention methods share: the query, the capture, the chunk loop."""

    parameters = {"query": Check(_check_query)}
    #: whether the target's gradient with respect to the attention is needed
    uses_gradients = False

    def __init__(self, model: Any) -> None:
        super().__init__(model)

    # -- the maths of one chunk (subclasses) ------------------------------------------------
    def _maps(
        self,
        attentions: list[Tensor],
        gradients: list[Tensor] | None,
        queries: Tensor,
        mask: Tensor | None,
        options: dict[str, Any],
    ) -> Tensor:
        """``(rows, tokens)`` attributions of one chunk's rows for their ``queries``."""
        raise NotImplementedError

    def _select(self, output: Any) -> Tensor:
        return select_logits(output)

    # -- the shared run ------------------------------------------------------------------------
    def _explain(
        self,
        inputs: Any,
        *,
        target: Any,
        forward_args: Any,
        query: int | str,
        chunk_size: ChunkSize,
        show_progress: bool,
        options: dict[str, Any],
    ) -> Explanation:
        recorder = _Recorder()
        owner, grad = self.owner, self.uses_gradients
        # one private eager copy for every chunk of this call (the model is never switched)
        twin = EagerTwin(self.model, owner=owner, track_gradients=grad)

        def forward(*args: Any, **kwargs: Any) -> Tensor:
            run = twin(args, kwargs)
            if isinstance(run.attention, EncoderDecoderAttention):
                raise TypeError(
                    f"{owner} explains encoder-only or decoder-only models (one self-attention "
                    "stack); for an encoder-decoder model call capture_attention and "
                    "attention_rollout on its .encoder / .decoder weights."
                )
            recorder.tensors = list(run.attention)
            recorder.mask = kwargs.get("attention_mask")
            if grad:
                return self._select(run.output)
            rows = recorder.tensors[0].shape[0]  # no target: one placeholder value per row
            return torch.zeros(rows, device=recorder.tensors[0].device)

        call = prepare_call(
            owner,
            forward,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=False,  # token ids
        )
        tokens = _tokens(call)
        _query_rows(query, None, 0, tokens, owner)  # a bad position fails before any forward
        chunk_rows = counting(
            call.chunk_rows,
            auto=call.chunk_auto,
            tensors=[self._row_size(tokens, call.tensors[0].device)],
            owner=owner,
        )
        parts: list[Tensor] = []

        def build(start: int, stop: int) -> RowBatch:
            index = torch.arange(start, stop, device=call.tensors[0].device)
            return RowBatch(tuple(t[start:stop] for t in call.tensors), index)

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            attentions = [t.detach() for t in recorder.tensors]
            mask = recorder.mask
            queries = _query_rows(query, mask, stop - start, attentions[0].shape[-1], owner)
            gradients = list(grads) if grads is not None else None
            parts.append(self._maps(attentions, gradients, queries, mask, options))
            recorder.tensors, recorder.mask = [], None

        @contextmanager
        def tap() -> Iterator[_Recorder]:
            yield recorder

        evaluate(
            call.evaluator,
            n_items=call.batch_size,
            build=build,
            consume=consume,
            chunk_rows=chunk_rows,
            auto=call.chunk_auto,
            grad=grad,
            tap=tap if grad else None,
            progress=call.progress,
            description=owner,
        )
        attributions = torch.cat(parts) if len(parts) > 1 else parts[0]
        parameters = dict(options, query=query, chunk_size=chunk_rows)
        return self._explanation(call, attributions, parameters)

    def _row_size(self, tokens: int, device: torch.device) -> Tensor:
        """A stand-in tensor with the bytes of one row's attention (sizes automatic chunks)."""
        config = getattr(_unwrapped(self.model), "config", None)
        layers = getattr(config, "num_hidden_layers", None) or 12
        heads = getattr(config, "num_attention_heads", None) or 12
        per_row = layers * heads * tokens * tokens * (2 if self.uses_gradients else 1)
        return torch.empty((0, max(per_row, 1)), device=device)

    def _explanation(self, call: Call, attributions: Tensor, parameters: dict) -> Explanation:
        return Explanation(
            attributions=attributions,
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=parameters,
        )

    def _empty_result(self, arguments: Mapping[str, Any]) -> Explanation:
        """``(0, tokens)`` attributions for an empty batch, in the model's float dtype."""
        call = prepare_call(
            self.owner,
            self.model,
            arguments["inputs"],
            forward_args=arguments.get("forward_args"),
            require_float=False,
        )
        dtype = torch.get_default_dtype()
        model = _unwrapped(self.model)
        if isinstance(model, nn.Module):
            dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), dtype)
        device = call.tensors[0].device
        zeros = torch.zeros((0, _tokens(call)), dtype=dtype, device=device)
        return self._explanation(call, zeros, {"query": arguments.get("query", 0)})


@register("attention_rollout")
class AttentionRollout(_AttentionMethod):
    """Attention rollout (Abnar & Zuidema 2020) of one query token over the input tokens.

    The attribution of token ``t`` is ``rollout[query, t]`` (see
    :func:`~whybox.attention.rollout.attention_rollout`): it does not depend on a target.
    """

    parameters = {"head_fusion": Choice(HEAD_FUSIONS), "add_residual": Bool()}

    def attribute(
        self,
        inputs: Any,
        *,
        forward_args: Any = None,
        query: int | str = 0,
        head_fusion: str = "mean",
        add_residual: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Rollout attributions of the ``query`` token.

        Parameters
        ----------
        inputs : Tensor or dict of Tensor
            ``input_ids`` ``(N, T)`` or the model's keyword inputs (``input_ids``,
            ``attention_mask``, ...; a tokenizer's ``BatchEncoding`` works), each ``(N, T)``.
        forward_args : dict, optional
            Further keyword inputs of the model (e.g. ``{"attention_mask": mask}`` when
            ``inputs`` is a tensor).
        query : int or "last"
            The token whose row of the rollout is returned: a position (negative counts
            from the end; default 0, ``[CLS]``), or ``"last"``: each example's last real
            token by its ``attention_mask``.
        head_fusion : {"mean", "max", "min"}
            How each layer's heads are combined.
        add_residual : bool
            Model the residual connection by adding the identity to each layer.
        chunk_size : int or "auto"
            Examples per forward.
        show_progress : bool
            Show a progress bar over chunks.

        Returns
        -------
        Explanation
            ``attributions`` ``(N, T)``: non-negative, each row sums to 1 (padded tokens
            get 0); ``extras`` is empty.
        """
        return self._explain(
            inputs,
            target=None,
            forward_args=forward_args,
            query=query,
            chunk_size=chunk_size,
            show_progress=show_progress,
            options={"head_fusion": head_fusion, "add_residual": add_residual},
        )

    def _maps(self, attentions, gradients, queries, mask, options):
        rollout = attention_rollout(attentions, **options)
        return _rows_of(rollout, queries)


@register("attention_flow")
class AttentionFlow(_AttentionMethod):
    """Attention flow (Abnar & Zuidema 2020): the max flow from the query token's last-layer
    node to each input token through the attention graph (see
    :func:`~whybox.attention.flow.attention_flow`). One max-flow problem per token and
    example: meant for short inputs."""

    parameters = {"head_fusion": Choice(HEAD_FUSIONS), "add_residual": Bool()}

    def attribute(
        self,
        inputs: Any,
        *,
        forward_args: Any = None,
        query: int | str = 0,
        head_fusion: str = "mean",
        add_residual: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Attention-flow attributions of the ``query`` token.

        Parameters
        ----------
        inputs, forward_args, query, head_fusion, add_residual, chunk_size, show_progress
            As for :meth:`AttentionRollout.attribute`.

        Returns
        -------
        Explanation
            ``attributions`` ``(N, T)``: flows in ``[0, 1]`` (a row need not sum to 1;
            padded tokens get 0).
        """
        return self._explain(
            inputs,
            target=None,
            forward_args=forward_args,
            query=query,
            chunk_size=chunk_size,
            show_progress=show_progress,
            options={"head_fusion": head_fusion, "add_residual": add_residual},
        )

    def _maps(self, attentions, gradients, queries, mask, options):
        rows = []
        for i, q in enumerate(queries.tolist()):
            flows = attention_flow(
                [a[i : i + 1] for a in attentions],
                queries=[q],
                attention_mask=None if mask is None else mask[i : i + 1],
                **options,
            )
            rows.append(flows[:, 0])
        return torch.cat(rows)


@register("gradient_weighted_rollout")
class GradientWeightedRollout(_AttentionMethod):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf 2021) of the target.

    ``R = I; R = R + mean_heads((dy/dA * A)^+) @ R`` over the layers; the attribution of
    token ``t`` is ``R[query, t]`` (see
    :func:`~whybox.attention.rollout.gradient_weighted_rollout`).

    Parameters
    ----------
    model : nn.Module
        A Hugging Face model (or a module calling one).
    output_selector : callable, optional
        ``f(model_output) -> Tensor`` giving the ``(N, ...)`` tensor the target indexes;
        default :func:`select_logits` (a ``ModelOutput``'s ``logits``).
    """

    parameters = {"output_selector": IsCallable()}
    uses_gradients = True

    def __init__(self, model: Any, *, output_selector: Callable[[Any], Tensor] | None = None):
        super().__init__(model)
        self.output_selector = output_selector

    def _select(self, output: Any) -> Tensor:
        if self.output_selector is None:
            return select_logits(output)
        return self.output_selector(output)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        query: int | str = 0,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Gradient-weighted rollout attributions of the ``query`` token for ``target``.

        Parameters
        ----------
        inputs, forward_args, query, chunk_size, show_progress
            As for :meth:`AttentionRollout.attribute`.
        target : int, list, tuple, Tensor or callable
            Which output to explain (see :mod:`whybox.core.targets`), e.g. the class index.

        Returns
        -------
        Explanation
            ``attributions`` ``(N, T)``: non-negative relevance; the query token's own
            entry includes 1 (its residual stream); padded tokens get 0.
        """
        return self._explain(
            inputs,
            target=target,
            forward_args=forward_args,
            query=query,
            chunk_size=chunk_size,
            show_progress=show_progress,
            options={},
        )

    def _maps(self, attentions, gradients, queries, mask, options):
        relevance = gradient_weighted_rollout(attentions, gradients)
        return _rows_of(relevance, queries)


# -- helpers -----------------------------------------------------------------------------------
def _unwrapped(model: Any) -> Any:
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def _tokens(call: Call) -> int:
    """The sequence length: of ``input_ids`` (or ``inputs_embeds``), else the first input."""
    first = call.tensors[0]
    if call.inputs.structure.kind == "dict":
        restored = call.inputs.restore(call.tensors)
        for key in ("input_ids", "inputs_embeds"):
            if isinstance(restored.get(key), Tensor):
                first = restored[key]
                break
    if first.dim() < 2:
        fail(call.owner, "inputs", "token inputs of shape (batch, tokens, ...)", first)
    return first.shape[1]


def _query_rows(
    query: int | str, mask: Tensor | None, rows: int, tokens: int, owner: str
) -> Tensor:
    """The query position of each row, ``(rows,)`` long."""
    if isinstance(query, str):  # "last": the last real token of each row
        if mask is None:
            return torch.full((rows,), tokens - 1, dtype=torch.long)
        positions = torch.arange(tokens, device=mask.device)
        return ((mask != 0) * positions).amax(dim=1).long().cpu()
    if not -tokens <= query < tokens:
        fail(owner, "query", f"a token position in [-{tokens}, {tokens})", query)
    return torch.full((rows,), query % tokens, dtype=torch.long)


def _rows_of(maps: Tensor, queries: Tensor) -> Tensor:
    """``maps[i, queries[i]]`` for every row: ``(rows, tokens)``."""
    index = queries.to(maps.device).view(-1, 1, 1).expand(-1, 1, maps.shape[-1])
    return maps.gather(1, index).squeeze(1)
