"""Layer / neuron DeepLift, GradientShap, guided methods, conductance and Guided Grad-CAM:
parity with Captum 0.9, completeness, and no side effects."""

import inspect
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods.deeplift import DeepLift as NativeDeepLift
from whybox.methods.deeplift import DeepLiftShap as NativeDeepLiftShap

C = pytest.importorskip("captum.attr")


def _close(ours, theirs, rtol=1e-5):
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b, rtol)
        return
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = theirs.detach().abs().max().clamp_min(1e-12)
    assert (ours.detach() - theirs.detach()).abs().max() / scale <= rtol


class TextNet(nn.Module):
    """Token ids -> embedding -> Conv1d -> ReLU -> mean over time -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(30, 6)
        self.conv = nn.Conv1d(6, 8, 2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, ids, scale=1.0):
        h = self.relu(self.conv(self.embedding(ids).transpose(1, 2)))
        return self.fc(h.mean(dim=2)) * scale


def _conv():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 3 * 3, 3),
    ).eval()


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 4)
    ).eval()


def _case(name):
    """(model, layer, inputs, baselines, reference distribution, target)."""
    if name == "conv":
        model = _conv()
        x = torch.randn(3, 3, 12, 12)
        return model, model[3], x, 0.1 * torch.randn_like(x), torch.randn(4, 3, 12, 12), [0, 1, 2]
    if name == "mlp":
        model = _mlp()
        x = torch.randn(4, 6)
        return model, model[2], x, 0.1 * torch.randn_like(x), torch.randn(3, 6), 3
    torch.manual_seed(2)
    model = TextNet().eval()
    x = torch.randint(1, 30, (3, 7))
    refs = torch.randint(0, 30, (2, 7))
    return model, model.embedding, x, torch.zeros_like(x), refs, 1


# ------------------------------------------------------------------------------------------
# LayerDeepLift / LayerDeepLiftShap
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["conv", "mlp", "text"])
@pytest.mark.parametrize("to_input", [False, True])
def test_layer_deeplift_parity(case, to_input):
    model, layer, x, b, refs, target = _case(case)
    if case == "text" and to_input:
        pytest.skip("an embedding's input is integer ids")
    kw = dict(target=target, return_convergence_delta=True, attribute_to_layer_input=to_input)
    ours, d1 = W.LayerDeepLift(model, layer).attribute(x, b, **kw)
    theirs, d2 = C.LayerDeepLift(model, layer).attribute(x, b, **kw)
    _close(ours, theirs)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)
    ours, d1 = W.LayerDeepLiftShap(model, layer).attribute(x, refs, **kw)
    if case == "text":
        # Captum's LayerDeepLiftShap cannot take token ids (it sets requires_grad on them);
        # whybox can: compare with the mean of Captum's LayerDeepLift over the references
        per_ref = [C.LayerDeepLift(model, layer).attribute(x, r.expand_as(x), **kw) for r in refs]
        theirs = torch.stack([a for a, _ in per_ref]).mean(0)
        d2 = torch.stack([d for _, d in per_ref], dim=1).reshape(-1)
    else:
        theirs, d2 = C.LayerDeepLiftShap(model, layer).attribute(x, refs, **kw)
    _close(ours, theirs)
    assert d1.shape == d2.shape == (x.shape[0] * refs.shape[0],)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)


def test_layer_deeplift_options_parity():
    model, layer, x, b, refs, target = _case("conv")
    for cls_w, cls_c in [(W.LayerDeepLift, C.LayerDeepLift)]:
        ours = cls_w(model, layer, multiply_by_inputs=False).attribute(x, b, target=target)
        theirs = cls_c(model, layer, multiply_by_inputs=False).attribute(x, b, target=target)
        _close(ours, theirs)

    def custom(multipliers, inputs, baselines):
        return tuple(m * (i - bb) ** 2 for m, i, bb in zip(multipliers, inputs, baselines))

    ours = W.LayerDeepLift(model, layer).attribute(
        x, b, target=target, custom_attribution_func=custom
    )
    theirs = C.LayerDeepLift(model, layer).attribute(
        x, b, target=target, custom_attribution_func=custom
    )
    _close(ours, theirs)
    # more layers of the conv net, including a nonlinearity and the max pool
    for other in (model[0], model[1], model[2], model[6]):
        ours = W.LayerDeepLift(model, other).attribute(x, b, target=target)
        theirs = C.LayerDeepLift(model, other).attribute(x, b, target=target)
        _close(ours, theirs)


def test_layer_deeplift_text_extra_args():
    model, layer, x, b, refs, target = _case("text")
    scale = torch.rand(3, 1) + 0.5
    kw = dict(target=[0, 2, 1], additional_forward_args=(scale,), return_convergence_delta=True)
    ours, d1 = W.LayerDeepLift(model, layer).attribute(x, b, **kw)
    theirs, d2 = C.LayerDeepLift(model, layer).attribute(x, b, **kw)
    assert ours.shape == (3, 7, 6)
    _close(ours, theirs)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["conv", "mlp", "text"])
def test_layer_deeplift_completeness(case):
    """Rescale rule: layer attributions sum to f(x) - f(b) (conv2 / relu modules only)."""
    model, layer, x, b, refs, target = _case(case)
    result = NativeDeepLift(model, layer=layer).attribute(x, baselines=b, target=target)
    with torch.no_grad():
        fx, fb = model(x), model(b)
    index = torch.as_tensor(target).expand(x.shape[0]).view(-1, 1)
    expected = (fx.gather(1, index) - fb.gather(1, index)).squeeze(1)
    total = result.attributions.reshape(x.shape[0], -1).sum(1)
    torch.testing.assert_close(total, expected, atol=1e-5, rtol=1e-4)
    assert result.delta.abs().max() < 1e-5
    shap = NativeDeepLiftShap(model, layer=layer).attribute(x, baselines=refs, target=target)
    assert shap.delta.abs().max() < 1e-5


def test_layer_deeplift_chunk_invariance_and_layer_list():
    model, layer, x, b, refs, target = _case("conv")
    small = NativeDeepLift(model, layer=layer).attribute(x, baselines=b, target=1, chunk_size=2)
    large = NativeDeepLift(model, layer=layer).attribute(x, baselines=b, target=1)
    torch.testing.assert_close(small.attributions, large.attributions)
    both = NativeDeepLift(model, layer=[model[0], layer]).attribute(x, baselines=b, target=1)
    assert isinstance(both.attributions, list) and len(both.attributions) == 2
    torch.testing.assert_close(both.attributions[1], large.attributions)


# ------------------------------------------------------------------------------------------
# LayerGradientShap
# ------------------------------------------------------------------------------------------


def _seeded(fn, seed=7):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return fn()


@pytest.mark.parametrize("case", ["conv", "mlp", "embedded"])
@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("multiply", [True, False])
def test_layer_gradient_shap_parity(case, to_input, multiply):
    if case == "embedded":  # a text model fed embeddings (ids cannot be interpolated)
        from _support import EmbeddingNet

        torch.manual_seed(2)
        model = EmbeddingNet().eval()
        layer, x, refs, target = model.conv, torch.randn(3, 5, 6), torch.randn(4, 5, 6), 2
    else:
        model, layer, x, _, refs, target = _case(case)
    kw = dict(
        n_samples=6,
        stdevs=0.2,
        target=target,
        return_convergence_delta=True,
        attribute_to_layer_input=to_input,
    )
    ours, d1 = _seeded(
        lambda: W.LayerGradientShap(model, layer, multiply_by_inputs=multiply).attribute(
            x, refs, **kw
        )
    )
    theirs, d2 = _seeded(
        lambda: C.LayerGradientShap(model, layer, multiply_by_inputs=multiply).attribute(
            x, refs, **kw
        )
    )
    _close(ours, theirs)
    assert d1.shape == d2.shape == (x.shape[0] * 6,)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)


def test_layer_gradient_shap_on_token_ids_is_a_clear_error():
    model, layer, x, _, refs, _ = _case("text")
    with pytest.raises(ParameterTypeError, match="'inputs' parameter .* floating point"):
        W.LayerGradientShap(model, layer).attribute(x, refs, target=0)
    assert module_hook_count(model) == 0


# ------------------------------------------------------------------------------------------
# Neuron methods
# ------------------------------------------------------------------------------------------

NEURONS = {
    "conv": [(0, (1, 2, 3)), (1, (1, 2, 3)), (3, (2, 1, 1)), (4, (0, slice(0, 2), 1)), (6, 1)],
    "mlp": [(1, 4), (2, (slice(2, 5),)), (3, lambda out: out[:, 2] * 2.0)],
}


def _neuron_cases():
    for case, entries in NEURONS.items():
        for index, selector in entries:
            yield case, index, selector


@pytest.mark.parametrize("case,index,selector", list(_neuron_cases()))
@pytest.mark.parametrize("to_input", [False, True])
def test_neuron_methods_parity(case, index, selector, to_input):
    model, _, x, b, refs, target = _case(case)
    layer = model[index]
    common = dict(attribute_to_neuron_input=to_input)
    pairs = [
        ("NeuronDeepLift", (x, selector, b)),
        ("NeuronDeepLiftShap", (x, selector, refs)),
        ("NeuronGuidedBackprop", (x, selector)),
        ("NeuronDeconvolution", (x, selector)),
    ]
    n = 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about callables / missing ReLUs
        for name, args in pairs:
            ours = getattr(W, name)(model, layer).attribute(*args, **common)
            theirs = getattr(C, name)(model, layer).attribute(*args, **common)
            _close(ours, theirs)
        for method in ("riemann_trapezoid", "gausslegendre"):
            kw = dict(target=target, n_steps=n, method=method, **common)
            ours = W.NeuronConductance(model, layer).attribute(
                x, selector, b, internal_batch_size=5, **kw
            )
            theirs = C.NeuronConductance(model, layer).attribute(x, selector, b, **kw)
            # the facade's trapezoid is Captum's (weights summing to (n - 1) / n)
            _close(ours, theirs)


def test_neuron_conductance_multiply_and_text():
    model, layer, x, b, _, target = _case("conv")
    kw = dict(target=target, n_steps=5, method="riemann_left")
    ours = W.NeuronConductance(model, layer, multiply_by_inputs=False).attribute(
        x, (1, 1, 1), b, **kw
    )
    theirs = C.NeuronConductance(model, layer, multiply_by_inputs=False).attribute(
        x, (1, 1, 1), b, **kw
    )
    _close(ours, theirs)
    # a text model fed embeddings, neuron in the conv layer
    from _support import EmbeddingNet

    torch.manual_seed(2)
    text = EmbeddingNet().eval()
    emb = torch.randn(2, 5, 6)
    kw = dict(target=1, n_steps=6, method="gausslegendre")
    ours = W.NeuronConductance(text, text.conv).attribute(emb, (3, 1), **kw)
    theirs = C.NeuronConductance(text, text.conv).attribute(emb, (3, 1), **kw)
    _close(ours, theirs)


def test_neuron_conductance_completeness_over_neurons():
    """Summed over all neurons of a layer, conductance is the integrated gradients."""
    from whybox.methods import IntegratedGradients

    model, _, x, b, _, target = _case("mlp")
    layer = model[2]
    total = sum(
        W.NeuronConductance(model, layer).attribute(
            x, i, b, target=target, n_steps=20, method="gausslegendre"
        )
        for i in range(8)
    )
    ig = IntegratedGradients(model).attribute(
        x, baselines=b, target=target, n_steps=20, rule="gausslegendre"
    )
    torch.testing.assert_close(total, ig.attributions, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Guided Grad-CAM
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 3])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("to_input", [False, True])
def test_guided_grad_cam_parity(index, mode, to_input):
    model, _, x, _, _, target = _case("conv")
    kw = dict(target=target, interpolate_mode=mode, attribute_to_layer_input=to_input)
    ours = W.GuidedGradCam(model, model[index]).attribute(x, **kw)
    theirs = C.GuidedGradCam(model, model[index]).attribute(x, **kw)
    _close(ours, theirs)


class ImageAndVector(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 + 5, 2)

    def forward(self, image, vector):
        pooled = self.relu(self.conv(image)).mean(dim=(2, 3))
        return self.fc(torch.cat([pooled, vector], dim=1))


def test_guided_grad_cam_tuple_inputs_and_uninterpolable_input():
    torch.manual_seed(3)
    model = ImageAndVector().eval()
    inputs = (torch.randn(2, 3, 8, 8), torch.randn(2, 5))
    with pytest.warns(UserWarning, match="Couldn't appropriately interpolate"):
        ours = W.GuidedGradCam(model, model.conv).attribute(inputs, target=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = C.GuidedGradCam(model, model.conv).attribute(inputs, target=1)
    assert isinstance(ours, tuple) and len(ours) == 2
    _close(ours[0], theirs[0])
    assert ours[1].numel() == 0 and theirs[1].numel() == 0


# ------------------------------------------------------------------------------------------
# API shape, errors, no side effects
# ------------------------------------------------------------------------------------------

CLASSES = [
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerGradientShap",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronConductance",
    "GuidedGradCam",
]


@pytest.mark.parametrize("name", CLASSES)
def test_signatures_match_captum(name):
    ours, theirs = getattr(W, name), getattr(C, name)

    def params(fn):
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert params(ours.__init__) == params(theirs.__init__)
    assert params(ours.attribute) == params(theirs.attribute)
    if name.startswith("Layer"):
        assert issubclass(ours, W.LayerAttribution)
    if name.startswith("Neuron"):
        assert issubclass(ours, W.NeuronAttribution)


class Exploding(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.armed = True

    def forward(self, x):
        out = self.inner(x)
        if self.armed:
            raise RuntimeError("boom")
        return out


def _calls(model, x, refs):
    inner = model.inner
    layer, sel = inner[3], (1, 1, 1)
    return [
        lambda: W.LayerDeepLift(model, layer).attribute(x, target=0),
        lambda: W.LayerDeepLiftShap(model, layer).attribute(x, refs, target=0),
        lambda: W.LayerGradientShap(model, layer).attribute(x, refs, target=0),
        lambda: W.NeuronConductance(model, layer).attribute(x, sel, target=0, n_steps=3),
        lambda: W.GuidedGradCam(model, layer).attribute(x, target=0),
    ]


def test_hooks_removed_and_state_kept_after_exception():
    model = Exploding(_conv())
    x, refs = torch.randn(2, 3, 12, 12), torch.randn(3, 3, 12, 12)
    state = model_state(model)
    for run in _calls(model, x, refs):
        with pytest.raises(RuntimeError, match="boom"):
            run()
        assert module_hook_count(model) == 0
    assert_same_state(model, state)


def test_no_side_effects_on_success():
    model, layer, x, b, refs, target = _case("conv")
    model.train()
    original, state = x.clone(), model_state(model)
    W.LayerDeepLift(model, layer).attribute(x, b, target=target)
    W.NeuronDeepLiftShap(model, layer).attribute(x, (1, 1, 1), refs)
    W.NeuronGuidedBackprop(model, layer).attribute(x, (1, 1, 1))
    _seeded(lambda: W.LayerGradientShap(model, layer).attribute(x, refs, target=target))
    W.GuidedGradCam(model, layer).attribute(x, target=target)
    assert torch.equal(x, original) and not x.requires_grad
    assert_same_state(model, state)
    assert module_hook_count(model) == 0


def test_clear_errors():
    model, layer, x, b, refs, target = _case("conv")
    with pytest.raises(ParameterError, match="'baselines' parameter of LayerDeepLiftShap"):
        W.LayerDeepLiftShap(model, layer).attribute(x, refs[:1], target=0)
    # grad_kwargs reach torch.autograd.grad (Captum's behaviour); an unknown one is refused
    W.LayerDeepLift(model, layer).attribute(x, target=0, grad_kwargs={"retain_graph": True})
    with pytest.raises(TypeError, match="'grad_kwargs' parameter of LayerDeepLift"):
        W.LayerDeepLift(model, layer).attribute(x, target=0, grad_kwargs={"no_such": True})
    with pytest.raises(ParameterTypeError, match="'model' parameter of NeuronDeepLift .*<lambda>"):
        W.NeuronDeepLift(lambda t: model(t), layer).attribute(x, (0, 0, 0))
    with pytest.raises(ParameterTypeError, match="'model' parameter of NeuronGuidedBackprop"):
        W.NeuronGuidedBackprop(lambda t: model(t), layer)
    with pytest.raises(ParameterTypeError, match="'model' parameter of GuidedGradCam"):
        W.GuidedGradCam(lambda t: model(t), layer)
    with pytest.raises(ParameterError, match="'neuron_selector' parameter"):
        W.NeuronGuidedBackprop(model, layer).attribute(x, (9, 0, 0))
    with pytest.raises(ParameterError, match="'layer' parameter of LayerDeepLift"):
        W.LayerDeepLift(model, nn.Linear(2, 2)).attribute(x, target=0)
    assert module_hook_count(model) == 0


def test_layer_deeplift_to_input_of_a_nonlinearity_documented_deviation():
    """Captum takes the plain gradient through a ReLU layer when attributing to its input;
    whybox applies the ReLU's Rescale multiplier (so completeness holds)."""
    model, _, x, b, _, _ = _case("conv")
    relu = model[1]
    kw = dict(target=1, attribute_to_layer_input=True)
    theirs = C.LayerDeepLift(model, relu).attribute(x, b, **kw)
    multipliers = W.LayerDeepLift(model, relu, multiply_by_inputs=False).attribute(x, b, target=1)
    with torch.no_grad():
        x_in, b_in = model[0](x), model[0](b)
    _close((x_in - b_in) * (x_in > 0).to(x.dtype) * multipliers, theirs)
    # whybox (Rescale variant): the ReLU's multiplier maps input differences to output ones
    at_input = NativeDeepLift(model, layer=relu, attribute_to_layer_input=True)
    at_output = NativeDeepLift(model, layer=relu, multiply_by_inputs=False)
    ours = at_input.attribute(x, baselines=b, target=1).attributions
    m_out = at_output.attribute(x, baselines=b, target=1).attributions
    _close(ours, (torch.relu(x_in) - torch.relu(b_in)) * m_out)


