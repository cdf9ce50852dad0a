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
``n_steps``. The backward passes, the cost, run on a private copy of the model with
fused activations and oneDNN linear layers, and split forwards
(:func:`shared_path_attributions`). GradientSHAP's
random points of all target tokens are a few distinct sequences (a token input keeps
only entries equal to 1), each run once for all targets
(:func:`shared_sample_attributions`; :func:`captum_gradient_shap_draws` draws Captum's
points). Layers these paths cannot substitute use the generic engine
(:mod:`whybox.methods`), chunked by rows. Results are summed over the embedding
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
from whybox.core.validation import check_bool, check_choice, check_int, fail

from ._fused import fused_twin
from .inputs import TextTokenInput
from .result import LLMAttributionResult
from .scoring import forward_parameters, model_cache
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
    "shared_sample_attributions",
    "captum_gradient_shap_draws",
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
        names = forward_parameters(model)
        self._keep_logits = "logits_to_keep" in names
        # transformers 5 calls the KV cache argument ``cache``; earlier ``past_key_values``
        self._cache_arg = "cache" if "cache" in names else "past_key_values"
        self.can_split = self._keep_logits and self._cache_arg in names

    def on(self, model: nn.Module) -> TokenLogProbs:
        """The same game run by another model (e.g. a private copy of this one)."""
        return TokenLogProbs(
            model,
            self.inp,
            self.target,
            contrast=self.contrast,
            step_wise=self.step_wise,
            generated_baseline=self.generated_baseline,
        )

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

    def scores(self, full: Tensor, *, split: int = 0) -> Tensor:
        """Teacher-forced sequences ``(R, P + T - 1)`` -> ``(R, T)`` values (target
        log-probabilities, minus the contrast's).

        ``split = s > 0`` (models with :attr:`can_split`) runs the first ``s`` positions as
        one forward whose KV cache (kept in the autograd graph) the second forward, of the
        remaining positions, attends to: the same numbers up to float rounding, but the
        last layer's queries, attention output and MLP at the first ``s`` positions are
        never used, so a backward pass skips them (one layer's work out of the model's).
        """
        t = self.target.numel()
        kwargs: dict[str, Any] = {"logits_to_keep": t} if self._keep_logits else {}
        if split:
            head = self.model(
                input_ids=full[:, :split],
                attention_mask=torch.ones_like(full[:, :split]),
                use_cache=True,
                logits_to_keep=1,
            )
            kwargs[self._cache_arg] = model_cache(head)
            logits = self.model(
                input_ids=full[:, split:],
                attention_mask=torch.ones_like(full),
                use_cache=True,
                **kwargs,
            ).logits
        else:
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


#: shortest prompt prefix worth its own cached forward in the shared path
_MIN_SPLIT = 16


@dataclass
class PathCounts:
    """What :func:`shared_path_attributions` ran (the memory bound is checked on these).

    Attributes
    ----------
    forwards : int
        Model forwards (the endpoint forwards included; a split forward counts two).
    backwards : int
        Backward passes (one per target token per chunk of path points).
    max_rows : int
        The most sequences in one forward (and so in one backward's graph).
    split : int
        Prompt positions run as a separate cached forward (0: none; see
        :meth:`TokenLogProbs.scores`).
    fused : bool
        Whether the path ran on the private copy (fused activations, oneDNN linear
        layers: :func:`whybox.llm._fused.fused_twin`).
    """

    forwards: int = 0
    backwards: int = 0
    max_rows: int = 0
    split: int = 0
    fused: bool = False

    def saw(self, rows: int, *, backwards: int = 0, forwards: int = 1) -> None:
        """Count ``forwards`` forwards of ``rows`` sequences and ``backwards`` backward
        passes."""
        self.forwards += forwards
        self.backwards += backwards
        self.max_rows = max(self.max_rows, rows)


class _Replace:
    """A forward hook that records the layer's outputs, or replaces them, call after call,
    by the tensors in ``pending``."""

    def __init__(self) -> None:
        self.pending: list[Tensor] = []
        self.seen: list[Any] = []
        self.leaf = False  # replace the output by a detached copy requiring a gradient

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self.pending:
            value = self.pending.pop(0)
        elif self.leaf and isinstance(output, Tensor):
            value = output.detach().requires_grad_(True)
        else:
            value = output
        self.seen.append(value)
        return value


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


