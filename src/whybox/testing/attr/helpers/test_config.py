"""The attribution test cases that Captum's generated tests iterate over.

Captum 0.9 keeps, at ``captum.testing.attr.helpers.test_config``, one table of attribution
cases (``config``) that its DataParallel, JIT, target and hook-removal tests walk through:
each case runs the listed algorithms on the case's model twice, in two different ways (for
instance wrapped in ``DataParallel`` or traced by JIT, and plain), and checks that the two
results agree. This module is the same table for whybox, so that those tests run unchanged
with ``captum`` renamed to ``whybox``: the same cases in the same order, with the same names,
algorithms, models and arguments, and with equal tensors (the seed is set at import and the
random tensors and models are drawn in Captum's order).

Each case (an element of ``config``) is a dict with these keys:

* ``"name"``: the case's name;
* ``"algorithms"``: the attribution classes the case applies to;
* ``"model"``: the ``nn.Module`` the algorithms explain;
* ``"layer"``: for layer and neuron algorithms, the name (or list of names) of the layer,
  a dotted attribute path on the model;
* ``"attribute_args"``: the keyword arguments of ``attribute``; with ``"noise_tunnel"`` they
  are those of ``NoiseTunnel.attribute``;
* ``"noise_tunnel"``: whether the algorithm is wrapped in ``NoiseTunnel``;
* ``"baseline_distr"``: whether the baselines are a distribution rather than one per example;
* ``"target_delta"``: the tolerance of the target tests;
* ``"dp_delta"``: the tolerance of the DataParallel tests.

The optional keys are only present where a case sets them. To cover a new algorithm, add it
to the ``"algorithms"`` of the cases whose arguments suit it, or add a case.
"""

from typing import Any

import torch
from torch import Tensor

from whybox.attr._core.deep_lift import DeepLift, DeepLiftShap
from whybox.attr._core.feature_ablation import FeatureAblation
from whybox.attr._core.feature_permutation import FeaturePermutation
from whybox.attr._core.gradient_shap import GradientShap
from whybox.attr._core.guided_backprop_deconvnet import Deconvolution, GuidedBackprop
from whybox.attr._core.guided_grad_cam import GuidedGradCam
from whybox.attr._core.input_x_gradient import InputXGradient
from whybox.attr._core.integrated_gradients import IntegratedGradients
from whybox.attr._core.kernel_shap import KernelShap
from whybox.attr._core.layer.grad_cam import LayerGradCam
from whybox.attr._core.layer.internal_influence import InternalInfluence
from whybox.attr._core.layer.layer_activation import LayerActivation
from whybox.attr._core.layer.layer_conductance import LayerConductance
from whybox.attr._core.layer.layer_deep_lift import LayerDeepLift, LayerDeepLiftShap
from whybox.attr._core.layer.layer_feature_ablation import LayerFeatureAblation
from whybox.attr._core.layer.layer_gradient_shap import LayerGradientShap
from whybox.attr._core.layer.layer_gradient_x_activation import LayerGradientXActivation
from whybox.attr._core.layer.layer_integrated_gradients import LayerIntegratedGradients
from whybox.attr._core.layer.layer_lrp import LayerLRP
from whybox.attr._core.lime import Lime
from whybox.attr._core.lrp import LRP
from whybox.attr._core.neuron.neuron_conductance import NeuronConductance
from whybox.attr._core.neuron.neuron_deep_lift import NeuronDeepLift, NeuronDeepLiftShap
from whybox.attr._core.neuron.neuron_feature_ablation import NeuronFeatureAblation
from whybox.attr._core.neuron.neuron_gradient import NeuronGradient
from whybox.attr._core.neuron.neuron_gradient_shap import NeuronGradientShap
from whybox.attr._core.neuron.neuron_guided_backprop_deconvnet import (
    NeuronDeconvolution,
    NeuronGuidedBackprop,
)
from whybox.attr._core.neuron.neuron_integrated_gradients import NeuronIntegratedGradients
from whybox.attr._core.occlusion import Occlusion
from whybox.attr._core.saliency import Saliency
from whybox.attr._core.shapley_value import ShapleyValueSampling
from whybox.attr._utils.input_layer_wrapper import ModelInputWrapper
from whybox.testing.helpers.basic import set_all_random_seeds
from whybox.testing.helpers.basic_models import (
    BasicModel_ConvNet,
    BasicModel_MultiLayer,
    BasicModel_MultiLayer_MultiInput,
    BasicModel_MultiLayer_TrueMultiInput,
    ReLULinearModel,
)

