"""Checks that the model can be explained the way a method needs, before any forward.

Hooks are how whybox sees and changes what flows through a module (``core/hooks``). They
act on eager PyTorch only: inside ``torch.compile``'d code a hooked value is a copy off the
autograd graph (its gradient would be silently zero), inside TorchScript Python hooks do
not run at all (module rules would silently become plain gradients). This module turns
those cases into the right model (the eager module behind a compiled one) or a clear error:

* :func:`explainable_model`: the model to run, given what the method needs;
* :func:`check_layer_in_model`: the ``layer`` a method hooks is an eager submodule of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .hooks import describe_layer
from .validation import fail

__all__ = ["explainable_model", "check_layer_in_model"]


def _optimized_module_type() -> type | None:
    """``torch._dynamo``'s compiled-module wrapper class (``None`` where unavailable)."""
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except Exception:  # pragma: no cover - torch builds without dynamo
        return None
    return OptimizedModule


def _is_compiled_module(model: Any) -> bool:
    """Whether ``model`` is ``torch.compile(module)`` (a wrapper holding ``_orig_mod``)."""
    optimized = _optimized_module_type()
    if optimized is not None and isinstance(model, optimized):
        return True
    return isinstance(model, nn.Module) and isinstance(getattr(model, "_orig_mod", None), nn.Module)


def _is_compiled_in_place(module: Any) -> bool:
    """Whether ``module.compile()`` replaced its call (the module keeps its class)."""
    return isinstance(module, nn.Module) and module.__dict__.get("_compiled_call_impl") is not None


def _is_compiled_function(model: Any) -> bool:
    """Whether ``model`` is ``torch.compile(function)`` (``torch._dynamo.disable`` is eager)."""
    return (
        not isinstance(model, nn.Module)
        and callable(model)
        and hasattr(model, "_torchdynamo_orig_callable")
        and not getattr(model, "_torchdynamo_disable", False)
    )


def _is_torchscript(model: Any) -> bool:
    """Scripted or traced modules and scripted functions."""
    return isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


class _EagerCall(nn.Module):
    """Runs a module compiled in place (``module.compile()``) through its eager call.

    The module stays a submodule, so its layers and module types are the ones the user
    passes; hooks on them run (the eager ``_call_impl`` runs every hook).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module._call_impl(*args, **kwargs)


def explainable_model(
    model: Any, *, owner: str, needs_hooks: bool, needs_module_rules: bool
) -> Any:
    """The model a method should run, or a clear error when it cannot act on it.

    Parameters
    ----------
    model : nn.Module or callable
        What the user passed.
    owner : str
        The method's name, for messages.
    needs_hooks : bool
        Whether the method hooks layers of the model (layer / neuron scope, CAMs).
    needs_module_rules : bool
        Whether the method replaces module gradients through hooks on every matching
        module (DeepLift, DeepLiftShap, GuidedBackprop, Deconvolution, LRP, GuidedGradCam).

    Returns
    -------
    nn.Module or callable
        ``model`` itself, or, when hooks are needed, the eager module behind a
        ``torch.compile``'d one (the submodules the user passes as ``layer`` are the same
        objects). Methods that need no hooks keep a compiled model: its forward and input
        gradients are right.

    Raises
    ------
    TypeError
        For TorchScript with hooks or module rules (Python hooks do not run inside it), a
        compiled function with hooks (there is no eager module to fall back to), module
        rules on a model containing compiled or scripted submodules, and a multi-device
        ``nn.DataParallel`` with hooks (its replicas run on other threads, where whybox's
        hooks do not act).
    """
    hooked = needs_hooks or needs_module_rules
    if not hooked:
        return model
    while _is_compiled_module(model):
        model = model._orig_mod
    if _is_compiled_in_place(model):
        model = _EagerCall(model)
    if _is_compiled_function(model):
        fail(
            owner,
            "model",
            "an eager function or nn.Module (hooks cannot act inside torch.compile'd "
            "code); pass the function before torch.compile",
            "a function compiled with torch.compile",
            type_error=True,
            raw=True,
        )
    if _is_torchscript(model):
        why = (
            "module rules cannot act inside TorchScript"
            if needs_module_rules
            else "layer hooks do not run inside TorchScript"
        )
        fail(
            owner,
            "model",
            f"an eager nn.Module ({why}); pass the module before torch.jit.script / trace",
            f"a TorchScript {type(model).__name__}",
            type_error=True,
            raw=True,
        )
    if isinstance(model, nn.DataParallel) and len(model.device_ids or []) > 1:
        fail(
            owner,
            "model",
            "a module running on the calling thread (DataParallel runs its replicas on "
            "other threads, where whybox's hooks do not act); pass model.module",
            f"a DataParallel over devices {list(model.device_ids)}",
            type_error=True,
            raw=True,
        )
    if needs_module_rules and isinstance(model, nn.Module):
        for name, module in _submodules(model):
            if _is_torchscript(module) or _is_compiled_module(module):
                kind = "TorchScript" if _is_torchscript(module) else "torch.compile'd"
                fail(
                    owner,
                    "model",
                    "an eager nn.Module throughout (module rules cannot act inside "
                    f"{kind} submodules)",
                    f"a model whose submodule {name!r} is {kind}",
                    type_error=True,
                    raw=True,
                )
            if _is_compiled_in_place(module):
                fail(
                    owner,
                    "model",
                    "an eager nn.Module throughout (module rules cannot act inside "
                    "torch.compile'd submodules)",
                    f"a model whose submodule {name!r} was compiled with .compile()",
                    type_error=True,
                    raw=True,
                )
    return model


def _submodules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` for every submodule, the model itself excluded."""
    for name, module in model.named_modules():
        if module is not model:
            yield name, module


