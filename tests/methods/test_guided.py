"""GuidedBackprop / Deconvolution: closed forms, Captum 0.9 parity, engine contracts."""

import copy

import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.core.registry import get_method
from whybox.methods.guided import Deconvolution, GuidedBackprop

RTOL = 1e-5


def _two_hidden(inplace: bool = False):
    torch.manual_seed(0)
    l1, l2, l3 = nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 3)
    model = nn.Sequential(l1, nn.ReLU(inplace=inplace), l2, nn.ReLU(), l3).double()
    return model, (l1, l2, l3)


def test_one_hidden_layer_closed_form():
    """f = W2 relu(W1 x + c): guided = W1^T (relu(W2[t]) * (z > 0)), deconv = W1^T relu(W2[t])."""
    torch.manual_seed(1)
    l1, l2 = nn.Linear(3, 5).double(), nn.Linear(5, 2).double()
    model = nn.Sequential(l1, nn.ReLU(), l2)
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        active = (l1(x) > 0).double()
        w_out = l2.weight[1]
        guided = (w_out.clamp_min(0) * active) @ l1.weight
        deconv = (w_out.clamp_min(0) @ l1.weight).expand(4, 3)
        plain = (w_out * active) @ l1.weight
    ours_guided = GuidedBackprop(model).attribute(x, target=1).attributions
    ours_deconv = Deconvolution(model).attribute(x, target=1).attributions
    assert torch.allclose(ours_guided, guided, atol=1e-12)
    assert torch.allclose(ours_deconv, deconv, atol=1e-12)
    # The rules change something on this net (negative output weights exist).
    assert (w_out < 0).any() and not torch.allclose(ours_guided, plain)


@pytest.mark.parametrize("inplace", [False, True])
def test_two_hidden_layers_closed_form(inplace):
    model, (l1, l2, l3) = _two_hidden(inplace)
    x = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        z1 = l1(x)
        z2 = l2(z1.relu())
        top = l3.weight[target]  # (N, 5)
        g2 = top.clamp_min(0) * (z2 > 0)
        guided = ((g2 @ l2.weight).clamp_min(0) * (z1 > 0)) @ l1.weight
        d2 = top.clamp_min(0)
        deconv = (d2 @ l2.weight).clamp_min(0) @ l1.weight
    assert torch.allclose(
        GuidedBackprop(model).attribute(x, target=target).attributions, guided, atol=1e-12
    )
    assert torch.allclose(
        Deconvolution(model).attribute(x, target=target).attributions, deconv, atol=1e-12
    )


@pytest.mark.parametrize("method", [GuidedBackprop, Deconvolution])
def test_chunk_size_invariance(conv_net, method):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 16, 16)
    small = method(conv_net).attribute(x, target=[0, 1, 2, 3], chunk_size=1).attributions
    big = method(conv_net).attribute(x, target=[0, 1, 2, 3], chunk_size=100).attributions
    assert torch.allclose(small, big, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", [GuidedBackprop, Deconvolution])
def test_hooks_removed_after_exception_and_state_kept(conv_net, method):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            self.act(self.lin(x))
            raise RuntimeError("boom")

    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        method(model).attribute(torch.randn(2, 3))
    assert module_hook_count(model) == 0

    model = conv_net.train()
    state = model_state(model)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    x_copy = x.detach().clone()
    method(model).attribute(x, target=3)
    assert_same_state(model, state)
    assert model.training and module_hook_count(model) == 0
    assert torch.equal(x.detach(), x_copy) and x.requires_grad and x.grad is None


def test_warns_without_relu_modules_and_rejects_functions():
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    with pytest.warns(UserWarning, match="no nn.ReLU"):
        GuidedBackprop(model).attribute(torch.randn(2, 3), target=0)
    with pytest.raises(TypeError, match="'model' parameter of GuidedBackprop"):
        GuidedBackprop(lambda t: t).attribute(torch.randn(2, 3))
    with pytest.raises(TypeError, match="'model' parameter of Deconvolution"):
        W.Deconvolution(lambda t: t)


def test_registry():
    assert get_method("guided_backprop") is GuidedBackprop
    assert get_method("deconvolution") is Deconvolution
    assert GuidedBackprop.needs_module and not GuidedBackprop.has_delta


# ---------------------------------------------------------------------------------------------
# Parity with Captum 0.9 (test oracle only)
# ---------------------------------------------------------------------------------------------

captum_attr = pytest.importorskip("captum.attr")


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(3, 8)
        self.relu_a = nn.ReLU()
        self.relu_b = nn.ReLU(inplace=True)
        self.out = nn.Linear(8, 4)

    def forward(self, x1, x2, scale, shift=0.0):
        return self.out(self.relu_a(self.a(x1)) + self.relu_b(self.b(x2)) * scale) + shift


def _cases(conv_net, dtype):
    torch.manual_seed(0)
    mlp, _ = _two_hidden()
    return {
        "conv": (copy.deepcopy(conv_net).to(dtype), torch.randn(3, 3, 16, 16), [1, 4, 9], None),
        "multi": (
            TwoInputNet().to(dtype),
            (torch.randn(4, 5), torch.randn(4, 3)),
            2,
            (torch.rand(4, 1, dtype=dtype) + 0.5, 0.25),
        ),
        "mlp": (mlp.to(dtype), torch.randn(4, 4), torch.tensor([0, 1, 2, 0]), None),
    }


def _cast(inputs, dtype):
    if isinstance(inputs, tuple):
        return tuple(t.to(dtype) for t in inputs)
    return inputs.to(dtype)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["conv", "multi", "mlp"])
@pytest.mark.parametrize("name", ["GuidedBackprop", "Deconvolution"])
def test_parity(conv_net, name, case, dtype):
    model, inputs, target, args = _cases(conv_net, dtype)[case]
    inputs = _cast(inputs, dtype)
    ours = getattr(W, name)(model).attribute(inputs, target=target, additional_forward_args=args)
    theirs = getattr(captum_attr, name)(model).attribute(
        inputs, target=target, additional_forward_args=args
    )
    pairs = zip(ours, theirs) if isinstance(theirs, tuple) else [(ours, theirs)]
    assert isinstance(ours, tuple) == isinstance(theirs, tuple)
    for a, b in pairs:
        b = b.detach()
        assert a.shape == b.shape and a.dtype == b.dtype
        error = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        assert error <= RTOL, error


@pytest.mark.parametrize("name", ["GuidedBackprop", "Deconvolution"])
def test_empty_batch_gives_empty_results(conv_net, name):
    model = copy.deepcopy(conv_net).double()
    empty = torch.randn(0, 3, 16, 16, dtype=torch.float64)
    native = {"GuidedBackprop": GuidedBackprop, "Deconvolution": Deconvolution}[name]
    result = native(model).attribute(empty, target=0)
    assert result.attributions.shape == (0, 3, 16, 16)
    assert result.attributions.dtype == torch.float64 and result.delta is None
    facade = getattr(W, name)(model).attribute(empty, target=[])
    assert facade.shape == (0, 3, 16, 16) and facade.dtype == torch.float64
    two = TwoInputNet().double()
    pair = (torch.randn(0, 5, dtype=torch.float64), torch.randn(0, 3, dtype=torch.float64))
    args = (torch.rand(0, 1, dtype=torch.float64), 0.25)
    out = getattr(W, name)(two).attribute(pair, target=1, additional_forward_args=args)
    assert isinstance(out, tuple) and [tuple(a.shape) for a in out] == [(0, 5), (0, 3)]
    assert module_hook_count(two) == 0
    assert module_hook_count(model) == 0