# ------------------------------------------------------------------------------------------
# Native Guided Grad-CAM (the facade is a translation of it)
# ------------------------------------------------------------------------------------------


def test_native_guided_grad_cam_is_guided_backprop_times_the_resized_map():
    import torch.nn.functional as F

    from whybox.core.registry import get_method
    from whybox.methods import GradCam, GuidedBackprop, GuidedGradCam

    assert get_method("guided_grad_cam") is GuidedGradCam
    assert GuidedGradCam.needs_module and GuidedGradCam.needs_layer
    model, _, x, _, _, target = _case("conv")
    layer = model[3]
    result = GuidedGradCam(model, layer).attribute(x, target=target, interpolate_mode="bilinear")
    cam = GradCam(model, layer).attribute(x, target=target, relu_attributions=True).attributions
    guided = GuidedBackprop(model).attribute(x, target=target).attributions
    expected = guided * F.interpolate(cam, size=(12, 12), mode="bilinear")
    torch.testing.assert_close(result.attributions, expected)
    torch.testing.assert_close(result.extras["cam"], cam)
    assert result.method == "guided_grad_cam" and result.delta is None
    # the map matters: a coarser / different layer gives other numbers
    other = GuidedGradCam(model, model[0]).attribute(x, target=target).attributions
    assert not torch.allclose(other, result.attributions, atol=1e-6)
    torch.testing.assert_close(
        W.GuidedGradCam(model, layer).attribute(x, target=target, interpolate_mode="bilinear"),
        result.attributions,
    )


