"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks", 2017)."""

from __future__ import annotations

from typing import Any

from whybox.core.call import completeness_delta
from whybox.core.forward import ChunkSize
from whybox.core.gradients import path_gradients
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Choice, Int
from whybox.core.paths import ALL_RULES, path_plan_tensors
from whybox.core.registry import register
from whybox.core.result import Explanation

from .base import Method

__all__ = ["IntegratedGradients"]


@register("integrated_gradients")
class IntegratedGradients(Method):
    """Path integral of gradients from a baseline to the input.

    ``attribution_i = (x_i - b_i) * sum_s w_s * d f(b + a_s (x - b)) / d x_i`` where
    ``(a_s, w_s)`` come from the integration rule (see :mod:`whybox.core.paths`; all rules'
    weights sum to 1, so the result is exact on linear models).
    """

    has_delta = True
    parameters = {"n_steps": Int(minimum=1), "rule": Choice(ALL_RULES)}

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        n_steps: int = 50,
        rule: str = "gausslegendre",
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        neuron: Any = None,
        show_progress: bool = False,
    ) -> Explanation:
        """Integrated gradients of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : None (zeros), a number, a tensor broadcastable to each input (per
            example ``(N, ...)`` or shared ``(...)``), or one such value per input
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments
        n_steps : number of integration points (>= 1)
        rule : ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"`` or ``"riemann_trapezoid"`` (weights summing to 1), or
            ``"captum_trapezoid"``: Captum 0.9's trapezoid weights, summing to
            ``(n_steps - 1) / n_steps`` (what the Captum facade runs for its
            ``"riemann_trapezoid"``)
        chunk_size : rows per forward/backward; ``"auto"`` picks for throughput
        return_delta : also compute the completeness delta (one extra forward of 2N rows)
        neuron : with ``layer`` set, explain this neuron of the layer instead of the
            model's output (index tuple, tuple with slices, or callable); see
            :func:`whybox.core.scope.select_neuron`

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (or like the layer's tensors for layer
            scope); ``delta`` of shape ``(N,)``.

        Notes
        -----
        With ``layer`` (and no ``neuron``) this is Layer Integrated Gradients: the path runs
        from the layer's value on the baselines to its value on the inputs (inputs may be
        token ids then), and completeness holds against ``f(inputs) - f(baselines)``.
        """
        scope = self._scope(neuron)
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        base = prepare_baselines(baselines, call.inputs, owner=self.owner).tensors
        # input scope: baselines -> inputs; layer scope: the layer's values on both
        starts, ends = scope.endpoints(call, base)
        float_end = next((e for e in ends if e.is_floating_point()), ends[0])
        alphas, weights = path_plan_tensors(
            rule, n_steps, dtype=float_end.dtype, device=float_end.device, owner=self.owner
        )
        mean_grads = path_gradients(
            call, starts, ends, alphas, weights, site=scope.substitution, layout=scope.layout
        )
        if self.multiply_by_inputs:
            leaves = tuple((e - s) * g for s, e, g in zip(starts, ends, mean_grads))
        else:
            leaves = mean_grads
        delta = completeness_delta(call, leaves, base) if return_delta else None
        parameters = {"n_steps": n_steps, "rule": rule, "chunk_size": call.chunk_rows}
        return scope.result(self, call, leaves, delta=delta, parameters=parameters)
