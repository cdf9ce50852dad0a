"""The lasso groups fitted together (``host_lasso_groups``'s batched path) give, bit for
bit, what the one-by-one path gives: coefficients, intercepts, the number of sweeps and
the non-convergence warnings, on random problems and on the corner cases the batched
sweeps hand back to the scalar code (``-0.0`` coefficients, overflow, skipped columns),
and through LIME end to end."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import whybox.attr as facade
from whybox.core.surrogate import fit
from whybox.methods import Lime


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape and the same float64 bits (signed zeros and NaNs included)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def _both_paths(monkeypatch, X, y, w, **kwargs):
    """``host_lasso_groups`` batched, then forced one by one, called from one line (the
    warnings' locations compare); each with the warnings it gave."""
    results = []
    for one_by_one in (False, True):
        with monkeypatch.context() as patch:
            if one_by_one:
                patch.setattr(fit, "_BATCH_MIN_GROUPS", sys.maxsize)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fit.host_lasso_groups(X, y, w, caller="T", **kwargs)
        seen = [(str(m.message), m.category, m.filename, m.lineno) for m in caught]
        results.append((out, seen))
    return results


def _assert_same(monkeypatch, X, y, w, **kwargs) -> int:
    (got, got_w), (want, want_w) = _both_paths(monkeypatch, X, y, w, **kwargs)
    assert _bits_equal(got[0], want[0]), "coefficients"
    assert _bits_equal(got[1], want[1]), "intercepts"
    assert got[2] == want[2], "n_iter"
    assert got_w == want_w, "warnings"
    return len(want_w)


def _problem(rng: np.random.Generator):
    n = int(rng.choice([1, 2, 5, 9, 30, 200]))
    p = int(rng.choice([1, 2, 12, 40]))
    groups = int(rng.choice([0, 1, 2, 3, 5, 12, 33]))
    shared = bool(rng.integers(2))
    shape = (n, p) if shared else (n, groups, p)
    if rng.integers(2):
        X = (rng.random(shape) > 0.5).astype(np.float64)  # LIME's 0/1 designs
    else:
        X = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2)
    if p > 1 and rng.integers(3) == 0:
        X[..., 0] = 1.0  # constant: d <= 0 after centering
    if p > 2 and rng.integers(3) == 0:
        X[..., 2] = X[..., 1]  # duplicate columns
    y = rng.standard_normal((n, groups))
    if rng.integers(4) == 0:
        y = np.asfortranarray(y)  # column-major targets: strided column views
    w = rng.random((n, groups)) + 0.01
    if rng.integers(3) == 0:
        w[rng.random((n, groups)) < 0.4] = 0.0  # zero weights
    if n:
        w[0] = 0.5  # every group's weights sum to > 0
    if p > 1 and not shared and groups and rng.integers(4) == 0:
        w[:, 0] = 0.0
        w[0, 0] = 1.0  # one sample only: every column of group 0 is constant
    kwargs = dict(
        alpha=float(rng.choice([0.0, 1e-3, 0.01, 1.0])),
        fit_intercept=bool(rng.integers(2)),
        max_iter=int(rng.choice([1, 2, 3, 5, 1000])),
        tol=float(rng.choice([0.0, 1e-4, 1e-12])),
    )
    return X, y, w, kwargs


@pytest.mark.parametrize("seed", range(8))
def test_random_problems_batched_equal_one_by_one_bit_for_bit(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    warned = 0
    for _ in range(40):
        X, y, w, kwargs = _problem(rng)
        warned += _assert_same(monkeypatch, X, y, w, **kwargs)
    assert warned > 0  # some groups stopped at max_iter before converging


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.01, 1.0])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_lime_sized_groups_take_the_batched_path_and_match(
    monkeypatch, alpha, shared, fit_intercept
):
    rng = np.random.default_rng(7)
    n, groups, p = 200, 33, 12
    X = (rng.random((n, p) if shared else (n, groups, p)) > 0.5).astype(np.float64)
    y = rng.standard_normal((n, groups))
    w = rng.random((n, groups))
    calls = []
    real = fit._sweep_groups

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fit, "_sweep_groups", spy)
    kwargs = dict(alpha=alpha, fit_intercept=fit_intercept, tol=1e-4)
    _assert_same(monkeypatch, X, y, w, max_iter=1000, **kwargs)
    # and groups that do not converge: one warning each, in order, as one by one
    assert _assert_same(monkeypatch, X, y, w, max_iter=1, **kwargs) > 0 or alpha >= 1.0
    assert calls  # the batched sweeps ran


