"""Single-gradient methods: Saliency and Input x Gradient (input, layer or neuron scope)."""

from __future__ import annotations

from typing import Any

from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.method import Bool
from whybox.core.registry import register
from whybox.core.result import Explanation

from .base import Method

__all__ = ["Saliency", "InputXGradient"]


def _scoped_gradients(method: Method, inputs, target, forward_args, chunk_size, progress, neuron):
    """Gradients with respect to the scope's values (inputs, or the layer's activations from
    the same forward), and those values.

    Returns ``(scope, call, grads, values)``.
    """
    scope = method._scope(neuron)
    call = scope.prepare(
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        show_progress=progress,
    )
    recorded: list = []
    grads, _ = row_gradients(call, tap=scope.tap, record=recorded)
    return scope, call, grads, scope.values(call.tensors, recorded)


@register("saliency")
class Saliency(Method):
    """Gradient of the target with respect to the inputs (absolute value by default).

    Simonyan et al., "Deep Inside Convolutional Networks", 2013. With ``layer`` and a
    ``neuron`` it is the neuron's gradient (Captum's NeuronGradient with ``abs=False``).
    """

    parameters = {"abs": Bool()}

    def __init__(
        self, model: Any, *, layer: Any = None, attribute_to_layer_input: bool = False
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=False,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        abs: bool = True,
        neuron: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Attribute the target (or a neuron) to ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each of shape ``(N, ...)``
        target : see :mod:`whybox.core.targets`
        forward_args : extra model arguments (tensors with batch dimension ``N`` are split
            with the batch)
        abs : return ``|gradient|``
        neuron : with ``layer``, explain this neuron (see
            :func:`whybox.core.scope.select_neuron`) instead of the output
        chunk_size : rows per forward/backward (``"auto"`` picks for throughput)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer`` and no
            ``neuron``).
        """
        scope, call, grads, _ = _scoped_gradients(
            self, inputs, target, forward_args, chunk_size, show_progress, neuron
        )
        if abs:
            # one input: the same leaves, no generator
            leaves = (grads[0].abs(),) if len(grads) == 1 else tuple(g.abs() for g in grads)
        else:
            leaves = grads
        return scope.result(self, call, leaves, parameters={"abs": abs})


@register("input_x_gradient")
class InputXGradient(Method):
    """Input times gradient; with ``layer``, activation times the layer's gradient
    (Captum's LayerGradientXActivation)."""

    def __init__(
        self,
        model: Any,
        *,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        multiply_by_inputs: bool = True,
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=multiply_by_inputs,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        neuron: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """``values * d target / d values`` where values are the inputs (or the layer).

        Shapes as :meth:`Saliency.attribute`. ``multiply_by_inputs=False`` returns the
        gradient alone.
        """
        scope, call, grads, values = _scoped_gradients(
            self, inputs, target, forward_args, chunk_size, show_progress, neuron
        )
        leaves = tuple(v * g for v, g in zip(values, grads)) if self.multiply_by_inputs else grads
        return scope.result(self, call, leaves)
