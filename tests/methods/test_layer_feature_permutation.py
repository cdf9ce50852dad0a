"""LayerFeaturePermutation: parity with Captum where Captum works, and a slow reference with
targets (Captum 0.9 applies the target twice and fails on class outputs)."""

import pytest
import torch
from torch import nn

import whybox.attr as W


def _model(outputs):
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, outputs)]
    if outputs == 1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("mask", [None, torch.tensor([[0, 0, 1, 1, 2]])])
def test_parity_with_captum(mask):
    C = pytest.importorskip("captum.attr")
    model = _model(1)
    x = torch.randn(7, 6)
    torch.manual_seed(3)
    ours = W.LayerFeaturePermutation(model, model[2]).attribute(x, layer_mask=mask)
    torch.manual_seed(3)
    theirs = C.LayerFeaturePermutation(model, model[2]).attribute(x, layer_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_matches_a_slow_reference_with_class_targets():
    model = _model(3)
    x = torch.randn(6, 6)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(5)
    ours = W.LayerFeaturePermutation(model, model[2]).attribute(x, target=target)
    # reference: same permutations (torch.randperm per unit, redrawn if identity)
    torch.manual_seed(5)
    hidden = model[:3](x).detach()
    base = model[3:](hidden)[torch.arange(6), target]
    expected = torch.zeros(6, 5)
    for unit in range(5):
        perm = torch.randperm(6)
        while bool((perm == torch.arange(6)).all()):
            perm = torch.randperm(6)
        shuffled = hidden.clone()
        shuffled[:, unit] = hidden[perm, unit]
        expected[:, unit] = (base - model[3:](shuffled)[torch.arange(6), target]).detach()
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
