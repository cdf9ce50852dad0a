"""Scope helpers shared by native methods, on top of the :class:`~whybox.core.method.Method`
template (declared parameters, validated once before the maths)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from whybox.core.call import Call, prepare_call
from whybox.core.forward import RowBatch
from whybox.core.method import Method as _Template
from whybox.core.result import Explanation
from whybox.core.scope import Scope, scope_of

__all__ = ["Method"]


class Method(_Template):
    """A native attribution method: the template plus the layer / neuron scope helpers."""

    # -- empty batches -----------------------------------------------------------------------
    def _empty_result(self, arguments: Mapping[str, Any]) -> Explanation:
        """Zero-row attributions for ``N = 0`` inputs, in the method's scope and dtype.

        Input and neuron scope: shaped like the inputs. Layer scope: shaped like the layer's
        tensors, learnt from one forward of the empty batch (torch modules accept N = 0).
        ``delta`` is an empty ``(0,)`` tensor when the method reports one.
        """
        neuron = arguments.get("neuron")
        site = self._site() if neuron is None else None
        call = prepare_call(
            self.owner,
            self._scoped_model(neuron),
            arguments["inputs"],
            forward_args=arguments.get("forward_args"),
            require_float=site is None,
        )
        delta = None
        if self.has_delta and arguments.get("return_delta", True):
            delta = torch.empty(0, dtype=call.tensors[0].dtype, device=call.tensors[0].device)
        if site is None:
            leaves = tuple(torch.zeros_like(x) for x in call.tensors)
            return self._result(call, leaves, delta=delta)
        with site.capture() as captured:
            with torch.no_grad():
                call.evaluator.raw_output(RowBatch(call.tensors))
        site._check_seen(captured, self.owner)
        values = tuple(torch.zeros_like(t) for t in captured.tensors)
        return self._layer_result(call, values, [len(t) for t in captured.per_layer], delta=delta)

    # -- scope -------------------------------------------------------------------------
    def _scope(self, neuron: Any = None) -> Scope:
        """Where this call's attributions live (inputs, ``layer``, or inputs for a neuron of
        ``layer``): the one object a method's maths talks to, so it never branches on scope."""
        return scope_of(
            self.model,
            self.layer,
            neuron=neuron,
            to_input=self.attribute_to_layer_input,
            owner=self.owner,
        )

    def _site(self):
        """The layer scope, or ``None`` for input scope."""
        if self.layer is None:
            return None
        from whybox.core.scope import LayerSite

        return LayerSite.of(self.layer, to_input=self.attribute_to_layer_input, owner=self.owner)

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
        owner = self.owner
        if self.layer is None or isinstance(self.layer, (list, tuple)):
            from whybox.core.validation import fail

            fail(owner, "layer", "one nn.Module when a neuron is selected", self.layer)
        from whybox.core.scope import neuron_model

        return neuron_model(
            self.model, self.layer, neuron, to_input=self.attribute_to_layer_input, owner=owner
        )

    def _check_common(self) -> None:
        """Kept for methods not yet moved to declared parameters: the template already ran
        every check, so this does nothing."""

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
