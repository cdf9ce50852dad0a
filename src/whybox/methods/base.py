"""Base class of native methods: ``__init__`` stores arguments, ``attribute`` does the work."""

from __future__ import annotations

from typing import Any, ClassVar

from whybox.core.call import Call
from whybox.core.result import Explanation
from whybox.core.validation import check_bool

__all__ = ["Method"]


class Method:
    """A native attribution method.

    Subclasses define ``attribute(inputs, *, ...) -> Explanation`` with keyword-only options
    and keep only their own maths; inputs, targets, batching and hooks come from ``core``.
    """

    name: ClassVar[str] = ""
    #: whether the method defines a completeness (convergence) delta
    has_delta: ClassVar[bool] = False
    #: whether the method needs an ``nn.Module`` (hooks on its submodules)
    needs_module: ClassVar[bool] = False

    def __init__(
        self,
        model: Any,
        *,
        multiply_by_inputs: bool = True,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        self.model = model
        self.multiply_by_inputs = multiply_by_inputs
        self.layer = layer
        self.attribute_to_layer_input = attribute_to_layer_input

    # -- scope -------------------------------------------------------------------------
    def _site(self):
        """The layer scope, or ``None`` for input scope."""
        if self.layer is None:
            return None
        from whybox.core.scope import LayerSite

        owner = type(self).__name__
        check_bool(owner, "attribute_to_layer_input", self.attribute_to_layer_input)
        return LayerSite.of(self.layer, to_input=self.attribute_to_layer_input, owner=owner)

    @staticmethod
    def _layout(site: Any, call: Call, n_values: int) -> list[int]:
        """How many tensors each layer of ``site`` produced, given ``n_values`` in all.

        One per layer is the common case and needs no forward; layers returning tuples are
        counted with one extra single-row forward.
        """
        if n_values == len(site.layers):
            return [1] * n_values
        _, layout = site.activations(call, [x[:1] for x in call.tensors])
        return layout

    def _scoped_model(self, neuron: Any):
        """The model, or for neuron scope a function returning the selected neuron."""
        if neuron is None:
            return self.model
        owner = type(self).__name__
        if self.layer is None or isinstance(self.layer, (list, tuple)):
            from whybox.core.validation import fail

            fail(owner, "layer", "one nn.Module when a neuron is selected", self.layer)
        from whybox.core.scope import neuron_model

        return neuron_model(
            self.model, self.layer, neuron, to_input=self.attribute_to_layer_input, owner=owner
        )

    def _check_common(self) -> None:
        check_bool(type(self).__name__, "multiply_by_inputs", self.multiply_by_inputs)
        if not callable(self.model):
            from whybox.core.validation import fail

            fail(type(self).__name__, "model", "a callable (a model or a function)", self.model)

    def _layer_result(
        self,
        call: Call,
        leaves: tuple,
        layout: list[int],
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
    ) -> Explanation:
        """Result in Captum's layer convention: a tensor per layer (a tuple for layers with
        several outputs), a list when several layers were given."""
        grouped, start = [], 0
        for count in layout:
            part = tuple(leaves[start : start + count])
            grouped.append(part[0] if count == 1 else part)
            start += count
        several = isinstance(self.layer, (list, tuple))
        return Explanation(
            attributions=grouped if several else grouped[0],
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=dict(parameters or {}, layer=str(self.layer)),
            delta=delta,
        )

    def _result(
        self,
        call: Call,
        leaves: tuple,
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Explanation:
        return Explanation(
            attributions=call.inputs.restore(leaves),
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=dict(parameters or {}),
            delta=delta,
            extras=dict(extras or {}),
        )
