"""Alias of Captum 0.9's ``captum.robust._core.pgd``: its public names, as whybox objects (no logic here)."""

from whybox.robust._pgd import (
    PGD,
)

__all__ = ["PGD"]
