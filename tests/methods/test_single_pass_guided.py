"""Single-pass forms of the modified-backprop and layer methods give the same numbers.

* GuidedBackprop / Deconvolution rewrite the gradient at each ``nn.ReLU``'s own autograd
  node (no extra forward operation); they must equal the textbook per-ReLU backward rule
  exactly, also for in-place ReLUs, a ReLU module called twice and a ReLU whose output
  another hook rewrote.
* GuidedGradCam takes Grad-CAM's plain layer gradient and the guided input gradient from
  ONE forward (two backwards); it must equal GradCam times the upsampled GuidedBackprop.
* LayerActivation copies the layer's values during a forward left as it is.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _support import module_hook_count
from whybox import methods as M
from whybox.core.hooks import module_rules


class _Twice(nn.Module):
    """A CNN whose second ReLU module runs twice per forward, with an in-place ReLU."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(5, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(5, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        h = self.relu1(self.conv1(x))
        h = self.relu2(self.conv2(h))
        h = self.relu2(self.conv3(h) - 0.1)
        if scale is not None:
            h = h * scale.view(-1, 1, 1, 1)
        return self.head(h.flatten(1))


def _model(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return _Twice(inplace).double().eval()


def _inputs(n: int = 4) -> Tensor:
    return torch.randn(n, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


class _Guided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out):
        ctx.save_for_backward(out > 0)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        (active,) = ctx.saved_tensors
        return grad.clamp_min(0) * active.to(grad.dtype), None


class _Deconv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, out):
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0), None


def _reference(model: nn.Module, x: Tensor, target: Tensor, kind: str) -> Tensor:
    """The per-ReLU rule as an autograd function of each ReLU's input (the module runs on
    a clone of it, so an in-place ReLU leaves the input the rule needs intact)."""
    function = _Guided if kind == "guided" else _Deconv
    handles = []
    for module in model.modules():
        if type(module) is nn.ReLU:
            original: list[Tensor] = []

            def pre(module, args, original=original):
                original[:] = [args[0]]
                return (args[0].clone(),)

            def post(module, args, out, original=original):
                return function.apply(original[0], out.detach())

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        leaf = x.detach().requires_grad_(True)
        out = model(leaf)[torch.arange(len(x)), target]
        return torch.autograd.grad(out.sum(), leaf)[0]
    finally:
        for handle in handles:
            handle.remove()


TARGET = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("kind", ["guided", "deconvolution"])
def test_modified_backprop_equals_the_per_relu_rule(inplace, kind):
    model, x = _model(inplace), _inputs()
    method = M.GuidedBackprop if kind == "guided" else M.Deconvolution
    ours = method(model).attribute(x, target=TARGET).attributions
    expected = _reference(model, x, TARGET, "guided" if kind == "guided" else "deconv")
    assert torch.equal(ours, expected)
    plain = M.Saliency(model).attribute(x, target=TARGET, abs=False).attributions
    assert not torch.allclose(ours, plain)  # the rules change something here
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("kind", ["guided", "deconvolution"])
def test_a_relu_output_rewritten_by_another_hook_still_gets_the_rule(kind):
    """An output that no longer comes from ReLU's own node gets the rule another way."""
    model, x = _model(), _inputs()
    expected = _reference(model, x, TARGET, "guided" if kind == "guided" else "deconv")
    handle = model.relu1.register_forward_hook(lambda module, args, out: out * 1.0)
    try:
        method = M.GuidedBackprop if kind == "guided" else M.Deconvolution
        ours = method(model).attribute(x, target=TARGET).attributions
    finally:
        handle.remove()
    assert torch.equal(ours, expected)


# -- Guided Grad-CAM ------------------------------------------------------------------------
def _two_methods(model, layer, x, target, *, to_input=False, mode="nearest", **options):
    """Guided Grad-CAM from its two factors, each its own method (two forwards)."""
    cam = M.GradCam(model, layer, attribute_to_layer_input=to_input).attribute(
        x, target=target, relu_attributions=True, **options
    )
    guided = M.GuidedBackprop(model).attribute(x, target=target, **options).attributions
    return guided * F.interpolate(cam.attributions, size=x.shape[2:], mode=mode), cam.attributions


class _Rows(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, *args: Tensor) -> Tensor:
        self.rows.append(args[0].shape[0])
        return self.inner(*args)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("layer_name", ["conv1", "relu1", "conv2", "conv3"])
@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_guided_grad_cam_equals_its_two_factors(inplace, layer_name, to_input, mode):
    model, x = _model(inplace), _inputs()
    layer = getattr(model, layer_name)
    ours = M.GuidedGradCam(model, layer, attribute_to_layer_input=to_input).attribute(
        x, target=TARGET, interpolate_mode=mode
    )
    expected, cam = _two_methods(model, layer, x, TARGET, to_input=to_input, mode=mode)
    assert torch.equal(ours.attributions, expected)
    assert torch.equal(ours.extras["cam"], cam)
    assert module_hook_count(model) == 0


