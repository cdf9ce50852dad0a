"""Stochastic gates with an L0 penalty (Captum 0.9's ``captum.module``).

:class:`BinaryConcreteStochasticGates` and :class:`GaussianStochasticGates` gate the
elements (or groups of elements, through ``mask``) of an input and return the L0 term to
add to the loss; after training, :meth:`~StochasticGatesBase.get_gate_values` ranks the
features. Captum's module paths work too (``whybox.module.stochastic_gates_base``, ...).
"""

from ._gates import BinaryConcreteStochasticGates, GaussianStochasticGates, StochasticGatesBase

__all__ = ["BinaryConcreteStochasticGates", "GaussianStochasticGates", "StochasticGatesBase"]