def test_moments_of_the_groups_equal_each_groups_own_bit_for_bit():
    rng = np.random.default_rng(11)
    for trial in range(120):
        n = int(rng.choice([1, 2, 7, 8, 9, 129, 300]))
        p = int(rng.choice([1, 2, 3, 12, 40]))
        groups = int(rng.choice([1, 2, 5, 33]))
        shared = trial % 2 == 0
        X = rng.standard_normal((n, p) if shared else (n, groups, p))
        wide = rng.standard_normal((n, 2 * groups))
        y = wide[:, ::2] if trial % 3 == 0 else np.asfortranarray(wide[:, :groups])
        w = (
            np.asfortranarray(rng.random((n, groups)))
            if trial % 5 == 0
            else rng.random((n, groups))
        )
        w += 0.01
        for fit_intercept in (True, False):
            got = fit._host_lasso_moments_groups(X, y, w, fit_intercept)
            assert got is not None
            for g in range(groups):
                one = fit._host_lasso_moments(
                    X if shared else X[:, g], y[:, g : g + 1], w[:, g], fit_intercept, "T"
                )
                gram, xty, yty, x_mean, y_mean = one
                assert _bits_equal(got[0][g], gram)
                assert _bits_equal(got[1][g], xty[:, 0])
                assert _bits_equal(got[2][g], yty[0])
                assert _bits_equal(got[3][g], x_mean)
                assert _bits_equal(got[4][g], y_mean[0])


def _scalar(gram, xty, yty, alpha, **kwargs):
    out = [fit._lasso_cd(gram[g], xty[g], float(yty[g]), alpha, **kwargs) for g in range(len(xty))]
    return (
        np.array([o[0] for o in out]).reshape(xty.shape),
        np.array([o[1] for o in out]),
        np.array([o[2] for o in out]),
    )


def _assert_cd_same(gram, xty, yty, alpha, **kwargs):
    got = fit._lasso_cd_groups(gram, xty, yty, alpha, **kwargs)
    want = _scalar(gram, xty, yty, alpha, **kwargs)
    assert _bits_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])
    assert _bits_equal(got[2], want[2])
    return got


def _random_moments(rng, groups, p):
    A = rng.standard_normal((groups, 40, p))
    gram = np.einsum("gni,gnj->gij", A, A) / 40
    xty = rng.standard_normal((groups, p))
    return gram, xty, rng.random(groups) + 1.0


def test_a_minus_zero_coefficient_is_fitted_again_by_the_scalar_code():
    # alpha = 0, rho the smallest negative subnormal, d = 4: rho / d rounds to -0.0, which
    # the scalar code does not write over its +0.0 (-0.0 != 0.0 is false)
    rng = np.random.default_rng(0)
    groups, p = 12, 3
    gram, xty, yty = _random_moments(rng, groups, p)
    gram[:5, 0, :] = gram[:5, :, 0] = 0.0
    gram[:5, 0, 0] = 4.0
    xty[:5, 0] = -5e-324
    got = _assert_cd_same(gram, xty, yty, 0.0, max_iter=50, tol=1e-6)
    assert not np.signbit(got[0][:5, 0]).any()  # the scalar code's +0.0 kept


