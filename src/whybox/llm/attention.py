"""Attention attribution of generated text, for long prompts, in bounded memory.

For each target token ``y_t`` the attribution over the prompt is read from the attention
of the position that predicts it (``P - 1 + t`` in the teacher-forced sequence
``x + y[:-1]``), all from ONE forward of that sequence:

* ``"attention"`` -- one layer's attention weights (default the last), heads fused
  (mean, max or min);
* ``"rollout"`` -- attention rollout (Abnar & Zuidema 2020) through all layers, as
  :func:`whybox.attention.attention_rollout` computes it (heads fused, identity added for
  the residual, rows renormalised), for the target rows only;
* ``"gradient_attention"`` -- the last layer's attention weighted by its gradient,
  ``mean_heads((d value_t / d A * A)^+)`` (Chefer et al. 2021's layer relevance), one
  backward pass for all target tokens: the last layer's attention row of position
  ``P - 1 + t`` reaches no other target's logits, so the gradient of the sum of the
  targets' values with respect to that row is exactly target ``t``'s.

How the weights are captured. transformers 5 runs SDPA attention, which never forms the
weights, and an eager model forms every layer's ``(heads, L, L)``. As
:func:`whybox.attention.capture_attention` does, the forward runs on a private structural
copy of the model (:func:`whybox.attention.capture._private_copy`: modules and configs
copied, weights shared; the caller's model is never switched). The copy's attention
implementation is a registered function that computes each layer's output with SDPA and
forms only the weight rows this method needs, in blocks of ``chunk_size`` query rows.

Memory (``L = P + T - 1`` tokens, ``H`` heads, ``B = chunk_size``), besides the model's
own SDPA forward:

* ``"attention"``: ``H x B x L`` for a block of weights and ``T x L`` per layer kept;
* ``"rollout"``: every layer's queries and keys are kept (``L x (H + H_kv) x d`` per
  layer, about a KV cache) and the rollout is propagated from the last layer down as a
  ``(T, L)`` matrix, forming each lower layer's weights in blocks of ``B`` query rows
  (``H x B x L``): never an ``(L, L)`` matrix;
* ``"gradient_attention"``: the last layer's target rows ``H x T x L`` with their graph,
  and the graph of one forward for one backward pass.

The weights are ``softmax(q k^T * scaling + mask)`` with the layer's own (RoPE-rotated)
queries and keys, scaling and mask, as the eager attention computes them; attention logit
soft-capping or attention sinks (a few models) are not modelled, and attention dropout is
not applied (call ``model.eval()``).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from whybox.attention.capture import (
    AttentionCaptureError,
    _hf_models,
    _private_copy,
    _track_embeddings,
    _unwrap,
)
from whybox.attention.rollout import HEAD_FUSIONS
from whybox.core.chunks import ChunkSize, auto_chunk_rows, is_auto
from whybox.core.validation import check_bool, check_choice, check_int, fail

from .gradient import TokenLogProbs, token_attributions
from .inputs import TextTemplateInput, TextTokenInput
from .result import LLMAttributionResult
from .targets import contrast_tokens, target_tokens
from .tokens import pretty_tokens, template_token_features

__all__ = ["LLMAttention", "ATTENTION_METHODS", "AttentionCounts", "IMPLEMENTATION"]

#: the attention attributions :class:`LLMAttention` computes
ATTENTION_METHODS = ("attention", "rollout", "gradient_attention")

#: the name of whybox's attention function in transformers' ``AttentionInterface``
IMPLEMENTATION = "whybox_attention_rows"

#: the recorder of the forward running in this thread / task (None: plain SDPA)
_ACTIVE: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "whybox_llm_attention", default=None
)
_REGISTERED = False


@dataclass
class AttentionCounts:
    """What one :meth:`LLMAttention.attribute` call formed (the memory bound is checked
    on these).

    Attributes
    ----------
    forwards : int
        Model forwards (one).
    layers : int
        Attention layers seen in the forward.
    max_rows : int
        The most query rows of attention weights formed at once (``<= chunk_size``; the
        ``T`` target rows of the last layer for ``"gradient_attention"``).
    max_elements : int
        The most weights formed at once (``heads x rows x keys``).
    """

    forwards: int = 0
    layers: int = 0
    max_rows: int = 0
    max_elements: int = 0

    def block(self, weights: Tensor) -> None:
        """Count one ``(heads, rows, keys)`` block of weights."""
        self.max_rows = max(self.max_rows, int(weights.shape[-2]))
        self.max_elements = max(self.max_elements, int(weights.numel()))


# -- the weights of some query rows ----------------------------------------------------------
@dataclass
class _Layer:
    """What one layer's weights are formed from (batch 1)."""

    query: Tensor  # (H, Lq, d)
    key: Tensor  # (H_kv, Lk, d)
    scaling: float
    mask: Tensor | None  # (1 or H, Lq, Lk) bool (True: attend) or float (added); None: causal
    bias: Tensor | None  # (1 or H, Lq, Lk) added position bias, or None

    @property
    def heads(self) -> int:
        return int(self.query.shape[0])

    def keys(self) -> Tensor:
        """Keys repeated per query head (grouped-query attention): ``(H, Lk, d)``."""
        repeat = self.heads // int(self.key.shape[0])
        return self.key if repeat == 1 else self.key.repeat_interleave(repeat, dim=0)

    def weights(self, rows: Tensor, keys: Tensor | None = None) -> Tensor:
        """Softmax weights of the query ``rows`` (positions ``(B,)``): ``(H, B, Lk)`` float32."""
        keys = self.keys() if keys is None else keys
        q = self.query[:, rows].float()
        scores = (q @ keys.float().transpose(-1, -2)) * self.scaling
        if self.bias is not None:
            scores = scores + self.bias[:, rows].float()
        n_q, n_k = self.query.shape[1], keys.shape[1]
        if self.mask is None:  # causal: query i sees keys <= i (+ the cached offset)
            allowed = torch.arange(n_k, device=q.device) <= (rows.view(-1, 1) + n_k - n_q)
        elif self.mask.dtype == torch.bool:
            allowed = self.mask[:, rows]
        else:
            scores = scores + self.mask[:, rows].float()
            allowed = None
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a fully masked row: 0


