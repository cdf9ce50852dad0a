"""Hooks as context managers: registered on entry, ALWAYS removed on exit (success or error).

This module is the single owner of hook registration in whybox. Methods that need to see or
change what flows through a module use these context managers and never call
``register_*_hook`` themselves.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .validation import fail

__all__ = [
    "hooks",
    "Captured",
    "capture",
    "override",
    "module_rules",
    "iter_modules",
    "submodules",
    "describe_layer",
]

#: ``(module, kind, fn)``; kind is ``"forward"`` or ``"forward_pre"``
Registration = tuple[nn.Module, str, Callable]


def _on_this_thread(fn: Callable, thread: int) -> Callable:
    """``fn`` acting only on forwards run by ``thread``; elsewhere it passes values through.

    A model shared between threads carries every thread's hooks; without this, one call's
    capture or rule would act on (and read values from) another thread's forward.
    """

    def guarded(*args: Any) -> Any:
        if threading.get_ident() != thread:
            return None  # None: the module's values are left as they are
        return fn(*args)

    return guarded


#: keys of the hooks :class:`_Hooks` adds to modules' tables (torch's ids are >= 0)
_HOOK_KEYS = itertools.count(-1, -1)


#: torch's own registration methods: a module whose class overrides one (or a patched
#: ``nn.Module``) registers through it
_REGISTER = {
    "forward": ("_forward_hooks", "register_forward_hook", nn.Module.register_forward_hook),
    "forward_pre": (
        "_forward_pre_hooks",
        "register_forward_pre_hook",
        nn.Module.register_forward_pre_hook,
    ),
}


def _hook_table(module: nn.Module, kind: str) -> OrderedDict | None:
    """``module``'s own table of forward (``kind="forward"``) or forward pre-hooks, where
    it is torch's plain ``OrderedDict`` that ``nn.Module.__call__`` reads and the module
    registers with torch's own method (not for a scripted module); ``None``: register
    through the module's API."""
    name, method, torch_method = _REGISTER[kind]
    table = module.__dict__.get(name)
    if (
        type(table) is not OrderedDict
        or getattr(type(module), method, None) is not torch_method
        or isinstance(module, torch.jit.ScriptModule)
    ):
        return None
    return table


class _Hooks:
    """The context manager :func:`hooks` returns (a class: entered on every forward of
    tiny jobs, where a generator-based one costs a microsecond more)."""

    __slots__ = ("_registrations", "_added", "_handles")

    def __init__(self, registrations: Iterable[Registration]) -> None:
        self._registrations = registrations
        self._added: list[tuple[dict, int]] = []
        self._handles: list[Any] = []

    def __enter__(self) -> None:
        thread = threading.get_ident()
        try:
            for module, kind, fn in self._registrations:
                if kind not in _REGISTER:  # pragma: no cover - internal misuse
                    raise ValueError(f"unknown hook kind {kind!r}")
                self.add(module, kind, _on_this_thread(fn, thread))
        except BaseException:
            self._remove()
            raise

    def __exit__(self, *exc_info: Any) -> None:
        self._remove()

    def add(self, module: nn.Module, kind: str, hook: Callable) -> None:
        """Add ``hook`` (``kind`` ``"forward"`` or ``"forward_pre"``) to ``module``, to be
        removed on exit.

        Straight into the module's own hook table where it is torch's plain one
        (:func:`_hook_table`): what ``register_forward_hook`` does, without its handle
        (weak references to three tables, then a lookup in each on removal), which tiny
        jobs pay per hooked module on every call. The key is negative, so it never meets
        one of torch's handles' ids (counted up from 0). Any other module registers
        through its API.
        """
        table = _hook_table(module, kind)
        if table is not None:
            key = next(_HOOK_KEYS)
            table[key] = hook
            self._added.append((table, key))
        elif kind == "forward":
            self._handles.append(module.register_forward_hook(hook))
        else:
            self._handles.append(module.register_forward_pre_hook(hook))

    def _remove(self) -> None:
        added, self._added = self._added, []
        handles, self._handles = self._handles, []
        for table, key in added:
            table.pop(key, None)
        for handle in handles:
            handle.remove()


def hooks(registrations: Iterable[Registration]) -> AbstractContextManager[None]:
    """Register ``(module, kind, fn)`` hooks; kind is ``"forward"`` or ``"forward_pre"``.

    Every handle is removed on exit, including when registration itself fails halfway.
    Each hook acts only on forwards run by the thread that registered it, so concurrent
    calls on one shared model never see each other's hooks.
    """
    return _Hooks(registrations)


