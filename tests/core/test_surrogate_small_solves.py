"""The tiny-job solvers of the surrogate family give the numbers of the general ones:
the lasso's moments computed in numpy equal the torch ones to rounding (and never depend
on memory layout), and KernelSHAP's normal-equations solve equals the SVD solve to
rounding, falling back to it wherever it could not be as exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import whybox.core.surrogate.fit as fit
from whybox.core.masks import kernel_shap_coalitions
from whybox.core.surrogate import solve_constrained_wls
from whybox.methods import Lime


def _problems(n_groups: int, n: int, p: int, seed: int, *, shared: bool = True):
    """LIME-like data: 0/1 design (shared or one per group), outputs, positive weights."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, p) if shared else (n, n_groups, p)
    X = (torch.rand(shape, generator=g) > 0.5).double()
    if p > 1:
        X[..., 0] = 1.0  # a constant column: zero after centering (skipped by the sweeps)
    coef = torch.randn(p, n_groups, generator=g, dtype=torch.float64)
    Y = (X @ coef if shared else (X * coef.T).sum(-1)) + 0.1 * torch.randn(
        n, n_groups, generator=g, dtype=torch.float64
    )
    W = torch.rand(n, n_groups, generator=g, dtype=torch.float64) + 0.05
    return X, Y, W


def _torch_moments(monkeypatch, X, y, w, fit_intercept):
    with monkeypatch.context() as patch:
        patch.setattr(fit, "_on_cpu", lambda *tensors: False)  # the torch path
        return fit._lasso_moments(X, y, w, fit_intercept, "c")


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("p", [1, 4, 12, 40])
def test_lasso_moments_in_numpy_equal_the_torch_ones_to_rounding(monkeypatch, p, fit_intercept):
    X, Y, W = _problems(3, 80, p, seed=p)
    y, w = Y[:, :2], W[:, 0]
    fast = fit._lasso_moments(X, y, w, fit_intercept, "c")
    slow = _torch_moments(monkeypatch, X, y, w, fit_intercept)
    for a, b in zip(fast, slow):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float64
        scale = max(float(b.abs().max()), 1.0)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14 * scale)
    # the definitions: V-weighted, centred second moments
    v = w / w.sum()
    Xc = X - v @ X if fit_intercept else X
    yc = y - v @ y if fit_intercept else y
    torch.testing.assert_close(torch.as_tensor(fast[0]), (Xc * v[:, None]).T @ Xc)
    torch.testing.assert_close(torch.as_tensor(fast[2]), (v[:, None] * yc * yc).sum(0))


def test_lasso_moments_do_not_depend_on_where_the_data_lie():
    # the same numbers for copies at other offsets in memory (SIMD kernels must not
    # give alignment-dependent results: LIME's results are reproducible)
    X, Y, W = _problems(2, 200, 12, seed=5)
    reference = fit._lasso_moments(X, Y[:, :1], W[:, 0], True, "c")
    for offset in range(1, 8):

        def moved(t, offset=offset):
            buffer = torch.empty(t.numel() + 8, dtype=t.dtype)
            view = buffer[offset : offset + t.numel()].view(t.shape)
            return view.copy_(t)

        got = fit._lasso_moments(moved(X), moved(Y[:, :1]), moved(W[:, 0]), True, "c")
        for a, b in zip(got, reference):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_lasso_sample_weights_summing_to_zero_are_a_clear_error():
    X, Y, W = _problems(1, 20, 3, seed=0)
    with pytest.raises(ValueError, match="sum to 0"):
        fit._lasso_moments(X, Y, torch.zeros(20, dtype=torch.float64), True, "WeightedLasso.fit")


def test_lime_batch_results_equal_each_example_explained_alone():
    # the samples are shared by the examples (one seed): example g's surrogate is fitted
    # on the same data in the batch and alone, so the coefficients are identical
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double().eval()  # rows independent of their batch
    x = torch.randn(5, 6, dtype=torch.float64)
    lime = Lime(model)
    batch = lime.attribute(x, target=1, n_samples=70, seed=2, chunk_size=10**6).attributions
    for g in range(5):
        alone = lime.attribute(x[g : g + 1], target=1, n_samples=70, seed=2).attributions
        torch.testing.assert_close(batch[g : g + 1], alone, rtol=0, atol=1e-15)


