"""Alias of Captum 0.9's ``captum.influence._core.influence``: its public names, as whybox objects."""

from whybox.influence.base import DataInfluence

__all__ = ["DataInfluence"]
