"""DeepLift's fast paths give the numbers of the plain paths they replace.

The Rescale rule reuses a ReLU's output buffer and max pooling reuses the argmax indices
its forward saved; anything unexpected falls back to recomputing. These tests build the
trap (an in-place op on the ReLU's output, a pool the fast path does not recognise) and
compare against a reference computed without it.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from whybox.attr import DeepLift as CaptumStyleDeepLift
from whybox.methods import DeepLift, deeplift_rules


class _Net(nn.Module):
    def __init__(self, pool: type[nn.Module], *, inplace_after_relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = pool(3, stride=2)  # overlapping windows
        self.head = nn.Linear(4 * 3 * 3, 3)
        self.inplace_after_relu = inplace_after_relu

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv(x))
        if self.inplace_after_relu:
            h.mul_(2.0)  # changes the ReLU's output buffer after the rule saw it
        else:
            h = h * 2.0
        return self.head(self.pool(h).flatten(1))


def _pair(pool: type[nn.Module], inplace: bool) -> _Net:
    torch.manual_seed(0)
    return _Net(pool, inplace_after_relu=inplace).eval()


@pytest.fixture
def data() -> tuple[Tensor, Tensor]:
    torch.manual_seed(1)
    return torch.randn(5, 2, 8, 8), torch.randn(5, 2, 8, 8) * 0.1


@pytest.mark.parametrize(
    ("cls", "pool"),
    [
        (DeepLift, nn.MaxPool2d),
        (DeepLift, nn.AvgPool2d),
        # Captum's rules skip a max pool's rule when its input IS a rule's output (the
        # adjacency quirk, reproduced by object identity), so the facade is compared on
        # a pool without a rule; Captum itself raises on the in-place op
        (CaptumStyleDeepLift, nn.AvgPool2d),
    ],
)
def test_inplace_op_after_relu_gives_the_out_of_place_numbers(cls, pool, data):
    x, baseline = data
    plain = cls(_pair(pool, inplace=False))
    trapped = cls(_pair(pool, inplace=True))
    expected = plain.attribute(x, baselines=baseline, target=1)
    got = trapped.attribute(x, baselines=baseline, target=1)
    expected = getattr(expected, "attributions", expected)
    got = getattr(got, "attributions", got)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [DeepLift, CaptumStyleDeepLift])
def test_saved_pool_indices_equal_recomputed_pooling(cls, data, monkeypatch):
    x, baseline = data
    model = _pair(nn.MaxPool2d, inplace=False)
    a = cls(model).attribute(x, baselines=baseline, target=2)
    # the fallback: the indices are computed again instead of read off the autograd node
    monkeypatch.setattr(deeplift_rules, "_saved_indices", lambda module, out: None)
    b = cls(model).attribute(x, baselines=baseline, target=2)
    a = getattr(a, "attributions", a)
    b = getattr(b, "attributions", b)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_native_rules_stay_complete_on_the_fast_paths(data):
    x, baseline = data
    model = _pair(nn.MaxPool2d, inplace=True)
    result = DeepLift(model).attribute(x, baselines=baseline, target=0)
    with torch.no_grad():
        gap = model(x)[:, 0] - model(baseline)[:, 0]
    total = result.attributions.flatten(1).sum(1)
    torch.testing.assert_close(total, gap, rtol=1e-4, atol=1e-5)


def test_input_equal_to_baseline_takes_the_local_gradient_path():
    torch.manual_seed(2)
    model = _pair(nn.MaxPool2d, inplace=False)
    x = torch.randn(3, 2, 8, 8)
    baseline = x.clone()
    baseline[0] += 0.5  # example 0 differs, examples 1 and 2 equal their baseline
    result = DeepLift(model).attribute(x, baselines=baseline, target=1).attributions
    assert torch.isfinite(result).all()
    assert result[1:].abs().max() == 0
    assert result[0].abs().max() > 0