@dataclass
class Captured:
    """What :func:`capture` (or a substitution) saw during the last forward.

    Attributes
    ----------
    explicit : list of Tensor, optional
        The tensors a substitution fed in place of the layers' values (the gradient is taken
        with respect to these instead of the recorded ones).
    per_layer : list of tuple of Tensor
        ``per_layer[i]`` holds layer ``i``'s tensors, each ``(rows, ...)``; an empty tuple
        means the layer did not run (or produced no tensor) in the last forward.
    calls : int
        How many hook calls happened.
    layers : tuple of nn.Module
        The layers, in the order of ``per_layer`` (for error messages).
    to_input : bool
        Whether the layers' inputs (rather than outputs) were recorded.
    """

    explicit: list[Tensor] | None = None
    per_layer: list[tuple[Tensor, ...]] = field(default_factory=list)
    calls: int = 0
    layers: tuple[nn.Module, ...] = ()
    to_input: bool = False

    @property
    def tensors(self) -> list[Tensor]:
        """All tensors, flattened in layer order (or the explicit substituted ones)."""
        if self.explicit is not None:
            return self.explicit
        return [t for layer_tensors in self.per_layer for t in layer_tensors]

    def layer_of(self, index: int) -> nn.Module | None:
        """The layer that produced flattened tensor ``index`` (``None`` if unknown)."""
        for layer, layer_tensors in zip(self.layers, self.per_layer):
            if index < len(layer_tensors):
                return layer
            index -= len(layer_tensors)
        return None

    def check_seen(self, owner: str) -> None:
        """Fail clearly unless every layer ran and produced tensors in the last forward."""
        for layer, layer_tensors in zip(self.layers, self.per_layer):
            if not layer_tensors:
                fail(
                    owner,
                    "layer",
                    "a module that runs in the model's forward and "
                    + ("takes" if self.to_input else "returns")
                    + " tensors (a submodule of the model, not of a copy, a compiled or a "
                    "scripted version of it)",
                    f"{describe_layer(layer)}, which was not called (or produced no tensor)",
                    raw=True,
                )
        if not self.layers and not self.tensors:  # pragma: no cover - internal misuse
            fail(owner, "layer", "a module of the model", "no layer", raw=True)


def describe_layer(layer: Any) -> str:
    """A short description of a layer for messages (the first line of its repr)."""
    if layer is None:
        return "a layer"
    text = repr(layer).splitlines()[0] if isinstance(layer, nn.Module) else repr(layer)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_tuple(value: Any) -> tuple[Tensor, ...]:
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(v for v in value if isinstance(v, Tensor))
    return ()


#: ``id(clone) -> (clone, original)`` for the clone :func:`module_rules` feeds an in-place
#: module, from its pre-hook to its forward hook. The rule differentiates through the
#: original, so a capture of that module's input records the original, not the clone.
_PROTECTED: dict[int, tuple[Tensor, Tensor]] = {}


def _source(value: Tensor) -> Tensor:
    """The tensor ``value`` stands for: the original of a rule's protective clone."""
    entry = _PROTECTED.get(id(value))
    return entry[1] if entry is not None and entry[0] is value else value


def _keep(value: Tensor) -> tuple[Tensor, Tensor]:
    """``(recorded, passed_on)`` for one tensor a layer produced (or received).

    The rest of the model gets a clone, so in-place ops after the layer
    (``ReLU(inplace=True)``, ``x += ...``) change the clone, never the recorded value;
    gradients with respect to the recorded tensor flow through the clone. A floating tensor
    computed off the graph while gradients are on (a frozen layer on token ids) is recorded
    as a new leaf that requires grad, as Captum does, without touching the model's tensor.
    The input of an in-place module under :func:`module_rules` arrives as the rule's clone;
    the original is recorded, since the rule's gradient flows to it.
    """
    passed_on = value
    value = _source(value)
    if (
        torch.is_grad_enabled()
        and not value.requires_grad
        and (value.is_floating_point() or value.is_complex())
    ):
        value = passed_on = value.detach().requires_grad_(True)
    return value, passed_on.clone()


def _guard(value: Any) -> tuple[tuple[Tensor, ...], Any]:
    """Recorded tensors of a layer's output (or argument tuple) and the value to pass on.

    Tensors directly in ``value`` (or in a top-level tuple / list) are recorded; the value
    passed on has them replaced by clones, other entries as they were. ``None`` as the
    value to pass on means "leave it" (nothing was recorded).
    """
    if isinstance(value, Tensor):
        recorded, passed = _keep(value)
        return (recorded,), passed
    if not isinstance(value, (tuple, list)):
        return (), None
    recorded_all: list[Tensor] = []
    items: list[Any] = []
    for item in value:
        if isinstance(item, Tensor):
            recorded, passed = _keep(item)
            recorded_all.append(recorded)
            items.append(passed)
        else:
            items.append(item)
    if not recorded_all:
        return (), None
    if isinstance(value, list):
        return tuple(recorded_all), items
    if hasattr(value, "_fields"):  # a namedtuple (e.g. torch.return_types)
        return tuple(recorded_all), type(value)(*items)
    return tuple(recorded_all), tuple(items)


