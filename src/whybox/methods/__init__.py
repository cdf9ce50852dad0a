"""Native attribution methods; importing this package registers them all."""

from typing import Any

from whybox.core.registry import available_methods, get_method

from .ablation import FeatureAblation, FeaturePermutation, Occlusion
from .base import Method
from .cam import (
    AblationCam,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    EigenCam,
    GradCamPlusPlus,
    HiResCam,
    LayerCam,
    ScoreCam,
    UpsampledGradCam,
    XGradCam,
    vit_reshape_transform,
)
from .deeplift import DeepLift, DeepLiftShap
from .gradient import InputXGradient, Saliency
from .gradient_shap import GradientShap
from .guided import Deconvolution, GuidedBackprop
from .guided_grad_cam import GuidedGradCam
from .integrated_gradients import IntegratedGradients
from .layer import GradCam, InternalInfluence, LayerActivation, LayerConductance
from .lime import Lime, LimeBase, baseline_token_transform, token_removal_transform
from .lrp import (
    LRP,
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
    default_rule,
)
from .neuron_conductance import NeuronConductance
from .noise_tunnel import NoiseTunnel
from .shapley import KernelShap, ShapleyValues, ShapleyValueSampling

__all__ = [
    "build",
    "available_methods",
    "get_method",
    "Method",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "GradientShap",
    "LayerActivation",
    "GradCam",
    "InternalInfluence",
    "LayerConductance",
    "DeepLift",
    "DeepLiftShap",
    "GuidedBackprop",
    "Deconvolution",
    "GuidedGradCam",
    "UpsampledGradCam",
    "GradCamPlusPlus",
    "XGradCam",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "AblationCam",
    "EigenCam",
    "vit_reshape_transform",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "LRP",
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
    "default_rule",
    "NeuronConductance",
    "FeatureAblation",
    "Occlusion",
    "FeaturePermutation",
    "ShapleyValues",
    "ShapleyValueSampling",
    "KernelShap",
    "Lime",
    "LimeBase",
    "token_removal_transform",
    "baseline_token_transform",
]


def build(name: str, model: Any, **options: Any) -> tuple[Method, dict[str, Any]]:
    """Construct the method registered as ``name`` from a flat set of options.

    Parameters
    ----------
    name : str
        A registered name (:func:`available_methods`).
    model : callable
        The model (an ``nn.Module`` or a function).
    **options
        Constructor options (``layer``, ``multiply_by_inputs``, ...) and call options
        together; each method's ``from_options`` splits them.

    Returns
    -------
    (Method, dict)
        The method and the options to pass to its ``attribute``.
    """
    return get_method(name).from_options(model, options)
