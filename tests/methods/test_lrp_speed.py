"""LRP's rule rewrites in one autograd node (issue 16): same values and gradients as the
textbook form ``out.detach() + (z - z.detach()) * out / s(z)``, ``s(z) = z + eps*sign(z)``."""

import pytest
import torch
from torch import nn

from whybox.methods.lrp import (
    LRP,
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
)


def _textbook(rule, module, x, out, z):
    """The rewrite as the module docstring writes it, with sign(0) = 1 and 0/0 = 0."""
    sign = torch.where(z.detach() >= 0, 1.0, -1.0).to(z.dtype)
    s = z.detach() + rule.epsilon * sign
    ratio = torch.where(s == 0, torch.zeros_like(s), out.detach() / torch.where(s == 0, 1.0, s))
    return out.detach() + (z - z.detach()) * ratio


def _z(rule, module, x, out):
    parameters = rule._parameters(module) if hasattr(rule, "_parameters") else None
    if isinstance(rule, IdentityRule):
        return x.reshape(out.shape)
    if parameters is None:
        return out
    weight, bias = parameters
    return (
        module._conv_forward(x, weight, bias)
        if isinstance(module, nn.Conv2d)
        else (nn.functional.linear(x, weight, bias))
    )


@pytest.mark.parametrize(
    "rule",
    [
        EpsilonRule(),
        EpsilonRule(0.0),
        EpsilonRule(0.3),
        GammaRule(0.5),
        GammaRule(0.25, set_bias_to_zero=True),
        Alpha1_Beta0_Rule(),
        IdentityRule(),
        IdentityRule(0.0),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_rewrite_matches_the_textbook_form(rule, dtype):
    torch.manual_seed(0)
    if isinstance(rule, IdentityRule):
        module = nn.Tanh()
    else:
        module = nn.Linear(6, 5).to(dtype)
    x = torch.randn(4, 6, dtype=dtype)
    x[0, :] = 0  # zero outputs (and zero inputs for the identity): the guarded cases
    if isinstance(module, nn.Linear):
        with torch.no_grad():
            module.bias[1] = 0.0
            module.weight[2] = 0.0
            module.bias[2] = -0.0
    leaf = x.clone().requires_grad_(True)
    out = module(leaf)
    got = rule.rewrite(module, leaf, out)
    leaf2 = x.clone().requires_grad_(True)
    out2 = module(leaf2)
    expected = _textbook(rule, module, leaf2, out2, _z(rule, module, leaf2, out2))
    assert torch.equal(got, expected)
    seed = torch.randn(got.shape, dtype=dtype)
    (g,) = torch.autograd.grad(got, leaf, seed)
    (h,) = torch.autograd.grad(expected, leaf2, seed)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, h, rtol=0, atol=0)


def test_rewrite_is_one_autograd_node_and_a_new_tensor():
    module = nn.Conv2d(2, 3, 3)
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    out = module(x)
    got = EpsilonRule().rewrite(module, x, out)
    assert got.data_ptr() != out.data_ptr()
    # the next node is the convolution's own: the rule adds one node, not three
    (parent,) = [fn for fn, _ in got.grad_fn.next_functions if fn is not None]
    assert parent is out.grad_fn


def test_lrp_with_in_place_relu_after_a_ruled_layer():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    plain = nn.Sequential(model[0], nn.ReLU(), model[2])
    x = torch.randn(3, 4)
    ours = LRP(model).attribute(x, target=1)
    again = LRP(plain).attribute(x, target=1)
    assert torch.equal(ours.attributions, again.attributions)
    assert torch.equal(ours.delta, again.delta)