def test_overflowing_coefficients_are_fitted_again_by_the_scalar_code(monkeypatch):
    # xty / d overflows to inf, then inf - inf: NaN, which the scalar soft threshold turns
    # into 0.0 and the arrays' clip keeps
    groups, p = 12, 3
    gram = np.eye(p)[None].repeat(groups, axis=0)
    gram[:4, 1, 1] = 1e-300
    xty = np.ones((groups, p))
    xty[:4, 1] = 1e10
    yty = np.full(groups, 3.0)
    calls = []
    real = fit._lasso_cd

    def spy(*args, **kwargs):
        calls.append(kwargs.get("state"))
        return real(*args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the arrays' overflow does not warn
        got = _assert_cd_same(gram, xty, yty, 0.01, max_iter=20, tol=1e-4)
        monkeypatch.setattr(fit, "_lasso_cd", spy)
        fit._lasso_cd_groups(gram, xty, yty, 0.01, max_iter=20, tol=1e-4)
    assert calls == [None] * 4  # the four overflowing groups, from the start
    assert np.isnan(got[2][:4]).all()


def test_skipped_columns_signed_zeros_and_edge_settings():
    rng = np.random.default_rng(2)
    for groups in (10, 17, 40):
        for p in (1, 2, 12, 40):
            gram, xty, yty = _random_moments(rng, groups, p)
            if p > 1:
                gram[::3, 1, :] = gram[::3, :, 1] = 0.0  # d == 0: the coordinate is skipped
                xty[::3, 1] = 0.0
            xty[1::4] *= -0.0  # signed zeros among the targets' moments
            for alpha in (0.0, 1e-3, 1.0):
                settings = [dict(max_iter=1, tol=1e-4), dict(max_iter=3, tol=0.0)]
                if p <= 12:  # (long runs of the larger, ill-conditioned ones are slow)
                    settings.append(dict(max_iter=200, tol=1e-4))
                for kwargs in settings:
                    _assert_cd_same(gram, xty, yty, alpha, **kwargs)


def test_a_layout_the_batched_path_cannot_reproduce_is_fitted_one_by_one(monkeypatch):
    rng = np.random.default_rng(3)
    X = np.asfortranarray((rng.random((60, 6, 4)) > 0.5).astype(np.float64))
    y, w = rng.standard_normal((60, 6)), rng.random((60, 6))
    monkeypatch.setattr(fit, "_sweep_groups", None)  # would fail if called
    _assert_same(monkeypatch, X, y, w, alpha=0.01, fit_intercept=True, max_iter=100, tol=1e-4)
    columns = [y[:, g : g + 1] for g in range(6)]
    _assert_same(monkeypatch, X, columns, w, alpha=0.01, fit_intercept=True, max_iter=100, tol=1e-4)


def test_a_zero_weight_sum_raises_as_one_by_one(monkeypatch):
    rng = np.random.default_rng(4)
    X, y, w = rng.standard_normal((30, 5)), rng.standard_normal((30, 6)), rng.random((30, 6))
    w[:, 3] = 0.0
    with pytest.raises(ValueError, match="sum to 0"):
        fit.host_lasso_groups(
            X, y, w, alpha=0.01, fit_intercept=True, max_iter=10, tol=1e-4, caller="T"
        )


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


def _count_batched(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = fit._host_lasso_groups_batched

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fit, "_host_lasso_groups_batched", spy)
    return calls


def test_native_lime_batch_equals_single_calls_and_the_one_by_one_fits(monkeypatch):
    model = _mlp()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    lime = Lime(model)
    calls = _count_batched(monkeypatch)
    batch = lime.attribute(x, target=1, n_samples=100, seed=3).attributions
    assert calls
    alone = torch.cat(
        [
            lime.attribute(x[i : i + 1], target=1, n_samples=100, seed=3).attributions
            for i in range(16)
        ]
    )
    assert torch.equal(batch, alone)
    monkeypatch.setattr(fit, "_BATCH_MIN_GROUPS", sys.maxsize)
    assert torch.equal(batch, lime.attribute(x, target=1, n_samples=100, seed=3).attributions)


def test_facade_lime_batch_equals_sequential_single_calls(monkeypatch):
    model = _mlp()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    method = facade.Lime(model)
    calls = _count_batched(monkeypatch)
    torch.manual_seed(7)
    batch = method.attribute(x, target=0, n_samples=100)
    assert calls
    torch.manual_seed(7)  # Lime attributes a batch sequentially: seed once
    alone = torch.cat([method.attribute(x[i : i + 1], target=0, n_samples=100) for i in range(16)])
    assert torch.equal(batch, alone)
    monkeypatch.setattr(fit, "_BATCH_MIN_GROUPS", sys.maxsize)
    torch.manual_seed(7)
    assert torch.equal(batch, method.attribute(x, target=0, n_samples=100))