def test_native_guided_grad_cam_unresizable_inputs_and_errors():
    from whybox.methods import GuidedGradCam

    torch.manual_seed(3)
    model = ImageAndVector().eval()
    inputs = (torch.randn(2, 3, 8, 8), torch.randn(2, 5))
    with pytest.raises(ParameterError, match="'inputs' parameter of GuidedGradCam"):
        GuidedGradCam(model, model.conv).attribute(inputs, target=1)
    result = GuidedGradCam(model, model.conv).attribute(inputs, target=1, unresizable="none")
    assert result.attributions[1] is None and result.attributions[0].shape == (2, 3, 8, 8)
    with pytest.raises(ParameterError, match="'interpolate_mode' parameter of GuidedGradCam"):
        GuidedGradCam(model, model.conv).attribute(inputs, interpolate_mode="cubic")
    with pytest.raises(ParameterError, match="'unresizable' parameter of GuidedGradCam"):
        GuidedGradCam(model, model.conv).attribute(inputs, unresizable="skip")
    with pytest.raises(ParameterError, match="'layer' parameter of GuidedGradCam"):
        GuidedGradCam(model, None).attribute(inputs[0], target=0)
    with pytest.raises(ParameterError, match="'inputs' parameter .* Got input 0 of shape"):
        # a mode that does not fit the map's two spatial dimensions
        GuidedGradCam(model, model.conv).attribute(inputs, target=0, interpolate_mode="trilinear")
    assert module_hook_count(model) == 0


