"""Gradient attribution of generated text: every target token from the same forwards.

The model is wrapped as a function of the interpretable token rows
(:class:`TokenLogProbs`): a row of ones is the prompt, zeros put the baseline token in,
and the output is ``log p(y_t | x, y_<t)`` for EVERY target token from one teacher-forced
forward of ``x + y[:-1]``.

Layer Integrated Gradients and gradient x activation on a layer that returns one
per-position tensor (the input embeddings by default) run
:func:`shared_path_attributions`: one forward per chunk of path points serves all ``T``
target tokens, and each token's gradient is one backward pass of that graph. Captum runs
one attribution (``n_steps`` forwards, each on a longer sequence) per target token; the
generic engine, with one *example* per target token, runs ``T`` times the forwards too.
Memory is bounded by ``chunk_size`` sequences per forward, whatever ``T`` and
``n_steps``. GradientSHAP (random points per token) and other layers use the generic
engine (:mod:`whybox.methods`), chunked by rows. Results are summed over the embedding
dimension, as Captum does.

``step_wise=True`` keeps the attributions of the generated positions too, with the
generated tokens replaced by the baseline token along the path: each token is attributed
to the prompt and to the tokens generated before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from whybox import methods as native
from whybox.core.chunks import ChunkSize, auto_chunk_rows, is_auto
from whybox.core.paths import path_plan_tensors
from whybox.core.validation import check_bool, check_choice, fail

from .inputs import TextTokenInput
from .result import LLMAttributionResult
from .targets import contrast_tokens, target_tokens
from .tokens import pretty_tokens

__all__ = [
    "TokenLogProbs",
    "LLMGradient",
    "GRADIENT_METHODS",
    "token_attributions",
    "shared_path_attributions",
    "PathCounts",
    "path_rows",
]

GRADIENT_METHODS = ("integrated_gradients", "gradient_x_activation", "gradient_shap")


class TokenLogProbs(nn.Module):
    """The LM as a function of interpretable rows: ``(R, M')`` -> ``(R, T)`` log-probs.

    Parameters
    ----------
    model : Hugging Face causal LM (a submodule, so its layers can be hooked)
    inp : TextTokenInput
    target : Tensor ``(T,)`` long
    contrast : Tensor ``(T,)`` long, optional
        Subtract the alternative tokens' log-probabilities.
    step_wise : bool
        Columns ``M .. M + T - 2`` of a row say which generated tokens are present in the
        context (absent ones become ``generated_baseline``); ``M' = M + T``.
    generated_baseline : int
    """

    def __init__(
        self,
        model: nn.Module,
        inp: TextTokenInput,
        target: Tensor,
        *,
        contrast: Tensor | None = None,
        step_wise: bool = False,
        generated_baseline: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.inp = inp
        self.target = target
        self.contrast = contrast
        self.step_wise = step_wise
        self.generated_baseline = generated_baseline
        self.n_prompt = inp.n_itp_features
        self.n_features = self.n_prompt + (target.numel() if step_wise else 0)
        self.prompt_length = inp.inp_tensor.shape[1]
        forward = getattr(model, "forward", model)
        try:
            import inspect

            self._keep_logits = "logits_to_keep" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            self._keep_logits = False

    def sequence(self, rows: Tensor) -> Tensor:
        """The teacher-forced model inputs ``(R, P + T - 1)`` of interpretable rows ``(R, M')``:
        the prompt (features present or baseline) followed by ``target[:-1]`` (step-wise:
        absent generated tokens become ``generated_baseline``)."""
        ids = self.inp.to_model_input(rows[:, : self.n_prompt])
        target = self.target.to(ids.device)
        t = target.numel()
        tail = target[:-1].expand(ids.shape[0], t - 1)
        if self.step_wise and t > 1:
            present = rows[:, self.n_prompt : self.n_features - 1] == 1
            tail = torch.where(present, tail, torch.full_like(tail, self.generated_baseline))
        return torch.cat([ids, tail], dim=1)

    def scores(self, full: Tensor) -> Tensor:
        """One forward of teacher-forced sequences ``(R, P + T - 1)``: ``(R, T)`` values
        (target log-probabilities, minus the contrast's)."""
        t = self.target.numel()
        kwargs = {"logits_to_keep": t} if self._keep_logits else {}
        logits = self.model(
            input_ids=full, attention_mask=torch.ones_like(full), use_cache=False, **kwargs
        ).logits
        if logits.dim() == 4:
            logits = logits[:, 0]
        log_probs = torch.log_softmax(logits[:, -t:].float(), dim=-1)
        target = self.target.to(full.device).reshape(1, -1, 1).expand(full.shape[0], -1, 1)
        values = log_probs.gather(2, target).squeeze(2)
        if self.contrast is not None:
            alt = self.contrast.to(full.device).reshape(1, -1, 1).expand(full.shape[0], -1, 1)
            values = values - log_probs.gather(2, alt).squeeze(2)
        return values

    def forward(self, rows: Tensor, *_: Any) -> Tensor:
        return self.scores(self.sequence(rows))


def token_attributions(layer_attr: Tensor, game: TokenLogProbs) -> Tensor:
    """Embedding-layer attributions ``(T, P + T - 1, D)`` -> ``(T, M')`` features.

    Sums over the embedding dimension, keeps the prompt's feature positions (not the
    skipped tokens), and, when step-wise, the generated positions (the last generated
    token is never in the context: its column is 0).
    """
    summed = layer_attr.detach().sum(dim=-1)  # (T, P + T - 1)
    p = game.prompt_length
    prompt = summed[:, :p]
    if game.inp.itp_mask is not None:
        mask = game.inp.itp_mask.to(prompt.device).expand_as(prompt)
        prompt = prompt[mask].view(prompt.shape[0], -1)
    if not game.step_wise:
        return prompt
    generated = summed[:, p:]
    last = generated.new_zeros(generated.shape[0], 1)
    return torch.cat([prompt, generated, last], dim=1)


@dataclass
class PathCounts:
    """What :func:`shared_path_attributions` ran (the memory bound is checked on these).

    Attributes
    ----------
    forwards : int
        Model forwards (the endpoint forward included).
    backwards : int
        Backward passes (one per target token per chunk of path points).
    max_rows : int
        The most sequences in one forward (and so in one backward's graph).
    """

    forwards: int = 0
    backwards: int = 0
    max_rows: int = 0

    def saw(self, rows: int, *, backwards: int = 0) -> None:
        """Count one forward of ``rows`` sequences and ``backwards`` backward passes."""
        self.forwards += 1
        self.backwards += backwards
        self.max_rows = max(self.max_rows, rows)


class _Replace:
    """A forward hook that records the layer's outputs, or replaces them by ``value``."""

    def __init__(self) -> None:
        self.value: Tensor | None = None
        self.seen: list[Any] = []

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        self.seen.append(output)
        return output if self.value is None else self.value


def path_rows(game: TokenLogProbs, chunk_size: ChunkSize, device: torch.device) -> int:
    """Path points per forward: ``chunk_size``, or (``"auto"``) sized by the bytes one
    teacher-forced sequence's activations and kept logits take."""
    if not is_auto(chunk_size):
        return int(chunk_size)  # type: ignore[arg-type]
    config = getattr(game.model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 1024
    vocab = getattr(config, "vocab_size", None) or 50000
    length = game.prompt_length + game.target.numel() - 1
    kept = game.target.numel() if game._keep_logits else length
    row_bytes = 4 * length * 4 * int(hidden) + 4 * kept * int(vocab)
    return auto_chunk_rows(row_bytes, device)


def shared_path_attributions(
    game: TokenLogProbs,
    layer: nn.Module,
    *,
    alphas: Tensor,
    weights: Tensor,
    from_zero: bool = False,
    multiply_by_inputs: bool = True,
    chunk_size: ChunkSize = "auto",
    counts: PathCounts | None = None,
) -> Tensor | None:
    """Path-integrated gradients of every target token from ONE forward per path point.

    With teacher forcing, one forward of ``x + y[:-1]`` gives every ``log p(y_t | x,
    y_<t)`` (a causal decoder's position ``P - 1 + t`` sees only ``x`` and ``y_<t``), so all
    ``T`` target tokens share the forwards of a path point; their gradients are taken one
    target at a time from the same graph (``T`` backward passes, ``retain_graph``), which
    Captum and the per-token rows of the generic engine pay with ``T`` forwards each.

    ``layer``'s output ``a`` (e.g. the input embeddings, ``(1, P + T - 1, D)``) is replaced
    by ``a_0 + alpha (a_1 - a_0)`` where ``a_1`` is its value on the prompt and ``a_0`` on
    the baseline prompt (``from_zero``: ``a_0 = 0``, gradient x activation with
    ``alphas = weights = [1]``). The result is
    ``(a_1 - a_0) * sum_s weights[s] * d value_t / d a (alpha_s)`` per target token ``t``
    (without the factor when ``multiply_by_inputs`` is False), as Layer Integrated
    Gradients over one example per target token gives it.

    Memory: one forward (and its graph) holds ``path_rows`` path points, i.e. that many
    sequences of ``P + T - 1`` tokens, whatever ``T`` and ``n_steps``; the sum of
    gradients is ``(T, P + T - 1, D)`` (the result's own size).

    Parameters
    ----------
    game : TokenLogProbs
    layer : nn.Module
        Called once per forward, returning one floating tensor ``(rows, P + T - 1, ...)``.
    alphas, weights : Tensor, shape ``(S,)``
        Path points and their weights (:func:`whybox.core.paths.path_plan_tensors`).
    from_zero : bool, keyword-only
        Start the path at zero rather than at the baseline prompt's value.
    multiply_by_inputs : bool, keyword-only
    chunk_size : int, "auto" or None, keyword-only
        Path points (sequences) per forward; never changes the result beyond rounding.
    counts : PathCounts, keyword-only, optional
        Filled with the forwards, backwards and most rows per forward run.

    Returns
    -------
    Tensor or None
        ``(T, P + T - 1, ...)`` layer attributions, or ``None`` when ``layer`` does not
        return one per-position tensor per forward (use the generic engine then).
    """
    counts = counts if counts is not None else PathCounts()
    device = _device(game.model)
    n_features = game.n_features
    ones = torch.ones(1, n_features, dtype=torch.long, device=device)
    full = game.sequence(ones)  # (1, L)
    length, t = full.shape[1], game.target.numel()
    hook = _Replace()
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            pair = torch.cat([full, game.sequence(torch.zeros_like(ones))])
            game.scores(pair)
            counts.saw(2)
        ends = hook.seen[0] if len(hook.seen) == 1 else None
        if not (
            isinstance(ends, Tensor)
            and ends.is_floating_point()
            and ends.dim() >= 2
            and tuple(ends.shape[:2]) == (2, length)
        ):
            return None
        end = ends[0:1].detach()
        start = torch.zeros_like(end) if from_zero else ends[1:2].detach()
        alphas = alphas.to(device=device, dtype=end.dtype)
        weights = weights.to(device=device, dtype=end.dtype)
        step = max(1, path_rows(game, chunk_size, device))
        totals = torch.zeros((t,) + tuple(end.shape[1:]), dtype=end.dtype, device=device)
        shape = (-1,) + (1,) * (end.dim() - 1)
        with torch.enable_grad():
            for first in range(0, alphas.numel(), step):
                alpha = alphas[first : first + step]
                weight = weights[first : first + step]
                rows = alpha.numel()
                path = (start + alpha.view(shape) * (end - start)).requires_grad_(True)
                hook.value, hook.seen = path, []
                values = game.scores(full.expand(rows, length))  # (rows, T)
                counts.saw(rows, backwards=t)
                for k in range(t):
                    (grad,) = torch.autograd.grad(
                        values[:, k],
                        path,
                        grad_outputs=weight.to(values.dtype),
                        retain_graph=k < t - 1,
                        allow_unused=True,
                    )
                    if grad is not None:
                        totals[k] += grad.sum(dim=0)
                hook.value = None
    finally:
        handle.remove()
    return (end - start) * totals if multiply_by_inputs else totals


class LLMGradient:
    """Gradient attribution of a causal LM's output tokens to its prompt (native API).

    Parameters
    ----------
    model : Hugging Face causal LM (an ``nn.Module``)
    tokenizer : its tokenizer
    method : str, keyword-only
        ``"integrated_gradients"`` (default; Layer IG), ``"gradient_x_activation"`` or
        ``"gradient_shap"``.
    layer : nn.Module, keyword-only, optional
        The layer attributed to; default the input embeddings
        (``model.get_input_embeddings()``).
    multiply_by_inputs : bool, keyword-only
        Multiply by (input - baseline) of the layer (default True).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        method: str = "integrated_gradients",
        layer: nn.Module | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        owner = type(self).__name__
        check_choice(owner, "method", method, GRADIENT_METHODS)
        check_bool(owner, "multiply_by_inputs", multiply_by_inputs)
        if not isinstance(model, nn.Module):
            fail(owner, "model", "an nn.Module (a causal LM)", model, type_error=True)
        if layer is None:
            get = getattr(model, "get_input_embeddings", None)
            layer = get() if callable(get) else None
            if layer is None:
                fail(owner, "layer", "given (the model has no get_input_embeddings())", None)
        self.model = model
        self.tokenizer = tokenizer
        self.method = method
        self.layer = layer
        self.multiply_by_inputs = multiply_by_inputs

    def attribute(
        self,
        inp: TextTokenInput,
        *,
        target: Any = None,
        contrast: Any = None,
        gen_args: dict[str, Any] | None = None,
        step_wise: bool = False,
        n_steps: int = 50,
        rule: str = "gausslegendre",
        n_samples: int = 5,
        seed: Any = None,
        generated_baseline: int | None = None,
        chunk_size: ChunkSize = "auto",
    ) -> LLMAttributionResult:
        """Attribute each target token (generated when ``None``) to the prompt tokens.

        Parameters
        ----------
        inp : TextTokenInput
            Its baseline id is the path's starting token.
        target, contrast, gen_args, step_wise, generated_baseline :
            As :meth:`whybox.llm.LLMPerturbation.attribute`.
        n_steps, rule : integration steps and rule (integrated gradients)
        n_samples, seed : random path points per token (GradientSHAP)
        chunk_size : int, "auto" or None
            Sequences per forward / backward (path points of the shared path; rows of the
            generic engine); ``"auto"``: memory-bounded.

        Returns
        -------
        LLMAttributionResult
            ``token_attr`` ``(T, M)`` (``(T, M + T)`` step-wise) and ``seq_attr`` its sum
            over tokens; ``output_probs`` ``(T,)``. ``info`` says whether the shared path
            ran (``"shared_forwards"``) and its ``"forwards"``, ``"backwards"`` and
            ``"max_rows_per_forward"``.
        """
        owner = type(self).__name__
        if not isinstance(inp, TextTokenInput):
            fail(owner, "inp", "a TextTokenInput", inp, type_error=True)
        check_bool(owner, "step_wise", step_wise)
        if not is_auto(chunk_size) and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            fail(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
        tokens = target_tokens(self.model, self.tokenizer, inp, target, gen_args, owner=owner)
        alt = (
            None
            if contrast is None
            else contrast_tokens(self.tokenizer, contrast, len(tokens), owner=owner)
        )
        from .perturbation import _generated_baseline

        game = TokenLogProbs(
            self.model,
            inp,
            tokens,
            contrast=alt,
            step_wise=step_wise,
            generated_baseline=_generated_baseline(inp, self.tokenizer, generated_baseline),
        )
        n = len(tokens)
        device = _device(self.model)
        counts = PathCounts()
        layer_attr = None
        if self.method in ("integrated_gradients", "gradient_x_activation"):
            if self.method == "integrated_gradients":
                alphas, weights = path_plan_tensors(
                    rule, n_steps, dtype=torch.float32, device=device, owner=owner
                )
            else:
                alphas = weights = torch.ones(1, device=device)
            layer_attr = shared_path_attributions(
                game,
                self.layer,
                alphas=alphas,
                weights=weights,
                from_zero=self.method == "gradient_x_activation",
                multiply_by_inputs=self.multiply_by_inputs,
                chunk_size=chunk_size,
                counts=counts,
            )
        shared = layer_attr is not None
        if layer_attr is None:
            counts = PathCounts()
            layer_attr = self._per_token_rows(game, n, n_steps, rule, n_samples, seed, chunk_size)
        token = token_attributions(layer_attr, game)
        with torch.no_grad():
            ones = torch.ones(1, game.n_features, dtype=torch.long, device=device)
            probs = game(ones)[0].exp() if alt is None else None
        output_tokens = pretty_tokens(tokens, self.tokenizer)
        input_tokens = list(inp.values) + (output_tokens if step_wise else [])
        result = LLMAttributionResult(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            seq_attr=token.sum(dim=0),
            token_attr=token,
            output_probs=probs,
            inp=inp,
        )
        result.info = {
            "method": self.method,
            "step_wise": step_wise,
            "n_prompt_features": inp.n_itp_features,
            "contrast": None if alt is None else pretty_tokens(alt, self.tokenizer),
            "shared_forwards": shared,
            "forwards": counts.forwards or None,
            "backwards": counts.backwards or None,
            "max_rows_per_forward": counts.max_rows or None,
        }
        return result

    def _per_token_rows(
        self,
        game: TokenLogProbs,
        n: int,
        n_steps: int,
        rule: str,
        n_samples: int,
        seed: Any,
        chunk_size: ChunkSize,
    ) -> Tensor:
        """The generic engine: one example (interpretable row) per target token, its own
        forwards (GradientSHAP draws its points per token; layers the shared path cannot
        substitute)."""
        rows = torch.ones(n, game.n_features, dtype=torch.long, device=_device(self.model))
        per_token = list(range(n))
        if self.method == "integrated_gradients":
            explanation = native.IntegratedGradients(
                game, layer=self.layer, multiply_by_inputs=self.multiply_by_inputs
            ).attribute(
                rows,
                baselines=0,
                target=per_token,
                n_steps=n_steps,
                rule=rule,
                chunk_size=chunk_size,
                return_delta=False,
            )
        elif self.method == "gradient_x_activation":
            explanation = native.InputXGradient(
                game, layer=self.layer, multiply_by_inputs=self.multiply_by_inputs
            ).attribute(rows, target=per_token, chunk_size=chunk_size)
        else:
            explanation = native.GradientShap(
                game, layer=self.layer, multiply_by_inputs=self.multiply_by_inputs
            ).attribute(
                rows.float(),
                baselines=torch.zeros(1, game.n_features),
                target=per_token,
                n_samples=n_samples,
                seed=seed,
                chunk_size=chunk_size,
                return_delta=False,
            )
        layer_attr = explanation.attributions
        if isinstance(layer_attr, (tuple, list)):
            layer_attr = layer_attr[0]
        return layer_attr


def _device(model: nn.Module) -> torch.device:
    from .scoring import model_device

    return model_device(model)