def _fuse(weights: Tensor, head_fusion: str) -> Tensor:
    """``(H, B, L)`` -> ``(B, L)``."""
    if head_fusion == "mean":
        return weights.mean(dim=0)
    if head_fusion == "max":
        return weights.amax(dim=0)
    return weights.amin(dim=0)


def _layer_map_rows(
    layer: _Layer,
    rows: Tensor,
    *,
    head_fusion: str,
    add_residual: bool,
    counts: AttentionCounts,
    keys: Tensor | None = None,
) -> Tensor:
    """Rows ``(B, L)`` of a rollout layer map (as :func:`whybox.attention.rollout.layer_maps`)."""
    weights = layer.weights(rows, keys)
    counts.block(weights)
    fused = _fuse(weights, head_fusion)
    if add_residual:
        fused = fused + nn.functional.one_hot(rows, fused.shape[-1]).to(fused.dtype)
    total = fused.sum(dim=-1, keepdim=True)
    return fused / torch.where(total > 0, total, torch.ones_like(total))


def _blocks(n: int, size: int, device: torch.device) -> list[Tensor]:
    return [torch.arange(s, min(n, s + size), device=device) for s in range(0, n, size)]


# -- the recorder the registered attention function reports to --------------------------------
class _Recorder:
    """Collects, layer by layer, what the chosen attribution needs."""

    def __init__(
        self,
        *,
        mode: str,
        queries: Tensor,
        chunk: int,
        head_fusion: str,
        grad_layer: int | None,
        counts: AttentionCounts,
    ) -> None:
        self.mode = mode
        self.queries = queries
        self.chunk = chunk
        self.head_fusion = head_fusion
        self.grad_layer = grad_layer
        self.counts = counts
        self.calls = 0
        self.rows: list[Tensor] = []  # "attention": (T, L) fused target rows per layer
        self.layers: list[_Layer] = []  # "rollout": each layer's queries and keys
        self.explicit: Tensor | None = None  # "gradient_attention": (H, T, L) on the graph

    def __call__(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        scaling: float | None,
        bias: Tensor | None,
        output: Tensor,
    ) -> Tensor:
        index = self.calls
        self.calls += 1
        if query.shape[0] != 1:
            raise AttentionCaptureError("LLMAttention explains one sequence (batch 1).")
        scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
        layer = _Layer(
            query=query[0] if self.mode != "rollout" else query[0].detach(),
            key=key[0] if self.mode != "rollout" else key[0].detach(),
            scaling=scale,
            mask=None if mask is None else mask[0],
            bias=None if bias is None else bias[0],
        )
        rows = self.queries.to(query.device)
        if self.mode == "attention":
            with torch.no_grad():
                keys = layer.keys()
                parts = []
                for block in _blocks(rows.numel(), self.chunk, rows.device):
                    weights = layer.weights(rows[block], keys)
                    self.counts.block(weights)
                    parts.append(_fuse(weights, self.head_fusion))
                self.rows.append(torch.cat(parts))
            return output
        if self.mode == "rollout":
            self.layers.append(layer)
            return output
        if self.grad_layer is not None and index != self.grad_layer:
            return output
        # gradient_attention: the target rows' output from explicit weights, on the graph
        weights = layer.weights(rows)  # (H, T, L)
        self.counts.block(weights)
        self.explicit = weights
        repeat = layer.heads // int(value.shape[1])
        values = value[0] if repeat == 1 else value[0].repeat_interleave(repeat, dim=0)
        rows_out = (weights.to(values.dtype) @ values).transpose(0, 1)  # (T, H, d)
        if tuple(output.shape) != (1, query.shape[2], layer.heads, values.shape[-1]):
            raise AttentionCaptureError(
                "LLMAttention: the SDPA attention output has an unexpected shape "
                f"{tuple(output.shape)}."
            )
        output = output.clone()
        output[0, rows] = rows_out.to(output.dtype)
        return output


