"""Alias of Captum 0.9's ``captum.module.stochastic_gates_base``: its public names, as whybox objects (no logic here)."""

from whybox.module._gates import StochasticGatesBase

__all__ = ["StochasticGatesBase"]
