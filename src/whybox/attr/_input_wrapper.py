"""Model inputs as layers, so layer methods can attribute to inputs (Captum's
``ModelInputWrapper``).

:class:`ModelInputWrapper` feeds each named argument of the wrapped model's ``forward``
through its own :class:`InputIdentity` module (``wrapper.input_maps["x"]``) and then calls
the model unchanged. Layer methods given ``wrapper.input_maps["x"]`` as the layer then
attribute to input ``x`` itself: ``LayerIntegratedGradients(wrapper,
wrapper.input_maps["x"])`` gives IntegratedGradients' attributions for ``x`` while other
inputs (token ids, say) go through the model's embedding as usual. Because the maps are
identities, the layer's input and output are the same (``attribute_to_layer_input`` does
not matter).

Differences from Captum 0.9 (where it fails): keyword-only arguments of ``forward`` get
maps too, and keyword arguments without a map (``**kwargs``) pass through unchanged
instead of raising ``KeyError``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

__all__ = ["InputIdentity", "ModelInputWrapper"]

_NAMED = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


class InputIdentity(nn.Module):
    """The identity, standing for one model input.

    Parameters
    ----------
    input_name : str
        The name of the input (for debugging and display).
    """

    def __init__(self, input_name: str) -> None:
        super().__init__()
        self.input_name = input_name

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` unchanged."""
        return x

    def extra_repr(self) -> str:
        return f"input_name={self.input_name!r}"


class ModelInputWrapper(nn.Module):
    """Wrap a model so that each of its inputs passes through an :class:`InputIdentity`.

    Parameters
    ----------
    module_to_wrap : nn.Module
        The model; it is called with the same arguments as the wrapper.

    Attributes
    ----------
    module : nn.Module
        The wrapped model.
    arg_name_list : list of str
        The named arguments of ``module_to_wrap.forward``, in order.
    input_maps : nn.ModuleDict
        ``{argument name: InputIdentity}``, the layers that stand for the inputs.

    Examples
    --------
    >>> import torch
    >>> from whybox.attr import LayerIntegratedGradients, ModelInputWrapper
    >>> class Net(torch.nn.Module):
    ...     def forward(self, x, y):
    ...         return (x * y).sum(1)
    >>> wrapped = ModelInputWrapper(Net())
    >>> lig = LayerIntegratedGradients(wrapped, wrapped.input_maps["x"])
    >>> lig.attribute(torch.ones(2, 3), additional_forward_args=(torch.ones(2, 3),)).shape
    torch.Size([2, 3])
    """

    def __init__(self, module_to_wrap: nn.Module) -> None:
        super().__init__()
        self.module = module_to_wrap
        parameters = inspect.signature(module_to_wrap.forward).parameters.values()
        self.arg_name_list: list[str] = [p.name for p in parameters if p.kind in _NAMED]
        self.input_maps = nn.ModuleDict({name: InputIdentity(name) for name in self.arg_name_list})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped model, each named input first passed through its map."""
        mapped = [
            self.input_maps[name](arg) if name in self.input_maps else arg
            for name, arg in zip(self.arg_name_list, args)
        ]
        mapped += list(args[len(mapped) :])  # extra positional arguments (*args) unchanged
        named = {
            name: self.input_maps[name](value) if name in self.input_maps else value
            for name, value in kwargs.items()
        }
        return self.module(*mapped, **named)