def _svd_solve(monkeypatch, X, y, w, total):
    with monkeypatch.context() as patch:
        patch.setattr(fit, "_NORMAL_MAX_FEATURES", 0)  # every problem on the SVD path
        return fit._constrained_checked(X, y, w, total)


@pytest.mark.parametrize("m", [2, 5, 12, 20])
@pytest.mark.parametrize("budget", [40, 200, 1000])
def test_kernel_shap_normal_equations_equal_the_svd_solve(monkeypatch, m, budget):
    design = kernel_shap_coalitions(m, budget, torch.Generator().manual_seed(m + budget))
    X = design.masks.double()
    g = torch.Generator().manual_seed(1)
    y = torch.randn(X.shape[0], 3, generator=g, dtype=torch.float64) * 5
    total = torch.randn(3, generator=g, dtype=torch.float64)
    got = fit._constrained_checked(X, y, design.weights, total)
    expected = _svd_solve(monkeypatch, X, y, design.weights, total)
    if budget >= 10 * m:  # a well-conditioned design: the normal equations' path is taken
        w = design.weights.numpy()
        assert fit._constrained_normal(X.numpy(), y.numpy(), w, total.numpy()) is not None
    # either path agrees with the SVD to rounding, with the efficiency constraint kept
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))
    torch.testing.assert_close(got.sum(dim=1), total, rtol=0, atol=1e-12)


def test_kernel_shap_normal_equations_recover_a_linear_game_exactly():
    # v(S) = sum_{j in S} c_j: the regression's exact solution is c
    g = torch.Generator().manual_seed(0)
    for m in (2, 7, 15):
        design = kernel_shap_coalitions(m, 300, g)
        X = design.masks.double()
        c = torch.randn(m, dtype=torch.float64, generator=g)
        got = solve_constrained_wls(X, X @ c, design.weights, c.sum())
        torch.testing.assert_close(got, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", ["rank_deficient", "ill_conditioned", "zero_weights"])
def test_kernel_shap_falls_back_to_the_svd_where_normal_equations_lose_digits(monkeypatch, case):
    g = torch.Generator().manual_seed(2)
    if case == "rank_deficient":  # fewer samples than free coefficients
        X = (torch.rand(4, 9, generator=g) > 0.5).double()
        w = torch.rand(4, generator=g, dtype=torch.float64)
    elif case == "ill_conditioned":  # columns on wildly different scales
        X = torch.rand(50, 6, generator=g, dtype=torch.float64) * torch.logspace(0, 5, 6).double()
        w = torch.rand(50, generator=g, dtype=torch.float64)
    else:  # every weight but three is zero: too few effective samples
        X = (torch.rand(30, 6, generator=g) > 0.5).double()
        w = torch.zeros(30, dtype=torch.float64)
        w[:3] = 1.0
    y = torch.randn(X.shape[0], 2, generator=g, dtype=torch.float64)
    total = torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert fit._constrained_normal(X.numpy(), y.numpy(), w.numpy(), total.numpy()) is None
    got = fit._constrained_checked(X, y, w, total)
    assert torch.equal(got, _svd_solve(monkeypatch, X, y, w, total))  # the SVD's own numbers
    assert np.isfinite(got.numpy()).all()


def test_kernel_shap_int_seeds_reuse_the_design_of_a_generator_seeded_alike():
    # an int seed means a fresh generator seeded with it: the (cached) design is the one a
    # generator seeded alike draws, on every call, whatever callers do with results
    from whybox.methods import KernelShap

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 2)).double().eval()
    x = torch.randn(3, 7, dtype=torch.float64)
    method = KernelShap(model)
    first = method.attribute(x, target=1, n_samples=60, seed=11)
    expected = first.attributions.clone()
    first.attributions.mul_(0.0)
    first.extras["feature_attributions"].add_(5.0)
    for seed in (11, np.int64(11), torch.Generator().manual_seed(11)):
        again = method.attribute(x, target=1, n_samples=60, seed=seed)
        assert torch.equal(again.attributions, expected)
    other = method.attribute(x, target=1, n_samples=60, seed=12).attributions
    assert not torch.equal(other, expected)  # the seed still matters