def _attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """The registered attention function: SDPA's output, and the active recorder's rows."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    output, _ = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    recorder = _ACTIVE.get()
    if recorder is None:
        return output, None
    bias = kwargs.get("position_bias")
    return recorder(query, key, value, attention_mask, scaling, bias, output), None


def _register() -> None:
    """Add :data:`IMPLEMENTATION` to transformers' attention (and SDPA mask) registries
    once; no existing entry is changed."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    _REGISTERED = True


def _rows_twin(model: nn.Module, owner: str, *, track_gradients: bool) -> nn.Module:
    """A private copy of ``model`` (weights shared) running :data:`IMPLEMENTATION`."""
    root = _unwrap(model, owner)
    if not _hf_models(root):
        raise TypeError(
            f"{owner} needs a Hugging Face transformers causal LM (an nn.Module with a "
            f"`config` and `set_attn_implementation`); got {type(root).__name__}."
        )
    _register()
    twin = _private_copy(root, owner)
    for hf_model in _hf_models(twin):
        hf_model.set_attn_implementation(IMPLEMENTATION)
        if track_gradients:
            _track_embeddings(hf_model)
    return twin


def _n_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    get_text = getattr(config, "get_text_config", None)
    config = get_text() if callable(get_text) else config
    value = getattr(config, "num_hidden_layers", None)
    return value if isinstance(value, int) and value > 0 else None


