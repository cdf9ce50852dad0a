"""DeepLift's convergence delta: Captum takes f(x) - f(b) from forwards of the inputs and
of the baselines alone; the facade does the same, the native default reuses the paired
forward (free). Both are the same quantity; at float32 logits of ~1e6 the batch changes
the rounding, so the facade must match Captum's computation exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import whybox.attr as W
from whybox.methods import DeepLift, DeepLiftShap

captum_attr = pytest.importorskip("captum.attr")


class Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.net(x)


def _softmax_model() -> nn.Module:
    from captum.testing.helpers.classification_models import SoftmaxDeepLiftModel

    torch.manual_seed(0)
    return SoftmaxDeepLiftModel(40, 20, 10).eval()


@pytest.mark.parametrize("baselines", [0, torch.arange(1.0, 41.0).reshape(1, 40)])
@pytest.mark.parametrize("target", [torch.tensor([2, 2, 2]), 1])
def test_facade_delta_is_captums(baselines, target):
    model = _softmax_model()
    x = torch.arange(0.0, 120.0).reshape(3, 40)  # large logits: the batch's rounding shows
    ours = W.DeepLift(model).attribute(
        x, baselines=baselines, target=target, return_convergence_delta=True
    )
    theirs = captum_attr.DeepLift(model).attribute(
        x, baselines=baselines, target=target, return_convergence_delta=True
    )
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls, refs", [(DeepLift, None), (DeepLiftShap, 3)])
def test_delta_forwards_gives_the_same_delta_in_float64_with_two_more_forwards(cls, refs):
    torch.manual_seed(1)
    model = Counting(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double().eval())
    x = torch.randn(4, 5, dtype=torch.float64)
    options = {"target": 2, "chunk_size": 1000}
    if refs is not None:
        options["baselines"] = torch.randn(refs, 5, dtype=torch.float64)
    shared = cls(model, reference_pass="paired").attribute(x, **options)
    model.sizes.clear()
    separate = cls(model, delta_forwards=True, reference_pass="paired").attribute(x, **options)
    pairs = 4 * (refs or 1)
    assert model.sizes == [2 * pairs, pairs, pairs]  # paired forward, then x and b alone
    # references run apart (each distinct one once: the zero baseline, or the distribution's
    # rows), then the same two forwards for the delta
    model.sizes.clear()
    apart = cls(model, delta_forwards=True, reference_pass="apart").attribute(x, **options)
    assert model.sizes == [refs or 1, pairs, pairs, pairs]
    torch.testing.assert_close(apart.attributions, shared.attributions, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(apart.delta, separate.delta, rtol=0, atol=1e-12)
    torch.testing.assert_close(separate.attributions, shared.attributions, rtol=0, atol=0)
    torch.testing.assert_close(separate.delta, shared.delta, rtol=0, atol=1e-12)
    # and it is the delta by definition
    b = options.get("baselines", torch.zeros(1, 5, dtype=torch.float64))
    if refs is None:
        expected = shared.attributions.sum(1) - (model(x)[:, 2] - model(b)[:, 2])
        torch.testing.assert_close(separate.delta, expected, rtol=0, atol=1e-12)