# The groups of algorithms that several cases share (each case gets its own copy).
_PRIMARY = [
    IntegratedGradients,
    InputXGradient,
    FeatureAblation,
    DeepLift,
    Saliency,
    GuidedBackprop,
    Deconvolution,
    ShapleyValueSampling,
    FeaturePermutation,
    Lime,
    KernelShap,
    LRP,
]
# the same algorithms with Saliency second
_PRIMARY_SALIENCY_SECOND = [_PRIMARY[0], Saliency] + [a for a in _PRIMARY[1:] if a is not Saliency]
_WITH_BASELINES = [
    IntegratedGradients,
    FeatureAblation,
    DeepLift,
    ShapleyValueSampling,
    Lime,
    KernelShap,
]
_NOISE_TUNNEL = [
    IntegratedGradients,
    InputXGradient,
    FeatureAblation,
    DeepLift,
    Saliency,
    GuidedBackprop,
    Deconvolution,
    LRP,
]
_NOISE_TUNNEL_SALIENCY_SECOND = [_NOISE_TUNNEL[0], Saliency] + [
    a for a in _NOISE_TUNNEL[1:] if a is not Saliency
]
_PERTURBATION = [FeatureAblation, ShapleyValueSampling, FeaturePermutation, Lime, KernelShap]
_LAYER = [
    LayerConductance,
    LayerIntegratedGradients,
    LayerDeepLift,
    InternalInfluence,
    LayerFeatureAblation,
    LayerGradientXActivation,
    LayerGradCam,
]
_LAYER_BATCHED = [LayerConductance, InternalInfluence, LayerIntegratedGradients]
_NEURON = [
    NeuronGradient,
    NeuronIntegratedGradients,
    NeuronGuidedBackprop,
    NeuronDeconvolution,
    NeuronDeepLift,
    NeuronFeatureAblation,
]

# ``additional_forward_args`` of ``BasicModel_MultiLayer``: no extra input, add 1 to the output
_ADD_ONE = (None, True)
_TARGETS_4 = [0, 1, 1, 0]
_TARGETS_6 = [0, 1, 1, 0, 0, 1]


def _tuple_targets() -> list[tuple[int, int, int]]:
    """Per-example ``(output, row, column)`` targets of ``BasicModel_MultiLayer`` (a new list)."""
    return [(1, 0, 0), (0, 1, 1), (1, 1, 1), (0, 0, 0)]


def _x(n: int = 4) -> Tensor:
    """A batch of ``n`` standard-normal examples with 3 features."""
    return torch.randn(n, 3)


def _pair(n: int) -> tuple[Tensor, Tensor]:
    """The two inputs of ``BasicModel_MultiLayer_MultiInput`` (scaled by 10 and 5)."""
    return (10 * torch.randn(n, 3), 5 * torch.randn(n, 3))


def _extra(n: int) -> tuple[Tensor, int]:
    """The ``additional_forward_args`` of ``BasicModel_MultiLayer_MultiInput``."""
    return (2 * torch.randn(n, 3), 5)


def _image() -> Tensor:
    """A batch of four random 10x10 single-channel images for ``BasicModel_ConvNet``."""
    return 100 * torch.randn(4, 1, 10, 10)


def _ramp_image() -> Tensor:
    """Four 10x10 single-channel images holding 0, 1, ..., 399 (no random draw)."""
    return torch.arange(400).view(4, 1, 10, 10).float()


