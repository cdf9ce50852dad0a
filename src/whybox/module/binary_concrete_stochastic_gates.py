"""Alias of Captum 0.9's ``captum.module.binary_concrete_stochastic_gates``: its public
names, as whybox objects, and the private ``_torch_empty`` (no logic here)."""

from whybox.module._gates import BinaryConcreteStochasticGates, _torch_empty

__all__ = ["BinaryConcreteStochasticGates", "_torch_empty"]