def _copies(value: Any) -> tuple[Tensor, ...]:
    """Detached copies of the tensors :func:`_guard` would record from ``value``."""
    if isinstance(value, Tensor):
        return (_source(value).detach().clone(),)
    if isinstance(value, (tuple, list)):
        return tuple(_source(v).detach().clone() for v in value if isinstance(v, Tensor))
    return ()


class _Capture:
    """The context manager :func:`capture` returns: its hooks, yielding the record."""

    __slots__ = ("captured", "_hooks")

    def __init__(self, captured: Captured, registrations: list[Registration]) -> None:
        self.captured = captured
        self._hooks = _Hooks(registrations)

    def __enter__(self) -> Captured:
        self._hooks.__enter__()
        return self.captured

    def __exit__(self, *exc_info: Any) -> None:
        self._hooks.__exit__(*exc_info)


def capture(
    layers: Sequence[nn.Module], *, inputs: bool = False, copy: bool = False
) -> AbstractContextManager[Captured]:
    """Record the outputs (or inputs) of ``layers`` during forwards inside the block.

    Each layer must run once per forward; a layer called twice keeps its last call. The
    recorded tensors keep the layer's values even if the model later changes them in place
    (the rest of the forward works on clones), and stay on the autograd graph, so they serve
    as a ``tap`` for gradients (see :meth:`~whybox.core.forward.Evaluator.gradients`).

    With ``copy`` the recorded tensors are detached copies instead and the model's own
    values flow on untouched: values that are only read (no gradient with respect to them)
    cost one copy and no change to the forward.

    Yields
    ------
    Captured
        ``per_layer[i]``: layer ``i``'s tensors of the last forward, each ``(rows, ...)``.
    """
    captured = Captured(per_layer=[() for _ in layers], layers=tuple(layers), to_input=inputs)
    per_layer = captured.per_layer

    def make(position: int) -> Callable:
        if copy:

            def copy_hook(module: nn.Module, *values: Any) -> None:
                # forward pre-hook ``(module, args)`` or forward hook ``(module, args, out)``
                per_layer[position] = _copies(values[-1])
                captured.calls += 1

            return copy_hook

        if inputs:

            def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
                recorded, passed = _guard(args)
                per_layer[position] = recorded
                captured.calls += 1
                return passed

            return pre_hook

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            recorded, passed = _guard(output)
            per_layer[position] = recorded
            captured.calls += 1
            return passed

        return hook

    kind = "forward_pre" if inputs else "forward"
    return _Capture(captured, [(layer, kind, make(i)) for i, layer in enumerate(layers)])


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
    yield from submodules(model)


def submodules(model: Any) -> list[nn.Module]:
    """``list(model.modules())`` (the model first, then its submodules in pre-order, each
    once), or ``[]`` for a plain function.

    The same walk as ``nn.Module.modules`` without its generators and names: about half
    its cost, which tiny jobs pay on every call (module rules, model checks).
    """
    if not isinstance(model, nn.Module):
        return []
    return _walk(model, None)


def walk_with_marks(model: nn.Module) -> tuple[list[nn.Module], tuple[int, ...]]:
    """``submodules(model)`` and, in the same walk, each module's ``id`` negated for a
    module compiled in place (``module.compile()``): the structure's fingerprint that
    :mod:`whybox.core.model_checks` remembers its checks under."""
    marks: list[int] = []
    return _walk(model, marks), tuple(marks)


def _walk(model: nn.Module, marks: list[int] | None) -> list[nn.Module]:
    """The modules of ``model`` in ``nn.Module.modules`` order; with ``marks``, each one's
    ``id`` is appended to it, negated for a module compiled in place."""
    found: list[nn.Module] = []
    seen: set[int] = set()
    stack: list[nn.Module] = []
    module = model
    while True:
        seen.add(id(module))
        found.append(module)
        if marks is not None:
            held = module.__dict__.get("_compiled_call_impl")
            marks.append(id(module) if held is None else -id(module))
        children = module._modules
        if children:
            kids = [c for c in children.values() if c is not None]
            if kids:
                # reversed onto the stack, so they come off in registration order
                kids.reverse()
                stack.extend(kids)
        while stack:
            module = stack.pop()
            if id(module) not in seen:
                break
        else:
            return found
        children = module._modules