def _case(
    name: str,
    algorithms: list[type],
    model: torch.nn.Module,
    attribute_args: dict[str, Any],
    *,
    layer: str | list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One case of ``config``; ``options`` are its optional keys (``"noise_tunnel"``, ...).

    The model is built (drawing its initial weights) before the arguments' tensors, as in
    Captum's literal table.
    """
    case: dict[str, Any] = {"name": name, "algorithms": list(algorithms), "model": model}
    if layer is not None:
        case["layer"] = layer
    case["attribute_args"] = attribute_args
    case.update(options)
    return case


# Set random seeds to ensure deterministic behavior
set_all_random_seeds(1234)

config: list[dict[str, Any]] = [
    # Attribution Method Configs
    # Primary Methods (Generic Configs)
    _case("basic_single_target", _PRIMARY, BasicModel_MultiLayer(), {"inputs": _x(), "target": 1}),
    _case(
        "basic_multi_input",
        _PRIMARY,
        BasicModel_MultiLayer_MultiInput(),
        {"inputs": _pair(12), "additional_forward_args": _extra(12), "target": 0},
        dp_delta=0.001,
    ),
    _case(
        "basic_multi_target",
        _PRIMARY,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": list(_TARGETS_4)},
    ),
    _case(
        "basic_multi_input_multi_target",
        _PRIMARY,
        BasicModel_MultiLayer_MultiInput(),
        {"inputs": _pair(6), "additional_forward_args": _extra(6), "target": list(_TARGETS_6)},
        dp_delta=0.0005,
    ),
    _case(
        "basic_multiple_tuple_target",
        _PRIMARY_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": _tuple_targets(), "additional_forward_args": _ADD_ONE},
    ),
    _case(
        "basic_tensor_single_target",
        _PRIMARY_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([0])},
    ),
    _case(
        "basic_tensor_multi_target",
        _PRIMARY_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([1, 1, 0, 0])},
    ),
    # Primary Configs with Baselines
    _case(
        "basic_multiple_tuple_target_with_baselines",
        _WITH_BASELINES,
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(4, 3),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
        },
    ),
    _case(
        "basic_tensor_single_target_with_baselines",
        _WITH_BASELINES,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(4, 3), "target": torch.tensor([0])},
    ),
    # Primary Configs with Internal Batching
    _case(
        "basic_multiple_tuple_target_with_internal_batching",
        [IntegratedGradients],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "internal_batch_size": 2,
        },
    ),
    # NoiseTunnel
    _case(
        "basic_multi_input_multi_target_nt",
        _NOISE_TUNNEL,
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(6),
            "additional_forward_args": _extra(6),
            "target": list(_TARGETS_6),
            "nt_samples": 20,
            "stdevs": 0.0,
        },
        noise_tunnel=True,
        dp_delta=0.01,
    ),
    _case(
        "basic_multiple_target_with_baseline_nt",
        _NOISE_TUNNEL_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": list(_TARGETS_4), "nt_samples": 20, "stdevs": 0.0},
        noise_tunnel=True,
    ),
    _case(
        "basic_multiple_tuple_target_nt",
        _NOISE_TUNNEL_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "nt_samples": 20,
            "stdevs": 0.0,
        },
        noise_tunnel=True,
    ),
    _case(
        "basic_single_tensor_target_nt",
        _NOISE_TUNNEL_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([0]), "nt_samples": 20, "stdevs": 0.0},
        noise_tunnel=True,
    ),
    _case(
        "basic_multi_tensor_target_nt",
        _NOISE_TUNNEL_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([0, 1, 1, 0]), "nt_samples": 20, "stdevs": 0.0},
        noise_tunnel=True,
    ),
    _case(
        "basic_multi_tensor_target_batched_nt",
        _NOISE_TUNNEL_SALIENCY_SECOND,
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": torch.tensor([0, 1, 1, 0]),
            "nt_samples": 20,
            "nt_samples_batch_size": 2,
            "stdevs": 0.0,
        },
        noise_tunnel=True,
    ),
    # DeepLift SHAP
    _case(
        "basic_dl_shap",
        [DeepLiftShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(6, 3), "target": 0},
        baseline_distr=True,
    ),
    _case(
        "basic_multi_input_dl_shap",
        [DeepLiftShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "baselines": (torch.randn(4, 3), torch.randn(4, 3)),
            "additional_forward_args": _extra(12),
            "target": 0,
        },
        baseline_distr=True,
    ),
    _case(
        "basic_multiple_target_dl_shap",
        [DeepLiftShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(4, 3), "target": list(_TARGETS_4)},
        baseline_distr=True,
    ),
    _case(
        "basic_multiple_tuple_target_dl_shap",
        [DeepLiftShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(4, 3),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
        },
        baseline_distr=True,
    ),
    _case(
        "basic_single_tensor_targe_dl_shap",  # sic: Captum's name
        [DeepLiftShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(4, 3), "target": torch.tensor([0])},
        baseline_distr=True,
    ),
    _case(
        "basic_multi_tensor_target_dl_shap",
        [DeepLiftShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(4, 3),
            "target": torch.tensor([0, 1, 1, 0]),
        },
        baseline_distr=True,
    ),
    # Gradient SHAP
    _case(
        "basic_multi_inp_with_single_baseline_grad_shap",
        [GradientShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": (torch.randn(6, 3), torch.randn(6, 3)),
            "baselines": (torch.randn(1, 3), torch.randn(1, 3)),
            "additional_forward_args": (torch.randn(6, 3), 5),
            "target": list(_TARGETS_6),
            "stdevs": 0.0,
            "n_samples": 2000,
        },
        target_delta=1.0,
        dp_delta=0.005,
        baseline_distr=True,
    ),
    _case(
        "basic_multiple_target_with_single_baseline_grad_shap",
        [GradientShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(1, 3),
            "target": list(_TARGETS_4),
            "n_samples": 800,
            "stdevs": 0.0,
        },
        target_delta=0.6,
        baseline_distr=True,
    ),
    _case(
        "basic_multiple_tuple_target_with_single_baseline_grad_shap",
        [GradientShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.15 * torch.randn(1, 3),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "n_samples": 2000,
            "stdevs": 0.0,
        },
        target_delta=0.6,
        dp_delta=0.003,
        baseline_distr=True,
    ),
    _case(
        "basic_single_tensor_target_with_single_baseline_grad_shap",
        [GradientShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(1, 3),
            "target": torch.tensor([0]),
            "n_samples": 500,
            "stdevs": 0.0,
        },
        target_delta=0.6,
        baseline_distr=True,
    ),
    _case(
        "basic_multi_tensor_target_with_single_baseline_grad_shap",
        [GradientShap],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "baselines": 0.5 * torch.randn(1, 3),
            "target": torch.tensor([0, 1, 1, 0]),
            "n_samples": 500,
            "stdevs": 0.0,
        },
        target_delta=0.6,
        baseline_distr=True,
    ),
    # Perturbation-Specific Configs
    _case(
        "conv_with_perturbations_per_eval",
        _PERTURBATION,
        BasicModel_ConvNet(),
        {"inputs": _ramp_image(), "target": 0, "perturbations_per_eval": 20},
        dp_delta=0.008,
    ),
    _case(
        "basic_multiple_tuple_target_with_perturbations_per_eval",
        _PERTURBATION,
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "perturbations_per_eval": 2,
        },
    ),
    _case(
        "conv_occlusion_with_perturbations_per_eval",
        [Occlusion],
        BasicModel_ConvNet(),
        {
            "inputs": _ramp_image(),
            "perturbations_per_eval": 8,
            "sliding_window_shapes": (1, 4, 2),
            "target": 0,
        },
    ),
    _case(
        "basic_multi_input_with_perturbations_per_eval_occlusion",
        [Occlusion],
        ReLULinearModel(),
        {
            "inputs": (torch.randn(4, 3), torch.randn(4, 3)),
            "perturbations_per_eval": 2,
            "sliding_window_shapes": ((2,), (1,)),
        },
    ),
    _case(
        "basic_multiple_tuple_target_occlusion",
        [Occlusion],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "sliding_window_shapes": (2,),
        },
    ),
    # Layer Attribution Method Configs
    _case(
        "conv_layer_single_target",
        [*_LAYER, GuidedGradCam],
        BasicModel_ConvNet(),
        {"inputs": _image(), "target": 1},
        layer="conv2",
    ),
    _case(
        "basic_layer_in_place",
        _LAYER,
        BasicModel_MultiLayer(inplace=True),
        {"inputs": _x(), "target": 0},
        layer="relu",
    ),
    _case(
        "basic_layer_multi_output",
        _LAYER,
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "target": 0},
        layer="multi_relu",
    ),
    _case(
        "basic_layer_multi_input",
        _LAYER,
        BasicModel_MultiLayer_MultiInput(),
        {"inputs": _pair(12), "additional_forward_args": _extra(12), "target": 0},
        layer="model.relu",
    ),
    _case(
        "basic_layer_multiple_target",
        _LAYER,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": list(_TARGETS_4)},
        layer="relu",
    ),
    _case(
        "basic_layer_tensor_multiple_target",
        _LAYER,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([0, 1, 1, 0])},
        layer="relu",
    ),
    _case(
        "basic_layer_multiple_tuple_target",
        _LAYER,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": _tuple_targets(), "additional_forward_args": _ADD_ONE},
        layer="relu",
    ),
    _case(
        "basic_layer_multiple_tuple_target_with_internal_batching",
        _LAYER_BATCHED,
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "internal_batch_size": 2,
        },
        layer="relu",
    ),
    _case(
        "basic_layer_multi_input_with_internal_batching",
        _LAYER_BATCHED,
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "additional_forward_args": _extra(12),
            "target": 0,
            "internal_batch_size": 2,
        },
        layer="model.relu",
    ),
    _case(
        "basic_layer_multi_output_with_internal_batching",
        _LAYER_BATCHED,
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "target": 0, "internal_batch_size": 2},
        layer="multi_relu",
    ),
    # Layer Perturbation
    _case(
        "basic_layer_multi_input_with_perturbations_per_eval",
        [LayerFeatureAblation],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "additional_forward_args": _extra(12),
            "target": 0,
            "perturbations_per_eval": 2,
        },
        layer="model.relu",
    ),
    _case(
        "basic_layer_multi_output_perturbations_per_eval",
        [LayerFeatureAblation],
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "target": 0, "perturbations_per_eval": 2},
        layer="multi_relu",
    ),
    _case(
        "conv_layer_with_perturbations_per_eval",
        [LayerFeatureAblation],
        BasicModel_ConvNet(),
        {"inputs": _image(), "target": 1, "perturbations_per_eval": 20},
        layer="conv2",
    ),
    # Layer DeepLiftSHAP
    _case(
        "relu_layer_multi_inp_dl_shap",
        [LayerDeepLiftShap],
        ReLULinearModel(),
        {"inputs": _pair(6), "baselines": (2 * torch.randn(2, 3), 6 * torch.randn(2, 3))},
        layer="l3",
        baseline_distr=True,
    ),
    _case(
        "basic_layer_multi_output_dl_shap",
        [LayerDeepLiftShap],
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "baselines": torch.randn(2, 3), "target": 0},
        layer="multi_relu",
        baseline_distr=True,
    ),
    _case(
        "basic_layer_multi_inp_multi_target_dl_shap",
        [LayerDeepLiftShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(6),
            "baselines": (2 * torch.randn(11, 3), 6 * torch.randn(11, 3)),
            "additional_forward_args": _extra(6),
            "target": list(_TARGETS_6),
        },
        layer="model.relu",
        baseline_distr=True,
    ),
    _case(
        "basic_layer_multiple_target_dl_shap",
        [LayerDeepLiftShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(6, 3), "target": list(_TARGETS_4)},
        layer="relu",
        baseline_distr=True,
    ),
    # Layer Gradient SHAP
    _case(
        "relu_layer_multi_inp_grad_shap",
        [LayerGradientShap],
        ReLULinearModel(),
        {"inputs": _pair(6), "baselines": (2 * torch.randn(2, 3), 6 * torch.randn(2, 3))},
        layer="l3",
        baseline_distr=True,
    ),
    _case(
        "basic_layer_multi_output_grad_shap",
        [LayerGradientShap],
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "baselines": torch.randn(2, 3), "target": 0},
        layer="multi_relu",
        baseline_distr=True,
    ),
    _case(
        "basic_layer_multi_inp_multi_target_grad_shap",
        [LayerGradientShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": (torch.randn(6, 3), torch.randn(6, 3)),
            "baselines": (torch.randn(2, 3), torch.randn(2, 3)),
            "additional_forward_args": _extra(6),
            "target": list(_TARGETS_6),
            "n_samples": 1000,
        },
        layer="model.relu",
        baseline_distr=True,
        target_delta=0.6,
    ),
    # Neuron Attribution Method Configs
    _case(
        "basic_neuron",
        _NEURON,
        BasicModel_MultiLayer(),
        {"inputs": _x(), "neuron_selector": 3},
        layer="relu",
    ),
    _case(
        "conv_neuron",
        _NEURON,
        BasicModel_ConvNet(),
        {"inputs": _image(), "neuron_selector": (0, 1, 0)},
        layer="conv2",
    ),
    _case(
        "basic_neuron_multi_input",
        _NEURON,
        BasicModel_MultiLayer_MultiInput(),
        {"inputs": _pair(12), "additional_forward_args": _extra(12), "neuron_selector": (3,)},
        layer="model.relu",
    ),
    # Neuron Conductance (with target)
    _case(
        "basic_neuron_single_target",
        [NeuronConductance],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": 1, "neuron_selector": 3},
        layer="relu",
    ),
    _case(
        "basic_neuron_multiple_target",
        [NeuronConductance],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": list(_TARGETS_4), "neuron_selector": 3},
        layer="relu",
    ),
    _case(
        "conv_neuron_single_target",
        [NeuronConductance],
        BasicModel_ConvNet(),
        {"inputs": _image(), "target": 1, "neuron_selector": (0, 1, 0)},
        layer="conv2",
    ),
    _case(
        "basic_neuron_multi_input_multi_target",
        [NeuronConductance],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(6),
            "additional_forward_args": _extra(6),
            "target": list(_TARGETS_6),
            "neuron_selector": 3,
        },
        layer="model.relu",
    ),
    _case(
        "basic_neuron_tensor_multiple_target",
        [NeuronConductance],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": torch.tensor([0, 1, 1, 0]), "neuron_selector": 3},
        layer="relu",
    ),
    _case(
        "basic_neuron_multiple_tuple_target",
        [NeuronConductance],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "neuron_selector": 3,
        },
        layer="relu",
    ),
    # Neuron Conductance with Internal Batching
    _case(
        "basic_neuron_multiple_tuple_target_with_internal_batching",
        [NeuronConductance],
        BasicModel_MultiLayer(),
        {
            "inputs": _x(),
            "target": _tuple_targets(),
            "additional_forward_args": _ADD_ONE,
            "internal_batch_size": 2,
            "neuron_selector": 3,
        },
        layer="relu",
    ),
    _case(
        "basic_neuron_multi_input_multi_target_with_internal_batching",
        [NeuronConductance],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(6),
            "additional_forward_args": _extra(6),
            "target": list(_TARGETS_6),
            "internal_batch_size": 2,
            "neuron_selector": 3,
        },
        layer="model.relu",
    ),
    # Neuron Gradient SHAP
    _case(
        "basic_neuron_grad_shap",
        [NeuronGradientShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": torch.randn(1, 3), "neuron_selector": 3},
        layer="relu",
        target_delta=0.6,
        baseline_distr=True,
    ),
    _case(
        "basic_neuron_multi_inp_grad_shap",
        [NeuronGradientShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(6),
            "baselines": (10 * torch.randn(1, 3), 5 * torch.randn(1, 3)),
            "additional_forward_args": _extra(6),
            "neuron_selector": 3,
        },
        layer="model.relu",
        target_delta=0.6,
        baseline_distr=True,
    ),
    # Neuron DeepLift SHAP
    _case(
        "basic_neuron_dl_shap",
        [NeuronDeepLiftShap],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "baselines": 0.5 * torch.randn(6, 3), "neuron_selector": (3,)},
        layer="relu",
        baseline_distr=True,
    ),
    _case(
        "basic_neuron_multi_input_dl_shap",
        [NeuronDeepLiftShap],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "baselines": (torch.randn(4, 3), torch.randn(4, 3)),
            "additional_forward_args": _extra(12),
            "neuron_selector": 3,
        },
        layer="model.relu",
        baseline_distr=True,
    ),
    # Neuron Feature Ablation
    _case(
        "conv_neuron_with_perturbations_per_eval",
        [NeuronFeatureAblation],
        BasicModel_ConvNet(),
        {"inputs": _ramp_image(), "perturbations_per_eval": 20, "neuron_selector": (0, 1, 0)},
        layer="conv2",
    ),
    _case(
        "basic_neuron_multiple_input_with_baselines_and_perturbations_per_eval",
        [NeuronFeatureAblation],
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "baselines": _pair(12),
            "additional_forward_args": _extra(12),
            "neuron_selector": (3,),
            "perturbations_per_eval": 2,
        },
        layer="model.relu",
    ),
    # Neuron Attribution with Functional Selector
    _case(
        "basic_neuron_multi_input_function_selector",
        _NEURON,
        BasicModel_MultiLayer_MultiInput(),
        {
            "inputs": _pair(12),
            "additional_forward_args": _extra(12),
            "neuron_selector": lambda x: torch.sum(x, 1),
        },
        layer="model.relu",
    ),
    # Neuron Attribution with slice Selector
    _case(
        "conv_neuron_slice_selector",
        _NEURON,
        BasicModel_ConvNet(),
        {"inputs": _image(), "neuron_selector": (slice(0, 2, 1), 1, slice(0, 2, 1))},
        layer="conv2",
    ),
    # Layer Attribution with Multiple Layers
    _case(
        "basic_activation_multi_layer_multi_output",
        [LayerActivation],
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x()},
        layer=["multi_relu", "linear1", "linear0"],
    ),
    _case(
        "basic_gradient_multi_layer_multi_output",
        [LayerGradientXActivation],
        BasicModel_MultiLayer(multi_input_module=True),
        {"inputs": _x(), "target": 0},
        layer=["multi_relu", "linear1", "linear0"],
    ),
    _case(
        "basic_layer_ig_multi_layer_multi_output",
        [LayerIntegratedGradients],
        BasicModel_MultiLayer_TrueMultiInput(),
        {"inputs": (_x(5), _x(5), _x(5), _x(5)), "target": 0},
        layer=["m1", "m234"],
    ),
    _case(
        "basic_layer_ig_multi_layer_multi_output_with_input_wrapper",
        [LayerIntegratedGradients],
        ModelInputWrapper(BasicModel_MultiLayer_TrueMultiInput()),
        {"inputs": (_x(5), _x(5), _x(5), _x(5)), "target": 0},
        layer=["module.m1", "module.m234"],
    ),
    # Layer LRP
    _case(
        "basic_layer_lrp",
        [LayerLRP],
        BasicModel_MultiLayer(),
        {"inputs": _x(), "target": 0},
        layer="linear2",
    ),
    _case(
        "basic_layer_lrp_multi_input",
        [LayerLRP],
        BasicModel_MultiLayer_MultiInput(),
        {"inputs": _pair(12), "additional_forward_args": _extra(12), "target": 0},
        layer="model.linear1",
        dp_delta=0.0002,
    ),
]
