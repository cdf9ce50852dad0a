"""A private copy of a causal LM whose Python-written activations run as fused kernels.

Gradient attribution of ``T`` target tokens runs ``T`` backward passes through the same
graph. An activation written as a chain of elementwise tensor operations (GPT-2's
``gelu_new``: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``) leaves about ten
elementwise nodes per layer in that graph, each a full pass over the ``(rows, L, 4 D)``
MLP activations in every backward pass: about a third of a backward pass's time on a small
GPT-2. :func:`torch.nn.functional.gelu` with ``approximate="tanh"`` computes the same
function (the same constants) in one kernel forward and one backward.

:func:`fused_twin` swaps such modules in a private structural copy of the model
(:func:`whybox.attention.capture._private_copy`: modules and configs copied, weights
shared), so the caller's model is never changed. The numbers agree to float rounding; the
caller checks that on its first forward and uses the model itself when they do not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["fused_twin", "TanhGELU"]

#: transformers' activation modules that compute ``gelu(x, approximate="tanh")`` in Python
_TANH_GELU = frozenset({"NewGELUActivation", "FastGELUActivation", "AccurateGELUActivation"})


class TanhGELU(nn.Module):
    """``gelu(x, approximate="tanh")`` as one kernel: ``(*) -> (*)``."""

    def forward(self, input: Tensor) -> Tensor:
        return torch.nn.functional.gelu(input, approximate="tanh")


def _fusable(module: nn.Module) -> bool:
    kind = type(module)
    return kind.__name__ in _TANH_GELU and kind.__module__.startswith("transformers.")


def fused_twin(model: nn.Module, layer: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """A private copy of ``model`` with fused activations, and its copy of ``layer``.

    Parameters
    ----------
    model : nn.Module
        The causal LM.
    layer : nn.Module
        A submodule of ``model`` (the attributed layer, hooked by the caller).

    Returns
    -------
    (nn.Module, nn.Module) or None
        The copy and its counterpart of ``layer``; ``None`` when ``model`` has no
        activation to fuse, ``layer`` is not one of its submodules, a module's ``forward``
        is replaced on the instance, or the model cannot be copied (the caller then runs
        ``model`` itself).
    """
    names = [name for name, module in model.named_modules() if _fusable(module)]
    if not names or any("forward" in vars(module) for module in model.modules()):
        # a forward set on an instance (a wrapper's closure) may call the original modules
        return None
    layer_name = next((name for name, module in model.named_modules() if module is layer), None)
    if layer_name is None:
        return None
    from whybox.attention.capture import _private_copy

    try:
        twin = _private_copy(model, "fused_twin")
    except TypeError:
        return None
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        if not child:  # the model itself is an activation: nothing to attribute through
            return None
        setattr(parent, child, TanhGELU())
    return twin, twin.get_submodule(layer_name) if layer_name else twin
