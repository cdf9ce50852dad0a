"""The CAV classifiers: scikit-learn's SGDClassifier reproduced step for step (Captum's
default), the exact solver at the optimum of the same objective, and the t-test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whybox.concept import fit_linear_svm, sgd_linear_svm, ttest_ind


def _data(n, f, classes, dtype, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.randn(n, f).astype(dtype)
    y = rs.choice(classes, n)
    for k, c in enumerate(classes):
        x[y == c, k % f] += 1.5
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize(
    ("n", "f", "classes", "dtype"),
    [(60, 16, [3, 8], np.float32), (50, 40, [0, 1], np.float64), (70, 12, [0, 2, 5], np.float32)],
)
def test_sgd_is_scikit_learns_sgdclassifier_with_its_draws(n, f, classes, dtype):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _data(n, f, classes, dtype)
    np.random.seed(7)
    reference = sklearn.SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3).fit(x.numpy(), y.numpy())
    after_reference = np.random.rand()
    np.random.seed(7)
    w, b = sgd_linear_svm(x, y, classes)
    assert np.random.rand() == after_reference  # the same global draws, in the same order
    assert w.dtype == x.dtype and w.shape == reference.coef_.shape
    np.testing.assert_allclose(w.numpy(), reference.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), reference.intercept_, rtol=1e-4, atol=1e-5)


def _objective(w, b, x, sign, alpha):
    margins = sign * (x @ w + b)
    return 0.5 * alpha * float(w @ w) + float(torch.clamp(1 - margins, min=0).mean())


def test_the_exact_solver_reaches_the_optimum_of_the_sgd_objective():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _data(80, 20, [0, 1], np.float64, seed=3)
    w, b = fit_linear_svm(x, y, [0, 1])
    sign = torch.where(y == 1, 1.0, -1.0).double()
    ours = _objective(w[0], b[0], x, sign, 0.01)
    for seed in range(3):
        sgd = sklearn.SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=seed).fit(
            x.numpy(), y.numpy()
        )
        theirs = _objective(torch.from_numpy(sgd.coef_[0]), float(sgd.intercept_[0]), x, sign, 0.01)
        assert ours <= theirs + 1e-9
    # optimality: no small step along a random direction (or the intercept) improves it
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        d = torch.randn(20, generator=g, dtype=torch.float64) * 1e-3
        assert _objective(w[0] + d, b[0], x, sign, 0.01) >= ours - 1e-9
    for step in (-1e-3, 1e-3):
        assert _objective(w[0], b[0] + step, x, sign, 0.01) >= ours - 1e-9


def test_ttest_is_scipys():
    stats = pytest.importorskip("scipy.stats")
    rs = np.random.RandomState(0)
    for a, b in [
        (rs.rand(6), rs.rand(6) + 0.3),
        (rs.rand(10), rs.rand(4)),
        ([0.9, 0.95, 1.0], [0.1, 0.05, 0.2, 0.0]),
    ]:
        t, p = ttest_ind(a, b)
        reference = stats.ttest_ind(a, b)
        assert t == pytest.approx(reference.statistic, rel=1e-10)
        assert p == pytest.approx(reference.pvalue, rel=1e-8, abs=1e-15)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgd_fit_by_scikit_learn_equals_the_port(n_classes, dtype):
    """scikit-learn's compiled SGDClassifier (used when installed) and the step-for-step
    port fit the same CAVs from the same numpy seed and leave numpy's generator alike."""
    pytest.importorskip("sklearn")
    g = torch.Generator().manual_seed(n_classes)
    x = torch.randn(60, 7, generator=g, dtype=dtype)
    y = torch.arange(60) % n_classes
    classes = list(range(n_classes))
    np.random.seed(3)
    fast = sgd_linear_svm(x, y, classes, use_sklearn=True)
    after_fast = np.random.randint(1 << 30)
    np.random.seed(3)
    port = sgd_linear_svm(x, y, classes, use_sklearn=False)
    after_port = np.random.randint(1 << 30)
    assert after_fast == after_port
    assert fast[0].dtype == port[0].dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # float32: the port's own rounding
    torch.testing.assert_close(fast[0], port[0], rtol=tol, atol=tol)
    torch.testing.assert_close(fast[1], port[1], rtol=tol, atol=tol)
    assert fast[0].abs().sum() > 0
