"""Layer and neuron scope: parity with Captum 0.9 and closed forms."""

import numpy as np
import pytest
import torch
from torch import nn

import whybox.attr as W
from whybox.methods import GradCam, IntegratedGradients

C = pytest.importorskip("captum.attr")


def _close(ours, theirs, rtol=1e-5):
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b, rtol)
        return
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = theirs.abs().max().clamp_min(1e-12)
    assert (ours - theirs).abs().max() / scale <= rtol


class TextNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(40, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, ids, scale=1.0):
        out, _ = self.lstm(self.embedding(ids))
        return self.fc(out[:, -1]) * scale


def _models():
    torch.manual_seed(0)
    conv = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(5 * 8 * 8, 3),
    ).eval()
    mlp = nn.Sequential(
        nn.Linear(6, 10), nn.ELU(), nn.Linear(10, 7), nn.Sigmoid(), nn.Linear(7, 4)
    ).eval()
    text = TextNet().eval()
    return {
        "conv": (conv, conv[2], torch.randn(3, 3, 12, 12), [0, 1, 2]),
        "mlp": (mlp, mlp[2], torch.randn(4, 6), 3),
        "text": (text, text.embedding, torch.randint(1, 40, (3, 9)), 1),
    }


CASES = ["conv", "mlp", "text"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("to_input", [False, True])
def test_layer_integrated_gradients(case, to_input):
    model, layer, x, target = _models()[case]
    if case == "text" and to_input:
        pytest.skip("an embedding's input is integer ids")
    baselines = torch.zeros_like(x)
    for kwargs in ["gausslegendre", "riemann_left"]:
        ours, d1 = W.LayerIntegratedGradients(model, layer).attribute(
            x,
            baselines,
            target=target,
            n_steps=15,
            method=kwargs,
            internal_batch_size=7,
            return_convergence_delta=True,
            attribute_to_layer_input=to_input,
        )
        theirs, d2 = C.LayerIntegratedGradients(model, layer).attribute(
            x,
            baselines,
            target=target,
            n_steps=15,
            method=kwargs,
            return_convergence_delta=True,
            attribute_to_layer_input=to_input,
        )
        _close(ours, theirs)
        torch.testing.assert_close(d1, d2, atol=1e-5, rtol=1e-4)


def test_layer_integrated_gradients_list_of_layers_and_extra_args():
    from _support import MultiInputNet

    torch.manual_seed(3)
    model = MultiInputNet().eval()
    x1, x2 = torch.randn(3, 5), torch.randn(3, 3)
    scale = torch.rand(3, 1) + 0.5
    layers = [model.a, model.b]
    kwargs = dict(target=2, additional_forward_args=(scale, 0.1), n_steps=8)
    ours, d1 = W.LayerIntegratedGradients(model, layers).attribute(
        (x1, x2), return_convergence_delta=True, **kwargs
    )
    theirs, d2 = C.LayerIntegratedGradients(model, layers).attribute(
        (x1, x2), return_convergence_delta=True, **kwargs
    )
    assert isinstance(ours, list) and len(ours) == 2
    _close(ours, theirs)
    torch.testing.assert_close(d1, d2, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", ["conv", "mlp"])
def test_conductance_influence_activation_gradxact(case):
    model, layer, x, target = _models()[case]
    for cls, kwargs in [
        ("LayerConductance", {"n_steps": 9, "target": target}),
        ("InternalInfluence", {"n_steps": 9, "target": target}),
        ("LayerActivation", {}),
        ("LayerGradientXActivation", {"target": target}),
    ]:
        ours = getattr(W, cls)(model, layer).attribute(x, **kwargs)
        theirs = getattr(C, cls)(model, layer).attribute(x, **kwargs)
        _close(ours, theirs)
    ours = W.LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(
        x, target=target
    )
    theirs = C.LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(
        x, target=target
    )
    _close(ours, theirs)


def test_layer_gradcam_options_and_interpolate():
    model, layer, x, target = _models()["conv"]
    for relu in (False, True):
        for summation in (False, True):
            kwargs = dict(target=target, relu_attributions=relu, attr_dim_summation=summation)
            _close(
                W.LayerGradCam(model, layer).attribute(x, **kwargs),
                C.LayerGradCam(model, layer).attribute(x, **kwargs),
            )
    cam = W.LayerGradCam(model, layer).attribute(x, target=target)
    for mode in ("nearest", "bilinear"):
        _close(
            W.LayerAttribution.interpolate(cam, x.shape[2:], mode),
            C.LayerAttribution.interpolate(cam, x.shape[2:], mode),
        )
    assert W.LayerAttribution.interpolate(cam, (12, 12)).shape == (3, 1, 12, 12)


@pytest.mark.parametrize("case", ["conv", "mlp"])
def test_neuron_methods(case):
    model, layer, x, _ = _models()[case]
    selectors = [(1, 2, 3), (slice(0, 2), 1, slice(2, 5)), lambda out: out[:, 0].sum((1, 2))]
    if case == "mlp":
        selectors = [(4,), 2, (slice(1, 5),), lambda out: out[:, 3] * 2]
    for selector in selectors:
        _close(
            W.NeuronGradient(model, layer).attribute(x, selector),
            C.NeuronGradient(model, layer).attribute(x, selector),
        )
        _close(
            W.NeuronIntegratedGradients(model, layer).attribute(x, selector, n_steps=10),
            C.NeuronIntegratedGradients(model, layer).attribute(x, selector, n_steps=10),
        )
    refs = torch.randn((5,) + tuple(x.shape[1:]))
    results = []
    for lib in (W, C):
        torch.manual_seed(4)
        np.random.seed(4)
        results.append(
            lib.NeuronGradientShap(model, layer).attribute(
                x, selectors[0], refs, n_samples=4, stdevs=0.1
            )
        )
    _close(*results)


def test_gradcam_equals_classic_cam_on_global_average_pooling():
    # conv -> GAP -> linear: Grad-CAM's channel weights are w_c / (H*W), so Grad-CAM is
    # CAM = sum_c w_c A_c scaled by 1/(H*W).
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    fc = nn.Linear(6, 4)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    x = torch.randn(2, 3, 7, 7)
    grad_cam = GradCam(model, model[1]).attribute(x, target=2).attributions
    activations = torch.relu(conv(x)).detach()
    cam = (fc.weight[2].view(1, 6, 1, 1) * activations).sum(1, keepdim=True) / 49
    torch.testing.assert_close(grad_cam, cam.detach(), atol=1e-6, rtol=1e-5)


def test_layer_ig_completeness_on_embeddings_with_token_reference():
    model, _, x, _ = _models()["text"]
    model = model.double()
    reference = W.TokenReferenceBase(reference_token_idx=0).generate_reference(
        x.shape[1], device=x.device
    )
    assert reference.dtype == torch.long and reference.shape == (x.shape[1],)
    baselines = reference.unsqueeze(0).expand_as(x)
    result = IntegratedGradients(model, layer=model.embedding).attribute(
        x, baselines=baselines, target=1, n_steps=300, rule="gausslegendre"
    )
    assert result.attributions.shape == (3, 9, 8)
    expected = model(x)[:, 1] - model(baselines)[:, 1]
    torch.testing.assert_close(
        result.attributions.sum((1, 2)), expected.detach(), atol=1e-6, rtol=1e-6
    )
    assert result.delta.abs().max() < 1e-6


def test_neuron_scope_stops_after_the_layer():
    calls = []
    model, layer, x, _ = _models()["mlp"]
    handle = model[4].register_forward_hook(lambda *a: calls.append(1))
    try:
        W.NeuronGradient(model, layer).attribute(x, (1,))
    finally:
        handle.remove()
    assert calls == []  # the last Linear never ran
