"""What is explained: the target continuation (given, or generated) and its contrast.

* ``target=None`` generates the continuation with the model's ``generate`` (greedy, 25 new
  tokens by default, as Captum); a string is tokenised without special tokens; a tensor or
  list holds token ids.
* A *contrast* (why ``A`` rather than ``B``) gives an alternative token for every target
  position: the explained value at step ``t`` is ``log p(A_t) - log p(B_t)`` in the same
  context (the target's own prefix). A single alternative token is used at every step; a
  string or id sequence must have the target's length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .scoring import as_model_input

__all__ = ["DEFAULT_GEN_ARGS", "target_tokens", "contrast_tokens", "generate"]

#: Captum's defaults: greedy decoding of 25 new tokens
DEFAULT_GEN_ARGS: dict[str, Any] = {
    "max_new_tokens": 25,
    "do_sample": False,
    "temperature": None,
    "top_p": None,
}


def _ids(value: Any, tokenizer: Any, *, name: str, owner: str) -> Tensor:
    if isinstance(value, str):
        return torch.tensor(tokenizer.encode(value, add_special_tokens=False), dtype=torch.long)
    if isinstance(value, Tensor):
        return value.reshape(-1).long()
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return torch.tensor(list(value), dtype=torch.long)
    raise TypeError(
        f"The '{name}' parameter of {owner} must be a str, a tensor of token ids or a list "
        f"of ints. Got {type(value).__name__}."
    )


def generate(model: Any, tokenizer: Any, inp: Any, gen_args: dict[str, Any] | None) -> Tensor:
    """The continuation ``model.generate`` produces for the unperturbed prompt: ``(T,)``."""
    generate_fn = getattr(model, "generate", None)
    if not callable(generate_fn):
        raise ValueError(
            "The model has no generate() method: give the target to explain (a str or token ids)."
        )
    from .scoring import model_device

    kwargs = as_model_input(inp.to_model_input(), tokenizer, model_device(model))
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    args = dict(gen_args or DEFAULT_GEN_ARGS)
    if getattr(tokenizer, "pad_token_id", None) is None and "pad_token_id" not in args:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None:
            args["pad_token_id"] = eos  # silences generate's warning, changes nothing
    with torch.no_grad():
        output = generate_fn(**kwargs, **args)
    return output[0, kwargs["input_ids"].shape[1] :].detach().cpu()


def target_tokens(
    model: Any,
    tokenizer: Any,
    inp: Any,
    target: Any,
    gen_args: dict[str, Any] | None,
    *,
    owner: str,
) -> Tensor:
    """The target continuation's token ids ``(T,)`` (long, CPU), ``T >= 1``."""
    if target is None:
        tokens = generate(model, tokenizer, inp, gen_args)
    else:
        if gen_args is not None:
            raise ValueError(f"{owner}: 'gen_args' must be None when 'target' is given.")
        tokens = _ids(target, tokenizer, name="target", owner=owner)
    if tokens.numel() == 0:
        raise ValueError(f"{owner}: the target has no tokens; nothing to explain.")
    return tokens.cpu()


def contrast_tokens(tokenizer: Any, contrast: Any, n_target: int, *, owner: str) -> Tensor:
    """Alternative token ids ``(T,)``: one per target position.

    Parameters
    ----------
    contrast : str, int, Tensor or list of int
        One token (used at every position) or ``T`` tokens.
    n_target : int
        The target's length ``T``.
    """
    if isinstance(contrast, int) and not isinstance(contrast, bool):
        tokens = torch.tensor([contrast], dtype=torch.long)
    else:
        tokens = _ids(contrast, tokenizer, name="contrast", owner=owner)
    if tokens.numel() == 1:
        return tokens.expand(n_target).clone()
    if tokens.numel() != n_target:
        raise ValueError(
            f"The 'contrast' parameter of {owner} must be one token or as many tokens as the "
            f"target ({n_target}). Got {tokens.numel()} tokens."
        )
    return tokens
