"""Captum-compatible LLM attribution: ``LLMAttribution``, ``LLMGradientAttribution``,
``RemoteLLMAttribution`` and their inputs, result and providers (Captum 0.9 names and
signatures).

The wrapped ``attr_method`` is a :mod:`whybox.attr` object (``FeatureAblation(model)``,
``LayerIntegratedGradients(model, model.transformer.wte)``, ...); its maths runs unchanged
on a forward function over the prompt's interpretable features (as in Captum), but that
function is whybox's (:mod:`whybox.llm`): one teacher-forced forward per perturbed prompt
scores every target token, perturbations are batched, and each explained output -- the
sequence and every token -- is one example of the same call.

Differences from Captum, on purpose:

* the numbers are right by default. Captum's default ``use_cached_outputs=True`` is wrong
  on transformers 5; whybox equals Captum's ``use_cached_outputs=False`` whatever
  ``use_cached_outputs`` and ``forward_in_tokens`` say (teacher forcing in one forward is
  token-by-token decoding for a causal decoder; a model whose earlier logits depend on
  later tokens is decoded token by token, see :class:`whybox.llm.scoring.TeacherForcing`);
* ``perturbations_per_eval`` batches perturbed prompts (Captum cannot batch them);
* ``_inspect_forward`` is called once per distinct perturbed prompt evaluated.

Random baselines (:class:`ProductBaselines`) are drawn once per perturbation in Captum's
order -- including the first, unperturbed evaluation, and the full coalition Captum
evaluates at the end of every ShapleyValueSampling permutation -- so seeded code gives
Captum's numbers for FeatureAblation, ShapleyValueSampling and Lime. (Exact ShapleyValues
evaluates each of its ``2**M`` coalitions once, with one draw each, not Captum's ``M * M!``
permutation steps.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import copy
from typing import Any

import torch
from torch import Tensor

from whybox.core.paths import RULES, path_plan_tensors
from whybox.llm.gradient import (
    TokenLogProbs,
    captum_gradient_shap_draws,
    shared_path_attributions,
    shared_sample_attributions,
    token_attributions,
)
from whybox.llm.inputs import (
    ImageMaskInput,
    InterpretableInput,
    ProductBaselines,
    TextTemplateInput,
    TextTokenInput,
)
from whybox.llm.perturbation import PromptGame, n_outputs
from whybox.llm.remote import (
    RemoteLLMProvider,
    RemoteScoring,
    VLLMProvider,
    remote_target,
)
from whybox.llm.result import LLMAttributionResult
from whybox.llm.scoring import TeacherForcing, as_model_input, model_device
from whybox.llm.targets import target_tokens
from whybox.llm.tokens import pretty_tokens

from ._base import Attribution
from ._layer import LayerGradientXActivation, LayerIntegratedGradients
from ._layer_gradient_shap import LayerGradientShap
from ._perturbation import FeatureAblation, KernelShap, Lime, ShapleyValues, ShapleyValueSampling

__all__ = [
    "LLMAttribution",
    "LLMGradientAttribution",
    "LLMAttributionResult",
    "RemoteLLMAttribution",
    "RemoteLLMProvider",
    "VLLMProvider",
    "InterpretableInput",
    "TextTokenInput",
    "TextTemplateInput",
    "ImageMaskInput",
    "ProductBaselines",
]


class BaseLLMAttribution(Attribution):
    """Holds the model (the wrapped method's ``forward_func``), tokenizer and device."""

    SUPPORTED_INPUTS: tuple[type, ...] = ()
    SUPPORTED_METHODS: tuple[type, ...] = ()

    def __init__(self, attr_method: Attribution, tokenizer: Any) -> None:
        if not isinstance(attr_method, self.SUPPORTED_METHODS):
            names = ", ".join(m.__name__ for m in self.SUPPORTED_METHODS)
            raise TypeError(
                f"The 'attr_method' parameter of {type(self).__name__} must be one of the "
                f"whybox.attr classes {names}. Got {type(attr_method).__name__}."
            )
        super().__init__(attr_method.forward_func)
        self.model = self.forward_func
        self.tokenizer = tokenizer
        self.device = model_device(self.model)

    def _check_input(self, inp: Any) -> None:
        if not isinstance(inp, self.SUPPORTED_INPUTS):
            names = ", ".join(c.__name__ for c in self.SUPPORTED_INPUTS)
            raise TypeError(
                f"The 'inp' parameter of {type(self).__name__}.attribute must be one of "
                f"{names}. Got {type(inp).__name__}."
            )

    def _target_tokens(self, inp: Any, target: Any, gen_args: Any) -> Tensor:
        return target_tokens(
            self.model, self.tokenizer, inp, target, gen_args, owner=type(self).__name__
        )

    # Captum's names of the two steps, for code written against Captum's base class
    def _get_target_tokens(
        self,
        inp: InterpretableInput,
        target: str | Tensor | None = None,
        gen_args: dict[str, Any] | None = None,
    ) -> Tensor:
        """The target's token ids ``(T,)``: generated from ``inp`` when ``target`` is
        ``None``, else ``target`` tokenised without special tokens (or given as ids).

        Parameters
        ----------
        inp : one of ``SUPPORTED_INPUTS``
        target : str or Tensor, optional
        gen_args : dict, optional
            ``generate`` arguments (only without ``target``).

        Returns
        -------
        Tensor
            Long, on the CPU.

        Raises
        ------
        TypeError
            For an unsupported input or target type.
        ValueError
            For ``gen_args`` with a ``target``, or an empty target.
        """
        self._check_input(inp)
        return self._target_tokens(inp, target, gen_args)

    def _format_model_input(self, model_input: str | Tensor | Mapping) -> dict[str, Any]:
        """An input's ``to_model_input()`` as the model's keyword arguments: a string is
        tokenised and a tensor taken as ``input_ids`` (both on ``self.device``); a
        mapping (a processor's output) is copied into a dict.

        Parameters
        ----------
        model_input : str, Tensor or Mapping

        Returns
        -------
        dict

        Raises
        ------
        TypeError
            For any other type.
        """
        return as_model_input(model_input, self.tokenizer, self.device)

    def attribute_future(self) -> Callable[[], LLMAttributionResult]:
        """Not implemented (as in Captum)."""
        raise NotImplementedError(f"attribute_future is not implemented for {type(self).__name__}")


def _captum_draws(method: Any, inp: Any, kwargs: dict[str, Any]) -> Callable[[int], int] | None:
    """Baseline draws per perturbation that repeat Captum's calls, or ``None`` (one each).

    ShapleyValueSampling: Captum evaluates the full coalition at the end of every
    permutation (one forward, one draw, its value never used); whybox evaluates it once
    after the last permutation. So the first step of every later permutation, and the
    final full coalition, make the draws Captum's skipped evaluations made.
    """
    if not isinstance(method, ShapleyValueSampling) or not inp.random_baselines:
        return None
    mask = kwargs.get("feature_mask")
    m = inp.n_itp_features if mask is None else int(torch.as_tensor(mask).unique().numel())
    samples = int(kwargs.get("n_samples", 25))
    inner = m - 1
    last = 1 + samples * inner

    def draws(k: int) -> int:
        if inner == 0:
            return 1 if k == 0 else samples
        if 1 < k < last and (k - 1) % inner == 0:
            return 2
        return 1

    return draws


class LLMAttribution(BaseLLMAttribution):
    """Captum-compatible perturbation attribution of generated text.

    Parameters
    ----------
    attr_method : FeatureAblation, ShapleyValueSampling, ShapleyValues, Lime or KernelShap
        A :mod:`whybox.attr` object built on the causal LM (Hugging Face style). Lime and
        KernelShap give the sequence attribution only (``token_attr`` is ``None``).
    tokenizer : the model's tokenizer
    attr_target : "log_prob" or "prob"
        Attribute log-probabilities (default) or probabilities.
    """

    SUPPORTED_METHODS = (FeatureAblation, ShapleyValueSampling, ShapleyValues, Lime, KernelShap)
    SUPPORTED_PER_TOKEN_ATTR_METHODS = (FeatureAblation, ShapleyValueSampling, ShapleyValues)
    SUPPORTED_INPUTS = (TextTemplateInput, TextTokenInput, ImageMaskInput)

    def __init__(self, attr_method: Any, tokenizer: Any, attr_target: str = "log_prob") -> None:
        super().__init__(attr_method, tokenizer)
        self.attr_method = copy(attr_method)
        self.include_per_token_attr = isinstance(attr_method, self.SUPPORTED_PER_TOKEN_ATTR_METHODS)
        if attr_target not in ("log_prob", "prob"):
            raise ValueError(
                "The 'attr_target' parameter of LLMAttribution must be 'log_prob' or 'prob'. "
                f"Got {attr_target!r}."
            )
        self.attr_target = attr_target

    def _scorer(self) -> Any:
        return TeacherForcing(self.model, self.tokenizer, owner=type(self).__name__)

    def attribute(
        self,
        inp: InterpretableInput,
        target: str | Tensor | None = None,
        num_trials: int = 1,
        gen_args: dict[str, Any] | None = None,
        use_cached_outputs: bool = True,
        _inspect_forward: Callable[[str, str, list[float]], None] | None = None,
        forward_in_tokens: bool = True,
        **kwargs: Any,
    ) -> LLMAttributionResult:
        """Attribute the target (generated from ``inp`` when ``None``) to ``inp``'s
        features.

        Parameters
        ----------
        inp : TextTokenInput, TextTemplateInput or ImageMaskInput
        target : str or Tensor ``(T,)`` of token ids, optional
        num_trials : int
            Average over this many runs (for the sampling methods).
        gen_args : dict, optional
            ``generate`` arguments when ``target`` is None (default greedy, 25 tokens).
        use_cached_outputs, forward_in_tokens : bool
            Accepted for compatibility; the numbers never depend on them (see the module
            notes).
        _inspect_forward : callable, optional
            ``f(prompt, response, probs)`` per distinct perturbed prompt evaluated.
        **kwargs
            Passed to the wrapped method's ``attribute`` (``feature_mask``, ``n_samples``,
            ``perturbations_per_eval``, ``show_progress``, ...).

        Returns
        -------
        LLMAttributionResult
            ``seq_attr`` ``(M,)`` and ``token_attr`` ``(T, M)`` (``None`` for Lime and
            KernelShap); ``M`` counts the input's raw features after ``format_attr``.
        """
        self._check_input(inp)
        if not isinstance(num_trials, int) or isinstance(num_trials, bool) or num_trials < 1:
            raise ValueError(
                f"The 'num_trials' parameter of {type(self).__name__}.attribute must be an "
                f"int >= 1. Got {num_trials!r}."
            )
        tokens = self._target_tokens(inp, target, gen_args)
        n = n_outputs(self.include_per_token_attr, len(tokens))
        game = PromptGame(
            self._scorer(),
            inp,
            tokens,
            n,
            attr_target=self.attr_target,
            draws=_captum_draws(self.attr_method, inp, kwargs),
            inspect=_inspect_forward,
        )
        method = copy(self.attr_method)
        method.forward_func = game
        rows = inp.to_tensor().to(self.device).expand(n, -1)
        total = torch.zeros(n, inp.n_itp_features, dtype=torch.float, device=self.device)
        for _ in range(num_trials):
            game.restart()
            attributions = method.attribute(rows, target=list(range(n)), **kwargs)
            total += attributions.reshape(total.shape).to(total)
        attr = inp.format_attr(total / num_trials)
        result = LLMAttributionResult(
            seq_attr=attr[0],
            token_attr=attr[1:] if self.include_per_token_attr else None,
            input_tokens=inp.values,
            output_tokens=pretty_tokens(tokens, self.tokenizer),
            inp=inp,
        )
        result.info = {
            "perturbations_evaluated": game.n_evaluated,
            "forwards": getattr(game.scorer, "n_forwards", None),
        }
        return result


class LLMGradientAttribution(BaseLLMAttribution):
    """Captum-compatible gradient attribution of generated text.

    Parameters
    ----------
    attr_method : LayerIntegratedGradients, LayerGradientXActivation or LayerGradientShap
        A :mod:`whybox.attr` object on the causal LM and its embedding layer, e.g.
        ``LayerIntegratedGradients(model, model.transformer.wte)``.
    tokenizer : the model's tokenizer

    Notes
    -----
    Layer IG and gradient x activation with their default baselines run every target
    token from the same forwards (one per chunk of ``internal_batch_size`` path points,
    then one backward per target token; :func:`whybox.llm.gradient.
    shared_path_attributions`), where Captum runs ``n_steps`` forwards per target token.
    Other options (``baselines``, ``return_convergence_delta``, ``grad_kwargs``,
    ``attribute_to_layer_input``) and Layer GradientSHAP run the wrapped method with one
    example per target token.
    """

    SUPPORTED_METHODS = (LayerGradientShap, LayerGradientXActivation, LayerIntegratedGradients)
    SUPPORTED_INPUTS = (TextTokenInput,)

    def __init__(self, attr_method: Any, tokenizer: Any) -> None:
        super().__init__(attr_method, tokenizer)
        self.attr_method = copy(attr_method)

    def attribute(
        self,
        inp: InterpretableInput,
        target: str | Tensor | None = None,
        gen_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LLMAttributionResult:
        """Attribute each target token's log-probability to the prompt tokens.

        Parameters
        ----------
        inp : TextTokenInput
        target : str or Tensor ``(T,)``, optional (generated when ``None``)
        gen_args : dict, optional
        **kwargs
            Passed to the wrapped method (``n_steps``, ``internal_batch_size``,
            ``baselines``, ...).

        Returns
        -------
        LLMAttributionResult
            ``token_attr`` ``(T, M)`` summed over the embedding dimension, ``seq_attr`` its
            sum over tokens.
        """
        self._check_input(inp)
        tokens = self._target_tokens(inp, target, gen_args)
        game = TokenLogProbs(self.model, inp, tokens)
        method = copy(self.attr_method)
        method.forward_func = game
        rows = inp.to_tensor().to(self.device)
        layer_attr = self._shared_path(method, game, kwargs)
        if layer_attr is None and isinstance(method, LayerGradientShap):
            layer_attr = self._shared_samples(method, game, rows.float(), kwargs, len(tokens))
        if layer_attr is None and isinstance(method, LayerGradientShap):
            # its random draws are per call: one call per token, in Captum's order; its
            # random points between inputs and baselines need real-valued rows
            rows = rows.float()
            parts = [method.attribute(rows, target=t, **kwargs) for t in range(len(tokens))]
            layer_attr = torch.cat([_first(p) for p in parts])
        elif layer_attr is None:
            n = len(tokens)
            layer_attr = _first(
                method.attribute(rows.expand(n, -1), target=list(range(n)), **kwargs)
            )
        token = token_attributions(layer_attr, game)
        return LLMAttributionResult(
            seq_attr=token.sum(dim=0),
            token_attr=token,
            input_tokens=inp.values,
            output_tokens=pretty_tokens(tokens, self.tokenizer),
            inp=inp,
        )

    def _shared_path(
        self, method: Any, game: TokenLogProbs, kwargs: dict[str, Any]
    ) -> Tensor | None:
        """Layer IG / gradient x activation with every target token from the same forwards
        (:func:`whybox.llm.gradient.shared_path_attributions`), for the options that path
        covers (default baselines, no delta, the layer's output); ``None`` otherwise."""
        layer = getattr(method, "layer", None)
        if not isinstance(layer, torch.nn.Module) or kwargs.get("attribute_to_layer_input"):
            return None
        if kwargs.get("grad_kwargs"):
            return None
        if isinstance(method, LayerIntegratedGradients):
            allowed = {"n_steps", "method", "internal_batch_size", "baselines"}
            allowed |= {"return_convergence_delta", "attribute_to_layer_input", "grad_kwargs"}
            if set(kwargs) - allowed or kwargs.get("baselines") is not None:
                return None
            if kwargs.get("return_convergence_delta"):
                return None
            rule, n_steps = kwargs.get("method", "gausslegendre"), kwargs.get("n_steps", 50)
            if rule not in RULES or not _positive_int(n_steps):
                return None  # the wrapped method reports it
            alphas, weights = path_plan_tensors(
                rule,
                n_steps,
                dtype=torch.float32,
                device=self.device,
                owner=type(method).__name__,
            )
            from_zero = False
        elif isinstance(method, LayerGradientXActivation):
            if set(kwargs) - {"attribute_to_layer_input", "grad_kwargs"}:
                return None
            alphas = weights = torch.ones(1, device=self.device)
            from_zero = True
        else:
            return None
        chunk = kwargs.get("internal_batch_size")
        if chunk is not None and not _positive_int(chunk):
            return None
        return shared_path_attributions(
            game,
            layer,
            alphas=alphas,
            weights=weights,
            from_zero=from_zero,
            multiply_by_inputs=method.multiplies_by_inputs,
            chunk_size="auto" if chunk is None else chunk,
        )

    def _shared_samples(
        self,
        method: Any,
        game: TokenLogProbs,
        rows: Tensor,
        kwargs: dict[str, Any],
        n_targets: int,
    ) -> Tensor | None:
        """LayerGradientShap with every target token's samples from shared forwards
        (:func:`whybox.llm.gradient.shared_sample_attributions`), its random points drawn
        as Captum's one call per token draws them; ``None`` (and the random generators as
        they were) for the options that path does not cover."""
        layer = getattr(method, "layer", None)
        if not isinstance(layer, torch.nn.Module):
            return None
        if set(kwargs) - {"baselines", "n_samples", "stdevs", "return_convergence_delta",
                          "attribute_to_layer_input"}:  # fmt: skip
            return None
        if kwargs.get("return_convergence_delta") or kwargs.get("attribute_to_layer_input"):
            return None
        baselines, n_samples = kwargs.get("baselines"), kwargs.get("n_samples", 5)
        stdevs = kwargs.get("stdevs", 0.0)
        if not isinstance(baselines, Tensor) or baselines.dim() != 2:
            return None
        if baselines.shape[1] != rows.shape[1] or baselines.shape[0] < 1:
            return None
        if not _positive_int(n_samples) or isinstance(stdevs, bool):
            return None
        if not isinstance(stdevs, (int, float)) or stdevs < 0:
            return None
        import numpy as np

        saved = torch.get_rng_state(), np.random.get_state()
        points, starts, ends = captum_gradient_shap_draws(
            rows, baselines.to(rows.device), n_samples=n_samples, stdevs=float(stdevs),
            n_targets=n_targets,
        )  # fmt: skip
        layer_attr = shared_sample_attributions(
            game,
            layer,
            points=points,
            starts=starts,
            ends=ends,
            multiply_by_inputs=method.multiplies_by_inputs,
        )
        if layer_attr is None:  # the per-token calls draw the same numbers again
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
        return layer_attr


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _first(value: Any) -> Tensor:
    """The attributions of a ``(attributions, delta)`` return."""
    return value[0] if isinstance(value, tuple) else value


class GradientForwardFunc(torch.nn.Module):
    """The log-probability of one target token after a (perturbed) prompt, as a module:
    Captum's forward function of :class:`LLMGradientAttribution`.

    whybox's own gradient attribution scores every target token with
    :class:`whybox.llm.gradient.TokenLogProbs`; this module is for code that builds
    Captum's step by hand.

    Parameters
    ----------
    attr : LLMGradientAttribution
        Gives the model, its device and the input formatting.
    """

    def __init__(self, attr: LLMGradientAttribution) -> None:
        super().__init__()
        self.attr = attr
        self.model = attr.model

    def forward(
        self,
        perturbed_tensor: Tensor,
        inp: InterpretableInput,
        target_tokens: Tensor,
        cur_target_idx: int,
    ) -> Tensor:
        """``log p(target_tokens[cur_target_idx])`` after the prompt and the target's first
        ``cur_target_idx`` tokens.

        Parameters
        ----------
        perturbed_tensor : Tensor
            The input's interpretable features (``inp.to_tensor()`` or a perturbation).
        inp : InterpretableInput
            Turns ``perturbed_tensor`` into model input (only ``input_ids`` are used).
        target_tokens : Tensor ``(T,)``
            The target's token ids.
        cur_target_idx : int
            The target token scored.

        Returns
        -------
        Tensor ``(B,)``
            One log-probability per row of the prompt batch.
        """
        ids = self.attr._format_model_input(inp.to_model_input(perturbed_tensor))["input_ids"]
        if cur_target_idx:
            # the wrapped method may have expanded the batch: repeat the prefix per row
            prefix = target_tokens[:cur_target_idx].unsqueeze(0).expand(ids.size(0), -1)
            ids = torch.cat([ids, prefix.to(self.attr.device)], dim=1)
        logits = self.model(ids).logits[:, -1]
        log_probs = torch.nn.functional.log_softmax(logits, dim=1)
        return log_probs[..., target_tokens[cur_target_idx]]


class _PlaceholderModel:
    """Stands in for the model of a remote attribution (``FeatureAblation(placeholder)``)."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        return 0


class RemoteLLMAttribution(LLMAttribution):
    """Captum-compatible perturbation attribution of a remotely hosted LLM.

    Parameters
    ----------
    attr_method : as :class:`LLMAttribution`, built on
        ``RemoteLLMAttribution.placeholder_model``
    tokenizer : the remote model's tokenizer
    provider : RemoteLLMProvider (e.g. :class:`VLLMProvider`)
    attr_target : "log_prob" or "prob"
    """

    placeholder_model = _PlaceholderModel()

    def __init__(
        self,
        attr_method: Any,
        tokenizer: Any,
        provider: RemoteLLMProvider,
        attr_target: str = "log_prob",
    ) -> None:
        super().__init__(attr_method=attr_method, tokenizer=tokenizer, attr_target=attr_target)
        self.provider = provider

    def _scorer(self) -> Any:
        return RemoteScoring(self.provider, self.tokenizer)

    def _target_tokens(self, inp: Any, target: Any, gen_args: Any) -> Tensor:
        if target is None:
            return remote_target(self.provider, self.tokenizer, inp, gen_args)
        return super()._target_tokens(inp, target, gen_args)
