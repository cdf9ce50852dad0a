"""Alias of Captum 0.9's ``captum.influence._utils.common``: its public names, as whybox objects."""

from whybox.influence.base import KMostInfluentialResults

__all__ = ["KMostInfluentialResults"]
