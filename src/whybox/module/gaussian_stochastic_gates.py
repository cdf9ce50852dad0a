"""Alias of Captum 0.9's ``captum.module.gaussian_stochastic_gates``: its public names, as whybox objects (no logic here)."""

from whybox.module._gates import GaussianStochasticGates

__all__ = ["GaussianStochasticGates"]
