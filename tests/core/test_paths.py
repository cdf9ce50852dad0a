"""Integration rules of :mod:`whybox.core.paths`: Gauss-Legendre accuracy and plan properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whybox.core.paths import RULES, _gauss_legendre, path_plan, path_plan_tensors
from whybox.core.validation import ParameterError
from whybox.methods import IntegratedGradients

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LARGE_N = 5000


def test_gauss_legendre_matches_numpy_leggauss_for_every_n_up_to_200():
    worst_nodes = worst_weights = 0.0
    for n in range(1, 201):
        ref_nodes, ref_weights = np.polynomial.legendre.leggauss(n)
        nodes, weights = _gauss_legendre(n)
        alphas, plan_weights = path_plan("gausslegendre", n)
        worst_nodes = max(
            worst_nodes,
            np.abs(nodes - ref_nodes).max(),
            np.abs(alphas - (ref_nodes + 1) / 2).max(),
        )
        worst_weights = max(
            worst_weights,
            np.abs(weights - ref_weights).max(),
            np.abs(plan_weights - ref_weights / 2).max(),
        )
    assert worst_nodes < 1e-13
    assert worst_weights < 1e-13


def _mp_reference(n, starts, mpmath):
    """Roots of P_n near ``starts`` and their weights, to 30 digits (recurrence + Newton)."""

    def legendre(t):
        prev, cur = mpmath.mpf(1), t
        for k in range(1, n):
            prev, cur = cur, ((2 * k + 1) * t * cur - k * prev) / (k + 1)
        return cur, prev

    roots, weights = [], []
    for start in starts:
        t = mpmath.mpf(float(start))
        for _ in range(3):
            p, p_prev = legendre(t)
            t -= p / (n * (p_prev - t * p) / (1 - t * t))
        p, p_prev = legendre(t)
        derivative = n * (p_prev - t * p) / (1 - t * t)
        roots.append(t)
        weights.append(2 / ((1 - t * t) * derivative**2))
    return roots, weights


def test_large_n_against_high_precision_reference():
    # numpy's own endpoint weights are off by ~1e-6 relative at n = 5000, so the reference
    # here is a 30-digit evaluation of the nodes next to -1 and in the middle.
    mpmath = pytest.importorskip("mpmath")
    nodes, weights = _gauss_legendre(LARGE_N)
    picks = [0, 1, 2, 3, LARGE_N // 2 - 1]
    with mpmath.workdps(30):
        roots, ref_weights = _mp_reference(LARGE_N, nodes[picks], mpmath)
        for i, root, ref_weight in zip(picks, roots, ref_weights):
            assert abs(float(root - mpmath.mpf(float(nodes[i])))) < 2e-16
            assert abs(float(mpmath.mpf(float(weights[i])) / ref_weight - 1)) < 1e-10


@SETTINGS
@given(n=st.integers(1, 600), rule=st.sampled_from(RULES))
def test_plan_properties(n, rule):
    alphas, weights = path_plan(rule, n)
    assert alphas.shape == weights.shape == (n,)
    assert alphas.dtype == weights.dtype == np.float64
    assert (alphas >= 0).all() and (alphas <= 1).all()
    assert (np.diff(alphas) > 0).all()
    assert (weights > 0).all()
    assert abs(math.fsum(weights) - 1.0) <= 1e-15
    assert abs(weights.sum() - 1.0) <= 1e-14


@pytest.mark.parametrize("rule", RULES)
def test_weights_sum_to_one_for_many_n(rule):
    for n in [*range(1, 130), 255, 256, 1000, 1001, 4097, LARGE_N]:
        _, weights = path_plan(rule, n)
        assert abs(math.fsum(weights) - 1.0) <= 1e-15, n


@SETTINGS
@given(n=st.integers(1, 600))
def test_gauss_legendre_is_exactly_symmetric(n):
    alphas, weights = path_plan("gausslegendre", n)
    assert (alphas + alphas[::-1] == 1.0).all()
    assert (weights == weights[::-1]).all()
    assert 0 < alphas[0] and alphas[-1] < 1
    if n % 2:
        assert alphas[n // 2] == 0.5
    nodes, raw = _gauss_legendre(n)
    assert (nodes == -nodes[::-1]).all() and (raw == raw[::-1]).all()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 16, 50, 123, 200])
def test_gauss_legendre_integrates_monomials_up_to_degree_2n_minus_1(n):
    alphas, weights = path_plan("gausslegendre", n)
    for k in range(2 * n):
        assert weights @ alphas**k == pytest.approx(1 / (k + 1), rel=1e-13, abs=0), k


@pytest.mark.parametrize("n", range(1, 9))
def test_gauss_legendre_error_on_degree_2n_is_the_textbook_constant(n):
    # For f = x^(2n) on [0, 1] the error of the n-point rule is exactly
    # (n!)^4 / ((2n + 1) ((2n)!)^2): a check with teeth beyond the exact degrees.
    alphas, weights = path_plan("gausslegendre", n)
    error = 1 / (2 * n + 1) - weights @ alphas ** (2 * n)
    expected = math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
    assert error == pytest.approx(expected, rel=1e-5)


def test_large_n_plan_is_exact_on_monomials_and_legendre_series():
    n = LARGE_N
    alphas, weights = path_plan("gausslegendre", n)
    # a^k for k ~ 1e4 loses ~k ulps to the rounding of a, hence the k-dependent tolerance.
    for k in (0, 1, 2, 3, 9, 100, 1001, 4000, 7777, 2 * n - 2, 2 * n - 1):
        assert weights @ alphas**k == pytest.approx(1 / (k + 1), rel=1e-13 + k * 1e-15), k
    # A random series sum_k c_k P_k(2a - 1) of degree 2n - 1 integrates to c_0 over [0, 1].
    coefficients = np.random.default_rng(0).standard_normal(2 * n)
    values = np.polynomial.legendre.legval(2 * alphas - 1, coefficients)
    assert weights @ values == pytest.approx(coefficients[0], abs=1e-12)
    # ... and P_{2n} does not integrate to 0: the same check fails one degree higher.
    top = np.zeros(2 * n + 1)
    top[-1] = 1.0
    assert abs(weights @ np.polynomial.legendre.legval(2 * alphas - 1, top)) > 1e-4


def test_plans_are_cached_and_read_only():
    for rule in RULES:
        alphas, weights = path_plan(rule, 9)
        assert path_plan(rule, 9)[0] is alphas
        with pytest.raises(ValueError):
            alphas[0] = 0.25
        with pytest.raises(ValueError):
            weights[0] = 0.25


def test_plan_tensors_follow_dtype_and_device():
    alphas, weights = path_plan_tensors(
        "gausslegendre", 7, dtype=torch.float32, device=torch.device("cpu"), owner="X"
    )
    assert alphas.dtype == weights.dtype == torch.float32
    expected = path_plan("gausslegendre", 7)
    assert torch.equal(alphas, torch.tensor(expected[0], dtype=torch.float32))
    alphas, _ = path_plan_tensors(
        "riemann_left", 4, dtype=torch.int64, device=torch.device("cpu"), owner="X"
    )
    assert alphas.dtype == torch.get_default_dtype()


def test_bad_rule_error_names_rule_by_default():
    cpu = torch.device("cpu")
    with pytest.raises(
        ParameterError, match=r"^The 'rule' parameter of Owner must be one of \['riemann_left'"
    ) as caught:
        path_plan_tensors("simpson", 5, dtype=torch.float64, device=cpu, owner="Owner")
    assert caught.value.parameter == "rule"
    with pytest.raises(ParameterError, match="'method' parameter of Owner") as caught:
        path_plan_tensors(
            "simpson", 5, dtype=torch.float64, device=cpu, owner="Owner", parameter="method"
        )
    assert caught.value.parameter == "method"
    with pytest.raises(ParameterError, match="'n_steps' parameter of Owner"):
        path_plan_tensors("gausslegendre", 0, dtype=torch.float64, device=cpu, owner="Owner")


def test_native_integrated_gradients_reports_its_rule_parameter():
    model = torch.nn.Linear(3, 1)
    with pytest.raises(ParameterError, match="'rule' parameter of IntegratedGradients"):
        IntegratedGradients(model).attribute(torch.ones(2, 3), rule="simpson")
