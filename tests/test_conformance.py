"""One conformance suite over every registered native method.

Each registered method must have a spec here (a test fails otherwise), so a new method is
checked for: output structure and shape, chunk-size invariance, hooks removed after an
exception, model and inputs unchanged, and clear errors on bad arguments.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from _support import ConvNet, assert_same_state, model_state, module_hook_count
from attention._models import ATTENTION_SPECS  # specs in tests/attention (transformer models)
from whybox import methods
from whybox.core.registry import available_methods, get_method
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods import ablation as ablation_methods
from whybox.methods import cam as cam_methods
from whybox.methods import lime as lime_methods
from whybox.methods import lrp as lrp_methods
from whybox.methods import neuron_conductance as neuron_conductance_methods
from whybox.methods import shapley as shapley_methods


def _refs(x):
    return torch.randn((4,) + tuple(x.shape[1:]), dtype=x.dtype)


def _layer(cls, **options):
    return lambda model: cls(model, _conv2(model), **options)


def _conv2(model):
    return model.inner.conv2 if isinstance(model, Exploding) else model.conv2


# name -> (factory(model) -> method, extra attribute kwargs given inputs, output kind)
# output kind: "input" (shaped like the inputs), "layer" (like conv2's output (N, 8, 6, 6)),
# "map" (a one-channel layer map (N, 1, 6, 6))
SPECS = {
    "saliency": (methods.Saliency, lambda x: {}, "input"),
    "input_x_gradient": (methods.InputXGradient, lambda x: {}, "input"),
    "integrated_gradients": (methods.IntegratedGradients, lambda x: {"n_steps": 7}, "input"),
    "noise_tunnel": (
        lambda m: methods.NoiseTunnel(methods.IntegratedGradients(m)),
        lambda x: {"n_steps": 4, "seed": 0, "stdevs": 0.1},
        "input",
    ),
    "gradient_shap": (
        methods.GradientShap,
        lambda x: {"baselines": _refs(x), "seed": 0},
        "input",
    ),
    "layer_activation": (_layer(methods.LayerActivation), lambda x: {}, "layer"),
    "grad_cam": (_layer(methods.GradCam), lambda x: {}, "map"),
    "internal_influence": (_layer(methods.InternalInfluence), lambda x: {"n_steps": 5}, "layer"),
    "layer_conductance": (_layer(methods.LayerConductance), lambda x: {"n_steps": 5}, "layer"),
}
#: methods whose output does not depend on a target
NO_TARGET = {"layer_activation"}

for _name, _cls, _kwargs in [
    ("deeplift", "DeepLift", lambda x: {}),
    ("deeplift_shap", "DeepLiftShap", lambda x: {"baselines": _refs(x)}),
    ("guided_backprop", "GuidedBackprop", lambda x: {}),
    ("deconvolution", "Deconvolution", lambda x: {}),
]:
    if hasattr(methods, _cls):
        SPECS[_name] = (getattr(methods, _cls), _kwargs, "input")

# the CAM family (whybox.methods.cam), at conv2's resolution (they upsample by default)
for _name, _cls in [
    ("upsampled_grad_cam", cam_methods.UpsampledGradCam),
    ("grad_cam_plus_plus", cam_methods.GradCamPlusPlus),
    ("xgrad_cam", cam_methods.XGradCam),
    ("hires_cam", cam_methods.HiResCam),
    ("layer_cam", cam_methods.LayerCam),
    ("score_cam", cam_methods.ScoreCam),
    ("ablation_cam", cam_methods.AblationCam),
    ("eigen_cam", cam_methods.EigenCam),
]:
    SPECS[_name] = (_layer(_cls), lambda x: {"upsample": False}, "map")


def _cells(x, cell=4):
    """A (1, 1, H, W) grid feature mask: (H / cell) * (W / cell) features shared by channels."""
    h, w = x.shape[-2:]
    rows = torch.arange(h) // cell
    cols = torch.arange(w) // cell
    return (rows[:, None] * (w // cell) + cols[None, :]).view(1, 1, h, w)


# the perturbation family (whybox.methods.ablation / shapley / lime), on grid feature masks
SPECS.update(
    {
        "feature_ablation": (
            ablation_methods.FeatureAblation,
            lambda x: {"feature_mask": _cells(x)},
            "input",
        ),
        "occlusion": (
            ablation_methods.Occlusion,
            lambda x: {"sliding_window_shapes": (3, 4, 4), "strides": (3, 4, 4)},
            "input",
        ),
        "feature_permutation": (
            ablation_methods.FeaturePermutation,
            lambda x: {"feature_mask": _cells(x), "seed": 0},
            "input",
        ),
        "shapley_values": (
            shapley_methods.ShapleyValues,
            lambda x: {"feature_mask": _cells(x, 8)},
            "input",
        ),
        "shapley_value_sampling": (
            shapley_methods.ShapleyValueSampling,
            lambda x: {"feature_mask": _cells(x), "n_samples": 2, "seed": 0},
            "input",
        ),
        "kernel_shap": (
            shapley_methods.KernelShap,
            lambda x: {"feature_mask": _cells(x), "n_samples": 20, "seed": 0},
            "input",
        ),
        "lime": (
            lime_methods.Lime,
            lambda x: {"feature_mask": _cells(x), "n_samples": 20, "seed": 0},
            "input",
        ),
    }
)

# LRP (whybox.methods.lrp) and neuron conductance (a neuron of conv2; explained per input)
SPECS["lrp"] = (lrp_methods.LRP, lambda x: {}, "input")
# Guided Grad-CAM (guided gradients times conv2's map, upsampled): shaped like the inputs
SPECS["guided_grad_cam"] = (_layer(methods.GuidedGradCam), lambda x: {}, "input")
SPECS["neuron_conductance"] = (
    _layer(neuron_conductance_methods.NeuronConductance),
    lambda x: {"neuron": (1, 2, 2), "n_steps": 4},
    "input",
)


# The scope mechanism itself: the same methods with a layer scope (attributions shaped like
# conv2's output) and a neuron scope (a neuron of conv2 explained per input element).
def _scoped(cls, **options):
    return lambda model: cls(model, layer=_conv2(model), **options)


for _name, _cls, _kwargs in [
    ("integrated_gradients", methods.IntegratedGradients, lambda x: {"n_steps": 5}),
    ("input_x_gradient", methods.InputXGradient, lambda x: {}),
    ("deeplift", methods.DeepLift, lambda x: {}),
    ("gradient_shap", methods.GradientShap, lambda x: {"baselines": _refs(x), "seed": 0}),
    ("feature_ablation", methods.FeatureAblation, lambda x: {}),
]:
    SPECS[f"{_name}[layer]"] = (_scoped(_cls), _kwargs, "layer")
for _name, _cls, _kwargs in [
    ("integrated_gradients", methods.IntegratedGradients, lambda x: {"n_steps": 5}),
    ("saliency", methods.Saliency, lambda x: {}),
    ("feature_ablation", methods.FeatureAblation, lambda x: {}),
]:
    SPECS[f"{_name}[neuron]"] = (
        _scoped(_cls),
        lambda x, _kwargs=_kwargs: dict(_kwargs(x), neuron=(1, 2, 2)),
        "input",
    )
    NO_TARGET.add(f"{_name}[neuron]")


class Exploding(nn.Module):
    """Wraps a model; raises inside the forward once armed (after hooks are in place)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, x):
        # "start": before the model runs (neuron scope stops the forward at the layer, so
        # an error at the end would never be reached); "end": after it ran.
        if self.armed == "start":
            raise RuntimeError("boom")
        out = self.inner(x)
        if self.armed == "end":
            raise RuntimeError("boom")
        return out