def check_layer_in_model(model: Any, layer: Any, *, owner: str) -> None:
    """Fail clearly unless every layer in ``layer`` is an eager submodule of ``model``.

    Parameters
    ----------
    model : nn.Module or callable
        The model the method runs (after :func:`explainable_model`). For a plain function
        nothing can be checked statically; a layer that does not run is then reported when
        its hook does not fire (:meth:`~whybox.core.hooks.Captured.check_seen`).
    layer : nn.Module or list of nn.Module
        The layer(s) the method hooks.
    owner : str
        The method's name, for messages.

    Raises
    ------
    TypeError
        If a layer is not an ``nn.Module``, or it runs inside TorchScript or compiled code
        (where hooks do not act, or see values off the autograd graph).
    ValueError
        If a layer is not a submodule of ``model`` (e.g. a module of a copy of the model).
    """
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers or not all(isinstance(m, nn.Module) for m in layers):
        fail(
            owner,
            "layer",
            "an nn.Module or a list of nn.Modules of the model",
            layer,
            type_error=True,
        )
    if not isinstance(model, nn.Module):
        return
    inner = model.module if isinstance(model, _EagerCall) else model
    paths = {id(module): name for name, module in inner.named_modules()}
    for item in layers:
        name = paths.get(id(item))
        if name is None:
            fail(
                owner,
                "layer",
                "a submodule of the model (one of model.modules(); a module of a copy or "
                "of another model never runs)",
                describe_layer(item),
                raw=True,
            )
        # the layer and each module on its path below the root: hooks act on none of
        # them inside TorchScript or compiled code (the root itself is explainable_model's)
        parts = name.split(".") if name else []
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            module = inner.get_submodule(prefix)
            if _is_torchscript(module):
                kind = "TorchScript (hooks do not run inside it)"
            elif _is_compiled_module(module) or _is_compiled_in_place(module):
                kind = "torch.compile'd (hooked values are off the autograd graph)"
            else:
                continue
            fail(
                owner,
                "layer",
                "an eager submodule of the model",
                f"{describe_layer(item)}, inside submodule {prefix!r}, which is {kind}",
                type_error=True,
                raw=True,
            )
