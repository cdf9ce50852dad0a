"""Normalise what the caller passed (inputs, baselines, extra forward args) once, restore once.

Every method works on a flat tuple of tensors, batch dimension first. ``Structure``
remembers how to rebuild the caller's tensor / tuple / list / dict (nested allowed) and how
to call the model with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from numbers import Number
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from .validation import fail

__all__ = [
    "Structure",
    "TENSOR",
    "Inputs",
    "ForwardArgs",
    "Baselines",
    "flatten",
    "prepare_inputs",
    "ragged_inputs",
    "prepare_forward_args",
    "prepare_baselines",
]


@dataclass(frozen=True)
class Structure:
    """How a flat tuple of tensors maps back to the caller's container.

    ``kind`` is ``"tensor"``, ``"tuple"``, ``"list"`` or ``"dict"``; ``keys`` holds dict keys and
    ``children`` the structures of nested containers.
    """

    kind: str
    keys: tuple = ()
    children: tuple = ()

    @property
    def n_leaves(self) -> int:
        if self.kind == "tensor":
            return 1
        return sum(child.n_leaves for child in self.children)

    def rebuild(self, leaves: Sequence[Any]) -> Any:
        """Inverse of :func:`flatten`: put ``leaves`` back into the caller's container."""
        if self.kind == "tensor" and type(leaves) in (tuple, list) and len(leaves) == 1:
            return leaves[0]  # a lone tensor, the common case
        leaves = list(leaves)
        if len(leaves) != self.n_leaves:
            raise ValueError(f"expected {self.n_leaves} leaves to rebuild, got {len(leaves)}")
        value, rest = self._rebuild(leaves)
        return value

    def _rebuild(self, leaves: list) -> tuple[Any, list]:
        if self.kind == "tensor":
            return leaves[0], leaves[1:]
        items = []
        for child in self.children:
            item, leaves = child._rebuild(leaves)
            items.append(item)
        if self.kind == "dict":
            return dict(zip(self.keys, items)), leaves
        if self.kind == "list":
            return items, leaves
        return tuple(items), leaves

    def call(self, forward_func: Callable, leaves: Sequence[Tensor], extra: ForwardArgs) -> Any:
        """Call the model with leaves arranged as the caller arranged them."""
        if self.kind == "dict":
            return forward_func(*extra.args, **self.rebuild(leaves), **extra.kwargs)
        if self.kind == "tensor" or self.kind == "tuple" and _flat(self):
            return forward_func(*leaves, *extra.args, **extra.kwargs)
        rebuilt = self.rebuild(leaves)
        return forward_func(*rebuilt, *extra.args, **extra.kwargs)


#: the structure of a lone tensor (immutable, so shared)
TENSOR = Structure("tensor")


def _flat(structure: Structure) -> bool:
    return all(child.kind == "tensor" for child in structure.children)


def flatten(
    value: Any, *, owner: str, name: str = "inputs"
) -> tuple[tuple[Tensor, ...], Structure]:
    """Flatten a tensor or a (nested) tuple / list / dict of tensors."""
    if isinstance(value, Tensor):
        return (value,), TENSOR
    if isinstance(value, Mapping):
        keys = tuple(value.keys())
        parts = [flatten(value[key], owner=owner, name=f"{name}[{key!r}]") for key in keys]
    elif isinstance(value, (tuple, list)):
        keys = ()
        parts = [flatten(item, owner=owner, name=f"{name}[{i}]") for i, item in enumerate(value)]
    else:
        fail(
            owner,
            name,
            "a tensor, or a tuple / list / dict of tensors",
            type(value).__name__,
            type_error=True,
            raw=True,
        )
    if not parts:
        fail(owner, name, "a non-empty tuple / list / dict of tensors", value)
    leaves = tuple(leaf for part in parts for leaf in part[0])
    kind = "dict" if isinstance(value, Mapping) else type(value).__name__
    kind = kind if kind in ("tuple", "list", "dict") else "tuple"
    return leaves, Structure(kind, keys, tuple(part[1] for part in parts))


