"""Alias of Captum 0.9's ``captum.module.binary_concrete_stochastic_gates``: its public names, as whybox objects (no logic here)."""

from whybox.module._gates import BinaryConcreteStochasticGates

__all__ = ["BinaryConcreteStochasticGates"]