def _per_position(value: Any, rows: int, length: int) -> bool:
    return (
        isinstance(value, Tensor)
        and value.is_floating_point()
        and value.dim() >= 2
        and tuple(value.shape[:2]) == (rows, length)
    )


def _split_point(game: TokenLogProbs, prefix_split: bool | None) -> int:
    """Where the shared path's forwards split (0: they do not): before the prompt's last
    token, whose logits predict the first target token."""
    if prefix_split is False or not game.can_split:
        return 0
    split = game.prompt_length - 1
    return split if split >= (1 if prefix_split else _MIN_SPLIT) else 0


def _agrees(
    runner: TokenLogProbs,
    hook: _Replace,
    pair: Tensor,
    split: int,
    reference: Tensor,
    ends: Tensor,
) -> bool:
    """Whether ``runner`` (a fused copy of the model, forwards split at ``split``) gives
    the endpoint pair's values, calling the hooked layer once per forward with the whole
    forward's per-position outputs (within float rounding): where it does not, the model
    itself runs whole."""
    hook.seen = []
    try:
        with torch.no_grad():
            values = runner.scores(pair, split=split)
    except (TypeError, ValueError, AttributeError, KeyError, RuntimeError, IndexError):
        return False
    parts, (rows, length) = hook.seen, pair.shape
    bounds = [0, split, length] if split else [0, length]
    if len(parts) != len(bounds) - 1 or not all(
        _per_position(part, rows, stop - begin)
        for part, begin, stop in zip(parts, bounds, bounds[1:])
    ):
        return False
    joined = torch.cat(parts, dim=1)
    close = {"rtol": 1e-4, "atol": 1e-5}
    return bool(
        joined.shape == ends.shape
        and torch.allclose(joined, ends, **close)
        and torch.allclose(values, reference, **close)
    )


def _runner(
    game: TokenLogProbs,
    layer: nn.Module,
    hook: _Replace,
    pair: Tensor,
    reference: Tensor,
    ends: Tensor,
    *,
    twin: tuple[nn.Module, nn.Module] | None,
    prefix_split: bool | None,
    counts: PathCounts,
) -> tuple[TokenLogProbs, nn.Module, int]:
    """The game, layer and split the path's forwards run: the first of (fused copy, split),
    (fused copy, whole), (model, split) that :func:`_agrees` with the model's own whole
    forward, else the model itself, whole."""
    options = [] if twin is None else [(game.on(twin[0]), twin[1])]
    options.append((game, layer))
    for runner, runner_layer in options:
        splits = [_split_point(runner, prefix_split)] + ([0] if runner is not game else [])
        for split in dict.fromkeys(splits):  # distinct, in order
            if runner is game and not split:
                continue  # the reference itself
            handle = runner_layer.register_forward_hook(hook)
            try:
                counts.saw(pair.shape[0], forwards=2 if split else 1)
                if _agrees(runner, hook, pair, split, reference, ends):
                    return runner, runner_layer, split
            finally:
                handle.remove()
    return game, layer, 0


def _parts(path: Tensor, split: int) -> list[Tensor]:
    """``path`` ``(rows, L, ...)`` cut where the forward splits: ``[:split]``, ``[split:]``."""
    return [path[:, :split], path[:, split:]] if split else [path]


