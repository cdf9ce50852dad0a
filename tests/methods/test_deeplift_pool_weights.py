"""The textbook max-pool rule's pooled-grid weights.

:func:`~whybox.methods.deeplift_rules._window_weights` computes both sides' weights at once
(the input rows' argmax and the references'), and
:class:`~whybox.methods.deeplift_rules._MaxPoolPairs` spreads them back to the rows they
belong to. Checked here: closed forms of a single window, and the general (spread, then
divide) path on a nonlinearity without a rule downstream, so the two rows of a pair carry
different gradients into the pool, with inputs equal to their baselines at about half the
positions (each row's own max-pool gradient there), for shapes that change between calls.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from _support import deeplift_general_pool_rules
from whybox.methods.deeplift import DeepLift


class _OneWindow(nn.Module):
    """One 2x2 window pooled to one value, returned as the only output."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x).flatten(1)


def _multipliers(x: Tensor, b: Tensor) -> Tensor:
    method = DeepLift(_OneWindow(), multiply_by_inputs=False)
    return method.attribute(x, baselines=b, target=0).attributions


def test_one_window_the_reference_side_carries_the_difference():
    # y = 3 at (0, 1); y_ref = 4 at (0, 0): the references' part y - top = -1 goes to
    # (0, 0), divided by x_in - x_ref = 1 - 4 there; the input rows' part top - y_ref is 0
    x = torch.tensor([[[[1.0, 3.0], [2.0, 0.0]]]], dtype=torch.float64)
    b = torch.tensor([[[[4.0, 0.0], [1.0, 1.0]]]], dtype=torch.float64)
    m = _multipliers(x, b)
    expected = torch.zeros_like(x)
    expected[0, 0, 0, 0] = -1.0 / -3.0
    torch.testing.assert_close(m, expected, rtol=0, atol=0)
    result = DeepLift(_OneWindow()).attribute(x, baselines=b, target=0)
    assert result.attributions.sum().item() == pytest.approx(3.0 - 4.0, abs=1e-15)


def test_one_window_the_input_side_carries_the_difference():
    # y = 5 at (1, 0) beats y_ref = 2 at (0, 1): all of 5 - 2 goes to (1, 0), divided by
    # x_in - x_ref = 5 - (-1) there
    x = torch.tensor([[[[0.0, 1.0], [5.0, 2.0]]]], dtype=torch.float64)
    b = torch.tensor([[[[0.5, 2.0], [-1.0, 1.0]]]], dtype=torch.float64)
    m = _multipliers(x, b)
    expected = torch.zeros_like(x)
    expected[0, 0, 1, 0] = 3.0 / 6.0
    torch.testing.assert_close(m, expected, rtol=0, atol=0)


def test_one_window_without_input_difference_uses_the_plain_gradient():
    # the input rows' argmax (0, 0) did not move (difference 0 < eps): there the input row
    # gets its own max-pool gradient, 1; the references win the window (7 at (0, 1)), so
    # their part 5 - 7 goes to (0, 1), divided by x_in - x_ref = 0 - 7 there
    x = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    b = torch.tensor([[[[5.0, 7.0], [0.0, -2.0]]]], dtype=torch.float64)
    m = _multipliers(x, b)
    expected = torch.zeros_like(x)
    expected[0, 0, 0, 0] = 1.0
    expected[0, 0, 0, 1] = -2.0 / -7.0
    torch.testing.assert_close(m, expected, rtol=0, atol=0)


def test_one_window_below_a_large_eps_uses_only_the_plain_gradient():
    # |x_in - x_ref| = 0.5 at the shared argmax (0, 0) is below eps = 1: the carried part
    # 3 - 2.5 is dropped there, the input row gets its own max-pool gradient, exactly 1
    x = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    b = torch.tensor([[[[2.5, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    m = DeepLift(_OneWindow(), multiply_by_inputs=False, eps=1.0)
    m = m.attribute(x, baselines=b, target=0).attributions
    expected = torch.zeros_like(x)
    expected[0, 0, 0, 0] = 1.0
    assert torch.equal(m, expected)


_general_rules = deeplift_general_pool_rules


class _PoolThenGelu(nn.Module):
    """GELU has no textbook rule: its plain gradient differs between the two rows of a pair,
    so the pool's backward gets different gradients for the input and reference rows. The
    pool sees the inputs themselves, so its multipliers are the returned ones."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.pool = nn.MaxPool2d(kernel, stride=stride)
        self.gelu = nn.GELU()
        self.head = nn.LazyLinear(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gelu(self.pool(x).flatten(1)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2)])
def test_rows_with_different_gradients_and_changing_shapes(dtype, kernel, stride):
    torch.manual_seed(12)
    for batch, side in ((3, 8), (5, 8), (2, 10), (3, 8)):  # a shape seen again at the end
        model = _PoolThenGelu(kernel, stride)
        model(torch.zeros(1, 2, side, side))  # materialise the lazy head
        model = model.to(dtype).eval()
        x = torch.randn(batch, 2, side, side, dtype=dtype)
        b = 0.3 * torch.randn(batch, 2, side, side, dtype=dtype)
        # about half the positions without input difference: there the multipliers are
        # each row's plain max-pool gradient (visible only in the multipliers)
        b = torch.where(torch.rand(b.shape) < 0.5, x, b)
        target = torch.arange(batch) % 3
        tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {}
        for by_inputs in (True, False):
            fast = DeepLift(model, multiply_by_inputs=by_inputs)
            general = DeepLift(model, multiply_by_inputs=by_inputs, rules=_general_rules())
            got = fast.attribute(x, baselines=b, target=target)
            expected = general.attribute(x, baselines=b, target=target)
            torch.testing.assert_close(got.attributions, expected.attributions, **tolerance)
            if by_inputs:  # GELU's plain gradient: not complete, the same delta
                torch.testing.assert_close(got.delta, expected.delta, **tolerance)
