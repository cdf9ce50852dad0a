"""Target forms: which scalar of the model's output is explained for each row.

Accepted forms (Captum's plus callables):

* ``None`` -- the model returns one scalar per example (shape ``(N,)`` or ``(N, 1)``), or one
  scalar for the whole batch;
* ``int`` or a one-element tensor -- the same output index for every example;
* ``tuple`` of ints -- an index into outputs with more than two dimensions;
* ``list`` of ints / tuples, or a 1-D tensor of length ``N`` -- one target per example;
* a callable ``f(output) -> Tensor[N]`` -- anything else;
* a ``list`` of ``N`` callables, one per example, each ``f(row_output) -> scalar`` on that
  example's output row (pytorch-grad-cam's ``targets=[ClassifierOutputTarget(k), ...]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .validation import fail

__all__ = ["Target", "prepare_target", "ALL_OUTPUTS"]


class _AllOutputs:
    """Captum's ``target=None`` for perturbation methods: every output value is
    explained (see :data:`ALL_OUTPUTS`)."""

    def __repr__(self) -> str:
        return "ALL_OUTPUTS"


#: A target meaning "every value the model returns" (Captum's perturbation methods with
#: ``target=None``): perturbation methods then attribute each output value separately,
#: ``(n_outputs, ...)``. Methods that need one scalar per row refuse it with the usual error
#: when the model returns several.
ALL_OUTPUTS = _AllOutputs()


@dataclass(frozen=True)
class Target:
    """A normalised target. ``select(output, example_index)`` returns one scalar per row."""

    kind: str  # "none" | "all" | "index" | "per_example" | "callable" | "per_example_callable"
    index: tuple = ()  # for "index": the shared index tuple
    per_example: Tensor | None = None  # (N, k) long, for "per_example"
    function: Callable[[Tensor], Tensor] | None = None
    owner: str = "attribute"
    raw: Any = None  # what the caller passed, kept for results
    # output shapes already validated: the checks sync with the device, so run them once
    checked: set = field(default_factory=set, compare=False, repr=False)
    functions: tuple = ()  # for "per_example_callable": one callable per example
    # ``per_example`` copied to the devices rows live on: once per call, not per chunk
    on_device: dict = field(default_factory=dict, compare=False, repr=False)
    # ``per_example``'s per-column ``(min, max)``, read from the device once per Target
    bounds: list = field(default_factory=list, compare=False, repr=False)

    def select(self, output: Tensor, example_index: Tensor | None = None) -> Tensor:
        """Scalar per row of ``output`` (rows belong to examples ``example_index``).

        Returns a tensor of shape ``(rows,)``, or a 0-d tensor when the model returns one
        scalar for the whole batch and no target is given.
        """
        if not isinstance(output, Tensor):
            fail(
                self.owner,
                "forward_func",
                "a callable returning a tensor (wrap models that return tuples or dicts)",
                f"an output of type {type(output).__name__}",
                type_error=True,
                raw=True,
            )
        if self.kind == "callable":
            selected = self.function(output)
            rows = output.shape[0] if output.dim() else 1
            if not isinstance(selected, Tensor) or selected.reshape(-1).shape[0] != rows:
                fail(
                    self.owner,
                    "target",
                    f"a callable returning one value per row ({rows})",
                    selected,
                )
            return selected.reshape(-1)
        if self.kind == "per_example_callable":
            return self._select_per_example_callable(output, example_index)
        if self.kind == "all":
            # every value, in the model's layout: (rows, ...) or a batch-level tensor
            return output
        if self.kind == "none":
            if output.dim() == 0:
                return output
            if output.numel() != output.shape[0]:
                fail(
                    self.owner,
                    "target",
                    "given when the model returns more than one value per example "
                    f"(output shape {tuple(output.shape)})",
                    None,
                )
            return output.reshape(output.shape[0])
        if output.dim() < 2:
            fail(
                self.owner,
                "target",
                f"None for a model with output shape {tuple(output.shape)}",
                self.raw,
            )
        if self.kind == "index":
            if tuple(output.shape[1:]) not in self.checked:
                self._check_index(output, self.index)
                self.checked.add(tuple(output.shape[1:]))
            selected = output[(slice(None),) + self.index]
            if selected.dim() > 1 and selected[0].numel() != 1:
                fail(
                    self.owner,
                    "target",
                    "an index that selects a single value per example (output shape "
                    f"{tuple(output.shape)})",
                    self.raw,
                )
            return selected.reshape(output.shape[0]) if selected.dim() > 1 else selected
        indices = self.per_example
        if example_index is not None:
            indices = self._per_example_on(example_index.device).index_select(0, example_index)
        if indices.shape[0] != output.shape[0]:
            fail(
                self.owner,
                "target",
                f"one target per example ({indices.shape[0]} given)",
                f"an output with {output.shape[0]} rows",
                raw=True,
            )
        if tuple(output.shape[1:]) not in self.checked:
            # all examples' indices at once, not just this chunk's
            self._check_per_example(output, self.per_example)
            self.checked.add(tuple(output.shape[1:]))
        if indices.device != output.device:
            indices = indices.to(output.device)
        if output.dim() == 2 and indices.shape[1] == 1 and self._column_bounds()[0][0] >= 0:
            # the same values (and gradients) as the indexing below, a third of its cost;
            # ``gather`` takes no negative indices
            return output.gather(1, indices).view(-1)
        rows = torch.arange(output.shape[0], device=output.device)
        return output[(rows,) + tuple(indices[:, k] for k in range(indices.shape[1]))]

    def _per_example_on(self, device: torch.device) -> Tensor:
        """``per_example`` on ``device`` (copied there once and kept)."""
        indices = self.per_example
        if indices.device == device:
            return indices
        if device not in self.on_device:
            self.on_device[device] = indices.to(device)
        return self.on_device[device]

    def _check_index(self, output: Tensor, index: tuple) -> None:
        dims = output.shape[1:]
        if len(index) > len(dims):
            fail(
                self.owner,
                "target",
                f"an index with at most {len(dims)} entries for output shape {tuple(output.shape)}",
                self.raw,
            )
        for position, (value, size) in enumerate(zip(index, dims)):
            if not -size <= value < size:
                fail(
                    self.owner,
                    "target",
                    f"a valid index into output dimension {position + 1} of size {size} "
                    f"(output shape {tuple(output.shape)})",
                    self.raw,
                )

    def _check_per_example(self, output: Tensor, indices: Tensor) -> None:
        dims = output.shape[1:]
        if indices.shape[1] > len(dims):
            fail(
                self.owner,
                "target",
                f"indices with at most {len(dims)} entries for output shape {tuple(output.shape)}",
                self.raw,
            )
        for k, (low, high) in enumerate(self._column_bounds()):
            size = dims[k]
            if high >= size or low < -size:
                fail(
                    self.owner,
                    "target",
                    f"valid indices into output dimension {k + 1} of size {size} "
                    f"(output shape {tuple(output.shape)})",
                    self.raw,
                )

    def _column_bounds(self) -> tuple[tuple[int, int], ...]:
        """Per column of ``per_example``, ``(min, max)``: read from the device once (one
        sync, whatever the number of columns, chunks or output shapes) and kept."""
        if not self.bounds:
            self.bounds.append(_bounds(self.per_example))
        return self.bounds[0]

    def _select_per_example_callable(self, output: Tensor, example_index: Tensor | None) -> Tensor:
        # one call per row, as pytorch-grad-cam does: each callable sees its example's row
        rows = output.shape[0] if output.dim() else 0
        examples = range(rows) if example_index is None else example_index.tolist()
        if rows == 0 or len(examples) != rows:
            fail(
                self.owner,
                "target",
                "a single callable for a model that returns one value per batch",
                f"a list of {len(self.functions)} callables",
                raw=True,
            )
        values = []
        for row, example in enumerate(examples):
            value = self.functions[example](output[row])
            if not isinstance(value, Tensor) or value.numel() != 1:
                fail(
                    self.owner,
                    "target",
                    "a list of callables each returning one value for its example's output row",
                    value,
                )
            values.append(value.reshape(()))
        return torch.stack(values)

    def repeat_for(self, example_index: Tensor, *, every_example: bool = False) -> Any:
        """The target in the caller's own form for rows ``example_index`` (the one row repeat
        for targets: wrappers such as NoiseTunnel re-call a method on repeated rows).

        Per-example index targets stay a tensor: ``(rows,)`` for one index per example,
        ``(rows, k)`` for index tuples. With ``every_example`` (``example_index`` names each
        example at least once) the tensor carries the bounds already read from the device,
        so the re-call's :func:`prepare_target` checks them without reading them again.
        """
        if self.kind == "per_example_callable":
            return [self.functions[i] for i in example_index.tolist()]
        if self.kind == "per_example":
            repeated = self.per_example.index_select(0, example_index).squeeze(-1)
            if every_example:
                # the same examples, so the same bounds (read here at most once, for every
                # re-call); kept with the tensor's version so an in-place change is read again
                bounds = self._column_bounds()
                setattr(repeated, _BOUNDS_ATTRIBUTE, (repeated._version, bounds))
            return repeated
        return self.raw


#: where :meth:`Target.repeat_for` leaves known bounds on the tensor it returns
_BOUNDS_ATTRIBUTE = "_whybox_target_bounds"


def _known_bounds(target: Tensor) -> list:
    """``[bounds]`` that :meth:`Target.repeat_for` left on ``target`` (still valid: the
    tensor unchanged since), or ``[]``."""
    known = getattr(target, _BOUNDS_ATTRIBUTE, None)
    if known is None or known[0] != target._version:
        return []
    return [known[1]]


def _bounds(indices: Tensor) -> tuple[tuple[int, int], ...]:
    """Per column of the ``(N, k)`` integer tensor ``indices``, ``(min, max)`` (``(0, -1)``
    for ``N = 0``), in one read from the device: small tensors (targets per example) are
    read whole, large ones reduced first."""
    rows, columns = indices.shape
    if rows == 0:
        return ((0, -1),) * columns
    if indices.numel() <= 4096:
        if columns == 1:
            values = indices.reshape(-1).tolist()
            return ((min(values), max(values)),)
        table = indices.tolist()
        return tuple((min(column), max(column)) for column in zip(*table))
    low, high = torch.aminmax(indices, dim=0)
    both = torch.stack([low, high]).tolist()
    return tuple(zip(both[0], both[1]))


def _as_index_tuple(value: Any) -> tuple | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return value
    return None


_new_object = object.__new__


def _simple_target(kind: str, index: tuple, owner: str, raw: Any) -> Target:
    """``Target(kind, index=index, owner=owner, raw=raw)``, the same fields (in the same
    order, each default factory's fresh value) without the frozen dataclass's ``__init__``
    (a ``object.__setattr__`` per field: microseconds per call on tiny jobs)."""
    made = _new_object(Target)
    made.__dict__.update(
        {
            "kind": kind,
            "index": index,
            "per_example": None,
            "function": None,
            "owner": owner,
            "raw": raw,
            "checked": set(),
            "functions": (),
            "on_device": {},
            "bounds": [],
        }
    )
    return made


def prepare_target(target: Any, batch_size: int, *, owner: str) -> Target:
    """Normalise ``target`` for a batch of ``batch_size`` examples (see module docstring)."""
    if target is None:
        return _simple_target("none", (), owner, None)
    if type(target) is int:
        # the common case first (what ``_as_index_tuple`` gives for an int)
        return _simple_target("index", (target,), owner, target)
    if target is ALL_OUTPUTS:
        return Target("all", owner=owner, raw=None)
    if callable(target) and not isinstance(target, Tensor):
        return Target("callable", function=target, owner=owner, raw=target)
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            fail(owner, "target", "an integer tensor", target, type_error=True)
        if target.numel() == 1:
            return Target("index", index=(int(target.item()),), owner=owner, raw=target)
        if target.dim() == 1 and target.shape[0] == batch_size:
            return Target(
                "per_example",
                per_example=target.long().view(-1, 1),
                owner=owner,
                raw=target,
                bounds=_known_bounds(target),
            )
        if target.dim() == 2 and target.shape[0] == batch_size:
            return Target(
                "per_example",
                per_example=target.long(),
                owner=owner,
                raw=target,
                bounds=_known_bounds(target),
            )
        fail(
            owner,
            "target",
            f"a tensor with one element or one entry per example ({batch_size})",
            target,
        )
    index = _as_index_tuple(target)
    if index is not None:
        return Target("index", index=index, owner=owner, raw=target)
    if isinstance(target, list):
        if len(target) != batch_size:
            fail(
                owner,
                "target",
                f"a list with one entry per example ({batch_size})",
                f"a list of length {len(target)}",
                raw=True,
            )
        if not target:
            # an empty batch: one (absent) index per example
            return Target(
                "per_example",
                per_example=torch.zeros((0, 1), dtype=torch.long),
                owner=owner,
                raw=target,
            )
        if all(callable(item) and not isinstance(item, Tensor) for item in target):
            return Target("per_example_callable", functions=tuple(target), owner=owner, raw=target)
        rows = [_as_index_tuple(item) for item in target]
        if any(row is None for row in rows) or len({len(row) for row in rows}) > 1:
            fail(owner, "target", "a list of ints or of equal-length int tuples", target)
        return Target(
            "per_example",
            per_example=torch.tensor(rows, dtype=torch.long).view(batch_size, -1),
            owner=owner,
            raw=target,
        )
    fail(
        owner,
        "target",
        "None, an int, a tuple of ints, a list, an integer tensor, a callable or a list of callables",
        target,
        type_error=True,
    )
    raise AssertionError  # unreachable
