"""Scopes: where attributions live (inputs, a layer, a neuron), as ONE mechanism.

Every method is written once against the engine. A scope changes only

* where gradients are taken (``LayerSite.capture`` as the evaluator's ``tap``),
* where a path is interpolated (``LayerSite.substitute``: LayerIG feeds interpolated layer
  values instead of interpolated inputs), or
* what is explained (:func:`neuron_forward`: a neuron of a layer becomes the model output).

So "LayerX" and "NeuronX" are method X with a scope, never a copy of X.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .call import Call
from .forward import RowBatch
from .hooks import Captured, capture, hooks
from .validation import fail

__all__ = ["LayerSite", "neuron_forward", "neuron_model", "NeuronModel", "select_neuron"]


@dataclass(frozen=True)
class LayerSite:
    """One or more layers, and whether their inputs or outputs are meant.

    ``layout[i]`` is how many tensors layer ``i`` produces (a layer may return a tuple);
    flattened tensors of all layers are concatenated in layer order.
    """

    layers: tuple[nn.Module, ...]
    to_input: bool = False

    @classmethod
    def of(cls, layer: Any, *, to_input: bool = False, owner: str) -> LayerSite:
        layers = tuple(layer) if isinstance(layer, (list, tuple)) else (layer,)
        if not layers or not all(isinstance(m, nn.Module) for m in layers):
            fail(owner, "layer", "an nn.Module or a list of nn.Modules of the model", layer)
        return cls(layers, to_input)

    def capture(self) -> Any:
        """Context recording the site's tensors during a forward (a ``tap`` for gradients)."""
        return capture(self.layers, inputs=self.to_input)

    @contextmanager
    def substitute(self, values: Sequence[Tensor], layout: Sequence[int]) -> Iterator[Captured]:
        """Replace the site's tensors with ``values`` (leaves that require grad) in the block.

        Yields a :class:`Captured` whose ``tensors`` are ``values``, so it can serve as a
        ``tap``: the gradient is then taken with respect to the substituted values.
        """
        values = [v.detach().requires_grad_(True) for v in values]
        captured = Captured(explicit=list(values))
        offsets = [sum(layout[:i]) for i in range(len(layout) + 1)]

        def make(position: int) -> Callable:
            part = values[offsets[position] : offsets[position + 1]]

            if self.to_input:

                def pre_hook(module, args):
                    captured.calls += 1
                    return tuple(part) + tuple(args[len(part) :])

                return pre_hook

            def hook(module, args, output):
                captured.calls += 1
                return tuple(part) if isinstance(output, tuple) else part[0]

            return hook

        kind = "forward_pre" if self.to_input else "forward"
        with hooks((layer, kind, make(i)) for i, layer in enumerate(self.layers)):
            yield captured

    def activations(
        self, call: Call, rows: Sequence[Tensor] | None = None, example_index: Tensor | None = None
    ) -> tuple[tuple[Tensor, ...], list[int]]:
        """The site's tensors for ``rows`` (default: the call's inputs), chunked, no grad.

        Returns ``(tensors, layout)``: tensors flattened over layers, and per-layer counts.
        """
        rows = call.tensors if rows is None else tuple(rows)
        n_rows = rows[0].shape[0]
        if example_index is None:
            example_index = torch.arange(n_rows, device=rows[0].device)
        parts: list[list[Tensor]] = []
        layout: list[int] = []

        def build(start: int, stop: int) -> RowBatch:
            return RowBatch(tuple(r[start:stop] for r in rows), example_index[start:stop])

        # a forward through the model with the site captured; the target is not needed
        with torch.no_grad():
            for start in range(0, n_rows, call.chunk_rows):
                stop = min(n_rows, start + call.chunk_rows)
                with self.capture() as captured:
                    call.evaluator.raw_output(build(start, stop))
                self._check_seen(captured, call.owner)
                if not layout:
                    layout = [len(t) for t in captured.per_layer]
                parts.append([t.detach() for t in captured.tensors])
        return tuple(torch.cat(chunk, dim=0) for chunk in zip(*parts)), layout

    def _check_seen(self, captured: Captured, owner: str) -> None:
        if any(len(t) == 0 for t in captured.per_layer):
            fail(
                owner,
                "layer",
                "a module that runs in the model's forward and "
                + ("takes" if self.to_input else "returns")
                + " tensors",
                "a layer that was not called (or produced no tensor)",
                raw=True,
            )


