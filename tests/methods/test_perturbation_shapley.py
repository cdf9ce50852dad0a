"""Shapley methods on games with known values: exact answers, axioms, convergence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from whybox.core.validation import ParameterError
from whybox.methods.shapley import KernelShap, ShapleyValues, ShapleyValueSampling


def _game(values: torch.Tensor):
    """A model playing the cooperative game ``values`` (indexed by the coalition's bits):
    feature ``i`` of a row is present when it is 1 (inputs 1, baseline 0)."""
    m = int(math.log2(values.numel()))

    def forward(x: torch.Tensor) -> torch.Tensor:
        bits = (x > 0.5).long()
        code = (bits * (2 ** torch.arange(m))).sum(dim=1)
        return values.to(x.dtype)[code]

    return forward


def _textbook_shapley(values: torch.Tensor) -> torch.Tensor:
    """Average marginal contribution over all orderings (float64 reference)."""
    m = int(math.log2(values.numel()))
    phi = torch.zeros(m, dtype=torch.float64)
    for order in itertools.permutations(range(m)):
        code = 0
        for feature in order:
            phi[feature] += values[code | (1 << feature)] - values[code]
            code |= 1 << feature
    return phi / math.factorial(m)


def _random_game(m: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2**m, generator=generator, dtype=torch.float64)


def test_known_game_two_players():
    # f = 2a + 2b + 6ab with zero baseline: each player gets 2 + 6 / 2 = 5
    def f(x):
        return 2 * x[:, 0] + 2 * x[:, 1] + 6 * x[:, 0] * x[:, 1]

    x = torch.ones(1, 2)
    expected = torch.tensor([[5.0, 5.0]])
    torch.testing.assert_close(ShapleyValues(f).attribute(x).attributions, expected)
    torch.testing.assert_close(KernelShap(f).attribute(x, n_samples=4).attributions, expected)
    sampled = ShapleyValueSampling(f).attribute(x, n_samples=400, seed=0).attributions
    torch.testing.assert_close(sampled, expected, atol=0.5, rtol=0)
    # efficiency holds exactly along every ordering, whatever the sample size
    assert float(sampled.sum()) == pytest.approx(10.0, abs=1e-5)


@pytest.mark.parametrize("m", [3, 5])
def test_exact_values_match_textbook_definition(m):
    values = _random_game(m, seed=m)
    x = torch.ones(1, m, dtype=torch.float64)
    exact = _textbook_shapley(values)
    result = ShapleyValues(_game(values)).attribute(x)
    torch.testing.assert_close(result.attributions[0], exact)
    assert result.delta.abs().max() < 1e-12
    # KernelShap with the full budget enumerates every coalition: exact too
    kernel = KernelShap(_game(values)).attribute(x, n_samples=2**m, seed=0)
    torch.testing.assert_close(kernel.attributions[0], exact)


@pytest.mark.parametrize(
    "method, options",
    [
        (ShapleyValues, {}),
        (ShapleyValueSampling, {"n_samples": 3, "seed": 1}),
        (KernelShap, {"n_samples": 12, "seed": 1}),
    ],
)
def test_efficiency(method, options):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(4, 6)
    baseline = torch.randn(1, 6)
    result = method(model).attribute(x, baselines=baseline, target=2, **options)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(baseline)[:, 2]
    torch.testing.assert_close(result.attributions.sum(dim=1), gap, atol=1e-5, rtol=1e-5)
    assert result.delta.abs().max() < 1e-5


def test_symmetry_and_dummy_axioms():
    # players 0 and 1 are symmetric, player 3 is a dummy
    def f(x):
        a, b, c, _ = x.unbind(dim=1)
        return a * b + 3 * c + a * c + b * c

    x = torch.ones(2, 4, dtype=torch.float64)
    exact = ShapleyValues(f).attribute(x).attributions
    assert torch.equal(exact[:, 0], exact[:, 1])
    assert torch.all(exact[:, 3] == 0)
    kernel = KernelShap(f).attribute(x, n_samples=16, seed=0).attributions
    torch.testing.assert_close(kernel, exact)
    sampled = ShapleyValueSampling(f).attribute(x, n_samples=50, seed=0).attributions
    assert torch.all(sampled[:, 3] == 0)  # a dummy never contributes along any ordering
    torch.testing.assert_close(sampled[:, 0], sampled[:, 1], atol=0.3, rtol=0)


def test_sampling_methods_converge_to_exact_values():
    m = 8
    values = _random_game(m, seed=11)
    x = torch.ones(1, m, dtype=torch.float64)
    exact = _textbook_shapley(values)

    def error(method, **options):
        errors = []
        for seed in range(3):
            phi = method(_game(values)).attribute(x, seed=seed, **options).attributions[0]
            errors.append(float((phi - exact).norm()))
        return sum(errors) / len(errors)

    assert error(ShapleyValueSampling, n_samples=400) < 0.5 * error(
        ShapleyValueSampling, n_samples=10
    )
    assert error(KernelShap, n_samples=200) < 0.5 * error(KernelShap, n_samples=20)
    # the full budget is exact
    assert error(KernelShap, n_samples=2**m) < 1e-10


def test_feature_groups_and_absent_ids():
    # ids 0 and 2 only (1 is absent): two players, each the sum of its elements
    def f(x):
        return x.sum(dim=1) + x[:, 0] * x[:, 3]

    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[0, 0, 2, 2]])
    result = ShapleyValues(f).attribute(x, feature_mask=mask)
    # v({0}) = 3, v({2}) = 7, v(all) = 14: phi_0 = (3 + 7) / 2 = 5, phi_2 = 9
    torch.testing.assert_close(result.attributions, torch.tensor([[5.0, 5.0, 9.0, 9.0]]))
    assert result.extras["feature_attributions"][0, 1] == 0


def test_clear_errors():
    f = lambda x: x.sum(dim=1)  # noqa: E731
    with pytest.raises(ParameterError, match="'feature_mask' parameter of ShapleyValues"):
        ShapleyValues(f).attribute(torch.ones(1, 30))
    with pytest.raises(ParameterError, match="'n_samples' parameter of KernelShap"):
        KernelShap(f).attribute(torch.ones(1, 3), n_samples=1)
    with pytest.raises(ParameterError, match="'n_samples' parameter of ShapleyValueSampling"):
        ShapleyValueSampling(f).attribute(torch.ones(1, 3), n_samples=0)
