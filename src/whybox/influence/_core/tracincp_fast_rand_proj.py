"""Alias of Captum 0.9's ``captum.influence._core.tracincp_fast_rand_proj``: its public names, as whybox objects."""

from whybox.influence.tracin_fast import TracInCPFast, TracInCPFastRandProj

__all__ = ["TracInCPFast", "TracInCPFastRandProj"]
