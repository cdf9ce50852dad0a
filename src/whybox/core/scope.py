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

from .call import Call, prepare_call
from .forward import RowBatch
from .hooks import Captured, capture, hooks
from .model_checks import check_layer_in_model, explainable_model
from .validation import fail

__all__ = [
    "LayerSite",
    "neuron_forward",
    "neuron_model",
    "NeuronModel",
    "select_neuron",
    "Scope",
    "InputScope",
    "LayerScope",
    "NeuronScope",
    "scope_of",
]


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
        ``tap``: the gradient is then taken with respect to the substituted values. The model
        is fed clones, so an in-place op after the layer cannot hit a leaf (torch refuses
        in-place ops on leaves that require grad); gradients reach the leaves through them.
        ``per_layer`` records, per layer, the values fed in the last forward (empty if the
        layer did not run).
        """
        values = [v.detach().requires_grad_(True) for v in values]
        captured = Captured(
            explicit=list(values),
            per_layer=[() for _ in self.layers],
            layers=self.layers,
            to_input=self.to_input,
        )
        offsets = [sum(layout[:i]) for i in range(len(layout) + 1)]

        def make(position: int) -> Callable:
            part = values[offsets[position] : offsets[position + 1]]

            if self.to_input:

                def pre_hook(module, args):
                    captured.calls += 1
                    captured.per_layer[position] = tuple(part)
                    return tuple(p.clone() for p in part) + tuple(args[len(part) :])

                return pre_hook

            def hook(module, args, output):
                captured.calls += 1
                captured.per_layer[position] = tuple(part)
                fed = tuple(p.clone() for p in part)
                return fed if isinstance(output, tuple) else fed[0]

            return hook

        kind = "forward_pre" if self.to_input else "forward"
        with hooks((layer, kind, make(i)) for i, layer in enumerate(self.layers)):
            yield captured

    def activations(
        self, call: Call, rows: Sequence[Tensor] | None = None, example_index: Tensor | None = None
    ) -> tuple[tuple[Tensor, ...], list[int]]:
        """The site's tensors for ``rows`` (default: the call's inputs), chunked, no grad.

        Returns ``(tensors, layout)``: tensors flattened over layers, each ``(rows, ...)``,
        and per-layer counts. Zero rows still run one (empty) forward, so the tensors have
        the layer's shape with a batch of 0.
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
            for start in range(0, n_rows, call.chunk_rows) if n_rows else [0]:
                stop = min(n_rows, start + call.chunk_rows)
                with self.capture() as captured:
                    call.evaluator.raw_output(build(start, stop))
                self._check_seen(captured, call.owner)
                if not layout:
                    layout = [len(t) for t in captured.per_layer]
                parts.append([t.detach() for t in captured.tensors])
        return tuple(torch.cat(chunk, dim=0) for chunk in zip(*parts)), layout

    def _check_seen(self, captured: Captured, owner: str) -> None:
        """Fail clearly unless every layer of the site ran (and gave tensors) last forward."""
        if not captured.layers:
            captured = Captured(
                per_layer=captured.per_layer, layers=self.layers, to_input=self.to_input
            )
        captured.check_seen(owner)


