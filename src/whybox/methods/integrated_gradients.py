"""Integrated Gradients (Sundararajan et al., "Axiomatic Attribution for Deep Networks", 2017)."""

from __future__ import annotations

from typing import Any

from whybox.core.call import completeness_delta, prepare_call
from whybox.core.forward import ChunkSize
from whybox.core.gradients import path_gradients
from whybox.core.inputs import prepare_baselines
from whybox.core.paths import path_plan_tensors
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import check_bool

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
            ``"riemann_middle"`` or ``"riemann_trapezoid"``
        chunk_size : rows per forward/backward; ``"auto"`` picks for throughput
        return_delta : also compute the completeness delta (one extra forward of 2N rows)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs``; ``delta`` of shape ``(N,)``.
        """
        owner = type(self).__name__
        self._check_common()
        check_bool(owner, "return_delta", return_delta)
        call = prepare_call(
            owner,
            self.model,
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        base = prepare_baselines(baselines, call.inputs, owner=owner).tensors
        x0 = call.tensors[0]
        alphas, weights = path_plan_tensors(
            rule, n_steps, dtype=x0.dtype, device=x0.device, owner=owner
        )
        mean_grads = path_gradients(call, base, call.tensors, alphas, weights)
        if self.multiply_by_inputs:
            leaves = tuple((x - b) * g for x, b, g in zip(call.tensors, base, mean_grads))
        else:
            leaves = mean_grads
        delta = completeness_delta(call, leaves, base) if return_delta else None
        return self._result(
            call,
            leaves,
            delta=delta,
            parameters={"n_steps": n_steps, "rule": rule, "chunk_size": call.chunk_rows},
        )
