"""Alias of Captum 0.9's ``captum.influence._core.arnoldi_influence_function``: its public
names, as whybox objects, and the private Arnoldi helpers Captum's tests import
(implemented by :mod:`whybox.influence._linalg`)."""

from whybox.influence._linalg import parameter_arnoldi as _parameter_arnoldi
from whybox.influence._linalg import parameter_distill as _parameter_distill
from whybox.influence.arnoldi import ArnoldiInfluenceFunction

__all__ = ["ArnoldiInfluenceFunction", "_parameter_arnoldi", "_parameter_distill"]
