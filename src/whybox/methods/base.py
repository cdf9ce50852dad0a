"""The scope side of native methods, on top of the :class:`~whybox.core.method.Method`
template (declared parameters, validated once before the maths).

A method asks :meth:`Method._scope` for the one object that knows where its attributions
live (:mod:`whybox.core.scope`); the results are built here in the two conventions a scope
asks for (:meth:`Method._result` for the inputs' structure, :meth:`Method._layer_result`
for Captum's per-layer convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call
from whybox.core.method import Method as _Template
from whybox.core.result import Explanation
from whybox.core.scope import Scope, scope_of

__all__ = ["Method"]


class Method(_Template):
    """A native attribution method: the template plus its scope."""

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

    # -- empty batches -----------------------------------------------------------------------
    def _empty_result(self, arguments: Mapping[str, Any]) -> Explanation:
        """Zero-row attributions for ``N = 0`` inputs, in the method's scope and dtype.

        Input and neuron scope: shaped like the inputs, ``(0, ...)``. Layer scope: shaped
        like the layer's tensors, learnt from one forward of the empty batch (torch modules
        accept ``N = 0``). ``delta`` (see :meth:`_empty_delta`) when the method reports one.
        """
        scope = self._scope(arguments.get("neuron"))
        call = scope.prepare(arguments["inputs"], forward_args=arguments.get("forward_args"))
        leaves = scope.zeros(call)
        delta = None
        if self.has_delta and arguments.get("return_delta", True):
            delta = self._empty_delta(scope, call, leaves)
        return scope.result(self, call, leaves, delta=delta)

    def _empty_delta(self, scope: Scope, call: Call, leaves: tuple[Tensor, ...]) -> Any:
        """The delta of an empty batch: an empty ``(0,)`` tensor (methods reporting one
        delta per layer override this)."""
        x = call.tensors[0]
        return torch.empty(0, dtype=x.dtype, device=x.device)

    # -- results ---------------------------------------------------------------------------
    def _layer_result(
        self,
        call: Call,
        attributions: Any,
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Explanation:
        """An explanation of layer attributions already in Captum's layer convention (see
        :meth:`~whybox.core.scope.LayerScope.result`)."""
        return Explanation(
            attributions=attributions,
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=dict(parameters or {}, layer=str(self.layer)),
            delta=delta,
            extras=dict(extras or {}),
        )

    def _result(
        self,
        call: Call,
        leaves: tuple[Tensor, ...],
        *,
        delta: Any = None,
        parameters: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> Explanation:
        """An explanation of attributions shaped like the inputs, one ``(N, ...)`` leaf per
        input, restored to the inputs' structure (tensor, tuple or dict)."""
        return Explanation(
            attributions=call.inputs.restore(leaves),
            inputs=call.inputs.restore(call.inputs.tensors),
            target=call.target.raw,
            method=self.name,
            parameters=dict(parameters or {}),
            delta=delta,
            extras=dict(extras or {}),
        )