def test_guided_grad_cam_is_one_forward_per_chunk_with_batched_forward_args():
    inner, x = _model(), _inputs(5)
    model = _Rows(inner)
    scale = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1, 0])
    for chunk in (2, "auto"):
        model.rows.clear()
        ours = M.GuidedGradCam(model, inner.conv2).attribute(
            x, target=target, forward_args=(scale,), chunk_size=chunk
        )
        assert model.rows == ([2, 2, 1] if chunk == 2 else [5])
        expected, cam = _two_methods(model, inner.conv2, x, target, forward_args=(scale,))
        assert torch.equal(ours.attributions, expected)
        assert torch.equal(ours.extras["cam"], cam)


def test_guided_grad_cam_empty_batch():
    model = _model()
    x = _inputs()[:0]
    ours = M.GuidedGradCam(model, model.conv2).attribute(x, target=[])
    assert ours.attributions.shape == x.shape
    assert ours.extras["cam"].shape == (0, 1, 6, 6)


def test_guided_grad_cam_without_relu_warns_and_keeps_the_plain_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 36, 2)
    )
    model = model.double()
    x = _inputs()
    with pytest.warns(UserWarning, match="no nn.ReLU"):
        ours = M.GuidedGradCam(model, model[0]).attribute(x, target=1)
    cam = M.GradCam(model, model[0]).attribute(x, target=1, relu_attributions=True).attributions
    plain = M.Saliency(model).attribute(x, target=1, abs=False).attributions
    assert torch.equal(ours.attributions, plain * F.interpolate(cam, size=(6, 6)))


# -- layer activations ----------------------------------------------------------------------
def test_layer_activation_is_the_layer_output_before_later_in_place_ops():
    model, x = _model(inplace=True), _inputs()
    with torch.no_grad():
        expected = model.conv1(x)  # relu1 (in place) runs on it next
        model_output = model(x)
    ours = M.LayerActivation(model, model.conv1).attribute(x).attributions
    assert torch.equal(ours, expected)
    assert (ours < 0).any()  # not the ReLU'd values
    with torch.no_grad():
        assert torch.equal(model(x), model_output)  # the forward itself was left as it is


def test_layer_activation_chunks_and_forward_args():
    inner, x = _model(), _inputs(5)
    model = _Rows(inner)
    scale = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = inner.head(
            (
                inner.relu2(
                    inner.conv3(inner.relu2(inner.conv2(inner.relu1(inner.conv1(x))))) - 0.1
                )
                * scale.view(-1, 1, 1, 1)
            ).flatten(1)
        )
    for chunk in (2, "auto"):
        model.rows.clear()
        ours = (
            M.LayerActivation(model, inner.head)
            .attribute(x, forward_args=(scale,), chunk_size=chunk)
            .attributions
        )
        assert model.rows == ([2, 2, 1] if chunk == 2 else [5])
        assert torch.allclose(ours, expected, rtol=0, atol=1e-12)


def test_layer_activation_of_an_identity_layer_is_a_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(3 * 36, 2)).double()
    x = _inputs()
    ours = M.LayerActivation(model, model[0]).attribute(x).attributions
    assert torch.equal(ours, x)
    ours.add_(1.0)
    assert not torch.equal(ours, x)  # the caller's inputs are untouched


# -- module rules -------------------------------------------------------------------------
def test_module_rules_see_the_input_the_module_ran_on():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(2, 3)
    seen: dict[int, tuple[Tensor, Tensor]] = {}

    def rule(module, inp, out):
        seen[id(module)] = (inp.detach().clone(), out.detach().clone())
        return None if module is model[1] else out * 2

    with module_rules(model, {nn.ReLU: rule}) as matched:
        output = model(x)
    assert matched == [model[1], model[3]]
    with torch.no_grad():
        z1 = model[0](x)
        z2 = model[2](torch.relu(z1))
    # the in-place ReLU's rule gets its input as it was before the ReLU overwrote it
    assert torch.equal(seen[id(model[1])][0], z1) and torch.equal(seen[id(model[3])][0], z2)
    assert torch.equal(output, torch.relu(z2) * 2)  # None leaves the output as it is
    assert module_hook_count(model) == 0


def test_gradients_of_one_chunk_are_fresh_tensors():
    model = nn.Sequential(nn.Identity())
    x = torch.randn(4, 3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grads = M.Saliency(model).attribute(x, target=1, abs=False).attributions
    assert grads.is_contiguous()
    expected = torch.zeros_like(x)
    expected[:, 1] = 1.0
    assert torch.equal(grads, expected)
    grads.add_(1.0)
    assert torch.equal(M.Saliency(model).attribute(x, target=1, abs=False).attributions, expected)
