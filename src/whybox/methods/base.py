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

    def __init__(self, model: Any, *, multiply_by_inputs: bool = True) -> None:
        self.model = model
        self.multiply_by_inputs = multiply_by_inputs

    def _check_common(self) -> None:
        check_bool(type(self).__name__, "multiply_by_inputs", self.multiply_by_inputs)
        if not callable(self.model):
            from whybox.core.validation import fail

            fail(type(self).__name__, "model", "a callable (a model or a function)", self.model)

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
