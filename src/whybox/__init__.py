"""whybox: explain PyTorch models.

Two front doors over one engine:

* ``whybox.attr`` -- a drop-in for Captum 0.9's ``captum.attr`` (same names and signatures);
* the native API -- :func:`explain` and the classes in :mod:`whybox.methods`, with
  keyword-only options and an :class:`~whybox.core.result.Explanation` result.
"""

from __future__ import annotations

from typing import Any

import whybox.attention  # noqa: F401 - registers the attention methods
import whybox.methods  # noqa: F401 - importing the methods fills the registry
from whybox.core.registry import available_methods, get_method
from whybox.core.result import Explanation
from whybox.methods import build

__version__ = "0.1.0"

__all__ = ["explain", "build", "available_methods", "get_method", "Explanation", "__version__"]


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str = "integrated_gradients",
    target: Any = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s output on ``inputs`` with any registered method.

    Parameters
    ----------
    model : callable
        A ``torch.nn.Module`` or any function of the inputs.
    inputs : Tensor or tuple/dict of Tensor
        Each of shape ``(N, ...)``.
    method : str
        A name from :func:`available_methods`, e.g. ``"integrated_gradients"``,
        ``"grad_cam"``, ``"noise_tunnel"``.
    target : int, list, tuple, Tensor or callable, optional
        Which output to explain.
    **options
        The method's constructor options (``layer`` -- a module or its name such as
        ``"features.3"`` --, ``multiply_by_inputs``, ...) and call options (``baselines``,
        ``n_steps``, ``seed``, ...), in one flat set; see :func:`whybox.methods.build`.

    Returns
    -------
    Explanation
        Attributions shaped like ``inputs`` (or like the layer's values for layer scope).

    Examples
    --------
    >>> whybox.explain(model, x, method="integrated_gradients", layer="embedding", n_steps=32)
    """
    built, call_options = build(method, model, **options)
    if target is not None:
        # a method without a target (layer activations) refuses one through its signature
        call_options["target"] = target
    return built.attribute(inputs, **call_options)