def select_neuron(values: Tensor, selector: Any, *, owner: str) -> Tensor:
    """The neuron value per example from a layer tensor ``values`` of shape ``(N, ...)``.

    ``selector`` is one of

    * a tuple of ints with exactly one index per non-batch dimension (an int alone for a
      layer of shape ``(N, K)``): that one neuron. A shorter tuple of ints is an error, not
      a sum over the remaining dimensions (Captum fails on it too);
    * a tuple mixing ints and slices (at least one slice): the selected block, summed per
      example, as Captum documents. It may be shorter than the number of dimensions only
      because it contains a slice; the dimensions left out are then taken whole
      (``(slice(0, 2),)`` on ``(N, C, H, W)`` sums channels 0-1 over all positions);
    * a callable ``f(values) -> Tensor`` with one value per example.

    Returns
    -------
    Tensor
        ``(N,)`` the selected value (or block sum) per example.
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
    dims = values.dim() - 1
    shape = tuple(values.shape)
    has_slice = any(isinstance(s, slice) for s in selector)
    if len(selector) > dims or (not has_slice and len(selector) != dims):
        fail(
            owner,
            "neuron_selector",
            f"a tuple with one index per non-batch dimension of the layer ({dims} for a layer "
            f"of shape {shape}; include slices to select and sum a block)",
            f"{selector!r} ({len(selector)} entries)",
            raw=True,
        )
    for position, (index, size) in enumerate(zip(selector, values.shape[1:])):
        if isinstance(index, int) and not -size <= index < size:
            fail(
                owner,
                "neuron_selector",
                f"a valid index into layer dimension {position + 1} of size {size} "
                f"(layer shape {shape})",
                selector,
            )
    picked = values[(slice(None),) + selector]
    if not has_slice:
        return picked  # one neuron: already (N,)
    # flatten(1), not reshape(N, -1): works for an empty batch too
    return picked.flatten(1).sum(dim=1) if picked.dim() > 1 else picked


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
        fail(
            owner,
            "layer",
            "a module that runs in the model's forward (a submodule of the model, not of a "
            "copy, a compiled or a scripted version of it)",
            layer,
        )
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
    # the neuron is read by a hook on ``layer``: hooks need the eager model (a compiled
    # module's original one) and a layer of it; a plain function is checked when it runs
    model = explainable_model(model, owner=owner, needs_hooks=True, needs_module_rules=False)
    check_layer_in_model(model, layer, owner=owner)
    if isinstance(model, nn.Module):
        return NeuronModel(model, layer, selector, to_input=to_input, owner=owner)
    return neuron_forward(model, layer, selector, to_input=to_input, owner=owner)


# -- scopes: where a method's attributions live, as one polymorphic object ------------------
class Scope:
    """Where attributions live: the inputs, a layer's values, or the inputs for one neuron.

    A method writes its maths once against this interface and never branches on scope:

    * :meth:`prepare` makes the call (for neuron scope, the model whose output is the
      neuron -- a model transform);
    * :attr:`tap` is what gradients are taken with respect to (``None``: the inputs);
    * :meth:`endpoints` gives a path's ends in the scope's space (input scope: baselines
      and inputs; layer scope: the layer's values on both, from one forward);
      :attr:`substitution` then tells the path walker to feed those points through the
      layer (layer values become the inputs);
    * :meth:`difference` is ``value(ends) - value(starts)`` for rows in input space;
    * :meth:`result` builds the :class:`~whybox.core.result.Explanation` in the scope's
      convention (the inputs' structure, or Captum's per-layer convention).
    """

    #: the layer site for layer scope (``None`` otherwise)
    site: LayerSite | None = None

    def __init__(self, model: Any, *, owner: str) -> None:
        self.model = model
        self.owner = owner
        #: tensors per layer, known after the first forward through the site
        self.layout: list[int] | None = None

    # what the maths calls
    require_float: bool = True

    def prepare(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: Any = "auto",
        show_progress: bool = False,
        float_inputs: bool = False,
    ) -> Call:
        """The call (inputs, target, extra args, evaluator) for this scope's model.

        ``float_inputs`` demands floating-point inputs whatever the scope (methods that
        draw random points in input space even for a layer).
        """
        return prepare_call(
            self.owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=self.require_float or float_inputs,
        )

    @property
    def tap(self) -> Callable[[], Any] | None:
        """Gradients are with respect to the inputs (``None``) or these captured tensors."""
        return None

    @property
    def substitution(self) -> LayerSite | None:
        """A site whose values are replaced by path points (layer scope), else ``None``."""
        return None

    def endpoints(
        self, call: Call, baselines: Sequence[Tensor]
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(starts, ends)`` of straight paths in the scope's space."""
        return tuple(baselines), call.tensors

    def difference(
        self, call: Call, ends: Sequence[Tensor], starts: Sequence[Tensor], example_index: Tensor
    ) -> list[Tensor]:
        """``value(ends) - value(starts)`` for rows of inputs (the inputs themselves here)."""
        return [e - s for e, s in zip(ends, starts)]

    def result(
        self,
        method: Any,
        call: Call,
        leaves: Sequence[Tensor],
        *,
        delta: Tensor | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        """The explanation, shaped like the inputs."""
        return method._result(call, tuple(leaves), delta=delta, parameters=parameters)


class InputScope(Scope):
    """Attributions to the model's inputs."""


class NeuronScope(Scope):
    """Attributions to the inputs for one neuron of a layer: the model is transformed into
    one returning that neuron (:func:`neuron_model`), the maths is the input scope's."""

    def __init__(
        self, model: Any, layer: nn.Module, selector: Any, *, to_input: bool, owner: str
    ) -> None:
        super().__init__(
            neuron_model(model, layer, selector, to_input=to_input, owner=owner), owner=owner
        )


class LayerScope(Scope):
    """Attributions to a layer's values (outputs, or inputs with ``to_input``)."""

    require_float = False  # the inputs may be token ids; the layer's values are floats

    def __init__(self, model: Any, site: LayerSite, *, owner: str) -> None:
        super().__init__(model, owner=owner)
        self.site = site

    @property
    def tap(self) -> Callable[[], Any]:
        site = self.site

        @contextmanager
        def checked() -> Iterator[Captured]:
            with site.capture() as captured:
                yield captured
            site._check_seen(captured, self.owner)
            if self.layout is None:
                self.layout = [len(t) for t in captured.per_layer]

        return checked

    @property
    def substitution(self) -> LayerSite:
        return self.site

    def endpoints(
        self, call: Call, baselines: Sequence[Tensor]
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        # the layer's values on inputs and baselines, from one pass over 2N rows
        batch = call.batch_size
        both = tuple(torch.cat([x, b.expand_as(x)]) for x, b in zip(call.tensors, baselines))
        index = torch.arange(batch, device=both[0].device).repeat(2)
        values, self.layout = self.site.activations(call, both, index)
        return tuple(v[batch:] for v in values), tuple(v[:batch] for v in values)

    def difference(
        self, call: Call, ends: Sequence[Tensor], starts: Sequence[Tensor], example_index: Tensor
    ) -> list[Tensor]:
        end_values, self.layout = self.site.activations(call, ends, example_index)
        start_values, _ = self.site.activations(call, starts, example_index)
        return [e - s for e, s in zip(end_values, start_values)]

    def result(
        self,
        method: Any,
        call: Call,
        leaves: Sequence[Tensor],
        *,
        delta: Tensor | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        """Captum's layer convention: a tensor per layer (a tuple for layers returning
        several tensors), a list when several layers were given."""
        layout = self.layout
        if layout is None or sum(layout) != len(leaves):
            layout = self._count_layout(call, len(leaves))
        return method._layer_result(call, tuple(leaves), layout, delta=delta, parameters=parameters)

    def _count_layout(self, call: Call, n_values: int) -> list[int]:
        # one tensor per layer is the common case; tuples need one single-row forward
        if n_values == len(self.site.layers):
            return [1] * n_values
        _, layout = self.site.activations(call, [x[:1] for x in call.tensors])
        return layout


def scope_of(
    model: Any, layer: Any, *, neuron: Any = None, to_input: bool = False, owner: str
) -> Scope:
    """The scope for a method's ``layer`` / ``neuron`` settings (one place decides)."""
    if neuron is not None:
        if layer is None or isinstance(layer, (list, tuple)):
            fail(owner, "layer", "one nn.Module when a neuron is selected", layer)
        return NeuronScope(model, layer, neuron, to_input=to_input, owner=owner)
    if layer is None:
        return InputScope(model, owner=owner)
    return LayerScope(model, LayerSite.of(layer, to_input=to_input, owner=owner), owner=owner)
