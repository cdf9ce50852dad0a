"""Captum-compatible front door: ``from whybox.attr import IntegratedGradients``.

Class names, constructor and ``attribute(...)`` signatures, defaults and return conventions
follow Captum 0.9's ``captum.attr``; the work is done by :mod:`whybox.methods` on the shared
engine. Importing this module does not import matplotlib.

Besides Captum's ``captum.attr`` names, this namespace also exports names Captum users
import from Captum's submodules: ``ModelInputWrapper`` / ``InputIdentity``, the LRP rules
(``EpsilonRule``, ...) and the interpretable models (``LinearModel``, ``SGDLasso``,
``SkLearnLasso``, ...). Captum's module paths work too: every Captum 0.9 module of
``captum.attr`` and ``captum._utils.models`` that defines a public name has an alias
module at the same path under ``whybox`` (``whybox.attr._core.lime``,
``whybox.attr._utils.lrp_rules``, ``whybox._utils.models.linear_model``, ...), generated
by ``tools/gen_captum_aliases.py``.
"""

from whybox.core.surrogate.captum_models import (
    LinearModel,
    Model,
    SGDLasso,
    SGDLinearModel,
    SGDLinearRegression,
    SGDRidge,
)
from whybox.methods.lrp import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
)

from . import visualization  # noqa: F401  (captum.attr.visualization is an attribute)
from ._base import Attribution, GradientAttribution, PerturbationAttribution
from ._dataloader_attribution import DataLoaderAttribution
from ._deeplift import DeepLift, DeepLiftShap
from ._gradient import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from ._guided import Deconvolution, GuidedBackprop
from ._guided_grad_cam import GuidedGradCam
from ._input_wrapper import InputIdentity, ModelInputWrapper
from ._interpretable_embedding import (
    InterpretableEmbeddingBase,
    configure_interpretable_embedding_layer,
    remove_interpretable_embedding_layer,
)
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
from ._llm import (
    ImageMaskInput,
    InterpretableInput,
    LLMAttribution,
    LLMAttributionResult,
    LLMGradientAttribution,
    ProductBaselines,
    RemoteLLMAttribution,
    RemoteLLMProvider,
    TextTemplateInput,
    TextTokenInput,
    VLLMProvider,
)
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
from ._stat import MSE, CommonStats, Count, Max, Mean, Min, StatValue, StdDev, Sum, Var
from ._summarizer import ClassSummarizer, Summarizer, SummarizerSingleTensor

__all__ = [
    "ImageMaskInput",
    "InterpretableInput",
    "LLMAttribution",
    "LLMAttributionResult",
    "LLMGradientAttribution",
    "ProductBaselines",
    "RemoteLLMAttribution",
    "RemoteLLMProvider",
    "TextTemplateInput",
    "TextTokenInput",
    "VLLMProvider",
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
    # summaries over many batches
    "Summarizer",
    "SummarizerSingleTensor",
    "ClassSummarizer",
    "CommonStats",
    "StatValue",
    "Mean",
    "Var",
    "StdDev",
    "Min",
    "Max",
    "Sum",
    "Count",
    "MSE",
    # whole datasets
    "DataLoaderAttribution",
    # inputs as layers, interpretable embeddings
    "ModelInputWrapper",
    "InputIdentity",
    "InterpretableEmbeddingBase",
    "configure_interpretable_embedding_layer",
    "remove_interpretable_embedding_layer",
    # LRP rules (Captum: captum.attr._utils.lrp_rules)
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
    # interpretable models (Captum: captum._utils.models)
    "Model",
    "LinearModel",
    "SGDLinearModel",
    "SGDLasso",
    "SGDRidge",
    "SGDLinearRegression",
]