def shared_path_attributions(
    game: TokenLogProbs,
    layer: nn.Module,
    *,
    alphas: Tensor,
    weights: Tensor,
    from_zero: bool = False,
    multiply_by_inputs: bool = True,
    chunk_size: ChunkSize = "auto",
    prefix_split: bool | None = None,
    fuse: bool = True,
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

    The backward passes are the cost. The model runs as a private copy whose
    Python-written activations (GPT-2's ``gelu_new``) are fused kernels, so each backward
    pass takes one elementwise pass per activation instead of about ten, and whose CPU
    float32 linear layers run oneDNN's matmuls, input gradient only (about twice MKL's
    speed on AVX-512 AMD CPUs; :mod:`whybox.llm._fused`). Each forward is split (``prefix_split``) before the
    prompt's last token into a forward of the first ``P - 1`` positions, whose KV cache
    stays in the graph, and one of the last ``T`` positions (:meth:`TokenLogProbs.scores`):
    no target reads the last layer's output at the first ``P - 1`` positions, so the
    backward passes skip that layer's MLP, attention output and queries there. The split
    and the fused copy are checked once on the endpoint forwards (same layer values and
    log-probabilities as the model's own whole forward, within float rounding) and dropped
    for a model where they do not hold.

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
    prefix_split : bool or None, keyword-only
        Split the forwards as above: ``None`` (default) for prompts of at least 17 tokens
        on models that take ``logits_to_keep`` and a KV cache, ``True`` whatever the
        prompt's length (still checked), ``False`` never. Never changes the result beyond
        float rounding.
    fuse : bool, keyword-only
        Run the path's forwards on a private copy of the model whose Python-written
        activations are fused kernels and CPU float32 linear layers oneDNN's
        (:func:`whybox.llm._fused.fused_twin`; the model itself is never changed), checked
        like the split. Default True.
    counts : PathCounts, keyword-only, optional
        Filled with the forwards, backwards, most rows per forward, the split and whether
        the fused copy ran.

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
    # copied before the hook is registered, so the copy's layer does not carry it
    twin = fused_twin(game.model, layer) if fuse else None
    hook = _Replace()
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            pair = torch.cat([full, game.sequence(torch.zeros_like(ones))])
            reference = game.scores(pair)
            counts.saw(2)
    finally:
        handle.remove()
    ends = hook.seen[0] if len(hook.seen) == 1 else None
    if not _per_position(ends, 2, length):
        return None
    ends = ends.detach()
    runner, runner_layer, split = _runner(
        game,
        layer,
        hook,
        pair,
        reference,
        ends,
        twin=twin,
        prefix_split=prefix_split,
        counts=counts,
    )
    counts.split, counts.fused = split, runner is not game
    handle = runner_layer.register_forward_hook(hook)
    try:
        parts = 2 if split else 1
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
                path = start + alpha.view(shape) * (end - start)
                # one leaf per forward part: a slice of one leaf would cost every backward
                # pass a zero-filled full-size gradient per part and their sum
                leaves = [p.detach().requires_grad_(True) for p in _parts(path, split)]
                hook.pending, hook.seen = list(leaves), []
                values = runner.scores(full.expand(rows, length), split=split)  # (rows, T)
                if hook.pending or len(hook.seen) != parts:
                    raise RuntimeError(
                        f"shared_path_attributions: the layer ran {len(hook.seen)} times in a "
                        f"forward where the endpoint forward ran it {parts} time(s)."
                    )
                counts.saw(rows, backwards=t, forwards=parts)
                bounds = [0, split, length] if split else [0, length]
                for k in range(t):
                    grads = torch.autograd.grad(
                        values[:, k],
                        leaves,
                        grad_outputs=weight.to(values.dtype),
                        retain_graph=k < t - 1,
                        allow_unused=True,
                    )
                    for grad, begin, stop in zip(grads, bounds, bounds[1:]):
                        if grad is not None:
                            totals[k, begin:stop] += grad.sum(dim=0)
    finally:
        hook.pending = []
        handle.remove()
    return (end - start) * totals if multiply_by_inputs else totals


def shared_sample_attributions(
    game: TokenLogProbs,
    layer: nn.Module,
    *,
    points: Tensor,
    starts: Tensor,
    ends: Tensor,
    multiply_by_inputs: bool = True,
    chunk_size: ChunkSize = "auto",
    prefix_split: bool | None = None,
    fuse: bool = True,
    counts: PathCounts | None = None,
) -> Tensor | None:
    """Sampled layer gradients (GradientSHAP) of every target token from shared forwards.

    Target ``t``'s attribution is ``mean_s (a(ends[t, s]) - a(starts[t, s])) * d value_t /
    d a (points[t, s])``, with ``a(row)`` the layer's output on the model input of an
    interpretable row (without the factor when ``multiply_by_inputs`` is False): Captum's
    LayerGradientShap with one call per target token, whose random points are given. A
    token input keeps only the entries equal to 1, so the points of all targets are a few
    distinct sequences (usually one: the baseline prompt); each distinct sequence runs ONE
    forward for all targets (as :func:`shared_path_attributions`, on the fused copy and
    split where that checks out) and each target one backward pass per chunk of them,
    where one call per target runs ``3`` forwards of ``S`` sequences and a backward pass.

    Parameters
    ----------
    game : TokenLogProbs
    layer : nn.Module
        Called once per forward, returning one floating tensor ``(rows, L, ...)``.
    points, starts, ends : Tensor, shape ``(T, S, M')``
        Interpretable rows per target token and sample: where the gradient is taken, the
        baseline and the (noisy) input.
    multiply_by_inputs, chunk_size, prefix_split, fuse, counts :
        As :func:`shared_path_attributions` (``chunk_size``: distinct sequences per
        forward).

    Returns
    -------
    Tensor or None
        ``(T, L, ...)`` layer attributions; ``None`` when ``layer`` does not return one
        per-position tensor per forward.
    """
    counts = counts if counts is not None else PathCounts()
    t, n_samples = points.shape[:2]
    if t != game.target.numel() or starts.shape != points.shape or ends.shape != points.shape:
        fail(
            "shared_sample_attributions",
            "points",
            f"(T={game.target.numel()}, S, M') rows, like starts and ends",
            tuple(points.shape),
        )
    device = _device(game.model)
    width = points.shape[-1]
    point_ids = game.sequence(points.reshape(-1, width).to(device))  # (T S, L)
    value_ids = game.sequence(torch.cat([starts, ends]).reshape(-1, width).to(device))
    unique_points, point_of = torch.unique(point_ids, dim=0, return_inverse=True)
    unique_values, value_of = torch.unique(value_ids, dim=0, return_inverse=True)
    length = point_ids.shape[1]
    step = max(1, path_rows(game, chunk_size, device))
    twin = fused_twin(game.model, layer) if fuse else None  # before the hook is added
    hook = _Replace()
    handle = layer.register_forward_hook(hook)
    layer_values = []
    try:
        with torch.no_grad():
            for first in range(0, unique_values.shape[0], step):
                chunk = unique_values[first : first + step]
                hook.seen = []
                game.scores(chunk)
                counts.saw(chunk.shape[0])
                if len(hook.seen) != 1 or not _per_position(hook.seen[0], chunk.shape[0], length):
                    return None
                layer_values.append(hook.seen[0].detach())
            probe = unique_points[:1].expand(2, -1)
            hook.seen = []
            reference = game.scores(probe)
            counts.saw(2)
    finally:
        handle.remove()
    values = torch.cat(layer_values)  # (V, L, ...)
    probe_ends = hook.seen[0].detach() if len(hook.seen) == 1 else None
    if not _per_position(probe_ends, 2, length):
        return None
    runner, runner_layer, split = _runner(
        game,
        layer,
        hook,
        probe,
        reference,
        probe_ends,
        twin=twin,
        prefix_split=prefix_split,
        counts=counts,
    )
    counts.split, counts.fused = split, runner is not game
    # how often target k's samples use point sequence u, and their ends / starts
    flat = torch.arange(t, device=device).repeat_interleave(n_samples)
    uses = torch.zeros(t, unique_points.shape[0], dtype=values.dtype, device=device)
    uses.index_put_((flat, point_of), torch.ones_like(flat, dtype=values.dtype), accumulate=True)
    n_values = unique_values.shape[0]
    start_of, end_of = value_of[: t * n_samples], value_of[t * n_samples :]
    ends_w = torch.zeros(t, unique_points.shape[0], n_values, dtype=values.dtype, device=device)
    starts_w = torch.zeros_like(ends_w)
    one = torch.ones_like(flat, dtype=values.dtype)
    ends_w.index_put_((flat, point_of, end_of), one, accumulate=True)
    starts_w.index_put_((flat, point_of, start_of), one, accumulate=True)
    flat_values = values.reshape(n_values, -1)
    totals = torch.zeros((t,) + tuple(values.shape[1:]), dtype=values.dtype, device=device)
    parts = 2 if split else 1
    hook.leaf = True
    handle = runner_layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            for first in range(0, unique_points.shape[0], step):
                chunk = unique_points[first : first + step]
                rows = chunk.shape[0]
                hook.seen = []
                scores = runner.scores(chunk, split=split)  # (rows, T)
                leaves = list(hook.seen)
                if len(leaves) != parts:
                    raise RuntimeError(
                        f"shared_sample_attributions: the layer ran {len(leaves)} times in a "
                        f"forward where the endpoint forward ran it {parts} time(s)."
                    )
                counts.saw(rows, backwards=t, forwards=parts)
                used = uses[:, first : first + step]  # (T, rows)
                for k in range(t):
                    if not bool((used[k] > 0).any()):
                        continue
                    weight = used[k] / n_samples if not multiply_by_inputs else used[k] > 0
                    grads = torch.autograd.grad(
                        scores[:, k],
                        leaves,
                        grad_outputs=weight.to(scores.dtype),
                        retain_graph=True,
                        allow_unused=True,
                    )
                    grad = torch.cat(
                        [
                            torch.zeros_like(leaf) if g is None else g
                            for g, leaf in zip(grads, leaves)
                        ],
                        dim=1,
                    )  # (rows, L, ...)
                    if not multiply_by_inputs:
                        totals[k] += grad.sum(dim=0)
                        continue
                    diff = ends_w[k, first : first + step] - starts_w[k, first : first + step]
                    factor = (diff @ flat_values).view_as(grad) / n_samples
                    totals[k] += (grad * factor).sum(dim=0)
    finally:
        hook.leaf = False
        handle.remove()
    return totals


def captum_gradient_shap_draws(
    rows: Tensor,
    baselines: Tensor,
    *,
    n_samples: int,
    stdevs: float,
    n_targets: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The random rows of Captum 0.9's ``LLMGradientAttribution(LayerGradientShap)``.

    Captum calls ``LayerGradientShap.attribute`` once per target token; each call draws, in
    this order, the baselines' rows (``np.random.choice``), the input noise
    (``torch.normal``) and the points' coefficients (``np.random.uniform``), which depend on
    shapes only: drawing them for every target first consumes the global generators as
    Captum does and gives its points.

    Parameters
    ----------
    rows : Tensor, shape ``(1, M)``
        The interpretable input (ones).
    baselines : Tensor, shape ``(B, M)``
        The baseline distribution.
    n_samples : int, keyword-only
    stdevs : float, keyword-only
        Standard deviation of the input noise.
    n_targets : int, keyword-only

    Returns
    -------
    (points, starts, ends) : Tensor, each ``(T, S, M)``
        Where the gradient is taken (``r * noisy + (1 - r) * baseline``), the drawn
        baselines and the noisy inputs, for :func:`shared_sample_attributions`.
    """
    import numpy as np

    points, starts, ends = [], [], []
    size = (rows.shape[0] * n_samples,) + tuple(rows.shape[1:])
    for _ in range(n_targets):
        index = np.random.choice(baselines.shape[0], rows.shape[0] * n_samples).tolist()
        base = baselines[index]
        noise = torch.normal(0, torch.tensor(stdevs, device=rows.device).repeat(size))
        noisy = rows.repeat_interleave(n_samples, dim=0) + noise
        coefficient = torch.tensor(
            np.random.uniform(0.0, 1.0, noisy.shape[0]), device=rows.device, dtype=noisy.dtype
        ).view((-1,) + (1,) * (noisy.dim() - 1))
        points.append(coefficient * noisy + (1.0 - coefficient) * base)
        starts.append(base.to(noisy.dtype))
        ends.append(noisy)
    return torch.stack(points), torch.stack(starts), torch.stack(ends)


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
            ran (``"shared_forwards"``) and its ``"forwards"``, ``"backwards"``,
            ``"max_rows_per_forward"``, ``"prefix_split"`` (prompt positions run as a
            separate cached forward) and ``"fused_activations"`` (whether the private
            copy of the model with fused activations and oneDNN linear layers ran;
            :func:`shared_path_attributions`).
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
        else:
            points, starts, ends = _gradient_shap_rows(game, n, n_samples, seed, device)
            layer_attr = shared_sample_attributions(
                game,
                self.layer,
                points=points,
                starts=starts,
                ends=ends,
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
            "prefix_split": counts.split or None,
            "fused_activations": counts.fused,
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


def _gradient_shap_rows(
    game: TokenLogProbs, n: int, n_samples: Any, seed: Any, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """GradientSHAP's random rows ``(T, S, M')``: points ``alpha * 1`` with ``alpha ~
    U(0, 1)`` per target and sample (drawn from :func:`whybox.core.randomness.make_random`
    of ``seed``), between the baseline rows (zeros) and the input (ones)."""
    from whybox.core.randomness import check_seed, make_random

    check_int("LLMGradient", "n_samples", n_samples, minimum=1)
    check_seed("LLMGradient", "seed", seed)
    ends = torch.ones(n, n_samples, game.n_features, device=device)
    alpha = make_random(seed).uniform(n * n_samples, like=ends).view(n, n_samples, 1)
    return alpha * ends, torch.zeros_like(ends), ends


def _device(model: nn.Module) -> torch.device:
    from .scoring import model_device

    return model_device(model)
