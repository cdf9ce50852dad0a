"""Single-gradient methods: Saliency and Input x Gradient."""

from __future__ import annotations

from typing import Any

from whybox.core.call import prepare_call
from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import check_bool

from .base import Method

__all__ = ["Saliency", "InputXGradient"]


@register("saliency")
class Saliency(Method):
    """Gradient of the target with respect to the inputs (absolute value by default).

    Simonyan et al., "Deep Inside Convolutional Networks", 2013.
    """

    def __init__(self, model: Any) -> None:
        super().__init__(model, multiply_by_inputs=False)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        abs: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Attribute the target to ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each of shape ``(N, ...)``
        target : see :mod:`whybox.core.targets`
        forward_args : extra model arguments (tensors with batch dimension ``N`` are split
            with the batch)
        abs : return ``|gradient|``
        chunk_size : rows per forward/backward (``"auto"`` picks for throughput)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs``.
        """
        owner = type(self).__name__
        check_bool(owner, "abs", abs)
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        grads, _ = row_gradients(call)
        leaves = tuple(g.abs() for g in grads) if abs else grads
        return self._result(call, leaves, parameters={"abs": abs})


@register("input_x_gradient")
class InputXGradient(Method):
    """Input times the gradient of the target with respect to the input."""

    def __init__(self, model: Any) -> None:
        super().__init__(model, multiply_by_inputs=True)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Attribute the target to ``inputs`` as ``inputs * d target / d inputs``.

        Shapes as :meth:`Saliency.attribute`.
        """
        call = prepare_call(
            type(self).__name__,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        grads, _ = row_gradients(call)
        leaves = tuple(x * g for x, g in zip(call.tensors, grads))
        return self._result(call, leaves)
