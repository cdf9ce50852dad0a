"""Alias of Captum 0.9's ``captum.robust._core.fgsm``: its public names, as whybox objects (no logic here)."""

from whybox.robust._fgsm import (
    FGSM,
)

__all__ = ["FGSM"]
