"""The short paths tiny LIME jobs take through the surrogates give the numbers of the long
ones: fitting checked data without re-checking it, the coordinate-descent sweeps on Python
floats, and the similarity kernel broadcast over originals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import whybox.core.surrogate.fit as fit
from whybox.core.surrogate import (
    WeightedLasso,
    WeightedLinearRegression,
    WeightedRidge,
    get_exp_kernel_similarity_function,
)
from whybox.methods import Lime


def _lime_data(n: int = 120, p: int = 9, k: int = 1, seed: int = 0):
    """A LIME-like fit: 0/1 samples, float32 outputs and similarities, in float64."""
    g = torch.Generator().manual_seed(seed)
    X = (torch.rand(n, p, generator=g) > 0.5).double()
    y = X @ torch.randn(p, k, generator=g, dtype=torch.float64)
    y = (y + torch.randn(n, k, generator=g).double() * 0.1).float().double()
    w = (torch.rand(n, generator=g) + 0.05).double()
    return X, y, w


_MODELS = [
    lambda: WeightedLasso(alpha=0.01),
    lambda: WeightedLasso(alpha=0.003, fit_intercept=False),
    lambda: WeightedLinearRegression(),
    lambda: WeightedLinearRegression(fit_intercept=False),
    lambda: WeightedRidge(0.5),
]


@pytest.mark.parametrize("make", _MODELS)
@pytest.mark.parametrize("k", [1, 3])
def test_fit_checked_equals_fit_tensors_exactly(make, k):
    X, y, w = _lime_data(k=k)
    y_in = y[:, 0] if k == 1 else y
    slow, quick = make(), make()
    slow.fit_tensors(X.float(), y_in.float(), w.float())
    coef = quick._fit_checked(X, y_in, w, torch.float32)
    assert torch.equal(coef, slow.representation())
    assert torch.equal(quick.bias(), slow.bias())
    assert coef.dtype == torch.float32
    assert quick.n_iter_ == slow.n_iter_


def test_fit_checked_goes_through_a_subclass_own_solve():
    calls = []

    class Shrunk(WeightedLinearRegression):
        def _solve(self, X, y, sample_weight, **kwargs):
            calls.append(X.dtype)
            coef, intercept = super()._solve(X, y, sample_weight, **kwargs)
            return coef / 2, intercept

    X, y, w = _lime_data()
    coef = Shrunk()._fit_checked(X, y[:, 0], w, torch.float32)
    reference = WeightedLinearRegression().fit_tensors(X.float(), y[:, 0].float(), w.float())
    assert calls == [torch.float32]  # the subclass saw the data in the caller's dtype
    torch.testing.assert_close(coef, reference.representation() / 2)


@pytest.mark.parametrize("p", [3, 12, 40])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_lasso_sweeps_on_floats_and_on_arrays_agree_exactly(monkeypatch, p, alpha):
    X, y, w = _lime_data(n=200, p=p)
    small = fit.weighted_lasso(X, y, w, alpha=alpha)
    monkeypatch.setattr(fit, "_SCALAR_SWEEP_MAX", -1)  # every problem on arrays
    large = fit.weighted_lasso(X, y, w, alpha=alpha)
    monkeypatch.setattr(fit, "_SCALAR_SWEEP_MAX", 10**6)  # every problem on floats
    floats = fit.weighted_lasso(X, y, w, alpha=alpha)
    for a, b, c in zip(small, large, floats):
        assert (a == b) if isinstance(a, int) else torch.equal(a, b)
        assert (a == c) if isinstance(a, int) else torch.equal(a, c)


def test_lasso_sweeps_still_solve_the_lasso():
    # the optimality conditions: |X_j^T r| <= alpha where b_j == 0, = alpha sign(b_j) else
    X, y, w = _lime_data(n=300, p=8)
    alpha = 0.01
    model = WeightedLasso(alpha=alpha, tol=1e-10, max_iter=10000)
    coef = model._fit_checked(X, y[:, 0], w, torch.float64)[0]
    v = w / w.sum()
    Xc = X - v @ X
    r = (y[:, 0] - v @ y[:, 0]) - Xc @ coef
    corr = (Xc * v[:, None]).T @ r
    active = coef != 0
    assert active.any()
    torch.testing.assert_close(corr[active], alpha * coef[active].sign(), atol=1e-7, rtol=0)
    assert bool((corr[~active].abs() <= alpha + 1e-7).all())


@pytest.mark.parametrize("mode", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_similarity_equals_batch_on_repeated_originals(mode, dtype):
    kernel = get_exp_kernel_similarity_function(mode, kernel_width=0.7)
    g = torch.Generator().manual_seed(3)
    originals = torch.randn(5, 30, generator=g).to(dtype)
    perturbed = torch.randn(7, 5, 30, generator=g).to(dtype)
    perturbed[2, 1] = 0.0  # a zero row (cosine's eps clamp)
    grouped = kernel.grouped(originals, perturbed)
    flat = kernel.batch(originals.repeat(7, 1), perturbed.reshape(35, 30)).reshape(7, 5)
    assert grouped.shape == (7, 5)
    assert torch.equal(grouped, flat)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


def test_lime_names_negative_similarities_for_a_linear_surrogate():
    def signed(original, perturbed, sample, **kwargs):
        return float(sample.sum()) - 3.0  # negative for most samples

    x = torch.randn(1, 6)
    method = Lime(_mlp(), similarity_func=signed)
    with pytest.raises(ValueError, match="'similarity_func' parameter of Lime.*>= 0"):
        method.attribute(x, target=0, n_samples=20, seed=0)


def test_lime_hands_negative_similarities_to_a_custom_surrogate():
    seen = {}

    class Mean:
        def fit(self, loader):
            X, y, w = next(iter(loader))
            seen["weights"] = w
            self.coef = (w[:, None] * X).mean(0, keepdim=True)

        def representation(self):
            return self.coef

    def signed(original, perturbed, sample, **kwargs):
        return float(sample.sum()) - 3.0

    x = torch.randn(1, 6)
    Lime(_mlp(), interpretable_model=Mean(), similarity_func=signed).attribute(
        x, target=0, n_samples=20, seed=0
    )
    assert bool((seen["weights"] < 0).any())  # its own business, as in Captum


@pytest.mark.parametrize("model", [None, "ols", "ridge"])
@pytest.mark.parametrize("batch", [1, 3])
def test_lime_short_fit_path_gives_the_long_paths_numbers(model, batch):
    # a subclass with its own _solve takes the long path: fit_tensors on the float32 data
    # LIME hands over, checked again; the native models skip that and must agree exactly
    class Long(WeightedLasso):
        def _solve(self, X, y, sample_weight, **kwargs):
            return super()._solve(X, y, sample_weight, **kwargs)

    class LongOls(WeightedLinearRegression):
        def _solve(self, X, y, sample_weight, **kwargs):
            return super()._solve(X, y, sample_weight, **kwargs)

    class LongRidge(WeightedRidge):
        def _solve(self, X, y, sample_weight, **kwargs):
            return super()._solve(X, y, sample_weight, **kwargs)

    short, long = {
        None: (None, Long(alpha=0.01)),
        "ols": (WeightedLinearRegression(), LongOls()),
        "ridge": (WeightedRidge(0.3), LongRidge(0.3)),
    }[model]
    net = _mlp()
    x = torch.randn(batch, 6)
    results = [
        Lime(net, interpretable_model=surrogate).attribute(
            x, target=1, n_samples=40, seed=5, return_input_shape=False
        )
        for surrogate in (short, long)
    ]
    assert torch.equal(results[0].attributions, results[1].attributions)
    fitted = [r.extras["interpretable_model"] for r in results]
    assert torch.equal(fitted[0].bias(), fitted[1].bias())
