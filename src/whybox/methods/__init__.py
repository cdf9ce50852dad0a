"""Native attribution methods; importing this package registers them all."""

from .base import Method
from .gradient import InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients

__all__ = ["Method", "Saliency", "InputXGradient", "IntegratedGradients"]
