"""LIME's per-example lasso fits run back to back (``WeightedLasso._fit_checked_groups``)
give, bit for bit, what one ``_fit_checked`` call per example gives, and leave the
surrogate as the last of those calls does."""

from __future__ import annotations

import warnings

import pytest
import torch

from whybox.core.surrogate import WeightedLasso
from whybox.core.surrogate.linear import LinearSurrogate


def _groups(n: int, groups: int, p: int, *, shared: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, p) if shared else (n, groups, p)
    X = (torch.rand(shape, generator=g) > 0.5).double()
    y = torch.randn(n, groups, generator=g).float().double()
    w = (torch.rand(n, groups, generator=g) + 0.05).float().double()
    return X, y, w


def _one_by_one(model: WeightedLasso, X, y, w, dtype):
    # the base class's loop: one _fit_checked per group
    return LinearSurrogate._fit_checked_groups(model, X, y, w, dtype)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_groups_equal_one_fit_per_group_bit_for_bit(shared, dtype, fit_intercept):
    X, y, w = _groups(150, 7, 9, shared=shared)
    fast, slow = (
        WeightedLasso(0.01, fit_intercept=fit_intercept),
        WeightedLasso(0.01, fit_intercept=fit_intercept),
    )
    got = fast._fit_checked_groups(X, y, w, dtype)
    want = _one_by_one(slow, X, y, w, dtype)
    assert got.dtype == dtype and got.shape == (7, 9)
    assert torch.equal(got, want)
    # the surrogate holds the last group's fit, as after the loop
    assert torch.equal(fast.representation(), slow.representation())
    assert torch.equal(fast.bias(), slow.bias())
    assert fast.n_iter_ == slow.n_iter_
    # and the result does not share the surrogate's memory
    got[-1].fill_(123.0)
    assert not bool((fast.representation() == 123.0).any())


def test_non_contiguous_columns_are_read_as_a_single_fit_reads_them():
    X, y, w = _groups(120, 5, 6, shared=False, seed=1)
    yt = y.t().contiguous().t()  # (n, G) with column-major strides
    wt = w.t().contiguous().t()
    got = WeightedLasso(0.02)._fit_checked_groups(X, yt, wt, torch.float64)
    want = _one_by_one(WeightedLasso(0.02), X, yt, wt, torch.float64)
    assert torch.equal(got, want)


def test_a_subclass_with_its_own_solve_keeps_the_one_by_one_path():
    calls = []

    class Halved(WeightedLasso):
        def _solve(self, X, y, sample_weight, **kwargs):
            calls.append(1)
            coef, intercept = super()._solve(X, y, sample_weight, **kwargs)
            return coef / 2, intercept

    X, y, w = _groups(100, 3, 5, shared=True, seed=2)
    got = Halved(0.01)._fit_checked_groups(X, y, w, torch.float64)
    want = _one_by_one(WeightedLasso(0.01), X, y, w, torch.float64) / 2
    assert len(calls) == 3
    torch.testing.assert_close(got, want)


def test_a_group_that_does_not_converge_warns_as_its_own_fit_does():
    X, y, w = _groups(200, 3, 12, shared=False, seed=3)
    with warnings.catch_warnings(record=True) as fast_w:
        warnings.simplefilter("always")
        got = WeightedLasso(1e-6, max_iter=2, tol=1e-12)._fit_checked_groups(X, y, w, torch.float64)
    with warnings.catch_warnings(record=True) as slow_w:
        warnings.simplefilter("always")
        want = _one_by_one(WeightedLasso(1e-6, max_iter=2, tol=1e-12), X, y, w, torch.float64)
    assert torch.equal(got, want)
    assert len(fast_w) == len(slow_w) == 3
    assert all("did not converge" in str(m.message) for m in fast_w)


def test_lime_batch_equals_single_examples_with_the_lasso():
    from torch import nn

    from whybox.methods import Lime

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x = torch.randn(5, 6)
    lime = Lime(model, interpretable_model=WeightedLasso(0.01))
    batch = lime.attribute(x, target=1, n_samples=64, seed=3).attributions
    alone = torch.cat(
        [
            lime.attribute(x[i : i + 1], target=1, n_samples=64, seed=3).attributions
            for i in range(5)
        ]
    )
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)
