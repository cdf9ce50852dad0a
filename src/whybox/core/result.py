"""The result type every native method returns: :class:`Explanation`, sliceable by example."""

from __future__ import annotations

import dataclasses
import importlib
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Explanation"]

# Rows of the batch to keep: a slice with step 1 (views, no copies) or positions (N',).
_Rows = slice | Tensor


@dataclass
class Explanation:
    """Attributions with everything needed to read, check and draw them.

    (Named ``Explanation`` rather than ``Attribution`` because ``whybox.attr.Attribution`` is
    Captum's base-class name, which the compatible facade must keep.)

    Attributes
    ----------
    attributions
        Same structure and shapes as ``inputs`` (a tensor, tuple or dict), or the layer's
        shape for layer scope (a list of them for several layers).
    inputs
        The inputs that were explained, in the caller's structure, each ``(N, ...)``.
    target
        The target as passed by the caller.
    method
        Registry name of the method.
    parameters
        The method's options (``n_steps``, ``rule``, ...), for reports and reproducibility.
    delta
        Convergence delta per example, ``(N,)`` (sum of attributions minus
        ``f(x) - f(baseline)``) where defined, else ``None``.
    extras
        Method-specific outputs (e.g. the per-example model outputs).

    Notes
    -----
    ``len(explanation)`` is the number of examples ``N`` and ``explanation[index]``
    selects examples (see :meth:`__getitem__`). Iterating still yields
    ``(attributions, delta)``, so ``attributions, delta = explanation`` unpacks like
    Captum's return convention.
    """

    attributions: Any
    inputs: Any
    target: Any = None
    method: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    delta: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        # Allows ``attributions, delta = explanation`` like Captum's return convention.
        yield self.attributions
        yield self.delta

    def __repr__(self) -> str:
        shapes = _map_tensors(self.attributions, lambda t: tuple(t.shape))
        delta = ""
        if isinstance(self.delta, Tensor) and self.delta.numel():  # an empty batch has none
            delta = f", max|delta|={float(self.delta.abs().max()):.3g}"
        return f"Explanation(method={self.method!r}, shapes={shapes}{delta})"

    # -- examples -------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of examples ``N``: the batch size of the inputs (else of the attributions)."""
        n = _batch_size(self.inputs)
        if n is None:
            n = _batch_size(self.attributions)
        if n is None:
            raise TypeError("This Explanation holds no batched tensor, so it has no length.")
        return n

    def __getitem__(self, index: Any) -> Explanation:
        """The explanation of some examples, as a new ``Explanation``.

        Parameters
        ----------
        index : int, slice, sequence of int, or Tensor
            An ``int`` (negative counts from the end) selects one example and keeps a
            batch dimension of 1, so ``explanation[i]`` still draws and computes like any
            result; a ``slice`` (any step), a list / 1-D integer tensor of positions, or a
            boolean tensor of shape ``(N,)`` selects several, in that order.

        Returns
        -------
        Explanation
            ``attributions`` and ``inputs`` (any nesting of tensors in tuples, lists and
            dicts, including a list of per-layer results) and ``delta`` keep the selected
            rows of every tensor whose first dimension is ``N``; tensors with a first
            dimension of 1 are shared by the whole batch (e.g. the attributions of a model
            returning one scalar per batch) and kept as they are. A per-example ``target``
            (a list, or a tensor with one entry per example) is sliced; a shared one (an
            int, a tuple, a one-element tensor, a callable, ``None``) is kept.
            ``parameters`` and ``extras`` describe the whole run and are copied as they
            are.

        Raises
        ------
        IndexError
            An index outside ``[-N, N)``, or a boolean mask of the wrong length.
        TypeError
            An index of another type (e.g. a tuple: an Explanation indexes examples only).
        ValueError
            A tensor whose first dimension is neither ``N`` nor 1 (it cannot be sliced by
            example).
        """
        n = len(self)
        rows = _rows(index, n)

        def take(leaf: Tensor) -> Tensor:
            if leaf.dim() == 0 or (leaf.shape[0] == 1 and n != 1):
                return leaf  # shared by every example of the batch
            if leaf.shape[0] != n:
                raise ValueError(
                    f"Cannot select examples of this Explanation: a tensor of shape "
                    f"{tuple(leaf.shape)} has neither one row per example ({n}) nor one row."
                )
            if isinstance(rows, slice):
                return leaf[rows]
            return leaf.index_select(0, rows.to(leaf.device))

        return dataclasses.replace(
            self,
            attributions=_map_tensors(self.attributions, take),
            inputs=_map_tensors(self.inputs, take),
            target=_take_target(self.target, n, rows, take),
            delta=None if self.delta is None else take(self.delta),
            parameters=dict(self.parameters),
            extras=dict(self.extras),
        )

    # -- views ------------------------------------------------------------------------
    # Views depend on results, never the reverse: these conveniences look whybox.viz up
    # at run time (a dispatch, not an import edge from the engine to the views).
    def plot(self, index: int = 0, **options: Any) -> Any:
        """Draw example ``index``; shorthand for :func:`whybox.viz.plot`.

        ``options`` go to :func:`whybox.viz.plot_attribution` (``tokens``,
        ``feature_names``, ``kind``, ``ax``...). Returns a matplotlib Figure.
        """
        return importlib.import_module("whybox.viz").plot(self, index, **options)

    def to_html(self, index: int = 0, **options: Any) -> str:
        """Self-contained HTML of example ``index``; shorthand for :func:`whybox.viz.to_html`."""
        return importlib.import_module("whybox.viz").to_html(self, index, **options)

    def _repr_html_(self) -> str | None:
        try:
            # a fragment: a notebook cell embeds it in its own page
            return self.to_html(full_page=False)
        except (ValueError, TypeError, ImportError):
            # Jupyter falls back to repr when no view fits these shapes.
            return None


