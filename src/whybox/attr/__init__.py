"""Captum-compatible front door: ``from whybox.attr import IntegratedGradients``.

Class names, constructor and ``attribute(...)`` signatures, defaults and return conventions
follow Captum 0.9's ``captum.attr``; the work is done by :mod:`whybox.methods` on the shared
engine. Importing this module does not import matplotlib.
"""

from . import visualization  # noqa: F401  (captum.attr.visualization is an attribute)
from ._base import Attribution, GradientAttribution, PerturbationAttribution
from ._deeplift import Deconvolution, DeepLift, DeepLiftShap, GuidedBackprop
from ._gradient import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from ._layer import (
    InternalInfluence,
    LayerActivation,
    LayerAttribution,
    LayerConductance,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    NeuronAttribution,
    NeuronGradient,
    NeuronGradientShap,
    NeuronIntegratedGradients,
    TokenReferenceBase,
)
from ._layer_more import (
    LRP,
    GuidedGradCam,
    LayerDeepLift,
    LayerDeepLiftShap,
    LayerGradientShap,
    LayerLRP,
    NeuronConductance,
    NeuronDeconvolution,
    NeuronDeepLift,
    NeuronDeepLiftShap,
    NeuronGuidedBackprop,
)

__all__ = [
    "Attribution",
    "GradientAttribution",
    "PerturbationAttribution",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "GradientShap",
    "DeepLift",
    "DeepLiftShap",
    "GuidedBackprop",
    "Deconvolution",
    "LayerAttribution",
    "NeuronAttribution",
    "LayerIntegratedGradients",
    "LayerConductance",
    "InternalInfluence",
    "LayerActivation",
    "LayerGradientXActivation",
    "LayerGradCam",
    "NeuronGradient",
    "NeuronIntegratedGradients",
    "NeuronGradientShap",
    "TokenReferenceBase",
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerGradientShap",
    "LayerLRP",
    "LRP",
    "GuidedGradCam",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronConductance",
    "visualization",
]
