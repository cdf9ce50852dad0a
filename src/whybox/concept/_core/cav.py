"""Alias of Captum 0.9's ``captum.concept._core.cav``: its public names, as whybox objects."""

from whybox.concept.cav import CAV

__all__ = ["CAV"]
