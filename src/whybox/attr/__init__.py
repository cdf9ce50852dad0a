"""Captum-compatible front door: ``from whybox.attr import IntegratedGradients``.

Class names, constructor and ``attribute(...)`` signatures, defaults and return conventions
follow Captum 0.9's ``captum.attr``; the work is done by :mod:`whybox.methods` on the shared
engine. Importing this module does not import matplotlib.
"""

from . import visualization  # noqa: F401  (captum.attr.visualization is an attribute)
from ._base import Attribution, GradientAttribution, PerturbationAttribution
from ._deeplift import DeepLift, DeepLiftShap
from ._gradient import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from ._guided import Deconvolution, GuidedBackprop
from ._guided_grad_cam import GuidedGradCam
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
from ._layer_deeplift import LayerDeepLift, LayerDeepLiftShap
from ._layer_gradient_shap import LayerGradientShap
from ._lrp import LRP, LayerLRP
from ._neuron import (
    NeuronConductance,
    NeuronDeconvolution,
    NeuronDeepLift,
    NeuronDeepLiftShap,
    NeuronGuidedBackprop,
)
from ._perturbation import (
    FeatureAblation,
    FeaturePermutation,
    KernelShap,
    LayerFeatureAblation,
    LayerFeaturePermutation,
    Lime,
    LimeBase,
    NeuronFeatureAblation,
    Occlusion,
    ShapleyValues,
    ShapleyValueSampling,
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
    WeightedLasso,
    WeightedLinearRegression,
    WeightedRidge,
    baseline_token_transform,
    default_from_interp_rep_transform,
    default_perturb_func,
    get_exp_kernel_similarity_function,
    token_removal_transform,
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
    "FeatureAblation",
    "FeaturePermutation",
    "Occlusion",
    "ShapleyValueSampling",
    "ShapleyValues",
    "LimeBase",
    "Lime",
    "KernelShap",
    "LayerFeatureAblation",
    "LayerFeaturePermutation",
    "NeuronFeatureAblation",
    "get_exp_kernel_similarity_function",
    "default_perturb_func",
    "default_from_interp_rep_transform",
    "SkLearnLinearModel",
    "SkLearnLinearRegression",
    "SkLearnLasso",
    "SkLearnRidge",
    "WeightedLasso",
    "WeightedRidge",
    "WeightedLinearRegression",
    "token_removal_transform",
    "baseline_token_transform",
    "visualization",
]
