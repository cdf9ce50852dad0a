"""Perturbation attribution of generated text, batched across perturbations and tokens.

The game: a coalition ``S`` of the prompt's interpretable features (the rest take their
baselines) is worth, for every target token ``y_t``, ``log p(y_t | x_S, y_<t)`` (or the
probability, or ``log p(A_t) - log p(B_t)`` for a contrast). ONE teacher-forced forward of
the perturbed prompt followed by the target gives all ``T`` values
(:class:`~whybox.llm.scoring.TeacherForcing`), where Captum runs ``T`` forwards; perturbed
prompts are batched, and a coalition is evaluated once however often a method asks for it.

The attribution maths is whybox's native perturbation methods (feature ablation, exact and
sampled Shapley values, LIME, KernelSHAP), run on the game with one *example* per
explained output -- the sequence total and each token -- whose rows the game shares: the
outputs are explained together, from the same perturbations.

Beyond Captum: ``step_wise=True`` also makes the generated tokens features (each token is
attributed to the prompt AND to the tokens generated before it; a token cannot depend on
later ones, so those entries are 0); ``contrast=`` explains why the target rather than
an alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from whybox import methods as native
from whybox.core.chunks import ChunkSize
from whybox.core.validation import check_bool, check_choice, fail

from .result import LLMAttributionResult
from .scoring import TeacherForcing
from .targets import contrast_tokens, target_tokens
from .tokens import pretty_tokens

__all__ = ["PromptGame", "LLMPerturbation", "METHODS"]

#: native method name -> (class, whether it gives one attribution per output token)
METHODS: dict[str, type] = {
    "feature_ablation": native.FeatureAblation,
    "shapley_values": native.ShapleyValues,
    "shapley_value_sampling": native.ShapleyValueSampling,
    "lime": native.Lime,
    "kernel_shap": native.KernelShap,
}
ATTR_TARGETS = ("log_prob", "prob")


class PromptGame:
    """The value of perturbed prompts for every target token, as a forward function.

    Called with interpretable rows ``(R, M')`` (``M' = M`` prompt features, plus ``T``
    generated-token features when ``step_wise``), where rows come in groups of
    ``n_examples`` identical rows (one per explained output), it returns ``(R, 1 + T)``:
    column 0 the sequence value, column ``1 + t`` token ``t``'s value.

    Parameters
    ----------
    scorer : TeacherForcing (or a remote scorer with the same ``score``)
    inp : InterpretableInput
    target : Tensor ``(T,)`` long
    n_examples : int
        Rows per perturbation (the explained outputs).
    attr_target : "log_prob" or "prob", keyword-only
    contrast : Tensor ``(T,)`` long, optional, keyword-only
        Alternative tokens: values become ``log p(target_t) - log p(contrast_t)`` (with
        ``"prob"``: the probabilities' difference; the sequence value is the difference of
        the sequences' log-probabilities, or of their probabilities).
    step_wise : bool, keyword-only
        Features ``M .. M + T - 1`` are the generated tokens, replaced by
        ``generated_baseline`` when absent.
    generated_baseline : int, keyword-only
        Token id of an absent generated token.
    draws : callable, optional, keyword-only
        With random baselines: how many baseline draws perturbation ``k`` makes (the last
        one is used). Default one each. Lets the facade repeat Captum's draw order.
    inspect : callable, optional, keyword-only
        ``inspect(prompt, response, probs)`` after each evaluated perturbation (Captum's
        ``_inspect_forward``): the prompt and response text, and the ``1 + T``
        probabilities (sequence, then tokens).

    Attributes
    ----------
    n_evaluated : int
        Perturbed prompts scored.
    """

    def __init__(
        self,
        scorer: Any,
        inp: Any,
        target: Tensor,
        n_examples: int,
        *,
        attr_target: str = "log_prob",
        contrast: Tensor | None = None,
        step_wise: bool = False,
        generated_baseline: int = 0,
        draws: Callable[[int], int] | None = None,
        inspect: Callable[[str, str, list[float]], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.inp = inp
        self.target = target
        self.n_examples = n_examples
        self.attr_target = attr_target
        self.contrast = contrast
        self.step_wise = step_wise
        self.generated_baseline = generated_baseline
        self.draws = draws
        self.inspect = inspect
        self.n_prompt = inp.n_itp_features
        self.random = bool(getattr(inp, "random_baselines", False))
        self._cache: dict[bytes, Tensor] = {}
        self._seen = 0  # perturbations evaluated with random baselines (draw schedule)
        self.n_evaluated = 0

    def restart(self) -> None:
        """Start a new pass of a method: its perturbations count from 0 again (for the
        draw schedule); values already computed are kept."""
        self._seen = 0

    @property
    def n_features(self) -> int:
        """``M'``: prompt features, plus generated tokens when step-wise."""
        return self.n_prompt + (self.target.numel() if self.step_wise else 0)

    def __call__(self, rows: Tensor, *_: Any) -> Tensor:
        n = self.n_examples
        if rows.dim() != 2 or rows.shape[1] != self.n_features:
            raise ValueError(
                f"PromptGame: expected interpretable rows (R, {self.n_features}). Got "
                f"{tuple(rows.shape)}."
            )
        keep = rows == 1
        if keep.shape[0] % n == 0:
            grouped = keep.view(-1, n, keep.shape[1])
            if bool((grouped == grouped[:, :1]).all()):
                # every explained output sees the same perturbation: evaluate it once
                return self._values(grouped[:, 0]).repeat_interleave(n, dim=0)
        return self._values(keep)

    # -- values of perturbations -------------------------------------------------------
    def _values(self, keep: Tensor) -> Tensor:
        if self.random:
            # every perturbation draws its own baselines, in order: no sharing
            return self._evaluate(keep)
        flags = np.packbits(keep.cpu().numpy(), axis=1)
        keys = [row.tobytes() for row in flags]
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._cache and key not in missing:
                missing[key] = i
        if missing:
            fresh = self._evaluate(keep[list(missing.values())])
            for key, value in zip(missing, fresh):
                self._cache[key] = value
        return torch.stack([self._cache[key] for key in keys])

    def _evaluate(self, keep: Tensor) -> Tensor:
        """Values ``(K, 1 + T)`` of ``K`` perturbations (keep flags ``(K, M')``)."""
        prompt_keep = keep[:, : self.n_prompt]
        if self.random:
            prompts: Any = []
            for row in prompt_keep:
                for _ in range((self.draws(self._seen) if self.draws else 1) - 1):
                    self.inp.draw_baselines()  # a draw Captum makes for a perturbation whybox shares
                prompts.extend(self.inp.to_model_inputs(row.unsqueeze(0)))
                self._seen += 1
        else:
            prompts = self.inp.to_model_inputs(prompt_keep)
        contexts = None
        if self.step_wise and self.target.numel() > 1:
            present = keep[:, self.n_prompt : self.n_features - 1].to(self.target.device)
            tail = self.target[:-1].expand_as(present)
            contexts = torch.where(present, tail, torch.full_like(tail, self.generated_baseline))
        log_p, log_q = self.scorer.score(
            prompts, self.target, contexts=contexts, alternatives=self.contrast
        )
        values = self._combine(log_p, log_q)
        self.n_evaluated += values.shape[0]
        if self.inspect is not None:
            self._report(prompts, values)
        return values

    def _combine(self, log_p: Tensor, log_q: Tensor | None) -> Tensor:
        """``[sequence, token_0, ..., token_{T-1}]`` per perturbation."""
        if self.attr_target == "log_prob":
            if log_q is None:
                tokens = log_p
            else:
                tokens = log_p - log_q
            return torch.cat([tokens.sum(dim=1, keepdim=True), tokens], dim=1)
        seq_p = log_p.sum(dim=1, keepdim=True).exp()
        if log_q is None:
            return torch.cat([seq_p, log_p.exp()], dim=1)
        seq_q = log_q.sum(dim=1, keepdim=True).exp()
        return torch.cat([seq_p - seq_q, log_p.exp() - log_q.exp()], dim=1)

    def _report(self, prompts: Any, values: Tensor) -> None:
        response = self.scorer.tokenizer.decode(self.target)
        probs = values.exp() if self.attr_target == "log_prob" else values
        for k in range(values.shape[0]):
            self.inspect(self.scorer.prompt_text(prompts[k]), response, probs[k].tolist())

    def unperturbed(self) -> Tensor:
        """``(1 + T,)`` values of the unperturbed prompt (draws no random baselines)."""
        key = np.packbits(np.ones((1, self.n_features), dtype=bool), axis=1)[0].tobytes()
        if key in self._cache:
            return self._cache[key]
        log_p, log_q = self.scorer.score(
            [self.inp.to_model_input()], self.target, alternatives=self.contrast
        )
        values = self._combine(log_p, log_q)[0]
        if not self.random:
            self._cache[key] = values
        return values


def n_outputs(per_token: bool, n_target: int) -> int:
    """Explained outputs: the sequence, plus each token when ``per_token``."""
    return 1 + n_target if per_token else 1


def build_result(
    attributions: Tensor,
    game: PromptGame,
    inp: Any,
    tokenizer: Any,
    *,
    per_token: bool,
    output_probs: Tensor | None = None,
) -> LLMAttributionResult:
    """Assemble the result from ``(n_outputs, M')`` attributions."""
    output_tokens = pretty_tokens(game.target, tokenizer)
    prompt = inp.format_attr(attributions[:, : game.n_prompt])
    input_tokens = list(inp.values)
    if game.step_wise:
        prompt = torch.cat([prompt, attributions[:, game.n_prompt :]], dim=1)
        input_tokens += output_tokens
    result = LLMAttributionResult(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        seq_attr=prompt[0],
        token_attr=prompt[1:] if per_token else None,
        output_probs=output_probs,
        inp=inp,
    )
    result.info = {
        "step_wise": game.step_wise,
        "n_prompt_features": len(inp.values),
        "contrast": None if game.contrast is None else pretty_tokens(game.contrast, tokenizer),
        "attr_target": game.attr_target,
        "perturbations_evaluated": game.n_evaluated,
        "forwards": getattr(game.scorer, "n_forwards", None),
    }
    return result


class LLMPerturbation:
    """Perturbation attribution of a causal LM's output to its prompt (native API).

    Parameters
    ----------
    model : Hugging Face causal LM
    tokenizer : its tokenizer
    method : str, keyword-only
        ``"feature_ablation"`` (default), ``"shapley_values"`` (exact),
        ``"shapley_value_sampling"``, ``"lime"`` or ``"kernel_shap"``.
    attr_target : "log_prob" or "prob", keyword-only
        Explain log-probabilities (default) or probabilities.
    chunk_size : int, "auto" or None, keyword-only
        Perturbed prompts per forward (``"auto"``: memory-bounded). Never changes results.
    prefix_cache : bool, keyword-only
        Share the KV cache of prompt prefixes common to a batch (default True).

    Examples
    --------
    >>> explainer = LLMPerturbation(model, tokenizer)
    >>> result = explainer.attribute(TextTokenInput("The capital of France is", tokenizer))
    >>> result.token_attr.shape  # (generated tokens, prompt tokens)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        method: str = "feature_ablation",
        attr_target: str = "log_prob",
        chunk_size: ChunkSize = "auto",
        prefix_cache: bool = True,
    ) -> None:
        owner = type(self).__name__
        check_choice(owner, "method", method, tuple(METHODS))
        check_choice(owner, "attr_target", attr_target, ATTR_TARGETS)
        check_bool(owner, "prefix_cache", prefix_cache)
        self.model = model
        self.tokenizer = tokenizer
        self.method = method
        self.attr_target = attr_target
        self.chunk_size = chunk_size
        self.prefix_cache = prefix_cache

    def _scorer(self) -> Any:
        return TeacherForcing(
            self.model,
            self.tokenizer,
            chunk_size=self.chunk_size,
            prefix_cache=self.prefix_cache,
            owner=type(self).__name__,
        )

    def _target(self, inp: Any, target: Any, gen_args: Any) -> Tensor:
        return target_tokens(
            self.model, self.tokenizer, inp, target, gen_args, owner=type(self).__name__
        )

    def attribute(
        self,
        inp: Any,
        *,
        target: Any = None,
        contrast: Any = None,
        gen_args: dict[str, Any] | None = None,
        step_wise: bool = False,
        per_token: bool = True,
        feature_mask: Tensor | None = None,
        n_samples: int | None = None,
        seed: Any = None,
        generated_baseline: int | None = None,
        show_progress: bool = False,
    ) -> LLMAttributionResult:
        """Attribute the target continuation (generated when ``None``) to the prompt.

        Parameters
        ----------
        inp : InterpretableInput
            The prompt and what its features are (tokens, template segments, image
            segments); absent features take the input's baselines.
        target : str, Tensor ``(T,)``, list of int, or None
            The continuation to explain; ``None`` generates it (``gen_args``).
        contrast : str, int, Tensor or list, optional
            Alternative tokens (one, or one per target token): explain
            ``log p(target_t) - log p(contrast_t)``, why the target rather than them.
        gen_args : dict, optional
            ``generate`` arguments when ``target`` is None (default: greedy, 25 tokens).
        step_wise : bool
            Also attribute each generated token to the tokens generated before it
            (``input_tokens`` then ends with the generated tokens).
        per_token : bool
            Attribute each target token as well as the sequence (one set of
            perturbations serves all).
        feature_mask : Tensor ``(1, M)`` long, optional
            Group prompt features (ids ``0..G-1``), e.g. words from
            :func:`~whybox.llm.tokens.word_groups`.
        n_samples : int, optional
            Samples of the sampling methods (each method's default otherwise).
        seed : int, torch.Generator or None
            Random source of the sampling methods.
        generated_baseline : int, optional
            Token id of an absent generated token (step-wise); default the input's
            baseline id, or the tokenizer's unknown / padding token, or 0.
        show_progress : bool

        Returns
        -------
        LLMAttributionResult
            ``seq_attr`` ``(M,)``, ``token_attr`` ``(T, M)`` (``M`` grows by ``T`` when
            step-wise), ``output_probs`` ``(T,)`` given the unperturbed prompt; ``info``
            holds the forward count.
        """
        owner = type(self).__name__
        check_bool(owner, "step_wise", step_wise)
        check_bool(owner, "per_token", per_token)
        tokens = self._target(inp, target, gen_args)
        alt = (
            None
            if contrast is None
            else contrast_tokens(self.tokenizer, contrast, len(tokens), owner=owner)
        )
        n = n_outputs(per_token, len(tokens))
        game = PromptGame(
            self._scorer(),
            inp,
            tokens,
            n,
            attr_target=self.attr_target,
            contrast=alt,
            step_wise=step_wise,
            generated_baseline=_generated_baseline(inp, self.tokenizer, generated_baseline),
        )
        mask = _feature_mask(feature_mask, game, owner)
        options: dict[str, Any] = {"feature_mask": mask, "show_progress": show_progress}
        if self.method in ("shapley_value_sampling", "lime", "kernel_shap"):
            options["seed"] = seed
            if n_samples is not None:
                options["n_samples"] = n_samples
        elif n_samples is not None:  # a seed is harmless: nothing is drawn
            fail(owner, "n_samples", f"None for method {self.method!r} (not sampled)", n_samples)
        inputs = torch.ones(n, game.n_features)
        explanation = METHODS[self.method](game).attribute(
            inputs, baselines=0.0, target=list(range(n)), **options
        )
        attributions = explanation.attributions.reshape(n, game.n_features)
        probs = game.unperturbed()[1:]
        if self.attr_target == "log_prob":
            probs = probs.exp()
        output_probs = probs if contrast is None else None
        result = build_result(
            attributions, game, inp, self.tokenizer, per_token=per_token, output_probs=output_probs
        )
        result.info["method"] = self.method
        return result


def _generated_baseline(inp: Any, tokenizer: Any, given: int | None) -> int:
    if given is not None:
        return int(given)
    if isinstance(getattr(inp, "baselines", None), int):
        return inp.baselines
    for name in ("unk_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def _feature_mask(mask: Tensor | None, game: PromptGame, owner: str) -> Tensor | None:
    """The prompt's feature mask, extended by one feature per generated token."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.numel() != game.n_prompt:
        fail(owner, "feature_mask", f"a long tensor of {game.n_prompt} feature ids", mask)
    mask = mask.reshape(1, -1).long()
    if not game.step_wise:
        return mask
    start = int(mask.max()) + 1
    generated = start + torch.arange(game.target.numel()).reshape(1, -1)
    return torch.cat([mask, generated], dim=1)
