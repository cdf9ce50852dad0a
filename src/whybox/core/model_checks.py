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

import functools
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .hooks import describe_layer, submodules, walk_with_marks
from .validation import fail

__all__ = ["explainable_model", "check_layer_in_model"]


@functools.cache
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
    if not isinstance(model, nn.Module):
        return False
    # where ``getattr`` finds a module attribute, without its AttributeError when absent
    held = model.__dict__.get("_orig_mod")
    if held is None:
        modules = model.__dict__.get("_modules")
        if isinstance(modules, dict):
            held = modules.get("_orig_mod")
        else:  # TorchScript keeps its submodules elsewhere
            held = getattr(model, "_orig_mod", None)
    return isinstance(held, nn.Module)


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
    if (
        isinstance(model, nn.Module)
        and _plainly_eager(model)
        and not isinstance(model, nn.DataParallel)
    ):
        # the common case, in a few look-ups: an eager module is explained as it is
        if needs_module_rules:
            _check_eager_throughout(model, owner)
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
        _check_eager_throughout(model, owner)
    return model


def _check_eager_throughout(model: nn.Module, owner: str) -> None:
    """Fail clearly if a submodule of ``model`` is TorchScript or compiled (module rules
    cannot act inside it); a structure found eager before is not checked again."""
    walk, fingerprint = walk_with_marks(model)  # one walk for both
    known = _known(model, walk, fingerprint)
    if known.eager_throughout:
        return
    if len(walk) > 1 and any(_is_opaque(module) for module in walk[1:]):
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
    known.eager_throughout = True


def _is_opaque(module: nn.Module) -> bool:
    """Whether hooks cannot act inside ``module`` (TorchScript or compiled)."""
    return _is_torchscript(module) or _is_compiled_module(module) or _is_compiled_in_place(module)


# -- what the checks found, per model structure ---------------------------------------------
class _Known:
    """What the checks found about one model with one structure (see :func:`_known`).

    Attributes
    ----------
    fingerprint : tuple of int
        ``id`` of every module of the walk, in order, negated for a module compiled in
        place (``module.compile()`` changes no structure).
    alive : bool
        Cleared when any of those modules is garbage collected: its ``id`` may then be
        reused by a new module, so the fingerprint no longer names the same modules.
    eager_throughout : bool
        No submodule is TorchScript or compiled (the module-rules check passed).
    paths : dict of int to str, or None
        ``id(module) -> name`` for every module (``named_modules``), built when first needed.
    eager_layers : set of int
        ``id`` of the layers found to be eager submodules of the model.
    """

    __slots__ = (
        "fingerprint",
        "alive",
        "refs",
        "eager_throughout",
        "paths",
        "eager_layers",
        "__weakref__",
    )

    def __init__(self, fingerprint: tuple[int, ...], modules: Sequence[nn.Module]) -> None:
        self.fingerprint = fingerprint
        self.alive = True
        self.eager_throughout = False
        self.paths: dict[int, str] | None = None
        self.eager_layers: set[int] = set()
        this = weakref.ref(self)

        def died(_: Any) -> None:
            known = this()
            if known is not None:
                known.alive = False

        try:
            self.refs = [weakref.ref(module, died) for module in modules]
        except TypeError:  # a module that cannot be weakly referenced: never trusted again
            self.refs = []
            self.alive = False


#: ``id(model) -> (weak reference to the model, what is known about it)``; an entry goes
#: with its model. A model is walked on every call (a few microseconds: the structure may
#: have changed since), the checks on a walk run once per structure.
_KNOWN: dict[int, tuple[weakref.ref, _Known]] = {}


def _fingerprint(walk: Sequence[nn.Module]) -> tuple[int, ...]:
    return tuple(
        [-id(m) if m.__dict__.get("_compiled_call_impl") is not None else id(m) for m in walk]
    )


