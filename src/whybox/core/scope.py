"""Scopes: where attributions live (inputs, a layer, a neuron), as ONE mechanism.

Every method is written once against the engine. A scope changes only

* where gradients are taken (``LayerSite.capture`` as the evaluator's ``tap``),
* where a path is interpolated (``LayerSite.substitute``: LayerIG feeds interpolated layer
  values instead of interpolated inputs),
* what is explained (:func:`neuron_forward`: a neuron of a layer becomes the model output),
* what is perturbed (:meth:`LayerScope.perturbation`: layer values fed in place of the
  layer's own).

A method asks its :class:`Scope` (made by :func:`scope_of`) for each of these.

So "LayerX" and "NeuronX" are method X with a scope, never a copy of X.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .call import Call, prepare_call
from .forward import Evaluator, RowBatch
from .hooks import Captured, capture, hooks
from .inputs import Inputs, flatten
from .model_checks import check_layer_in_model, explainable_model
from .validation import fail

__all__ = [
    "LayerSite",
    "neuron_forward",
    "neuron_model",
    "NeuronModel",
    "select_neuron",
    "Perturbation",
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

    def capture(self, *, copy: bool = False) -> Any:
        """Context recording the site's tensors during a forward (a ``tap`` for gradients;
        with ``copy``, detached copies of the values, for reading only)."""
        return capture(self.layers, inputs=self.to_input, copy=copy)

    def checked(
        self, owner: str, *, copy: bool = False, then: Callable[[Captured], None] | None = None
    ) -> AbstractContextManager[Captured]:
        """:meth:`capture`, failing clearly on exit unless every layer ran and gave tensors.

        The one checked capture of a layer: a layer that is not called in the forward (a
        submodule of a copy, of a compiled or a scripted model) is an error naming it, never
        an empty result or a zero gradient. An error inside the block propagates unchecked.
        ``then(captured)`` runs after a successful check.
        """
        return _Checked(self, owner, self.capture(copy=copy), then)

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
        chunk = call.chunk_rows
        # the batch's own rows in one forward need no example index (the forward args are
        # the batch's as they are)
        if example_index is None and not (n_rows == call.batch_size and n_rows <= chunk):
            example_index = torch.arange(n_rows, device=rows[0].device)
        parts: list[tuple[Tensor, ...]] = []
        layout: list[int] = []

        def build(start: int, stop: int) -> RowBatch:
            if example_index is None:
                return RowBatch(rows, None)
            return RowBatch(tuple(r[start:stop] for r in rows), example_index[start:stop])

        # a forward through the model with the site captured; the target is not needed.
        # The capture copies the values (the forward itself is left as it is), so one
        # chunk's copies are the result as they are.
        with torch.no_grad():
            for start in range(0, n_rows, chunk) if n_rows else [0]:
                stop = min(n_rows, start + chunk)
                with self.checked(call.owner, copy=True) as captured:
                    call.evaluator.raw_output(build(start, stop))
                if not layout:
                    layout = [len(t) for t in captured.per_layer]
                parts.append(tuple(captured.tensors))
        if len(parts) == 1:
            return parts[0], layout
        return tuple(torch.cat(pieces, dim=0) for pieces in zip(*parts)), layout

    def _check_seen(self, captured: Captured, owner: str) -> None:
        """Fail clearly unless every layer of the site ran (and gave tensors) last forward."""
        if not captured.layers:
            captured = Captured(
                per_layer=captured.per_layer, layers=self.layers, to_input=self.to_input
            )
        captured.check_seen(owner)


class _Checked:
    """The context manager of :meth:`LayerSite.checked` (a class: entered per forward)."""

    __slots__ = ("_site", "_owner", "_capture", "_then", "_captured")

    def __init__(
        self,
        site: LayerSite,
        owner: str,
        capture: AbstractContextManager[Captured],
        then: Callable[[Captured], None] | None,
    ) -> None:
        self._site, self._owner, self._capture, self._then = site, owner, capture, then

    def __enter__(self) -> Captured:
        self._captured = self._capture.__enter__()
        return self._captured

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        self._capture.__exit__(exc_type, *exc_info)
        if exc_type is None:
            self._site._check_seen(self._captured, self._owner)
            if self._then is not None:
                self._then(self._captured)


def select_neuron(values: Tensor | Sequence[Tensor], selector: Any, *, owner: str) -> Tensor:
    """The neuron value per example from a layer's tensor(s) ``values``, each ``(N, ...)``.

    ``values`` is the layer's tensor, or the tuple of tensors of a layer that returns (or
    takes) several; a tuple of one is its tensor. ``selector`` is one of

    * a tuple of ints with one index per non-batch dimension (an int alone for a layer of
      shape ``(N, K)``): that one neuron. A shorter tuple of ints is accepted only where the
      dimensions it leaves out all have size 1 (it still names one neuron, as in Captum);
      otherwise it is an error, not a sum over the remaining dimensions (Captum fails on it
      too);
    * a tuple mixing ints and slices (at least one slice): the selected block, summed per
      example, as Captum documents. It may be shorter than the number of dimensions only
      because it contains a slice; the dimensions left out are then taken whole
      (``(slice(0, 2),)`` on ``(N, C, H, W)`` sums channels 0-1 over all positions);
    * a callable ``f(values) -> Tensor``, given the layer's tensor (the tuple of tensors
      for a layer with several, as Captum does), with one value per example, or one value
      for the whole batch (a batch aggregate such as ``torch.sum(x)``, as Captum accepts;
      the neuron model then returns one value per batch, like any model with a batch-level
      output: gradient methods differentiate it, perturbation methods explain the batch as
      a whole). Index and slice selectors need a layer with one tensor.

    Returns
    -------
    Tensor
        ``(N,)`` the selected value (or block sum) per example; 0-d for a batch aggregate.
    """
    if isinstance(values, (tuple, list)):
        if callable(selector):
            selected = selector(values[0] if len(values) == 1 else tuple(values))
            return _per_example(selected, values[0].shape[0], selector, owner)
        if len(values) != 1:
            fail(
                owner,
                "neuron_selector",
                f"a callable for a layer with {len(values)} tensors (an index selects from a "
                "layer with one tensor)",
                selector,
            )
        values = values[0]
    if callable(selector):
        return _per_example(selector(values), values.shape[0], selector, owner)
    if isinstance(selector, int) and not isinstance(selector, bool):
        selector = (selector,)
    if not isinstance(selector, tuple) or not all(
        isinstance(s, (int, slice)) and not isinstance(s, bool) for s in selector
    ):
        fail(owner, "neuron_selector", "an int, a tuple of ints / slices, or a callable", selector)
    dims = values.dim() - 1
    shape = tuple(values.shape)
    has_slice = any(isinstance(s, slice) for s in selector)
    # a short tuple of ints still names one neuron where the dimensions left out have size 1
    one_neuron = all(size == 1 for size in shape[1 + len(selector) :])
    if len(selector) > dims or (not has_slice and not one_neuron):
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
        # one neuron: (N,), or (N, 1, ...) for a short tuple
        return picked.reshape(shape[0])
    # flatten(1), not reshape(N, -1): works for an empty batch too
    return picked.flatten(1).sum(dim=1) if picked.dim() > 1 else picked


def _per_example(selected: Any, rows: int, selector: Any, owner: str) -> Tensor:
    """A callable selector's result as ``(rows,)`` (one value per row), or 0-d for a batch
    aggregate (one value for several rows)."""
    if isinstance(selected, Tensor) and selected.numel() == 1 and rows > 1:
        return selected.reshape(())
    if not isinstance(selected, Tensor) or selected.reshape(-1).shape[0] != rows:
        fail(
            owner,
            "neuron_selector",
            "a callable returning one value per example (or one for the whole batch)",
            selected,
        )
    return selected.reshape(-1)


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

        def grab(values: tuple[Tensor, ...]) -> None:
            seen["value"] = select_neuron(values, selector, owner=owner)
            raise _StopForward

        if to_input:
            registration = (layer, "forward_pre", lambda module, inputs: grab(_tensors(inputs)))
        else:
            registration = (
                layer,
                "forward",
                lambda module, inputs, output: grab(_tensors(output)),
            )
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


def _tensors(values: Any) -> tuple[Tensor, ...]:
    """A layer's output (or positional inputs) as the tuple of its tensors."""
    if isinstance(values, (tuple, list)):
        return tuple(v for v in values if isinstance(v, Tensor))
    return (values,)


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
@dataclass(frozen=True)
class Perturbation:
    """What a perturbation method perturbs in a scope, and how perturbed rows reach the model.

    Attributes
    ----------
    call : Call
        The call that evaluates perturbed rows (for layer scope its model substitutes the
        layer's values by the perturbed ones; the target and extra arguments are the
        original call's).
    values : Inputs
        The values that are perturbed, each ``(N, ...)``: the inputs, or the layer's
        tensors on the inputs (with a structure, for baselines and masks shaped like them).
    rows : callable
        ``rows(batch)``: a :class:`~whybox.core.forward.RowBatch` of perturbed values ->
        the :class:`~whybox.core.forward.RowBatch` that ``call``'s evaluator takes.
    """

    call: Call
    values: Inputs
    rows: Callable[[RowBatch], RowBatch]

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The perturbed values, each ``(N, ...)``."""
        return self.values.tensors


def _same_rows(batch: RowBatch) -> RowBatch:
    return batch


class Scope:
    """Where attributions live: the inputs, a layer's values, or the inputs for one neuron.

    A method writes its maths once against this interface and never branches on scope:

    * :meth:`prepare` makes the call (for neuron scope, the model whose output is the
      neuron -- a model transform);
    * :attr:`tap` is what gradients are taken with respect to (``None``: the inputs);
      :meth:`recording_tap` also keeps the tapped values of each chunk, and :meth:`values`
      gives the scope's values of the rows of a forward (the rows themselves, or the
      layer's values recorded in the same forward: no extra forward);
    * :meth:`endpoints` gives a path's ends in the scope's space (input scope: baselines
      and inputs; layer scope: the layer's values on both, from one forward);
      :attr:`substitution` then tells the path walker to feed those points through the
      layer (layer values become the inputs);
    * :meth:`difference` is ``value(ends) - value(starts)`` for rows in input space;
    * :meth:`perturbation` is what a perturbation method perturbs (the inputs, or the
      layer's values fed in place of the layer's own);
    * :meth:`zeros`, :meth:`groups`, :meth:`arrange` and :meth:`result` build results in
      the scope's convention (the inputs' structure, or Captum's per-layer convention).
    """

    #: the layer site for layer scope (``None`` otherwise)
    site: LayerSite | None = None
    #: whether the inputs must be floating point unless a method says otherwise
    require_float: bool = True

    def __init__(self, model: Any, *, owner: str) -> None:
        self.model = model
        self.owner = owner
        #: tensors per layer, known after the first forward through the site
        self.layout: list[int] | None = None

    def prepare(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: Any = "auto",
        show_progress: bool = False,
        float_inputs: bool | None = None,
    ) -> Call:
        """The call (inputs, target, extra args, evaluator) for this scope's model.

        ``float_inputs`` overrides the scope's default (:attr:`require_float`): ``True``
        demands floating-point inputs whatever the scope (methods that draw random points
        in input space even for a layer), ``False`` accepts any dtype (perturbations may
        set token ids to a baseline id).
        """
        return prepare_call(
            self.owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=self.require_float if float_inputs is None else float_inputs,
        )

    # -- gradients ------------------------------------------------------------------------
    @property
    def tap(self) -> Callable[[], Any] | None:
        """Gradients are with respect to the inputs (``None``) or these captured tensors."""
        return None

    def recording_tap(self, store: list[Tensor]) -> Callable[[], Any] | None:
        """:attr:`tap`, also putting the tapped values of each chunk (detached) in ``store``.

        Input scope has nothing to record (``None``: the rows are the values).
        """
        return None

    def values(self, rows: Sequence[Tensor], recorded: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The scope's values for the rows of one forward: the rows themselves here.

        Parameters
        ----------
        rows : the rows fed to the model, each ``(rows, ...)``
        recorded : what :meth:`recording_tap` (or ``row_gradients(..., record=)``) kept
            from the same forward

        Returns
        -------
        tuple of Tensor
            One ``(rows, ...)`` tensor per input (per layer tensor for layer scope).
        """
        return tuple(rows)

    @property
    def output_layers(self) -> tuple[nn.Module, ...]:
        """The layers whose outputs are the scope's values (none: inputs, layer inputs)."""
        return ()

    # -- paths ----------------------------------------------------------------------------
    @property
    def substitution(self) -> LayerSite | None:
        """A site whose values are replaced by path points (layer scope), else ``None``."""
        return None

    def endpoints(
        self, call: Call, baselines: Sequence[Tensor]
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(starts, ends)`` of straight paths in the scope's space, each ``(N, ...)``
        (starts may broadcast)."""
        return tuple(baselines), call.tensors

    def difference(
        self, call: Call, ends: Sequence[Tensor], starts: Sequence[Tensor], example_index: Tensor
    ) -> list[Tensor]:
        """``value(ends) - value(starts)`` for rows of inputs (the inputs themselves here)."""
        return [e - s for e, s in zip(ends, starts)]

    # -- perturbations --------------------------------------------------------------------
    def perturbation(self, call: Call) -> Perturbation:
        """What is perturbed: the inputs here, fed to the model as they are."""
        return Perturbation(call, call.inputs, _same_rows)

    # -- results --------------------------------------------------------------------------
    def zeros(self, call: Call) -> tuple[Tensor, ...]:
        """Zero attributions shaped like the scope's values of the call's rows (for an
        empty batch: ``(0, ...)``)."""
        return tuple(torch.zeros_like(x) for x in call.tensors)

    def groups(self, call: Call, leaves: Sequence[Tensor]) -> list[tuple[Tensor, ...]]:
        """The leaves grouped as the results are: one group here (per layer for layer
        scope)."""
        return [tuple(leaves)]

    def arrange(self, items: Sequence[Any]) -> Any:
        """One item per group (see :meth:`groups`) in the result's convention: the item
        itself here (a list for several layers)."""
        return items[0]

    def result(
        self,
        method: Any,
        call: Call,
        leaves: Sequence[Tensor],
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Any:
        """The explanation, shaped like the inputs (their tensor / tuple / dict structure)."""
        return method._result(
            call, tuple(leaves), delta=delta, parameters=parameters, extras=extras
        )


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
    """Attributions to a layer's values (outputs, or inputs with ``to_input``).

    ``several``: the layers were given as a list (or tuple), so results are a list with one
    entry per layer (Captum's convention), even for a list of one.
    """

    require_float = False  # the inputs may be token ids; the layer's values are floats

    def __init__(self, model: Any, site: LayerSite, *, several: bool = False, owner: str) -> None:
        super().__init__(model, owner=owner)
        self.site = site
        self.several = several

    def activations(
        self, call: Call, rows: Sequence[Tensor] | None = None, example_index: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        """The layer's tensors for ``rows`` (default: the call's inputs), no grad.

        One chunked forward, checked (the layers must run); records :attr:`layout`.

        Returns
        -------
        tuple of Tensor
            Flattened over layers, each ``(rows, ...)``.
        """
        values, self.layout = self.site.activations(call, rows, example_index)
        return values

    # -- gradients ------------------------------------------------------------------------
    @property
    def tap(self) -> Callable[[], Any]:
        site, owner = self.site, self.owner

        def keep_layout(captured: Captured) -> None:
            self.layout = [len(t) for t in captured.per_layer]

        def checked() -> AbstractContextManager[Captured]:
            return site.checked(owner, then=keep_layout)

        return checked

    def recording_tap(self, store: list[Tensor]) -> Callable[[], Any]:
        site, owner = self.site, self.owner

        def keep(captured: Captured) -> None:
            self.layout = [len(t) for t in captured.per_layer]
            store[:] = [t.detach() for t in captured.tensors]

        def recorded() -> AbstractContextManager[Captured]:
            return site.checked(owner, then=keep)

        return recorded

    def values(self, rows: Sequence[Tensor], recorded: Sequence[Tensor]) -> tuple[Tensor, ...]:
        # the layer's values, recorded in the forward that gave the gradients
        return tuple(recorded)

    @property
    def output_layers(self) -> tuple[nn.Module, ...]:
        return () if self.site.to_input else self.site.layers

    # -- paths ----------------------------------------------------------------------------
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
        values = self.activations(call, both, index)
        return tuple(v[batch:] for v in values), tuple(v[:batch] for v in values)

    def difference(
        self, call: Call, ends: Sequence[Tensor], starts: Sequence[Tensor], example_index: Tensor
    ) -> list[Tensor]:
        end_values = self.activations(call, ends, example_index)
        start_values = self.activations(call, starts, example_index)
        return [e - s for e, s in zip(end_values, start_values)]

    # -- perturbations --------------------------------------------------------------------
    def perturbation(self, call: Call) -> Perturbation:
        """The layer's values on the inputs (one no-grad forward), perturbed and fed in place
        of the layer's own (Captum's LayerFeatureAblation / LayerFeaturePermutation): each
        perturbed row runs the model on its example's real inputs."""
        activations = self.activations(call)
        site, layout, model, owner = self.site, list(self.layout), self.model, self.owner
        fed: list[Tensor] = []  # the perturbed layer values of the chunk being evaluated

        def forward(*args: Any, **kwargs: Any) -> Any:
            with site.substitute(fed, layout) as substituted:
                output = model(*args, **kwargs)
            site._check_seen(substituted, owner)
            return output

        evaluator = Evaluator(forward, call.inputs.structure, call.extra, call.target, owner=owner)
        _, structure = flatten(activations, owner=owner)

        def rows(batch: RowBatch) -> RowBatch:
            fed[:] = batch.inputs
            index = batch.example_index
            originals = tuple(x.index_select(0, index.to(x.device)) for x in call.tensors)
            return RowBatch(originals, index)

        return Perturbation(
            replace(call, evaluator=evaluator), Inputs(tuple(activations), structure), rows
        )

    # -- results --------------------------------------------------------------------------
    def zeros(self, call: Call) -> tuple[Tensor, ...]:
        # the layer's shapes come from one forward (torch modules accept N = 0)
        return tuple(torch.zeros_like(v) for v in self.activations(call))

    def groups(self, call: Call, leaves: Sequence[Tensor]) -> list[tuple[Tensor, ...]]:
        layout = self.layout
        if layout is None or sum(layout) != len(leaves):
            layout = self._count_layout(call, len(leaves))
        grouped, start = [], 0
        for count in layout:
            grouped.append(tuple(leaves[start : start + count]))
            start += count
        return grouped

    def arrange(self, items: Sequence[Any]) -> Any:
        return list(items) if self.several else items[0]

    def result(
        self,
        method: Any,
        call: Call,
        leaves: Sequence[Tensor],
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Any:
        """Captum's layer convention: a tensor per layer (a tuple for layers returning
        several tensors), a list when several layers were given."""
        per_layer = [g[0] if len(g) == 1 else g for g in self.groups(call, leaves)]
        return method._layer_result(
            call, self.arrange(per_layer), delta=delta, parameters=parameters, extras=extras
        )

    def _count_layout(self, call: Call, n_values: int) -> list[int]:
        # one tensor per layer is the common case; tuples need one single-row forward
        if n_values == len(self.site.layers):
            return [1] * n_values
        _, layout = self.site.activations(call, [x[:1] for x in call.tensors])
        return layout


def scope_of(
    model: Any, layer: Any, *, neuron: Any = None, to_input: bool = False, owner: str
) -> Scope:
    """The scope for a method's ``layer`` / ``neuron`` settings (one place decides).

    ``neuron`` (with one ``layer``): :class:`NeuronScope`; ``layer`` alone (a module or a
    list of modules): :class:`LayerScope`; neither: :class:`InputScope`. A neuron without
    a layer, or with several layers, is a clear error.
    """
    if neuron is not None:
        if layer is None or isinstance(layer, (list, tuple)):
            fail(owner, "layer", "one nn.Module when a neuron is selected", layer)
        return NeuronScope(model, layer, neuron, to_input=to_input, owner=owner)
    if layer is None:
        return InputScope(model, owner=owner)
    if isinstance(layer, nn.Module):
        site = LayerSite((layer,), to_input)  # one module: what ``LayerSite.of`` makes
    else:
        site = LayerSite.of(layer, to_input=to_input, owner=owner)
    return LayerScope(model, site, several=isinstance(layer, (list, tuple)), owner=owner)