# -- the method --------------------------------------------------------------------------------
class LLMAttention:
    """Attention attribution of a causal LM's output tokens to its prompt (native API).

    Parameters
    ----------
    model : Hugging Face causal LM (an ``nn.Module``; any attention implementation)
    tokenizer : its tokenizer
    method : str, keyword-only
        ``"attention"`` (default; one layer's weights), ``"rollout"`` or
        ``"gradient_attention"`` (see the module documentation).
    layer : int, keyword-only
        The layer of ``"attention"`` (negative counts from the end; default -1, the last).
        The other methods use every layer (``"rollout"``) or the last
        (``"gradient_attention"``): ``layer`` must be -1 for them.
    head_fusion : {"mean", "max", "min"}, keyword-only
        How heads are combined (``"attention"``, ``"rollout"``); the gradient method
        averages ``(grad * A)^+`` over heads.
    add_residual : bool, keyword-only
        Rollout: add the identity to each layer's map (the residual stream).

    Examples
    --------
    >>> explainer = LLMAttention(model, tokenizer, method="rollout")
    >>> result = explainer.attribute(TextTokenInput(prompt, tokenizer), target=" Paris")
    >>> result.token_attr.shape  # (target tokens, prompt tokens)
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        method: str = "attention",
        layer: int = -1,
        head_fusion: str = "mean",
        add_residual: bool = True,
    ) -> None:
        owner = type(self).__name__
        check_choice(owner, "method", method, ATTENTION_METHODS)
        check_int(owner, "layer", layer)
        check_choice(owner, "head_fusion", head_fusion, HEAD_FUSIONS)
        check_bool(owner, "add_residual", add_residual)
        if not isinstance(model, nn.Module):
            fail(owner, "model", "an nn.Module (a causal LM)", model, type_error=True)
        if method != "attention" and layer != -1:
            fail(
                owner, "layer", f"-1 for method {method!r} (it uses all layers or the last)", layer
            )
        self.model = model
        self.tokenizer = tokenizer
        self.method = method
        self.layer = layer
        self.head_fusion = head_fusion
        self.add_residual = add_residual

    def attribute(
        self,
        inp: TextTokenInput | TextTemplateInput,
        *,
        target: Any = None,
        contrast: Any = None,
        gen_args: dict[str, Any] | None = None,
        step_wise: bool = False,
        chunk_size: ChunkSize = "auto",
    ) -> LLMAttributionResult:
        """Attribute each target token (generated when ``None``) to the prompt tokens.

        Parameters
        ----------
        inp : TextTokenInput or TextTemplateInput
            A template input is attributed per feature: the filled prompt's token columns
            are summed into the features whose values the tokens cover
            (:func:`whybox.llm.tokens.template_token_features`; the template's own text
            gets none), and a feature of several values (``mask``) gives each its sum, as
            the perturbation methods report them.
        target, gen_args, step_wise :
            As :meth:`whybox.llm.LLMPerturbation.attribute`; step-wise, the columns of the
            generated tokens hold the attention (rollout, relevance) on them.
        contrast : optional
            ``"gradient_attention"`` only: explain ``log p(target) - log p(contrast)``.
        chunk_size : int, "auto" or None
            Query rows of attention weights formed at once (``"auto"``: sized by their
            bytes). Never changes the result beyond float rounding.

        Returns
        -------
        LLMAttributionResult
            ``token_attr`` ``(T, M)`` (``(T, M + T)`` step-wise; the last generated token
            is never in the context, its column is 0; ``M`` the template's values for a
            template input), ``seq_attr`` its sum over tokens,
            ``output_probs`` ``(T,)`` (``None`` with a contrast). ``info`` holds
            :class:`AttentionCounts` as ``"counts"``.
        """
        owner = type(self).__name__
        if isinstance(inp, TextTemplateInput):
            return self._attribute_template(
                inp,
                target=target,
                contrast=contrast,
                gen_args=gen_args,
                step_wise=step_wise,
                chunk_size=chunk_size,
            )
        if not isinstance(inp, TextTokenInput):
            fail(
                owner,
                "inp",
                "a TextTokenInput or TextTemplateInput (attention is over tokens)",
                inp,
                type_error=True,
            )
        check_bool(owner, "step_wise", step_wise)
        if not is_auto(chunk_size) and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            fail(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
        if contrast is not None and self.method != "gradient_attention":
            fail(owner, "contrast", f"None for method {self.method!r} (no target in it)", contrast)
        tokens = target_tokens(self.model, self.tokenizer, inp, target, gen_args, owner=owner)
        alt = (
            None
            if contrast is None
            else contrast_tokens(self.tokenizer, contrast, len(tokens), owner=owner)
        )
        from .perturbation import _generated_baseline

        grad = self.method == "gradient_attention"
        twin = _rows_twin(self.model, owner, track_gradients=grad)
        game = TokenLogProbs(
            twin,
            inp,
            tokens,
            contrast=alt,
            step_wise=step_wise,
            generated_baseline=_generated_baseline(inp, self.tokenizer, None),
        )
        from .scoring import model_device

        device = model_device(self.model)
        full = game.sequence(torch.ones(1, game.n_features, dtype=torch.long, device=device))
        length, n = full.shape[1], len(tokens)
        queries = torch.arange(length - n, length, device=device)  # predict y_0 .. y_{T-1}
        counts = AttentionCounts()
        config = getattr(_unwrap(self.model, owner), "config", None)
        heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1)
        if is_auto(chunk_size):
            chunk = auto_chunk_rows(3 * 4 * int(heads) * length, device)
        else:
            chunk = int(chunk_size)  # type: ignore[arg-type]
        recorder = _Recorder(
            mode=self.method if self.method != "gradient_attention" else "gradient",
            queries=queries,
            chunk=chunk,
            head_fusion=self.head_fusion,
            grad_layer=None if not grad else _last_layer(_unwrap(self.model, owner)),
            counts=counts,
        )
        token_values = self._run(game, full, recorder, counts, owner)
        attr = self._rows(recorder, queries, chunk, counts, owner)  # (T, L)
        token = token_attributions(attr.unsqueeze(-1), game)
        output_tokens = pretty_tokens(tokens, self.tokenizer)
        input_tokens = list(inp.values) + (output_tokens if step_wise else [])
        result = LLMAttributionResult(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            seq_attr=token.sum(dim=0),
            token_attr=token,
            output_probs=token_values.exp() if alt is None else None,
            inp=inp,
        )
        result.info = {
            "method": self.method,
            "layer": self.layer if self.method == "attention" else None,
            "step_wise": step_wise,
            "n_prompt_features": inp.n_itp_features,
            "contrast": None if alt is None else pretty_tokens(alt, self.tokenizer),
            "chunk_size": chunk,
            "counts": counts,
        }
        return result

    def _attribute_template(self, inp: TextTemplateInput, **options: Any) -> LLMAttributionResult:
        """The filled template's token attributions summed into its features."""
        text, features = template_token_features(inp, self.tokenizer)
        tokens = self.attribute(TextTokenInput(text, self.tokenizer), **options)
        n_tokens = features.numel()
        attr = tokens.token_attr  # (T, L) or, step-wise, (T, L + T)
        onehot = torch.zeros(n_tokens, inp.n_itp_features, dtype=attr.dtype, device=attr.device)
        kept = features >= 0
        onehot[kept.nonzero().squeeze(1), features[kept].to(attr.device)] = 1
        prompt = inp.format_attr(attr[:, :n_tokens] @ onehot)  # (T, n_features)
        token = torch.cat([prompt, attr[:, n_tokens:]], dim=1)
        step_wise = bool(options.get("step_wise"))
        result = LLMAttributionResult(
            input_tokens=list(inp.values) + (list(tokens.output_tokens) if step_wise else []),
            output_tokens=tokens.output_tokens,
            seq_attr=token.sum(dim=0),
            token_attr=token,
            output_probs=tokens.output_probs,
            inp=inp,
        )
        result.info = dict(tokens.info, n_prompt_features=len(inp.values), prompt_tokens=n_tokens)
        return result

    # -- the forward and what is read from it -------------------------------------------------
    def _run(
        self,
        game: TokenLogProbs,
        full: Tensor,
        recorder: _Recorder,
        counts: AttentionCounts,
        owner: str,
    ) -> Tensor:
        """One teacher-forced forward of ``full`` with the recorder active: ``(T,)`` values;
        for ``"gradient_attention"`` also the backward pass (the recorder keeps the
        relevance of the target rows in ``rows``)."""
        grad = recorder.mode == "gradient"
        token = _ACTIVE.set(recorder)
        try:
            with torch.set_grad_enabled(grad):
                values = game.scores(full)[0]  # (T,)
        finally:
            _ACTIVE.reset(token)
        counts.forwards += 1
        counts.layers = recorder.calls
        if recorder.calls == 0:
            raise AttentionCaptureError(
                f"{owner}: the model's attention did not run through transformers' "
                "AttentionInterface (its attention implementation cannot be switched), so "
                "its weights cannot be formed; use whybox.attention.capture_attention."
            )
        if grad:
            weights = recorder.explicit
            if weights is None or not weights.requires_grad:
                raise AttentionCaptureError(
                    f"{owner}: the last layer's attention weights are not on the autograd graph."
                )
            (gradient,) = torch.autograd.grad(values.sum(), weights)
            relevance = (gradient * weights.detach()).clamp(min=0).mean(dim=0)
            recorder.rows = [relevance]
            recorder.explicit = None
            values = values.detach()
        return values

    def _rows(
        self,
        recorder: _Recorder,
        queries: Tensor,
        chunk: int,
        counts: AttentionCounts,
        owner: str,
    ) -> Tensor:
        """The ``(T, L)`` attribution of the target rows."""
        if recorder.mode == "gradient":
            return recorder.rows[0]
        if recorder.mode == "attention":
            n_layers = len(recorder.rows)
            if not -n_layers <= self.layer < n_layers:
                fail(owner, "layer", f"a layer index in [-{n_layers}, {n_layers})", self.layer)
            return recorder.rows[self.layer]
        return _rollout_rows(
            recorder.layers,
            queries,
            chunk=chunk,
            head_fusion=self.head_fusion,
            add_residual=self.add_residual,
            counts=counts,
        )