def _known(
    model: nn.Module, walk: Sequence[nn.Module], fingerprint: tuple[int, ...] | None = None
) -> _Known:
    """What is known about ``model`` as ``walk`` (``submodules(model)``, just taken) shows
    it: the remembered entry while the structure is the same, else a fresh one.
    ``fingerprint``: ``_fingerprint(walk)`` when the walk gave it already."""
    if fingerprint is None:
        fingerprint = _fingerprint(walk)
    key = id(model)
    entry = _KNOWN.get(key)
    # ``alive`` is read after the walk: the walk holds every current module, so one that
    # reuses a dead module's id was made after the death cleared ``alive``
    if entry is not None and entry[0]() is model:
        known = entry[1]
        if known.alive and known.fingerprint == fingerprint:
            return known
    known = _Known(fingerprint, walk)
    if not known.alive:
        return known

    def forget(_: Any) -> None:
        # no lock: a collection may run this inside any code, also a locked section; dict
        # operations are atomic, and another model cannot take the id before this ran
        current = _KNOWN.get(key)
        if current is not None and current[0]() is None:
            _KNOWN.pop(key, None)

    try:
        root = weakref.ref(model, forget)
    except TypeError:
        return known
    _KNOWN[key] = (root, known)
    return known


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
    if _paths_still_eager(inner, layers):
        return
    known = _known(inner, submodules(inner))
    if all(id(item) in known.eager_layers for item in layers):
        _remember_paths(inner, layers, known)
        return
    paths = known.paths
    if paths is None:
        paths = known.paths = {id(module): name for name, module in inner.named_modules()}
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
        known.eager_layers.add(id(item))
    _remember_paths(inner, layers, known)


# -- a layer found eager before: its path from the root, re-checked on every call ----------
#: ``id(model) -> (weak reference to the model, {id(layer): (weak reference to the layer,
#: the keys from the model to it)})``; an entry goes with its model. A layer that passed
#: :func:`check_layer_in_model` is checked again on each call along this path alone (a few
#: dictionary look-ups, not a walk of the whole model): every module on it must still be
#: in its place and eager. Anything else (a module replaced, removed, scripted or compiled
#: on the way) takes the full check, with its errors.
_LAYER_PATHS: dict[int, tuple[weakref.ref, dict[int, tuple[weakref.ref, tuple[str, ...]]]]] = {}


def _plainly_eager(module: nn.Module) -> bool:
    """``not _is_opaque(module)``, in a few look-ups for an eager module."""
    held = module.__dict__
    if held.get("_compiled_call_impl") is not None or "_orig_mod" in held:
        return False
    children = held.get("_modules")
    if not isinstance(children, dict) or "_orig_mod" in children:
        return False  # TorchScript keeps its submodules elsewhere; a compiled wrapper
    return not _is_opaque(module) if isinstance(module, _opaque_types()) else True


@functools.cache
def _opaque_types() -> tuple[type, ...]:
    """The module classes hooks cannot act inside: TorchScript and compiled wrappers."""
    optimized = _optimized_module_type()
    return (torch.jit.ScriptModule,) + ((optimized,) if optimized is not None else ())


def _paths_still_eager(model: nn.Module, layers: Sequence[nn.Module]) -> bool:
    """Whether every layer is still reached from ``model`` by its remembered path, through
    eager modules only (``False`` when any is unknown or the path changed)."""
    entry = _LAYER_PATHS.get(id(model))
    if entry is None or entry[0]() is not model or not isinstance(model._modules, dict):
        return False
    known = entry[1]
    for layer in layers:
        path = known.get(id(layer))
        if path is None or path[0]() is not layer:
            return False
        module: Any = model
        for key in path[1]:
            module = module.__dict__["_modules"].get(key)
            if module is None or not _plainly_eager(module):
                return False
        if module is not layer:
            return False
    return True


def _remember_paths(model: nn.Module, layers: Sequence[nn.Module], known: _Known) -> None:
    """Remember the path (``named_modules`` name, split at dots) of each checked layer."""
    paths = known.paths
    if paths is None:
        paths = known.paths = {id(module): name for name, module in model.named_modules()}
    key = id(model)
    entry = _LAYER_PATHS.get(key)
    try:
        if entry is None or entry[0]() is not model:

            def forget(_: Any) -> None:
                current = _LAYER_PATHS.get(key)
                if current is not None and current[0]() is None:
                    _LAYER_PATHS.pop(key, None)

            entry = (weakref.ref(model, forget), {})
            _LAYER_PATHS[key] = entry
        for layer in layers:
            name = paths.get(id(layer))
            if name is not None:
                entry[1][id(layer)] = (weakref.ref(layer), tuple(name.split(".")) if name else ())
    except TypeError:  # not weakly referable: checked in full on every call
        return