# ------------------------------------------------------------------------------------------
# Every facade class here: empty batches and float64 (against Captum in float64)
# ------------------------------------------------------------------------------------------


def _facade_runs(model, x, b, refs):
    """name -> (constructor args, attribute args, attribute kwargs, has delta)."""
    layer, sel = model[3], (1, 1, 1)
    return {
        "LayerDeepLift": ((model, layer), (x, b), dict(target=0), True),
        "LayerDeepLiftShap": ((model, layer), (x, refs), dict(target=0), True),
        "LayerGradientShap": ((model, layer), (x, refs), dict(target=0, n_samples=3), True),
        "NeuronDeepLift": ((model, layer), (x, sel, b), {}, False),
        "NeuronDeepLiftShap": ((model, layer), (x, sel, refs), {}, False),
        "NeuronGuidedBackprop": ((model, layer), (x, sel), {}, False),
        "NeuronDeconvolution": ((model, layer), (x, sel), {}, False),
        "NeuronConductance": ((model, layer), (x, sel, b), dict(target=0, n_steps=4), False),
        "GuidedGradCam": ((model, layer), (x,), dict(target=0), False),
    }


@pytest.mark.parametrize("name", CLASSES)
def test_facade_empty_batch(name):
    model, layer, x, b, refs, _ = _case("conv")
    x, b = x[:0], b[:0]
    init, args, kwargs, has_delta = _facade_runs(model, x, b, refs)[name]
    if has_delta:
        kwargs = dict(kwargs, return_convergence_delta=True)
    out = _seeded(lambda: getattr(W, name)(*init).attribute(*args, **kwargs))
    attributions, delta = out if has_delta else (out, None)
    expected = (0, 5, 3, 3) if name.startswith("Layer") else (0, 3, 12, 12)
    assert tuple(attributions.shape) == expected and attributions.dtype == torch.float32
    if has_delta:
        assert delta.shape == (0,)
    assert module_hook_count(model) == 0


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CLASSES)
def test_facade_float64_in_float64_out(name):
    model, layer, x, b, refs, _ = _case("conv")
    model, x, b, refs = model.double(), x.double(), b.double(), refs.double()
    init, args, kwargs, has_delta = _facade_runs(model, x, b, refs)[name]
    ours = _seeded(lambda: getattr(W, name)(*init).attribute(*args, **kwargs))
    theirs = _seeded(lambda: getattr(C, name)(*init).attribute(*args, **kwargs))
    assert ours.dtype == torch.float64
    scale = (n - 1) / n if (n := kwargs.get("n_steps")) else 1.0  # conductance's weights
    _close(ours * scale, theirs.detach(), rtol=1e-9)