NAMES = sorted(SPECS)


def test_every_registered_method_has_a_spec():
    missing = sorted(set(available_methods()) - set(SPECS) - set(ATTENTION_SPECS))
    assert not missing, f"add conformance specs for {missing}"


def _setup(name, training=False, dtype=torch.float32):
    torch.manual_seed(0)
    model = ConvNet().train(training).to(dtype)
    x = torch.randn(3, 3, 16, 16, dtype=dtype)
    factory, kwargs, _ = SPECS[name]
    return model, x, factory, kwargs(x)


def _expected_shape(name, x):
    kind = SPECS[name][2]
    if kind == "input":
        return x.shape
    return (x.shape[0], 8 if kind == "layer" else 1, 6, 6)


def _attr(result):
    return result.attributions


def _run(name, method, x, target, **kwargs):
    if name not in NO_TARGET:
        kwargs["target"] = target
    return method.attribute(x, **kwargs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "training, dtype", [(False, torch.float32), (True, torch.float32), (False, torch.float64)]
)
def test_shape_chunk_invariance_and_no_side_effects(name, training, dtype):
    model, x, factory, kwargs = _setup(name, training, dtype)
    original = x.clone()
    state = model_state(model)
    method = factory(model)
    target = [0, 3, 9]
    small = _run(name, method, x, target, chunk_size=1, **kwargs)
    large = _run(name, method, x, target, chunk_size=1000, **kwargs)
    assert _attr(small).shape == _expected_shape(name, x)
    assert _attr(small).dtype == x.dtype
    torch.testing.assert_close(_attr(small), _attr(large), atol=1e-5, rtol=1e-4)
    assert torch.equal(x, original) and not x.requires_grad and x.grad is None
    assert_same_state(model, state)
    assert module_hook_count(model) == 0
    assert small.method == name.split("[")[0]


