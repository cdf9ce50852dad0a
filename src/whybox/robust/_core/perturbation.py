"""Alias of Captum 0.9's ``captum.robust._core.perturbation``: its public names, as whybox objects (no logic here)."""

from whybox.robust._perturbation import (
    Perturbation,
)

__all__ = ["Perturbation"]
