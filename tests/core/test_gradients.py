"""core/gradients.py on closed forms: row gradients, path integration, taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox.core.call import prepare_call
from whybox.core.gradients import path_gradients, row_gradients
from whybox.core.paths import path_plan_tensors
from whybox.core.scope import LayerSite


def _square_sum(x):
    # f(x) = sum_i x_i^2, so grad f = 2x (linear in x: every rule with weights summing to
    # 1 and symmetric nodes integrates it exactly)
    return (x**2).flatten(1).sum(1)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, "auto"])
def test_row_gradients_equal_the_analytic_gradient(chunk_size):
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    call = prepare_call("T", _square_sum, x, chunk_size=chunk_size)
    (grad,), outputs = row_gradients(call)
    torch.testing.assert_close(grad, 2 * x)
    torch.testing.assert_close(outputs, _square_sum(x))


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle", "riemann_trapezoid"])
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_path_gradients_integrate_the_gradient_along_the_path(rule, chunk_size):
    # mean over the path of grad f(b + a (x - b)) = 2 * (b + (x - b) / 2) = x + b
    torch.manual_seed(1)
    x = torch.randn(4, 6, dtype=torch.float64)
    b = torch.randn(4, 6, dtype=torch.float64)
    call = prepare_call("T", _square_sum, x, chunk_size=chunk_size)
    alphas, weights = path_plan_tensors(rule, 9, dtype=torch.float64, device=x.device, owner="T")
    (mean_grad,) = path_gradients(call, (b,), call.tensors, alphas, weights)
    torch.testing.assert_close(mean_grad, x + b)
    # completeness: (x - b) * mean gradient sums to f(x) - f(b)
    total = ((x - b) * mean_grad).sum(1)
    torch.testing.assert_close(total, _square_sum(x) - _square_sum(b))


def test_tapped_gradients_are_the_layer_gradients_and_record_its_values():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    site = LayerSite.of(model[1], owner="T")
    call = prepare_call("T", model, x, target=0, chunk_size=2)
    values: list = []
    (grad,), _ = row_gradients(call, tap=site.capture, record=values)
    hidden = torch.tanh(model[0](x))
    torch.testing.assert_close(values[0], hidden)
    # d out / d tanh-output = the last layer's weight, for every row
    torch.testing.assert_close(grad, model[2].weight.expand(6, 4))
