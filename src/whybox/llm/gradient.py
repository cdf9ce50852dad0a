"""Gradient attribution of generated text: every target token from one forward per step.

The model is wrapped as a function of the interpretable token rows
(:class:`TokenLogProbs`): a row of ones is the prompt, zeros put the baseline token in,
and the output is ``log p(y_t | x, y_<t)`` for EVERY target token from one teacher-forced
forward of ``x + y[:-1]`` (Captum runs one attribution, i.e. ``n_steps`` forwards, per
target token, each on a longer sequence). whybox's native layer methods (Layer Integrated
Gradients, gradient x activation, GradientSHAP) then run on the embedding layer with one
*example* per target token, chunked by the engine so memory stays bounded for long
prompts. Results are summed over the embedding dimension, as Captum does.

``step_wise=True`` keeps the attributions of the generated positions too, with the
generated tokens replaced by the baseline token along the path: each token is attributed
to the prompt and to the tokens generated before it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from whybox import methods as native
from whybox.core.chunks import ChunkSize
from whybox.core.validation import check_bool, check_choice, fail

from .inputs import TextTokenInput
from .result import LLMAttributionResult
from .targets import contrast_tokens, target_tokens
from .tokens import pretty_tokens

__all__ = ["TokenLogProbs", "LLMGradient", "GRADIENT_METHODS", "token_attributions"]

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

    def forward(self, rows: Tensor, *_: Any) -> Tensor:
        ids = self.inp.to_model_input(rows[:, : self.n_prompt])
        target = self.target.to(ids.device)
        t = target.numel()
        tail = target[:-1].expand(ids.shape[0], t - 1)
        if self.step_wise and t > 1:
            present = rows[:, self.n_prompt : self.n_features - 1] == 1
            tail = torch.where(present, tail, torch.full_like(tail, self.generated_baseline))
        full = torch.cat([ids, tail], dim=1)
        kwargs = {"logits_to_keep": t} if self._keep_logits else {}
        logits = self.model(
            input_ids=full, attention_mask=torch.ones_like(full), use_cache=False, **kwargs
        ).logits
        if logits.dim() == 4:
            logits = logits[:, 0]
        log_probs = torch.log_softmax(logits[:, -t:].float(), dim=-1)
        picked = log_probs.gather(2, target.reshape(1, -1, 1).expand(full.shape[0], -1, 1))
        values = picked.squeeze(2)
        if self.contrast is not None:
            alt = self.contrast.to(ids.device).reshape(1, -1, 1).expand(full.shape[0], -1, 1)
            values = values - log_probs.gather(2, alt).squeeze(2)
        return values


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
        chunk_size : rows per forward/backward (``"auto"``: memory-bounded)

        Returns
        -------
        LLMAttributionResult
            ``token_attr`` ``(T, M)`` (``(T, M + T)`` step-wise) and ``seq_attr`` its sum
            over tokens; ``output_probs`` ``(T,)``.
        """
        owner = type(self).__name__
        if not isinstance(inp, TextTokenInput):
            fail(owner, "inp", "a TextTokenInput", inp, type_error=True)
        check_bool(owner, "step_wise", step_wise)
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
        token = token_attributions(layer_attr, game)
        with torch.no_grad():
            probs = game(rows[:1])[0].exp() if alt is None else None
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
        }
        return result


def _device(model: nn.Module) -> torch.device:
    from .scoring import model_device

    return model_device(model)