@dataclass(frozen=True)
class Inputs:
    """Flattened inputs as every method sees them."""

    tensors: tuple[Tensor, ...]
    structure: Structure

    @property
    def batch_size(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def is_tuple(self) -> bool:
        """Whether the caller passed a container (Captum returns a tuple then)."""
        return self.structure.kind != "tensor"

    @property
    def ragged(self) -> tuple[bool, ...]:
        """Per input: whether its first dimension differs from the batch size (input 0's),
        as sparse feature lists do (accepted only inside :func:`ragged_inputs`)."""
        batch = self.batch_size
        return tuple(t.shape[0] != batch for t in self.tensors)

    def restore(self, leaves: Sequence[Tensor]) -> Any:
        return self.structure.rebuild(leaves)

    def __len__(self) -> int:
        return len(self.tensors)


#: whether :func:`prepare_inputs` accepts inputs whose first dimension differs from input 0's
_RAGGED: ContextVar[bool] = ContextVar("ragged_inputs", default=False)


class _RaggedInputs:
    """The context manager :func:`ragged_inputs` returns (a class: entered on every call of
    the perturbation methods, where a generator-based one costs microseconds more)."""

    __slots__ = ("_allowed", "_token")

    def __init__(self, allowed: bool) -> None:
        self._allowed = allowed

    def __enter__(self) -> None:
        self._token = _RAGGED.set(bool(self._allowed))

    def __exit__(self, *exc_info: Any) -> None:
        _RAGGED.reset(self._token)


def ragged_inputs(allowed: bool = True) -> AbstractContextManager[None]:
    """Inside this context :func:`prepare_inputs` accepts inputs whose first dimension
    differs from the batch size (input 0's), as Captum's perturbation methods do for sparse
    feature lists (a ``(L,)`` tensor of indices, possibly empty, next to a ``(N, ...)``
    batch).

    Only methods that perturb such an input as a whole (every one of its ``L`` rows with
    the same mask, fed whole to each forward) open this context.

    Parameters
    ----------
    allowed : bool
        ``False`` keeps the usual check (a no-op context).
    """
    return _RaggedInputs(allowed)


def prepare_inputs(inputs: Any, *, owner: str, require_float: bool = False) -> Inputs:
    """Flatten and check inputs: every leaf has a batch dimension of one shared size
    (inside :func:`ragged_inputs`, input 0's first dimension is the batch size and the
    others may differ)."""
    tensors, structure = flatten(inputs, owner=owner)
    batch = None
    ragged = _RAGGED.get()
    for index, tensor in enumerate(tensors):
        if tensor.dim() == 0:
            fail(owner, "inputs", "tensors with a batch dimension (dim >= 1)", tensor)
        if batch is None:
            batch = tensor.shape[0]
        elif tensor.shape[0] != batch and not ragged:
            fail(
                owner,
                "inputs",
                f"tensors sharing one batch size (input 0 has {batch})",
                f"input {index} with batch size {tensor.shape[0]}",
                raw=True,
            )
        if require_float and not tensor.is_floating_point():
            fail(
                owner,
                "inputs",
                "floating point tensors (gradients are taken with respect to them)",
                f"input {index} of dtype {tensor.dtype}",
                type_error=True,
                raw=True,
            )
    return Inputs(tensors, structure)


@dataclass(frozen=True)
class ForwardArgs:
    """Additional forward arguments: positional ``args`` after the inputs and keyword ``kwargs``.

    Tensors whose first dimension equals the batch size are expanded with the batch (each
    row of an expanded evaluation gets its example's slice); everything else passes through.
    """

    args: tuple = ()
    kwargs: Mapping[str, Any] = None  # type: ignore[assignment]
    batch_size: int = 0

    def __post_init__(self) -> None:
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", {})

    def _is_batched(self, value: Any) -> bool:
        return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == self.batch_size

    def select(self, example_index: Tensor | None) -> ForwardArgs:
        """Arguments for rows whose examples are ``example_index`` (``None``: the batch as is)."""
        if example_index is None or not self.has_batched:
            return self
        args = tuple(self._take(value, example_index) for value in self.args)
        kwargs = {key: self._take(value, example_index) for key, value in self.kwargs.items()}
        return ForwardArgs(args, kwargs, len(example_index))

    def _take(self, value: Any, example_index: Tensor) -> Any:
        if self._is_batched(value):
            return value.index_select(0, example_index.to(value.device))
        return value

    @property
    def has_batched(self) -> bool:
        values = list(self.args) + list(self.kwargs.values())
        return any(self._is_batched(value) for value in values)


#: ``prepare_forward_args(None, n)`` per batch size ``n``, and its (read-only) keywords
_NO_FORWARD_ARGS: dict[int, ForwardArgs] = {}
_EMPTY_KWARGS: Mapping[str, Any] = MappingProxyType({})


def prepare_forward_args(additional_forward_args: Any, batch_size: int) -> ForwardArgs:
    """Captum convention: ``None``, one value, or a tuple of positional values; a dict is
    passed as keyword arguments (a whybox extension for models with keyword inputs)."""
    if additional_forward_args is None:
        # none: one shared immutable value per batch size (nothing mutates ``kwargs``)
        shared = _NO_FORWARD_ARGS.get(batch_size)
        if shared is None:
            shared = ForwardArgs((), _EMPTY_KWARGS, batch_size)
            if len(_NO_FORWARD_ARGS) < 256:
                _NO_FORWARD_ARGS[batch_size] = shared
        return shared
    if isinstance(additional_forward_args, Mapping):
        return ForwardArgs((), dict(additional_forward_args), batch_size)
    if isinstance(additional_forward_args, tuple):
        return ForwardArgs(additional_forward_args, {}, batch_size)
    return ForwardArgs((additional_forward_args,), {}, batch_size)


@dataclass(frozen=True)
class Baselines:
    """One baseline tensor per input.

    ``per_example`` baselines broadcast to the input's shape (a scalar, a tensor of the input's
    shape, a tensor of one example's shape, or any broadcastable shape). A ``distribution``
    holds ``n`` reference examples per input (GradientShap / DeepLiftShap draw from it).
    """

    tensors: tuple[Tensor, ...]
    distribution: bool = False

    @property
    def n_references(self) -> int:
        return self.tensors[0].shape[0] if self.distribution else 1

    def expanded(self, inputs: Inputs) -> tuple[Tensor, ...]:
        """Per-example baselines materialised at each input's full shape."""
        return tuple(b.expand_as(x) for b, x in zip(self.tensors, inputs.tensors))


def prepare_baselines(
    baselines: Any,
    inputs: Inputs,
    *,
    owner: str,
    name: str = "baselines",
    distribution: bool = False,
    allow_callable: bool = True,
) -> Baselines:
    """Normalise baselines against ``inputs``.

    Parameters
    ----------
    baselines
        ``None`` (zeros), a number, a tensor, or a container matching the inputs' structure
        whose leaves are numbers or tensors; a callable returning any of these (called with
        the caller's inputs if it takes one argument, else with none).
    distribution
        ``True`` for methods that draw references from a distribution: each tensor's first
        dimension is the number of references and the rest must equal one example's shape.
    """
    if type(baselines) is Tensor and len(inputs.tensors) == 1:
        # one tensor for one input, the common case: what the general path below gives
        # (a tensor is no factory, and no number), without its checks of the other forms
        return _new_baselines(
            (_baseline_tensor(baselines, inputs.tensors[0], 0, owner, name, distribution),),
            distribution,
        )
    if callable(baselines) and not isinstance(baselines, Tensor) and allow_callable:
        baselines = _call_baseline_factory(baselines, inputs)
    if baselines is None:
        leaves: tuple = tuple(0.0 for _ in inputs.tensors)
    elif isinstance(baselines, (Number, Tensor)):
        if isinstance(baselines, Tensor) and len(inputs) > 1:
            fail(owner, name, f"a tuple with one baseline per input ({len(inputs)})", baselines)
        leaves = (baselines,) * len(inputs) if isinstance(baselines, Number) else (baselines,)
    elif isinstance(baselines, (tuple, list, Mapping)):
        leaves = _flatten_like(baselines, owner=owner, name=name)
        if len(leaves) != len(inputs):
            fail(
                owner,
                name,
                f"one baseline per input ({len(inputs)})",
                f"{len(leaves)} baselines",
                raw=True,
            )
    else:
        fail(
            owner,
            name,
            "None, a number, a tensor, or a tuple of numbers / tensors",
            type(baselines).__name__,
            type_error=True,
            raw=True,
        )
    out = []
    for index, (leaf, tensor) in enumerate(zip(leaves, inputs.tensors)):
        out.append(_baseline_tensor(leaf, tensor, index, owner, name, distribution))
    return Baselines(tuple(out), distribution)


def _new_baselines(tensors: tuple[Tensor, ...], distribution: bool) -> Baselines:
    """``Baselines(tensors, distribution)`` without the frozen dataclass's ``__init__``."""
    made = object.__new__(Baselines)
    made.__dict__.update({"tensors": tensors, "distribution": distribution})
    return made


def _call_baseline_factory(factory: Callable, inputs: Inputs) -> Any:
    import inspect

    try:
        n_params = len(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        n_params = 1
    if n_params == 0:
        return factory()
    return factory(inputs.restore(inputs.tensors))


def _flatten_like(value: Any, *, owner: str, name: str) -> tuple:
    if isinstance(value, (Number, Tensor)):
        return (value,)
    if isinstance(value, Mapping):
        return tuple(
            leaf for v in value.values() for leaf in _flatten_like(v, owner=owner, name=name)
        )
    if isinstance(value, (tuple, list)):
        return tuple(leaf for v in value for leaf in _flatten_like(v, owner=owner, name=name))
    fail(owner, name, "numbers or tensors", type(value).__name__, type_error=True, raw=True)
    raise AssertionError  # unreachable


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (plain Python: torch's
    ``broadcast_shapes`` imports sympy on first use, ~40 MB)."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _baseline_tensor(
    leaf: Any, tensor: Tensor, index: int, owner: str, name: str, distribution: bool
) -> Tensor:
    dtype = tensor.dtype if tensor.is_floating_point() else None
    if isinstance(leaf, Number) and not isinstance(leaf, bool):
        value = torch.tensor(leaf, dtype=dtype or torch.float32, device=tensor.device)
        if not tensor.is_floating_point() and float(leaf).is_integer():
            # an integral baseline of integer inputs (a pad token id) stays an integer; a
            # fractional one is kept (perturbed rows promote), never truncated into another
            value = value.to(tensor.dtype)
        return value.reshape((1,) * tensor.dim()) if distribution else value
    if not isinstance(leaf, Tensor):
        fail(owner, name, "numbers or tensors", type(leaf).__name__, type_error=True, raw=True)
    if (dtype is not None and leaf.dtype != dtype) or leaf.device != tensor.device:
        base = leaf.to(device=tensor.device, dtype=tensor.dtype if dtype else leaf.dtype)
    else:
        base = leaf  # what ``to`` returns when nothing changes
    example_shape = tuple(tensor.shape[1:])
    if distribution:
        if base.dim() == tensor.dim() and tuple(base.shape[1:]) == example_shape:
            return base
        if tuple(base.shape) == example_shape:
            return base.unsqueeze(0)
        if base.dim() == 0:
            return base.reshape((1,) * tensor.dim()).expand((1,) + example_shape)
        fail(
            owner,
            name,
            f"a tensor of shape (n_references, {', '.join(map(str, example_shape))}) for input "
            f"{index}",
            f"shape {tuple(base.shape)}",
            raw=True,
        )
    if tuple(base.shape) == example_shape and base.dim() < tensor.dim():
        base = base.unsqueeze(0)
    if not broadcasts_to(tuple(base.shape), tuple(tensor.shape)):
        fail(
            owner,
            name,
            f"broadcastable to input {index}'s shape {tuple(tensor.shape)}",
            f"shape {tuple(base.shape)}",
            raw=True,
        )
    return base
