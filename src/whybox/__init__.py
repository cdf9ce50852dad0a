"""whybox: explain PyTorch models.

Two front doors over one engine:

* ``whybox.attr`` -- a drop-in for Captum 0.9's ``captum.attr`` (same names and signatures);
* the native API -- :func:`explain` and the classes in :mod:`whybox.methods`, with
  keyword-only options and an :class:`~whybox.core.result.Explanation` result.
"""

from __future__ import annotations

from typing import Any

from whybox.core.registry import available_methods, get_method
from whybox.core.result import Explanation

__version__ = "0.1.0"

__all__ = ["explain", "available_methods", "get_method", "Explanation", "__version__"]


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str = "integrated_gradients",
    target: Any = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s output on ``inputs`` with a registered method.

    Parameters
    ----------
    model : callable
        A ``torch.nn.Module`` or any function of the inputs.
    inputs : Tensor or tuple/dict of Tensor
        Each of shape ``(N, ...)``.
    method : str
        A name from :func:`available_methods`, e.g. ``"integrated_gradients"``.
    target : int, list, tuple, Tensor or callable, optional
        Which output to explain.
    **options
        Keyword options of the method's ``attribute`` (``baselines``, ``n_steps``, ...).

    Returns
    -------
    Explanation
    """
    cls = get_method(method)
    return cls(model).attribute(inputs, target=target, **options)