@pytest.mark.parametrize("name", NAMES)
def test_batch_invariance(name):
    model, x, factory, kwargs = _setup(name)
    if "seed" in kwargs or "baselines" in kwargs and name != "deeplift_shap":
        pytest.skip("random draws depend on the batch layout")
    method = factory(model)
    whole = _attr(_run(name, method, x, [1, 2, 3], **kwargs))
    for i in range(x.shape[0]):
        single = _attr(_run(name, method, x[i : i + 1], [1, 2, 3][i], **kwargs))
        torch.testing.assert_close(single[0], whole[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_removed_and_state_kept_after_exception(name):
    model, x, factory, kwargs = _setup(name)
    wrapped = Exploding(model)
    state = model_state(wrapped)
    wrapped.armed = "start" if name.endswith("[neuron]") else "end"
    with pytest.raises(RuntimeError, match="boom"):
        _run(name, factory(wrapped), x, 0, **kwargs)
    assert module_hook_count(wrapped) == 0
    wrapped.armed = False
    assert_same_state(wrapped, state)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_target_index_is_a_clear_error(name):
    if name in NO_TARGET:
        pytest.skip("no target")
    model, x, factory, kwargs = _setup(name)
    with pytest.raises(ParameterError, match="'target' parameter of"):
        factory(model).attribute(x, target=12, **kwargs)
    with pytest.raises(ParameterError, match="'target' parameter of"):
        factory(model).attribute(x, target=[0, 1], **kwargs)
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("name", NAMES)
def test_bad_baselines_and_steps_are_clear_errors(name):
    model, x, factory, kwargs = _setup(name)
    method = factory(model)
    parameters = inspect.signature(method.attribute).parameters
    inner = getattr(method, "method", None)
    inner_parameters = inspect.signature(inner.attribute).parameters if inner else {}
    if "baselines" in parameters or "baselines" in inner_parameters:
        bad = dict(kwargs, baselines=torch.zeros(5, 3, 7, 7))
        with pytest.raises(ParameterError, match="'baselines' parameter of"):
            method.attribute(x, target=0, **bad)
        bad = dict(kwargs, baselines=(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16)))
        with pytest.raises(ParameterError, match="'baselines' parameter of"):
            method.attribute(x, target=0, **bad)
    if "n_steps" in parameters or "n_steps" in inner_parameters:
        for bad_steps in (0, -3):
            with pytest.raises(
                ParameterError, match="'n_steps' parameter of .* must be an int >= 1"
            ):
                method.attribute(x, target=0, **dict(kwargs, n_steps=bad_steps))
        with pytest.raises(ParameterTypeError, match="'n_steps' parameter"):
            method.attribute(x, target=0, **dict(kwargs, n_steps=2.5))
    with pytest.raises(ParameterError, match="'chunk_size' parameter"):
        _run(name, method, x, 0, **dict(kwargs, chunk_size=0))
    assert module_hook_count(model) == 0


def test_registry_lookup_and_error():
    assert get_method("integrated_gradients") is methods.IntegratedGradients
    with pytest.raises(ValueError, match="'method' parameter of get_method must be one of"):
        get_method("nope")


# -- whybox.explain builds and runs EVERY registered method from flat options -------------
#: constructor options of each registered name for explain (a layer given by its name)
EXPLAIN_INIT = {name: {} for name in available_methods() if name not in ATTENTION_SPECS}
for _name in EXPLAIN_INIT:
    if SPECS[_name][2] in ("layer", "map"):
        EXPLAIN_INIT[_name] = {"layer": "conv2"}
EXPLAIN_INIT["neuron_conductance"] = {"layer": "conv2"}
EXPLAIN_INIT["guided_grad_cam"] = {"layer": "conv2"}
EXPLAIN_INIT["noise_tunnel"] = {"base_method": "integrated_gradients"}


@pytest.mark.parametrize("name", sorted(EXPLAIN_INIT))
def test_explain_builds_and_runs_every_registered_method(name):
    import whybox

    model, x, factory, kwargs = _setup(name)
    options = dict(EXPLAIN_INIT[name], **kwargs)
    target = None if name in NO_TARGET else [0, 3, 9]
    by_name = whybox.explain(model, x, method=name, target=target, **options)
    direct = _run(name, factory(model), x, target, **kwargs)
    assert by_name.method == name
    torch.testing.assert_close(_attr(by_name), _attr(direct))
    assert module_hook_count(model) == 0


@pytest.mark.parametrize(
    "name, kind",
    [
        ("integrated_gradients", "layer"),
        ("input_x_gradient", "layer"),
        ("deeplift", "layer"),
        ("feature_ablation", "layer"),
        ("integrated_gradients", "neuron"),
        ("saliency", "neuron"),
    ],
)
def test_explain_with_layer_and_neuron_scope(name, kind):
    import whybox

    spec = f"{name}[{kind}]"
    model, x, factory, kwargs = _setup(spec)
    target = None if spec in NO_TARGET else [0, 3, 9]
    by_name = whybox.explain(model, x, method=name, target=target, layer=model.conv2, **kwargs)
    by_layer_name = whybox.explain(model, x, method=name, target=target, layer="conv2", **kwargs)
    direct = _run(spec, factory(model), x, target, **kwargs)
    torch.testing.assert_close(_attr(by_name), _attr(direct))
    torch.testing.assert_close(_attr(by_layer_name), _attr(direct))


def test_explain_unknown_option_and_layer_name_are_clear_errors():
    import whybox

    model, x, _, _ = _setup("integrated_gradients")
    with pytest.raises(TypeError, match="'n_stepz' parameter of IntegratedGradients"):
        whybox.explain(model, x, method="integrated_gradients", target=0, n_stepz=3)
    with pytest.raises(ValueError, match="'layer' parameter of GradCam must be the name"):
        whybox.explain(model, x, method="grad_cam", target=0, layer="no.such.layer")
    with pytest.raises(ValueError, match="'method' parameter of get_method"):
        whybox.explain(model, x, method="integrated_gradientz")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch_gives_an_empty_result(name, dtype):
    model, x, factory, kwargs = _setup(name, dtype=dtype)
    empty = x[:0]
    result = _run(name, factory(model), empty, [], **kwargs)
    expected = (0,) + tuple(_expected_shape(name, x)[1:])
    assert tuple(_attr(result).shape) == expected
    assert _attr(result).dtype == dtype
    if result.delta is not None:
        assert result.delta.shape == (0,)
    assert module_hook_count(model) == 0