def module_rules(
    model: Any,
    rules: dict[type, Callable[[nn.Module, Tensor, Tensor], Tensor | None]]
    | Callable[[nn.Module], Callable[[nn.Module, Tensor, Tensor], Tensor | None] | None],
) -> AbstractContextManager[list[nn.Module]]:
    """Rewrite the output of every module whose type is in ``rules``.

    ``rule(module, module_input, module_output)`` returns the tensor the rest of the model
    sees (``None``: the output as it is); it typically keeps the value and changes the
    gradient (DeepLift, guided backprop). ``module_input`` is the first positional input
    the module ran on; an in-place module (``inplace=True``, e.g. ``ReLU(inplace=True)``)
    runs on a clone instead, so it cannot overwrite the input the rule gets. Yields the
    modules that got a rule. ``rules`` may also be a function ``module -> rule or None``,
    for rules chosen per module instance (LRP's per-layer rules, a layer left out of
    DeepLift's rules). A rule with a true ``all_inputs`` attribute gets the tuple of
    positional inputs instead of the first one (not cloned: it must not run in place).

    The modules are walked and the hooks registered when the block is entered.
    """
    return _ModuleRules(model, rules)


class _ModuleRules:
    """The context manager :func:`module_rules` returns (a class: entered on every call of
    DeepLift-style methods, where a generator-based one costs microseconds more)."""

    __slots__ = ("_model", "_rules", "_hooks", "_saved", "_clones")

    def __init__(self, model: Any, rules: Any) -> None:
        self._model, self._rules = model, rules

    def __enter__(self) -> list[nn.Module]:
        # the hooks check the thread themselves (one Python call per module and forward,
        # not two): added through an empty _Hooks, which removes them
        self._hooks = _Hooks(())
        self._saved: dict[int, Tensor] = {}
        self._clones: dict[int, Tensor] = {}
        try:
            return _add_rule_hooks(self._model, self._rules, self)
        except BaseException:
            self._hooks._remove()  # what was added before the failure
            raise

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._hooks.__exit__(*exc_info)
        finally:
            clones = self._clones
            for clone in clones.values():
                _PROTECTED.pop(id(clone), None)
            clones.clear()
            self._saved.clear()


def _add_rule_hooks(model: Any, rules: Any, owner: _ModuleRules) -> list[nn.Module]:
    """Add the hooks of :func:`module_rules` through ``owner`` (which removes them) and
    return the modules given a rule. Each hook acts only on the forwards of the thread
    entering the block (the check is in the hook itself: one Python call per module and
    forward, not two, as :func:`_on_this_thread` would make it)."""
    thread = threading.get_ident()
    get_ident = threading.get_ident
    matched: list[nn.Module] = []
    saved, clones = owner._saved, owner._clones  # this call's entries of _PROTECTED
    add = owner._hooks.add
    by_type = rules.get if isinstance(rules, dict) else None
    for module in submodules(model):
        rule = by_type(type(module)) if by_type is not None else rules(module)
        if rule is None:
            continue
        matched.append(module)
        if getattr(rule, "all_inputs", False):
            # a rule that reads every positional input gets them as the tuple they came in
            def every(module, args, output, _rule=rule):
                if get_ident() != thread:
                    return None  # another thread's forward: its values as they are
                if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
                    return None
                return _rule(module, args, output)

            add(module, "forward", every)
            continue
        if not getattr(module, "inplace", False):
            # the forward hook receives the very input the module ran on: one hook suffices
            def direct(module, args, output, _rule=rule):
                if get_ident() != thread:
                    return None  # another thread's forward: its values as they are
                if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
                    return None
                return _rule(module, args[0], output)

            add(module, "forward", direct)
            continue

        # an in-place module would overwrite its input: it runs on a clone (pre-hook), the
        # rule gets the original (forward hook)
        def pre_hook(module, args, _key=id(module)):
            if get_ident() != thread:
                return None
            if not args or not isinstance(args[0], Tensor):
                return None
            saved[_key] = args[0]
            clone = args[0].clone()
            _PROTECTED[id(clone)] = (clone, args[0])
            clones[_key] = clone
            return (clone,) + tuple(args[1:])

        def hook(module, args, output, _key=id(module), _rule=rule):
            if get_ident() != thread:
                return None
            clone = clones.pop(_key, None)
            if clone is not None:
                _PROTECTED.pop(id(clone), None)
            original_input = saved.pop(_key, None)
            if original_input is None or not isinstance(output, Tensor):
                return None
            return _rule(module, original_input, output)

        add(module, "forward_pre", pre_hook)
        add(module, "forward", hook)
    return matched
