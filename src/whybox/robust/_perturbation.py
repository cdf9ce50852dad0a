"""The base class of every perturbation and attack (Captum 0.9's ``Perturbation``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Perturbation"]


class Perturbation:
    """Base class of perturbations and attacks: calling one calls its ``perturb``.

    Subclasses define ``perturb(inputs, ...)``, which returns the perturbed inputs in the
    caller's structure: a tensor for a tensor, a tuple for a tuple, each tensor shaped like
    its input ``(N, ...)``.
    """

    perturb: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``self.perturb(*args, **kwargs)``."""
        return self.perturb(*args, **kwargs)
