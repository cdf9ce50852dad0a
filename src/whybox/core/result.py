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

    def plot(self, **options: Any):
        """Draw the attributions (image, text or tabular view chosen from the inputs)."""
        from whybox import viz

        return viz.plot_attribution(self.attributions, self.inputs, **options)

    def to_html(self, **options: Any) -> str:
        """A self-contained HTML view (no network, opens offline)."""
        from whybox import viz

        return viz.attribution_html(self.attributions, self.inputs, **options)

    def _repr_html_(self) -> str:
        return self.to_html()
