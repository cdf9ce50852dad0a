"""Alias of Captum 0.9's ``captum.influence._core.arnoldi_influence_function``: its public names, as whybox objects."""

from whybox.influence.arnoldi import ArnoldiInfluenceFunction

__all__ = ["ArnoldiInfluenceFunction"]
