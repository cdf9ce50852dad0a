"""GradientSHAP (Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", 2017).

Expected gradients over random points between noisy inputs and references drawn from a
baseline distribution: for each example, ``n_samples`` draws of noise ``e``, reference ``r``
and ``a ~ U(0, 1)``; attribution ``= mean((x + e - r) * grad f(r + a (x + e - r)))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from whybox.core.call import completeness_delta
from whybox.core.forward import ChunkSize, RowBatch, evaluate, to_device
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Int
from whybox.core.randomness import RandomSource, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import check_per_input, check_real, fail

from .base import Method

__all__ = ["GradientShap"]


@register("gradient_shap")
class GradientShap(Method):
    """GradientSHAP; ``baselines`` is a distribution of references ``(n_refs, ...)``.

    With ``layer`` (Captum's LayerGradientShap) the gradients are taken at the layer at the
    same random points, and multiplied by ``layer(x + e) - layer(r)``; the result is shaped
    like the layer (the inputs stay real-valued: the random points are in input space).
    """

    has_delta = True
    parameters = {"n_samples": Int(minimum=1)}

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any,
        n_samples: int = 5,
        stdevs: float | tuple[float, ...] = 0.0,
        target: Any = None,
        forward_args: Any = None,
        seed: int | torch.Generator | RandomSource | None = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        show_progress: bool = False,
    ) -> Explanation:
        """GradientSHAP attributions.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : reference distribution, per input ``(n_refs, ...)`` (one example's shape
            is also accepted as a single reference), or a callable returning it
        n_samples : random draws per example
        stdevs : Gaussian noise standard deviation, one value or one per input
        seed : int, ``torch.Generator`` or random source, for reproducibility

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer``); ``delta``
            of shape ``(N * n_samples,)`` (one per draw, example-major), as Captum reports it.
        """
        owner = self.owner
        scope = self._scope()
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=True,  # the random points are in input space, also for a layer
        )
        sds = check_per_input(
            owner,
            "stdevs",
            stdevs,
            len(call.tensors),
            item_check=lambda o, n, v: check_real(o, n, v, minimum=0.0),
        )
        refs = prepare_baselines(baselines, call.inputs, owner=owner, distribution=True).tensors
        if any(r.shape[0] == 0 for r in refs):
            # nothing to draw references from
            fail(
                owner,
                "baselines",
                "a reference distribution with at least one row for every input",
                f"sizes {[r.shape[0] for r in refs]}",
                raw=True,
            )
        random = make_random(seed)
        batch = call.batch_size
        n_rows = batch * n_samples
        # Draw order (reference indices, noise, path points) matches Captum's, so the
        # facade reproduces Captum's results under the same global seeds.
        ref_index = [to_device(random.choice(r.shape[0], n_rows), r.device) for r in refs]
        noise = [
            random.normal((n_rows,) + tuple(x.shape[1:]), sd, like=x)
            for x, sd in zip(call.tensors, sds)
        ]
        x0 = call.tensors[0]
        alphas = random.uniform(n_rows, like=x0)
        example_index = torch.arange(batch, device=x0.device).repeat_interleave(n_samples)

        def ends_for(position: int, rows: Tensor) -> Tensor:
            x = call.tensors[position]
            return x.index_select(0, example_index[rows]) + noise[position].index_select(0, rows)

        def starts_for(position: int, rows: Tensor) -> Tensor:
            return refs[position].index_select(0, ref_index[position].index_select(0, rows))

        # one total per input or per layer tensor, allocated from the first chunk's gradients
        totals: list[Tensor] = []
        per_row: list[list[Tensor]] = []

        def difference(rows: Tensor) -> list[Tensor]:
            # value(x + e) - value(r) for these rows (the layer's values in layer scope)
            ends = [ends_for(p, rows) for p in range(len(call.tensors))]
            starts = [starts_for(p, rows).to(x.dtype) for p, x in enumerate(call.tensors)]
            return scope.difference(call, ends, starts, example_index.index_select(0, rows))

        def build(start: int, stop: int) -> RowBatch:
            rows = torch.arange(start, stop, device=x0.device)
            points = []
            for position, x in enumerate(call.tensors):
                a = alphas.index_select(0, rows).to(x.dtype).view((-1,) + (1,) * (x.dim() - 1))
                points.append(a * ends_for(position, rows) + (1 - a) * starts_for(position, rows))
            return RowBatch(tuple(points), example_index.index_select(0, rows))

        def consume(start: int, stop: int, selected: Tensor, grads) -> None:
            rows = torch.arange(start, stop, device=x0.device)
            if not totals:
                totals.extend(
                    torch.zeros((batch,) + tuple(g.shape[1:]), dtype=g.dtype, device=g.device)
                    for g in grads
                )
            if not per_row:
                per_row.extend([] for _ in grads)
            differences = difference(rows) if self.multiply_by_inputs else None
            for position, grad in enumerate(grads):
                if differences is not None:
                    grad = grad * differences[position]
                totals[position].index_add_(0, example_index.index_select(0, rows), grad)
                if return_delta:
                    per_row[position].append(grad)

        evaluate(
            call.evaluator,
            n_items=n_rows,
            build=build,
            consume=consume,
            chunk_rows=call.chunk_rows,
            auto=call.chunk_auto,
            grad=True,
            tap=scope.tap,
            progress=call.progress,
        )
        leaves = tuple(t / n_samples for t in totals)
        delta = None
        if return_delta:
            all_rows = torch.arange(n_rows, device=x0.device)
            delta = completeness_delta(
                call,
                [torch.cat(parts) for parts in per_row],
                [starts_for(p, all_rows) for p in range(len(refs))],
                inputs=[ends_for(p, all_rows) for p in range(len(refs))],
                example_index=example_index,
            )
        parameters = {"n_samples": n_samples, "stdevs": sds}
        return scope.result(self, call, leaves, delta=delta, parameters=parameters)
