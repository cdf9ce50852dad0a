"""NoiseTunnel: SmoothGrad, SmoothGrad-squared and VarGrad around any native method.

Smilkov et al., "SmoothGrad", 2017; Adebayo et al., "Local explanation methods for deep
neural networks lack sensitivity to parameter values", 2018 (VarGrad).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import repeat_rows
from whybox.core.forward import to_device
from whybox.core.inputs import flatten, prepare_baselines
from whybox.core.method import Bool, Check, Choice, Int
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import check_per_input, check_real, fail

from .base import Method

__all__ = ["NoiseTunnel", "NT_TYPES"]

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _check_inner_method(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, Method):
        fail(owner, name, "a native whybox method instance", value, type_error=True)


@register("noise_tunnel")
class NoiseTunnel(Method):
    """Average an attribution method over noisy copies of the inputs.

    Parameters
    ----------
    method : a native :class:`~whybox.methods.base.Method` instance (its model is used)
    """

    parameters = {
        "method": Check(_check_inner_method),
        "nt_type": Choice(NT_TYPES),
        "nt_samples": Int(minimum=1),
        "nt_samples_batch_size": Int(minimum=1, allow_none=True),
        "draw_baseline_from_distrib": Bool(),
        "seed": Check(check_seed),
    }

    def __init__(self, method: Method) -> None:
        # the inner method carries the model; the template checks ``method`` first
        super().__init__(
            getattr(method, "model", None),
            multiply_by_inputs=getattr(method, "multiply_by_inputs", True),
        )
        self.method = method

    @property
    def has_delta(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.method, "has_delta", False))

    @classmethod
    def from_options(cls, model: Any, options: Any) -> tuple[Method, dict[str, Any]]:
        """Build ``NoiseTunnel(base)`` from flat options: ``base_method`` names the inner
        method (default ``"saliency"``, i.e. SmoothGrad); the inner method takes its
        constructor options, the rest are call options of both."""
        from whybox.core.registry import get_method

        options = dict(options)
        base_name = options.pop("base_method", "saliency")
        base_cls = get_method(base_name)
        if base_cls is cls:
            fail(cls.__name__, "base_method", "a method other than noise_tunnel", base_name)
        init_names, _ = base_cls.option_names()
        base_init = {k: options.pop(k) for k in list(options) if k in init_names}
        base, _ = base_cls.from_options(model, base_init)
        return cls(base), options

    def attribute(
        self,
        inputs: Any,
        *,
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        stdevs: float | tuple[float, ...] = 1.0,
        draw_baseline_from_distrib: bool = False,
        seed: int | torch.Generator | RandomSource | None = None,
        target: Any = None,
        forward_args: Any = None,
        **method_options: Any,
    ) -> Explanation:
        """Noise-averaged attributions.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        nt_type : ``"smoothgrad"`` (mean), ``"smoothgrad_sq"`` (mean of squares) or
            ``"vargrad"`` (variance) of the attributions over noisy samples
        nt_samples : noisy samples per example
        nt_samples_batch_size : samples per call of the inner method (``None``: all)
        stdevs : noise standard deviation, one value or one per input
        draw_baseline_from_distrib : draw one baseline per noisy sample from the rows of
            ``baselines`` (given in ``method_options``) instead of using them per example
        seed : int, generator or random source for reproducible noise
        method_options : passed to the inner method's ``attribute``

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs``; ``delta`` of shape
            ``(N * nt_samples,)`` when the inner method reports one.
        """
        owner = self.owner
        scope = self._scope()  # the noise is in input space
        call = scope.prepare(inputs, target=target, forward_args=forward_args, float_inputs=True)
        sds = check_per_input(
            owner,
            "stdevs",
            stdevs,
            len(call.tensors),
            item_check=lambda o, n, v: check_real(o, n, v, minimum=0.0),
        )
        random = make_random(seed)
        batch_per_call = min(nt_samples, nt_samples_batch_size or nt_samples)
        accepts = getattr(
            self.method,
            "accepts_baselines",
            "baselines" in inspect.signature(self.method.attribute).parameters,
        )
        baselines = method_options.pop("baselines", None)
        if baselines is not None and not accepts:
            # Captum passes them on (and the inner method refuses them): never dropped
            fail(
                owner,
                "baselines",
                f"left out: the inner {getattr(self.method, 'name', '') or 'method'} takes no "
                "baselines",
                baselines,
                type_error=True,  # Captum's inner call raises a TypeError there
            )
        has_baselines = accepts and baselines is not None
        if draw_baseline_from_distrib and not has_baselines:
            fail(owner, "baselines", "given when draw_baseline_from_distrib=True", None)

        sums: list[Tensor] | None = None
        squares: list[Tensor] | None = None
        deltas: list[Tensor] = []
        drawn = None
        # target and forward args of k repeats, per k (at most two: full batches and the
        # remainder): building them copies row indices to the host, once, not per batch
        repeated: dict[int, tuple[Any, Any, Tensor]] = {}
        done = 0
        while done < nt_samples:
            k = min(batch_per_call, nt_samples - done)
            if k not in repeated:
                repeated[k] = repeat_rows(call, k)
            target_k, args_k, _ = repeated[k]
            options = dict(method_options)
            if has_baselines:
                # Like Captum: one draw serves every full-size partition; a remainder redraws.
                if drawn is None or drawn[0] != k:
                    drawn = (
                        k,
                        self._expand_baselines(
                            call, baselines, k, draw_baseline_from_distrib, random
                        ),
                    )
                options["baselines"] = drawn[1]
            noisy = tuple(
                x.repeat_interleave(k, dim=0)
                + random.normal((x.shape[0] * k,) + tuple(x.shape[1:]), sd, like=x)
                for x, sd in zip(call.tensors, sds)
            )
            result = self.method.attribute(
                call.inputs.restore(noisy), target=target_k, forward_args=args_k, **options
            )
            leaves, _ = flatten(result.attributions, owner=owner, name="attributions")
            grouped = [a.reshape((call.batch_size, k) + tuple(a.shape[1:])) for a in leaves]
            part_sum = [g.sum(dim=1) for g in grouped]
            part_sq = [(g * g).sum(dim=1) for g in grouped]
            sums = part_sum if sums is None else [a + b for a, b in zip(sums, part_sum)]
            squares = part_sq if squares is None else [a + b for a, b in zip(squares, part_sq)]
            if result.delta is not None:
                deltas.append(result.delta)
            done += k
        means = [s / nt_samples for s in sums]
        mean_squares = [s / nt_samples for s in squares]
        if nt_type == "smoothgrad":
            out = means
        elif nt_type == "smoothgrad_sq":
            out = mean_squares
        else:
            out = [sq - m * m for sq, m in zip(mean_squares, means)]
        delta = torch.cat(deltas) if deltas else None
        return scope.result(
            self,
            call,
            tuple(out),
            delta=delta,
            parameters={
                "nt_type": nt_type,
                "nt_samples": nt_samples,
                "stdevs": sds,
                "inner": self.method.name,
            },
        )

    @staticmethod
    def _expand_baselines(call, baselines: Any, k: int, draw: bool, random: RandomSource):
        owner = "NoiseTunnel"
        if draw:
            dist = prepare_baselines(baselines, call.inputs, owner=owner, distribution=True)
            picked = []
            for ref in dist.tensors:
                index = to_device(random.choice(ref.shape[0], call.batch_size * k), ref.device)
                picked.append(ref.expand((max(ref.shape[0], 1),) + tuple(ref.shape[1:]))[index])
            return call.inputs.restore(picked) if call.inputs.is_tuple else picked[0]
        base = prepare_baselines(baselines, call.inputs, owner=owner)
        expanded = []
        for b, x in zip(base.tensors, call.tensors):
            if b.dim() == x.dim() and b.shape[0] == x.shape[0] and x.shape[0] > 1:
                expanded.append(b.repeat_interleave(k, dim=0))
            else:
                expanded.append(b)
        return call.inputs.restore(expanded) if call.inputs.is_tuple else expanded[0]
