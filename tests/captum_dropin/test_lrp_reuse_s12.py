"""LRP under Captum's relevance flow refuses a ruled module run twice in one forward, as
Captum 0.9 does (its hooks keep one set of activations per module); the native default
flow explains such models."""

import pytest
import torch
from torch import nn

import whybox.attr as W
import whybox.methods as M
from _support import module_hook_count

C = pytest.importorskip("captum.attr")


class ReusedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin1 = nn.Linear(3, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.lin1(self.relu(self.lin1(x))))


class ReusedReLU(nn.Module):
    """One ReLU module called twice: no rule on it, so Captum runs (and so does whybox)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lin1, self.lin2 = nn.Linear(3, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.lin2(self.relu(self.lin1(x))))


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: W.LRP(m).attribute(torch.ones(2, 3), target=0),
        lambda m: W.LayerLRP(m, m.lin1).attribute(torch.ones(2, 3), target=0),
        lambda m: W.LayerLRP(m, m.relu).attribute(
            torch.ones(2, 3), target=0, attribute_to_layer_input=True
        ),
        lambda m: M.LRP(m, relevance_flow="captum").attribute(torch.ones(2, 3), target=0),
    ],
)
def test_a_reused_ruled_module_raises_as_in_captum(make):
    model = ReusedLinear().eval()
    before = _params(model)
    with pytest.raises(RuntimeError, match="more than once"):
        C.LRP(model).attribute(torch.ones(2, 3), target=0)
    with pytest.raises(RuntimeError, match="more than once"):
        make(model)
    assert module_hook_count(model) == 0
    assert not any(hasattr(m, "rule") for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model)))
    # the model still runs plainly afterwards
    model(torch.ones(2, 3))


def test_the_native_default_flow_explains_a_reused_module():
    model = ReusedLinear().eval()
    model.lin1.bias = None  # bias-free: the relevance is conserved exactly (epsilon -> 0)
    x = torch.rand(4, 3)
    result = M.LRP(model).attribute(x, target=1)
    with torch.no_grad():
        output = model(x)[:, 1]
    torch.testing.assert_close(result.attributions.sum(dim=1), output, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.delta, torch.zeros(4), atol=1e-6, rtol=0)


def test_a_reused_activation_without_a_rule_runs_and_equals_captum():
    model = ReusedReLU().eval()
    x = torch.randn(5, 3)
    ours = W.LRP(model).attribute(x, target=1)
    theirs = C.LRP(model).attribute(x, target=1)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_every_chunk_is_a_new_forward():
    """Modules run once per forward but in many chunks are not 'reused'."""
    model = ReusedReLU().eval()
    x = torch.randn(7, 3)
    whole = M.LRP(model, relevance_flow="captum").attribute(x, target=0)
    chunked = M.LRP(model, relevance_flow="captum").attribute(x, target=0, chunk_size=2)
    torch.testing.assert_close(chunked.attributions, whole.attributions, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(
        whole.attributions, C.LRP(model).attribute(x, target=0), atol=1e-6, rtol=1e-5
    )