def _map_tensors(value: Any, fn: Callable[[Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor in a nest of tuples, lists and dicts; keep the rest."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _batch_size(value: Any) -> int | None:
    """Leading dimension of the first tensor (with at least one dimension) in a nest."""
    if isinstance(value, Tensor):
        return value.shape[0] if value.dim() else None
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, (tuple, list)):
        return None
    for item in value:
        n = _batch_size(item)
        if n is not None:
            return n
    return None


def _out_of_range(index: Any, n: int) -> IndexError:
    return IndexError(
        f"Explanation index {index} is out of range for an explanation of {n} examples "
        f"(valid: -{n} to {n - 1})."
    )


def _rows(index: Any, n: int) -> _Rows:
    """Normalise an example index to a step-1 slice or a (N',) long tensor of positions."""
    if isinstance(index, slice):
        picked = range(n)[index]
        if picked.step == 1:
            return slice(picked.start, picked.stop)
        return torch.tensor(list(picked), dtype=torch.long)
    if isinstance(index, tuple):
        raise TypeError(
            "An Explanation is indexed by example only (an int, slice, list or tensor of "
            f"examples). Got a tuple {index!r}; index explanation.attributions for other "
            "dimensions."
        )
    if isinstance(index, bool):
        raise TypeError("An Explanation is indexed by example; got a bool.")
    if not isinstance(index, Tensor):
        try:
            position = operator.index(index)  # int, numpy integer
        except TypeError:
            position = None
        if position is not None:
            if not -n <= position < n:
                raise _out_of_range(position, n)
            position %= n
            return slice(position, position + 1)  # keeps a batch dimension of 1
        try:
            index = torch.as_tensor(index)  # list / range / numpy array of positions
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                "An Explanation is indexed by an int, a slice, a sequence of ints or a "
                f"tensor. Got {type(index).__name__}."
            ) from None
    if index.dtype == torch.bool:
        if index.dim() != 1 or index.shape[0] != n:
            raise IndexError(
                f"A boolean index of an Explanation must have shape ({n},). "
                f"Got {tuple(index.shape)}."
            )
        return index.cpu().nonzero().reshape(-1)
    if index.is_floating_point() or index.is_complex():
        raise TypeError(f"An Explanation index tensor must hold integers. Got {index.dtype}.")
    if index.dim() == 0:
        return _rows(int(index), n)
    if index.dim() != 1:
        raise IndexError(
            f"An Explanation index tensor must be 1-D. Got shape {tuple(index.shape)}."
        )
    positions = index.cpu().long()
    bad = (positions < -n) | (positions >= n)
    if bool(bad.any()):
        raise _out_of_range(int(positions[bad][0]), n)
    return positions % n if n else positions


def _take_target(target: Any, n: int, rows: _Rows, take: Callable[[Tensor], Tensor]) -> Any:
    """Slice a per-example target (a list, or a tensor with one entry per example)."""
    if isinstance(target, list) and len(target) == n:
        positions = range(n)[rows] if isinstance(rows, slice) else rows.tolist()
        return [target[i] for i in positions]
    if isinstance(target, Tensor) and target.numel() != 1 and target.dim() >= 1:
        return take(target)
    return target
