"""Hooks as context managers: registered on entry, ALWAYS removed on exit (success or error).

This module is the single owner of hook registration in whybox. Methods that need to see or
change what flows through a module use these context managers and never call
``register_*_hook`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["hooks", "Captured", "capture", "override", "module_rules", "iter_modules"]


@contextmanager
def hooks(registrations: Iterable[tuple[nn.Module, str, Callable]]) -> Iterator[None]:
    """Register ``(module, kind, fn)`` hooks; kind is ``"forward"`` or ``"forward_pre"``.

    Every handle is removed on exit, including when registration itself fails halfway.
    """
    handles = []
    try:
        for module, kind, fn in registrations:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn))
            elif kind == "forward_pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:  # pragma: no cover - internal misuse
                raise ValueError(f"unknown hook kind {kind!r}")
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Captured:
    """What :func:`capture` saw during the last forward.

    ``per_layer[i]`` holds layer ``i``'s tensors; ``tensors`` is all of them flattened in
    layer order (or the explicit list a substitution put there).
    """

    explicit: list[Tensor] | None = None
    per_layer: list[tuple[Tensor, ...]] = field(default_factory=list)
    calls: int = 0

    @property
    def tensors(self) -> list[Tensor]:
        if self.explicit is not None:
            return self.explicit
        return [t for layer_tensors in self.per_layer for t in layer_tensors]


def _as_tuple(value: Any) -> tuple[Tensor, ...]:
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(v for v in value if isinstance(v, Tensor))
    return ()


@contextmanager
def capture(layers: Sequence[nn.Module], *, inputs: bool = False) -> Iterator[Captured]:
    """Record the outputs (or inputs) of ``layers`` during forwards inside the block.

    Each layer must run once per forward; a layer called twice keeps its last call.
    """
    captured = Captured(per_layer=[() for _ in layers])

    def make(position: int) -> Callable:
        if inputs:

            def pre_hook(module, args):
                captured.per_layer[position] = _as_tuple(args)
                captured.calls += 1

            return pre_hook

        def hook(module, args, output):
            captured.per_layer[position] = _as_tuple(output)
            captured.calls += 1

        return hook

    kind = "forward_pre" if inputs else "forward"
    with hooks((layer, kind, make(i)) for i, layer in enumerate(layers)):
        yield captured


@contextmanager
def override(layer: nn.Module, replace: Callable[[Tensor], Tensor], *, inputs: bool = False):
    """Replace the output (or first input) of ``layer`` by ``replace(original)`` in the block."""
    if inputs:

        def pre_hook(module, args):
            return (replace(args[0]),) + tuple(args[1:])

        registration = (layer, "forward_pre", pre_hook)
    else:

        def hook(module, args, output):
            return replace(output)

        registration = (layer, "forward", hook)
    with hooks([registration]):
        yield


def iter_modules(model: Any) -> Iterator[nn.Module]:
    """All submodules of ``model`` if it is a module (a plain function has none)."""
    if isinstance(model, nn.Module):
        yield from model.modules()


@contextmanager
def module_rules(
    model: Any,
    rules: dict[type, Callable[[nn.Module, Tensor, Tensor], Tensor]]
    | Callable[[nn.Module], Callable[[nn.Module, Tensor, Tensor], Tensor] | None],
) -> Iterator[list[nn.Module]]:
    """Rewrite the output of every module whose type is in ``rules``.

    ``rule(module, module_input, module_output)`` returns the tensor the rest of the model
    sees; it typically keeps the value and changes the gradient (DeepLift, guided backprop).
    The input is saved before the module runs and a clone is passed in, so in-place modules
    (``ReLU(inplace=True)``) cannot overwrite it. Yields the modules that got a rule.
    ``rules`` may also be a function ``module -> rule or None``, for rules chosen per module
    instance (LRP's per-layer rules, a layer left out of DeepLift's rules).
    """
    registrations = []
    matched = []
    saved: dict[int, Tensor] = {}
    for module in iter_modules(model):
        rule = rules.get(type(module)) if isinstance(rules, dict) else rules(module)
        if rule is None:
            continue
        matched.append(module)

        def pre_hook(module, args, _key=id(module)):
            if not args or not isinstance(args[0], Tensor):
                return None
            saved[_key] = args[0]
            if getattr(module, "inplace", False):
                return (args[0].clone(),) + tuple(args[1:])
            return None

        def hook(module, args, output, _key=id(module), _rule=rule):
            original_input = saved.pop(_key, None)
            if original_input is None or not isinstance(output, Tensor):
                return None
            return _rule(module, original_input, output)

        registrations.append((module, "forward_pre", pre_hook))
        registrations.append((module, "forward", hook))
    try:
        with hooks(registrations):
            yield matched
    finally:
        saved.clear()
