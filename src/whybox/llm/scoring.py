"""Teacher forcing: the log-probability of a fixed continuation after many prompts.

This is the one place in :mod:`whybox.llm` that runs a local causal LM. For a prompt
``x`` and a continuation ``y_0 .. y_{T-1}``, ONE forward of ``x + y[:-1]`` gives every
``log p(y_t | x, y_<t)`` (the logits at the last ``T`` positions): for a causal decoder this
equals decoding token by token, which costs ``T`` forwards. Prompts are batched (rows of
equal length share a forward, so no padding ever changes a number), only the last ``T``
positions' logits are computed where the model supports ``logits_to_keep``, and rows of a
chunk that start with the same tokens share one forward of that prefix through the KV
cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.chunks import ChunkSize, auto_chunk_rows, is_auto
from whybox.core.validation import fail

__all__ = ["TeacherForcing", "model_device", "as_model_input", "forward_parameters", "model_cache"]

#: shortest shared prefix worth a separate cached forward (shorter ones are recomputed)
_MIN_PREFIX = 16


def model_device(model: Any) -> torch.device:
    """The device of a Hugging Face style model (its ``device``, or its first parameter's)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def forward_parameters(model: Any) -> set[str]:
    """The names of the keyword arguments ``model``'s forward takes (empty when its
    signature cannot be read)."""
    forward = getattr(model, "forward", model)
    try:
        return set(inspect.signature(forward).parameters)
    except (TypeError, ValueError):
        return set()


def model_cache(output: Any) -> Any:
    """The KV cache of a forward run with ``use_cache=True`` (``output.cache`` in
    transformers 5, ``output.past_key_values`` before)."""
    cache = output.get("cache", None) if hasattr(output, "get") else None
    return output.past_key_values if cache is None else cache


def as_model_input(model_input: Any, tokenizer: Any, device: torch.device) -> dict[str, Any]:
    """A prompt as keyword arguments of the model: a string is tokenised, a tensor is the
    ``input_ids``, a mapping (a processor's output) is used as is."""
    if isinstance(model_input, str):
        model_input = tokenizer.encode(model_input, return_tensors="pt")
    if isinstance(model_input, Tensor):
        ids = model_input if model_input.dim() == 2 else model_input.reshape(1, -1)
        return {"input_ids": ids.to(device)}
    if isinstance(model_input, Mapping):
        return dict(model_input)
    raise TypeError(
        "An interpretable input must give the model a str, a tensor of token ids or a "
        f"mapping of model inputs. Got {type(model_input).__name__}."
    )


class TeacherForcing:
    """Log-probabilities of a continuation after each of many prompts.

    Parameters
    ----------
    model : Hugging Face causal LM (``model(input_ids=..., attention_mask=...).logits``)
    tokenizer : tokenizer, used for prompts given as strings
    chunk_size : int, "auto" or None, keyword-only
        Rows per forward. ``"auto"`` sizes chunks by the bytes a row's activations and
        kept logits take (:func:`whybox.core.chunks.auto_chunk_rows`). Never changes results.
    prefix_cache : bool, keyword-only
        Rows of a chunk starting with the same ``>= 16`` tokens run that prefix once and
        reuse its KV cache (models whose forward takes a cache); never changes results
        beyond float rounding.
    owner : str, keyword-only
        Name used in error messages.

    Attributes
    ----------
    n_forwards : int
        Model forwards run so far (prefix forwards included).
    n_rows : int
        Prompt rows scored so far.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        chunk_size: ChunkSize = "auto",
        prefix_cache: bool = True,
        owner: str = "LLMAttribution",
    ) -> None:
        if not callable(model):
            fail(owner, "model", "a callable causal language model", model)
        if not (is_auto(chunk_size) or (isinstance(chunk_size, int) and chunk_size >= 1)):
            fail(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
        self.model = model
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.owner = owner
        self.device = model_device(model)
        self.n_forwards = 0
        self.n_rows = 0
        names = forward_parameters(model)
        self._keep_logits = "logits_to_keep" in names
        # transformers 5 calls the KV cache argument ``cache``; earlier ``past_key_values``
        self._cache_arg = "cache" if "cache" in names else "past_key_values"
        self.prefix_cache = prefix_cache and self._cache_arg in names
        # whether one forward of prompt + continuation gives each position's next-token
        # logits (a causal decoder); None until checked on the first multi-token target
        self.causal: bool | None = known_causal(model)

    # -- public ------------------------------------------------------------------------
    def score(
        self,
        prompts: Sequence[Any] | Tensor,
        target: Tensor,
        *,
        contexts: Tensor | None = None,
        alternatives: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced log-probabilities of ``target`` after every prompt.

        Parameters
        ----------
        prompts : ``(K, P)`` token ids, or a sequence of ``K`` model inputs (strings,
            ``(1, P_k)`` ids or mappings of model inputs)
        target : Tensor, shape ``(T,)`` long
            The continuation whose tokens are scored.
        contexts : Tensor, shape ``(K, T - 1)`` long, optional
            The continuation tokens fed to the model after each prompt (default
            ``target[:-1]``); the scored tokens stay ``target``.
        alternatives : Tensor, shape ``(T,)`` long, optional
            Also score these tokens at the same positions (contrastive targets).

        Returns
        -------
        (Tensor, Tensor or None)
            ``(K, T)`` float32 log-probabilities of ``target`` (and of ``alternatives``).
        """
        target = target.to(self.device).long().reshape(-1)
        n = len(prompts)
        t = target.shape[0]
        out = torch.empty(n, t, dtype=torch.float32, device=self.device)
        alt = None if alternatives is None else torch.empty_like(out)
        if isinstance(prompts, Tensor):
            groups = [(torch.arange(n), {"input_ids": prompts.to(self.device)})]
        else:
            groups = self._groups(prompts)
        for index, model_kwargs in groups:
            ctx = None if contexts is None else contexts[index.to(contexts.device)]
            scored = self._score_group(model_kwargs, target, ctx, alternatives)
            out[index.to(self.device)] = scored[0]
            if alt is not None:
                alt[index.to(self.device)] = scored[1]
        self.n_rows += n
        return out, alt

    def prompt_text(self, prompt: Any) -> str:
        """A prompt as text: its model input's token ids decoded (special tokens too)."""
        ids = as_model_input(prompt, self.tokenizer, self.device)["input_ids"]
        return self.tokenizer.decode(ids.reshape(-1))

    # -- grouping: equal-length id rows share forwards -----------------------------------
    def _groups(self, prompts: Sequence[Any]) -> list[tuple[Tensor, dict[str, Any]]]:
        formatted = [as_model_input(p, self.tokenizer, self.device) for p in prompts]
        by_length: dict[int, list[int]] = {}
        singles: list[tuple[Tensor, dict[str, Any]]] = []
        for k, kwargs in enumerate(formatted):
            extra = set(kwargs) - {"input_ids", "attention_mask"}
            ids = kwargs["input_ids"]
            if extra or ids.shape[0] != 1:
                # processor outputs (pixel values, ...) have no common batch layout: alone
                singles.append((torch.tensor([k]), kwargs))
            else:
                by_length.setdefault(int(ids.shape[1]), []).append(k)
        groups = []
        for rows in by_length.values():
            ids = torch.cat([formatted[k]["input_ids"] for k in rows])
            groups.append((torch.tensor(rows), {"input_ids": ids}))
        return groups + singles

    def _rows_per_forward(self, length: int, t: int) -> int:
        if not is_auto(self.chunk_size):
            return int(self.chunk_size)
        config = getattr(self.model, "config", None)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1024)
        vocab = getattr(config, "vocab_size", 50000)
        kept = t if self._keep_logits else length
        # a few hidden-size activations per position plus the kept float32 logits
        row_bytes = 4 * length * 4 * int(hidden) + 4 * kept * int(vocab)
        return auto_chunk_rows(row_bytes, self.device)

    def _score_group(
        self,
        model_kwargs: dict[str, Any],
        target: Tensor,
        contexts: Tensor | None,
        alternatives: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        ids = model_kwargs["input_ids"]
        rows, prompt_len = ids.shape
        t = target.shape[0]
        if contexts is None:
            tail = target[:-1].unsqueeze(0).expand(rows, t - 1)
        else:
            tail = contexts.to(ids.device).long()
        full = torch.cat([ids, tail], dim=1)  # (rows, P + T - 1)
        extra = {k: v for k, v in model_kwargs.items() if k not in ("input_ids", "attention_mask")}
        step = max(1, self._rows_per_forward(full.shape[1], t))
        scores, alt_scores = [], []
        for start in range(0, rows, step):
            chunk = full[start : start + step]
            logits = self._logits(chunk, t, prompt_len, extra)  # (b, T, V)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            scores.append(log_probs.gather(2, _index(target, chunk.shape[0])).squeeze(2))
            if alternatives is not None:
                alt = alternatives.to(self.device).long()
                alt_scores.append(log_probs.gather(2, _index(alt, chunk.shape[0])).squeeze(2))
        return torch.cat(scores), (torch.cat(alt_scores) if alternatives is not None else None)

    # -- one chunk: optional shared-prefix cache, then the rows --------------------------
    def _logits(self, rows: Tensor, t: int, prompt_len: int, extra: dict[str, Any]) -> Tensor:
        """Logits ``(b, T, V)`` predicting the last ``T`` tokens of ``rows + [next]``.

        One forward of the whole rows for a causal model; for a model whose logits at a
        position depend on later tokens (an encoder used as an LM), one forward per target
        token on the rows up to it, as token-by-token decoding (and Captum's
        ``use_cached_outputs=False``) computes them."""
        if t > 1 and self.causal is None:
            self.causal = self._is_causal(rows[:1], t, prompt_len, extra)
            if not self.causal:
                self.prefix_cache = False  # a prefix's cache presumes causal attention
        if t > 1 and self.causal is False:
            return self._logits_token_by_token(rows, t, prompt_len, extra)
        prefix = self._shared_prefix(rows, prompt_len) if self.prefix_cache and not extra else 0
        with torch.no_grad():
            if prefix:
                try:
                    return self._logits_with_prefix(rows, t, prefix)
                except (TypeError, ValueError, AttributeError, RuntimeError):
                    self.prefix_cache = False  # a model whose cache we cannot share
            kwargs = dict(extra)
            if self._keep_logits:
                kwargs["logits_to_keep"] = t
            return _last(self._plain_logits(rows, kwargs), t)

    def _plain_logits(self, rows: Tensor, extra: dict[str, Any]) -> Tensor:
        self.n_forwards += 1
        out = self.model(
            input_ids=rows, attention_mask=torch.ones_like(rows), use_cache=False, **extra
        )
        logits = out.logits
        return logits[:, 0] if logits.dim() == 4 else logits

    def _is_causal(self, row: Tensor, t: int, prompt_len: int, extra: dict[str, Any]) -> bool:
        """Whether the logits predicting the first target token are the same with and
        without the continuation after them (two forwards of one row, once per scorer):
        true for a causal decoder, false where later tokens change earlier positions."""
        with torch.no_grad():
            whole = self._plain_logits(row, extra)[:, prompt_len - 1].float()
            prompt = self._plain_logits(row[:, :prompt_len], extra)[:, -1].float()
        # float rounding differs between the two sequence lengths; a bidirectional model
        # changes the logits by far more (a false "not causal" costs only speed)
        loose = whole.dtype in (torch.float16, torch.bfloat16) or row.device.type != "cpu"
        rtol, atol = (1e-2, 1e-3) if loose else (1e-4, 1e-5)
        return bool(torch.allclose(whole, prompt, rtol=rtol, atol=atol))

    def _logits_token_by_token(
        self, rows: Tensor, t: int, prompt_len: int, extra: dict[str, Any]
    ) -> Tensor:
        """``(b, T, V)``: target token ``k``'s logits from a forward of the rows up to it."""
        with torch.no_grad():
            steps = [self._plain_logits(rows[:, : prompt_len + k], extra)[:, -1] for k in range(t)]
        return torch.stack(steps, dim=1)

    @staticmethod
    def _shared_prefix(rows: Tensor, prompt_len: int) -> int:
        if rows.shape[0] < 2:
            return 0
        same = (rows == rows[:1]).all(dim=0).long()
        # tokens equal in every row up to the first difference; at most up to the prompt's
        # last token, whose logits predict the first scored token
        length = min(int(same.cumprod(0).sum()), prompt_len - 1)
        return length if length >= _MIN_PREFIX else 0

    def _logits_with_prefix(self, rows: Tensor, t: int, prefix: int) -> Tensor:
        self.n_forwards += 1
        head = self.model(input_ids=rows[:1, :prefix], use_cache=True)
        cache = model_cache(head)
        cache.batch_repeat_interleave(rows.shape[0])
        kwargs = {self._cache_arg: cache}
        if self._keep_logits:
            kwargs["logits_to_keep"] = t
        self.n_forwards += 1
        out = self.model(
            input_ids=rows[:, prefix:],
            attention_mask=torch.ones_like(rows),
            use_cache=True,
            **kwargs,
        )
        return _last(out.logits, t)


def known_causal(model: Any) -> bool | None:
    """``True`` for a Hugging Face model known to be a causal decoder from its config (a
    decoder-only model type, or ``is_decoder`` set outside an encoder-decoder), else
    ``None``: :class:`TeacherForcing` then checks on the model itself."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        return None
    if getattr(config, "is_decoder", False) and not getattr(config, "is_encoder_decoder", False):
        return True
    try:
        from transformers.models.auto import modeling_auto
    except ImportError:  # pragma: no cover - a config without transformers
        return None
    causal = getattr(modeling_auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {})
    masked = getattr(modeling_auto, "MODEL_FOR_MASKED_LM_MAPPING_NAMES", {})
    # encoder types (bert, roberta, ...) have causal-LM heads too, bidirectional unless
    # is_decoder: only types without a masked-LM model are decoders by construction
    return True if model_type in causal and model_type not in masked else None


def _last(logits: Tensor, t: int) -> Tensor:
    # Llama 4 style heads return (b, 1, L, V)
    if logits.dim() == 4:
        logits = logits[:, 0]
    return logits[:, -t:]


def _index(tokens: Tensor, rows: int) -> Tensor:
    return tokens.reshape(1, -1, 1).expand(rows, -1, 1)
