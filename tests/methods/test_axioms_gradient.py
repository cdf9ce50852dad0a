"""Axioms and closed forms for the gradient family on analytic models."""

import pytest
import torch
from torch import nn

from whybox.core.paths import RULES, path_plan
from whybox.methods import GradientShap, InputXGradient, IntegratedGradients, Saliency


class Linear(nn.Module):
    def __init__(self, weight, bias=0.5):
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x):
        return x @ self.weight + self.bias


class PaperReLU(nn.Module):
    """The IG paper's example f(x) = 1 - ReLU(1 - x): gradient is 0 at x >= 1."""

    def forward(self, x):
        return 1 - torch.relu(1 - x).sum(dim=1)


def _mlp(dtype=torch.float64):
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 1)
    ).to(dtype)


@pytest.mark.parametrize("rule", RULES)
def test_path_weights_sum_to_one(rule):
    for n in (1, 2, 3, 7, 50):
        alphas, weights = path_plan(rule, n)
        assert len(alphas) == len(weights) == n
        assert abs(weights.sum() - 1.0) < 1e-12
        assert (alphas >= 0).all() and (alphas <= 1).all()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ig_exact_on_linear_model_with_every_rule(rule, dtype):
    weight = torch.tensor([1.5, -2.0, 0.25, 3.0], dtype=dtype)
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.0, -1.0, 4.0, 2.0]], dtype=dtype)
    base = torch.tensor([0.5, 0.0, 1.0, -1.0], dtype=dtype)
    result = IntegratedGradients(Linear(weight)).attribute(x, baselines=base, n_steps=3, rule=rule)
    expected = (x - base) * weight
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(result.attributions, expected, atol=tol, rtol=tol)
    assert result.attributions.dtype == dtype
    assert result.delta.abs().max() < tol * 10


def test_ig_paper_relu_model_closed_form():
    # f(x) = 1 - relu(1 - x) on x = 2 from 0: gradient is 1 on [0, 1] and 0 beyond, so
    # IG = 1 = f(2) - f(0), while the gradient at the input is 0 (IG is sensitive, saliency not).
    x = torch.tensor([[2.0]], dtype=torch.float64)
    ig = IntegratedGradients(PaperReLU()).attribute(x, n_steps=400, rule="riemann_middle")
    assert abs(ig.attributions.item() - 1.0) < 1e-2
    assert Saliency(PaperReLU()).attribute(x).attributions.item() == 0.0


def test_ig_completeness_and_delta_decreases_with_steps():
    model = _mlp()
    torch.manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64)
    deltas = []
    for n_steps in (2, 4, 8, 16):
        result = IntegratedGradients(model).attribute(x, n_steps=n_steps, rule="riemann_middle")
        deltas.append(result.delta.abs().max().item())
    assert all(b < a for a, b in zip(deltas, deltas[1:])), deltas
    exact = IntegratedGradients(model).attribute(x, n_steps=64)
    assert exact.delta.abs().max() < 1e-10  # Gauss-Legendre on a smooth model
    total = exact.attributions.sum(dim=1)
    f = model(x).squeeze(1) - model(torch.zeros_like(x)).squeeze(1)
    torch.testing.assert_close(total, f.detach(), atol=1e-9, rtol=0)


def test_ig_float64_matches_textbook_reference():
    model = _mlp()
    torch.manual_seed(1)
    x = torch.randn(3, 6, dtype=torch.float64)
    base = torch.randn(3, 6, dtype=torch.float64)
    n = 20
    # slow reference: one gradient per step, riemann_right
    reference = torch.zeros_like(x)
    for k in range(1, n + 1):
        point = (base + k / n * (x - base)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(point).sum(), point)
        reference += grad / n
    reference *= x - base
    got = IntegratedGradients(model).attribute(
        x, baselines=base, n_steps=n, rule="riemann_right", chunk_size=7
    )
    torch.testing.assert_close(got.attributions, reference, atol=1e-12, rtol=1e-12)


def test_ig_linearity_in_the_model():
    m1, m2 = _mlp(), _mlp()
    with torch.no_grad():
        for p in m2.parameters():
            p.mul_(-0.7)
    x = torch.randn(4, 6, dtype=torch.float64)

    def combo(z):
        return 2.0 * m1(z) + 3.0 * m2(z)

    a1 = IntegratedGradients(m1).attribute(x, n_steps=16).attributions
    a2 = IntegratedGradients(m2).attribute(x, n_steps=16).attributions
    a = IntegratedGradients(combo).attribute(x, n_steps=16).attributions
    torch.testing.assert_close(a, 2 * a1 + 3 * a2, atol=1e-12, rtol=1e-10)


def test_ig_symmetry_and_dummy():
    # f symmetric in features 0 and 1, independent of feature 2
    def model(z):
        return torch.sigmoid(z[:, 0] * z[:, 1]) + torch.sin(z[:, 0] + z[:, 1])

    x = torch.tensor([[0.7, 0.7, 5.0]], dtype=torch.float64)
    attributions = IntegratedGradients(model).attribute(x, n_steps=32).attributions
    assert abs(attributions[0, 0] - attributions[0, 1]) < 1e-12
    assert attributions[0, 2] == 0


def test_gradient_shap_completeness_in_expectation():
    # On a linear model every GradientSHAP draw is exact: attributions = (x - E[ref]) * w.
    weight = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    refs = torch.randn(10, 3, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    result = GradientShap(Linear(weight)).attribute(x, baselines=refs, n_samples=400, seed=0)
    assert result.delta.shape == (4 * 400,)
    assert result.delta.abs().max() < 1e-12
    expected = (x - refs.mean(0)) * weight
    torch.testing.assert_close(result.attributions, expected, atol=0.15, rtol=0)


def test_gradient_shap_is_reproducible_with_a_seed():
    model = _mlp()
    x = torch.randn(2, 6, dtype=torch.float64)
    refs = torch.randn(5, 6, dtype=torch.float64)
    a = GradientShap(model).attribute(x, baselines=refs, stdevs=0.1, seed=7).attributions
    b = GradientShap(model).attribute(x, baselines=refs, stdevs=0.1, seed=7).attributions
    c = GradientShap(model).attribute(x, baselines=refs, stdevs=0.1, seed=8).attributions
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_saliency_and_input_x_gradient_closed_form():
    weight = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 0.0]])
    model = Linear(weight, bias=0.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 2.0]])
    sal = Saliency(model).attribute(x, target=[0, 1]).attributions
    torch.testing.assert_close(sal, weight.T[[0, 1]].abs())
    raw = Saliency(model).attribute(x, target=0, abs=False).attributions
    torch.testing.assert_close(raw, weight[:, 0].expand(2, 3))
    ixg = InputXGradient(model).attribute(x, target=1).attributions
    torch.testing.assert_close(ixg, x * weight[:, 1])
