"""The result type every native method returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """Attributions with everything needed to read, check and draw them.

    (Named ``Explanation`` rather than ``Attribution`` because ``whybox.attr.Attribution`` is
    Captum's base-class name, which the compatible facade must keep.)

    Attributes
    ----------
    attributions
        Same structure and shapes as ``inputs`` (a tensor, tuple or dict), or the layer's
        shape for layer scope.
    inputs
        The inputs that were explained, in the caller's structure.
    target
        The target as passed by the caller.
    method
        Registry name of the method.
    parameters
        The method's options (``n_steps``, ``rule``, ...), for reports and reproducibility.
    delta
        Convergence delta per example, ``(N,)`` (sum of attributions minus
        ``f(x) - f(baseline)``) where defined, else ``None``.
    extras
        Method-specific outputs (e.g. the per-example model outputs).
    """

    attributions: Any
    inputs: Any
    target: Any = None
    method: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    delta: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        # Allows ``attributions, delta = explanation`` like Captum's return convention.
        yield self.attributions
        yield self.delta

    def __repr__(self) -> str:
        leaves = self.attributions
        if isinstance(leaves, Tensor):
            shapes = str(tuple(leaves.shape))
        elif isinstance(leaves, dict):
            shapes = str({k: tuple(v.shape) for k, v in leaves.items()})
        else:
            shapes = str([tuple(v.shape) for v in leaves])
        delta = "" if self.delta is None else f", max|delta|={float(self.delta.abs().max()):.3g}"
        return f"Explanation(method={self.method!r}, shapes={shapes}{delta})"

    def _example(self, index: int) -> tuple[Any, Any]:
        """Attributions and inputs of one example (views draw one example at a time)."""
        attributions, inputs = self.attributions, self.inputs
        if isinstance(attributions, (tuple, list)):
            if len(attributions) != 1:
                raise ValueError(
                    "The 'attributions' of this Explanation hold several inputs; draw one with "
                    "whybox.viz.plot_attribution(explanation.attributions[i][index], ...)."
                )
            attributions = attributions[0]
            inputs = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        if isinstance(attributions, dict):
            raise ValueError("Explanations of dict inputs are drawn per key with whybox.viz.")
        n = attributions.shape[0]
        if not -n <= index < n:
            raise ValueError(
                f"The 'index' parameter of Explanation.plot must be in [0, {n}). Got {index}."
            )
        example = attributions[index : index + 1] if attributions.dim() > 1 else attributions
        source = (
            inputs[index : index + 1] if isinstance(inputs, Tensor) and inputs.dim() > 1 else None
        )
        if source is not None and not source.is_floating_point():
            source = None  # token ids are not drawable values
        return example, source

    def plot(self, index: int = 0, **options: Any):
        """Draw example ``index`` (image, text or tabular view chosen from its shape).

        ``options`` go to :func:`whybox.viz.plot_attribution` (``tokens``,
        ``feature_names``, ``kind``, ``ax``...). Returns a matplotlib Figure.
        """
        from whybox import viz

        attributions, inputs = self._example(index)
        return viz.plot_attribution(attributions, inputs, **options)

    def to_html(self, index: int = 0, **options: Any) -> str:
        """A self-contained HTML view of example ``index`` (no network, opens offline)."""
        from whybox import viz

        attributions, inputs = self._example(index)
        options.setdefault("title", f"{self.method or 'attribution'} (example {index})")
        return viz.attribution_html(attributions, inputs, **options)

    def _repr_html_(self) -> str:
        try:
            return self.to_html()
        except (ValueError, TypeError, ImportError):
            # Jupyter falls back to repr when no view fits these shapes.
            return None  # type: ignore[return-value]
