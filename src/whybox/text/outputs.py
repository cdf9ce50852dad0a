"""Output selection: the one tensor to explain in a model output that is not a tensor.

Text models often return more than logits: AWD-LSTM returns ``(logits, hidden_states)``,
Hugging Face models a ``ModelOutput`` holding ``logits`` (and attentions, hidden states).
The engine already explains a ``ModelOutput`` through its ``logits``; for everything else
an *output selector* names the tensor, so users never write a wrapper function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from whybox.core.validation import fail

__all__ = ["OutputSelector", "select_output", "SelectedOutput", "logits_of"]

#: ``None`` (the default rule), a position, a key / attribute name, or a function
OutputSelector = None | int | str | Callable[[Any], Tensor]


def select_output(
    output: Any, selector: OutputSelector = None, *, owner: str = "select_output"
) -> Tensor:
    """The tensor to explain in ``output``.

    Parameters
    ----------
    output : Tensor, ModelOutput, Mapping, tuple or list
        What the model returned.
    selector : None, int, str or callable
        ``None``: a tensor as it is, else the ``logits`` of a ``ModelOutput`` / mapping,
        else the first tensor of a tuple / list / mapping. An ``int`` indexes a tuple /
        list, a ``str`` names a key or attribute, a callable maps the output to a tensor.
    owner : str
        Name used in error messages.

    Returns
    -------
    Tensor
        Usually logits of shape ``(N, n_classes)``.

    Raises
    ------
    TypeError
        No tensor can be found, or the selector does not give one.
    """
    if callable(selector):
        value = selector(output)
    elif isinstance(selector, bool):
        value = None  # a bool is no position; refused below
    elif isinstance(selector, int):
        value = output[selector] if isinstance(output, (tuple, list)) else None
    elif isinstance(selector, str):
        value = (
            output.get(selector) if isinstance(output, Mapping) else getattr(output, selector, None)
        )
    elif selector is None:
        value = _default(output)
    else:
        fail(
            owner, "output_selector", "None, an int, a str or a callable", selector, type_error=True
        )
    if not isinstance(value, Tensor):
        fail(
            owner,
            "output_selector",
            "a selector giving a tensor of the model output (e.g. 0, 'logits' or "
            "lambda output: output[0])",
            f"{selector!r} on an output of type {type(output).__name__}",
            type_error=True,
            raw=True,
        )
    return value


def _default(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output
    logits = (
        output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    )
    if isinstance(logits, Tensor):
        return logits
    items = list(output.values()) if isinstance(output, Mapping) else output
    if isinstance(items, (tuple, list)):
        return next((item for item in items if isinstance(item, Tensor)), None)
    return None


class SelectedOutput(nn.Module):
    """``model`` whose output is reduced to one tensor by an output selector.

    The model is a registered submodule, so its layers (``layer=`` of layer methods) are
    layers of this module too. Its ``training`` flag mirrors the model's without calling
    ``train()`` / ``eval()``, which would change the user's model.

    Parameters
    ----------
    model : nn.Module
    selector : None, int, str or callable
        See :func:`select_output`.
    """

    def __init__(self, model: nn.Module, selector: OutputSelector = None) -> None:
        super().__init__()
        self.model = model
        self.selector = selector
        self.training = model.training

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return select_output(self.model(*args, **kwargs), self.selector, owner="explain_text")

    def get_input_embeddings(self) -> nn.Module:
        """The model's input embeddings (Hugging Face convention)."""
        return self.model.get_input_embeddings()


def logits_of(
    model: Callable[..., Any],
    *,
    index: int | str = 0,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Callable[..., Tensor]:
    """Wrap a model whose forward returns a tuple / dict / ``ModelOutput`` (AWD-LSTM returns
    ``(logits, hidden_states)``; Hugging Face returns ``.logits``) so it returns a tensor,
    optionally transformed (e.g. ``torch.softmax(x, -1)``).

    Parameters
    ----------
    model : callable
    index : int or str
        Position in a tuple / list output, or key / attribute name (``"logits"``). A tensor
        output is returned as it is whatever ``index``.
    transform : callable, optional
        Applied to the selected tensor.

    Returns
    -------
    callable
        ``forward(*args, **kwargs) -> Tensor``.
    """

    def forward(*args: Any, **kwargs: Any) -> Tensor:
        output = model(*args, **kwargs)
        if isinstance(index, str):
            value = output[index] if isinstance(output, dict) else getattr(output, index)
        elif isinstance(output, Tensor):
            value = output
        else:
            value = output[index]
        return transform(value) if transform is not None else value

    return forward
