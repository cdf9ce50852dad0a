"""Alias of Captum 0.9's ``captum.influence._core.tracincp_fast_rand_proj``: its public
names, as whybox objects, and the private helper Captum-style code imports from it
(implemented in :mod:`whybox.influence._captum_fast`)."""

from whybox.influence._captum_fast import _basic_computation_tracincp_fast
from whybox.influence.tracin_fast import TracInCPFast, TracInCPFastRandProj

__all__ = ["TracInCPFast", "TracInCPFastRandProj", "_basic_computation_tracincp_fast"]