def _last_layer(model: nn.Module) -> int | None:
    n = _n_layers(model)
    if n is None:
        for hf_model in _hf_models(model):
            n = _n_layers(hf_model)
            if n is not None:
                break
    return None if n is None else n - 1


def _rollout_rows(
    layers: list[_Layer],
    queries: Tensor,
    *,
    chunk: int,
    head_fusion: str,
    add_residual: bool,
    counts: AttentionCounts,
) -> Tensor:
    """Rows ``queries`` of ``M_N @ ... @ M_1`` (the rollout), from the last layer down.

    ``v = M_N[queries]`` (``(T, L)``), then ``v = v @ M_l`` for the lower layers, each
    ``M_l`` formed in blocks of ``chunk`` query rows: ``v @ M_l = sum_blocks v[:, block] @
    M_l[block]``. Only the columns up to the last query can be non-zero (causal), so only
    those rows of ``M_l`` are formed.
    """
    options = {"head_fusion": head_fusion, "add_residual": add_residual, "counts": counts}
    with torch.no_grad():
        top = layers[-1]
        keys = top.keys()
        parts = [
            _layer_map_rows(top, queries[block], keys=keys, **options)
            for block in _blocks(queries.numel(), chunk, queries.device)
        ]
        v = torch.cat(parts)  # (T, L)
        reach = int(queries.max()) + 1
        for layer in reversed(layers[:-1]):
            keys = layer.keys()
            total = torch.zeros_like(v)
            for block in _blocks(reach, chunk, v.device):
                total = total + v[:, block] @ _layer_map_rows(layer, block, keys=keys, **options)
            v = total
    return v