def select_neuron(values: Tensor, selector: Any, *, owner: str) -> Tensor:
    """The neuron value per example from a layer tensor ``(N, ...)``.

    ``selector`` is an index tuple (one entry per non-batch dimension; an int for 1-D
    layers), a tuple mixing ints and slices (the selected block is summed, as in Captum),
    or a callable ``f(values) -> Tensor[N]``.
    """
    if callable(selector):
        selected = selector(values)
        if not isinstance(selected, Tensor) or selected.reshape(-1).shape[0] != values.shape[0]:
            fail(owner, "neuron_selector", "a callable returning one value per example", selected)
        return selected.reshape(-1)
    if isinstance(selector, int) and not isinstance(selector, bool):
        selector = (selector,)
    if not isinstance(selector, tuple) or not all(
        isinstance(s, (int, slice)) and not isinstance(s, bool) for s in selector
    ):
        fail(owner, "neuron_selector", "an int, a tuple of ints / slices, or a callable", selector)
    if len(selector) > values.dim() - 1:
        fail(
            owner,
            "neuron_selector",
            f"at most {values.dim() - 1} indices for a layer of shape {tuple(values.shape)}",
            selector,
        )
    for position, (index, size) in enumerate(zip(selector, values.shape[1:])):
        if isinstance(index, int) and not -size <= index < size:
            fail(
                owner,
                "neuron_selector",
                f"a valid index into layer dimension {position + 1} of size {size}",
                selector,
            )
    picked = values[(slice(None),) + selector]
    return picked.reshape(values.shape[0], -1).sum(dim=1)


class _StopForward(Exception):
    """Raised inside a hook to skip the rest of the model once the neuron is known."""


def neuron_forward(
    forward_func: Callable[..., Any],
    layer: nn.Module,
    selector: Any,
    *,
    to_input: bool = False,
    owner: str,
) -> Callable[..., Tensor]:
    """A forward function returning the selected neuron's value, shape ``(N,)``.

    The model stops right after ``layer`` (later layers cannot change the neuron), which
    makes every neuron method cheaper than a full forward.
    """

    def forward(*args: Any, **kwargs: Any) -> Tensor:
        seen: dict[str, Tensor] = {}

        def grab(values: Tensor) -> None:
            seen["value"] = select_neuron(values, selector, owner=owner)
            raise _StopForward

        if to_input:
            registration = (layer, "forward_pre", lambda module, inputs: grab(inputs[0]))
        else:
            registration = (layer, "forward", lambda module, inputs, output: grab(_first(output)))
        try:
            with hooks([registration]):
                forward_func(*args, **kwargs)
        except _StopForward:
            return seen["value"]
        fail(owner, "layer", "a module that runs in the model's forward", layer)
        raise AssertionError  # unreachable

    return forward


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class NeuronModel(nn.Module):
    """A model whose output is one neuron of ``layer`` (shape ``(N,)``).

    Wrapping keeps the original model as a submodule, so methods that hook nonlinearities
    (DeepLift, guided backprop) still see them; the wrapper adds no parameters or hooks of
    its own until called, and the model stops right after ``layer``.
    """

    def __init__(
        self, model: nn.Module, layer: nn.Module, selector: Any, *, to_input: bool, owner: str
    ):
        super().__init__()
        self.model = model
        self._forward = neuron_forward(model, layer, selector, to_input=to_input, owner=owner)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self._forward(*args, **kwargs)


def neuron_model(
    model: Any,
    layer: nn.Module,
    selector: Any,
    *,
    to_input: bool = False,
    owner: str = "neuron_model",
) -> Any:
    """Neuron scope for any method: ``method(neuron_model(model, layer, selector))`` explains
    the selected neuron (index tuple, tuple with slices, or callable) instead of the output.
    """
    if not isinstance(layer, nn.Module):
        fail(owner, "layer", "an nn.Module of the model", layer)
    if isinstance(model, nn.Module):
        return NeuronModel(model, layer, selector, to_input=to_input, owner=owner)
    return neuron_forward(model, layer, selector, to_input=to_input, owner=owner)
