"""Fast paths of tiny LIME jobs (issue 16) give the numbers of the old routes.

* LIME's lasso fit on numpy arrays (``_fit_linear`` -> ``WeightedLasso._fit_host_groups``
  -> ``host_lasso_groups``, numpy casts of the coefficients) against the tensor route
  re-derived from the unchanged primitives (moments, coordinate descent, torch casts);
* native ``Lime`` with an int seed: its cached samples (``_seeded_samples``) against fresh
  draws, the cache's keys, read-only entries and threads;
* the coordinate descent's inlined sweeps (``fit._lasso_cd``) against the old sweeps, bit
  for bit;
* ``check_finite_each`` (one pass over the tensors) against the old checks;
* seeded facade ``Lime`` against Captum (and the generators' states afterwards).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from whybox.core.randomness import make_random
from whybox.core.surrogate import WeightedLasso, fit
from whybox.methods import Lime
from whybox.methods import lime as lime_module


def _reference_fit(samples, values, weights, dtype, exact, alpha=0.01):
    """The tensor route as it was: float64 tensors, one lasso per group, torch casts."""
    design = samples.to(torch.float64)
    values = values.to(dtype).to(torch.float64)
    if dtype != torch.float64 and not exact:
        weights = weights.to(dtype).to(torch.float64)
    coefs, intercepts, n_iter = [], [], 0
    for g in range(values.shape[1]):
        X = design if design.dim() == 2 else design[:, g]
        y = values[:, g].unsqueeze(1)
        gram, xty, yty, x_mean, y_mean = fit._host_lasso_moments(
            X.numpy(), y.numpy(), weights[:, g].numpy(), True, "test"
        )
        coef, n_iter, _ = fit._lasso_cd(
            gram, xty[:, 0], float(yty[0]), alpha, max_iter=1000, tol=1e-4
        )
        coefs.append(torch.from_numpy(np.array([coef])))
        intercepts.append(torch.from_numpy(y_mean - np.array([coef]) @ x_mean))
    coef = torch.cat(coefs).to(dtype)
    return coef, coef[-1:].clone(), torch.cat(intercepts)[-1:].to(dtype), n_iter


def _data(m, n_samples, groups, per_group, strided, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (n_samples, groups, m) if per_group else (n_samples, m)
    samples = torch.rand(shape, generator=g) < 0.5
    wide = torch.randn(n_samples, 2 * groups, generator=g, dtype=torch.float64)
    values = wide[:, ::2] if strided else wide[:, :groups].contiguous()
    weights = torch.rand(n_samples, groups, generator=g, dtype=torch.float64) + 0.01
    return samples, values, weights


@pytest.mark.parametrize("m", [1, 2, 5, 12, 33, 40])
@pytest.mark.parametrize("n_samples", [3, 50, 600])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_host_lasso_fit_equals_the_tensor_route(m, n_samples, groups, dtype):
    for per_group, strided, exact in ((False, True, True), (True, False, False)):
        samples, values, weights = _data(m, n_samples, groups, per_group, strided, m + n_samples)
        values = values.to(dtype)
        if exact:  # similarities holding values of ``dtype``, as the kernel's
            weights = weights.to(dtype).to(torch.float64)
        model = WeightedLasso(alpha=0.01)
        got = lime_module._fit_linear(model, samples, values, weights, dtype, exact=exact)
        want, coef, intercept, n_iter = _reference_fit(samples, values, weights, dtype, exact)
        assert got.dtype == dtype and torch.equal(got, want)
        assert torch.equal(model.representation(), coef) and torch.equal(model.bias(), intercept)
        assert model.n_iter_ == n_iter
        assert model.representation().data_ptr() != got.data_ptr()  # no shared memory


def test_host_lasso_fit_is_taken_and_a_subclass_keeps_its_own_fit(monkeypatch):
    samples, values, weights = _data(6, 40, 2, False, False, 0)
    calls = []
    host = fit.host_lasso_groups
    monkeypatch.setattr(
        "whybox.core.surrogate.linear.host_lasso_groups",
        lambda *a, **k: calls.append(1) or host(*a, **k),
    )
    lime_module._fit_linear(WeightedLasso(0.01), samples, values, weights, torch.float64)
    assert calls == [1]

    class Doubled(WeightedLasso):
        def _fit_checked_groups(self, X, y, w, out_dtype):
            return 2 * super()._fit_checked_groups(X, y, w, out_dtype)

    got = lime_module._fit_linear(Doubled(0.01), samples, values, weights, torch.float64)
    want = _reference_fit(samples, values, weights, torch.float64, True)[0]
    assert torch.equal(got, 2 * want)


def _old_soft_threshold(value: float, threshold: float) -> float:
    if value > threshold:
        return value - threshold
    if value < -threshold:
        return value + threshold
    return 0.0


# ``fit._lasso_cd`` as it was (indexed ``gram @ coef`` updates, a soft-threshold call and
# ``max`` per coordinate): the reference of its inlined sweeps
def _old_lasso_cd(
    gram: np.ndarray,
    xty: np.ndarray,
    yty: float,
    alpha: float,
    *,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int, float]:
    """Cyclic coordinate descent on ``1/2 b^T G b - b^T c + alpha ||b||_1`` (+ yty/2).

    Works on the (weighted, centered) Gram matrix ``G`` (p, p) and ``c = X^T y`` (p,),
    so one sweep costs O(p^2) whatever the number of samples. Stops on the duality gap,
    like sklearn: when the largest coefficient step is small relative to the largest
    coefficient, the gap is checked against ``tol * yty``. Returns the coefficients
    (p,), the number of sweeps and the final duality gap.
    """
    p = gram.shape[0]
    # The sweeps read and write Python floats (the same IEEE double operations, in the
    # same order, as on numpy scalars, without numpy's per-scalar overhead); ``gram @ coef``
    # is updated element by element for small problems and as an array otherwise. The
    # duality gap is computed on arrays.
    small = p <= fit._SCALAR_SWEEP_MAX
    coef_l = [0.0] * p
    # gram @ coef, kept up to date incrementally; columns[j][i] = gram[i, j]
    g_l: Any = [0.0] * p if small else np.zeros(p)
    columns: Any = gram.T.tolist() if small else gram.T
    diag = [float(columns[j][j]) for j in range(p)]
    xty_l = xty.tolist()
    rows = range(p)
    gap_tol = tol * yty
    gap = math.inf
    n_iter = 0
    coef = np.zeros(p)
    for n_iter in range(1, max_iter + 1):
        max_step = 0.0
        max_coef = 0.0
        for j in rows:
            d = diag[j]
            if d <= 0.0:  # constant (after centering) or zero-weight column
                continue
            old = coef_l[j]
            rho = xty_l[j] - g_l[j] + d * old
            new = _old_soft_threshold(rho, alpha) / d
            if new != old:
                coef_l[j] = new
                step = new - old
                column = columns[j]
                if small:
                    for i in rows:
                        g_l[i] += step * column[i]
                else:
                    g_l += step * column
                max_step = max(max_step, abs(step))
            max_coef = max(max_coef, abs(new))
        if max_coef == 0.0 or max_step / max_coef < tol or n_iter == max_iter:
            # Duality gap of the lasso: the dual point is the residual rescaled to be
            # feasible (|X^T theta|_inf <= alpha).
            coef = np.array(coef_l)
            g_coef = np.array(g_l)
            corr = xty - g_coef  # X^T r
            r_sq = max(yty - 2.0 * coef @ xty + coef @ g_coef, 0.0)  # ||r||^2
            # ufunc reductions (what np.max / ndarray.sum run), without their Python layers
            corr_max = float(np.maximum.reduce(np.abs(corr))) if p else 0.0
            scale = 1.0 if corr_max <= alpha else alpha / corr_max
            primal = 0.5 * r_sq + alpha * float(np.add.reduce(np.abs(coef)))
            dual = scale * (yty - coef @ xty) - 0.5 * scale * scale * r_sq
            gap = primal - dual
            if gap <= gap_tol:
                break
    return coef, n_iter, gap


def _lasso_problem(p, n, seed, zero_columns):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, p)) < 0.5).astype(np.float64)
    X[:, :zero_columns] = 0.0  # constant columns: a zero diagonal, skipped
    y = X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)
    w = rng.random(n) + 0.05
    return fit._host_lasso_moments(X, y[:, None], w, True, "test")


@pytest.mark.parametrize("p", [1, 2, 3, 7, 12, 20, 32, 33, 40])
@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.01, 0.3])
def test_inlined_lasso_sweeps_equal_the_old_sweeps(p, alpha):
    for seed, n, zero, max_iter, tol in (
        (0, 200, 0, 1000, 1e-4),
        (1, 5, 0, 1000, 1e-4),
        (2, 60, min(p - 1, 2), 1000, 1e-4),
        (3, 80, 0, 2, 1e-12),  # stops on max_iter
        (4, 300, 0, 1000, 0.0),
    ):
        gram, xty, yty, _, _ = _lasso_problem(p, n, seed + p, zero)
        args = (gram, xty[:, 0], float(yty[0]), alpha)
        got = fit._lasso_cd(*args, max_iter=max_iter, tol=tol)
        want = _old_lasso_cd(*args, max_iter=max_iter, tol=tol)
        assert got[0].tobytes() == want[0].tobytes()  # bit for bit, signed zeros too
        assert got[1] == want[1]
        assert got[2] == want[2] or (math.isnan(got[2]) and math.isnan(want[2]))


def _mlp(m=12, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(m, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype).eval()


def _run(model, x, seed, n_samples, target=1):
    return Lime(model).attribute(x, target=target, n_samples=n_samples, seed=seed).attributions


@pytest.mark.parametrize("m", [1, 3, 12, 40])
@pytest.mark.parametrize("n_samples", [4, 200, 1500])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_seeded_lime_cache_equals_fresh_draws(monkeypatch, m, n_samples, batch, default):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        lime_module._seeded_samples.cache_clear()
        samples, design = lime_module._seeded_samples(n_samples, m, 7, default, torch.device("cpu"))
        fresh = make_random(7).lime_samples(n_samples, m, batch)
        assert torch.equal(samples, fresh) and samples.dtype == torch.bool
        assert np.array_equal(design, fresh.numpy().astype(np.float64))
        model = _mlp(m, default)
        x = torch.randn(batch, m, generator=torch.Generator().manual_seed(m), dtype=default)
        first, cached = _run(model, x, 7, n_samples), _run(model, x, 7, n_samples)
        with monkeypatch.context() as patch:
            patch.setattr(lime_module, "_CACHED_SAMPLE_CELLS", -1)  # the uncached route
            uncached = _run(model, x, 7, n_samples)
        assert torch.equal(first, cached) and torch.equal(cached, uncached)
    finally:
        torch.set_default_dtype(previous)


def test_seeded_lime_cache_is_per_default_dtype():
    previous = torch.get_default_dtype()
    model = _mlp(5, torch.float64)
    x = torch.randn(2, 5, dtype=torch.float64)
    try:
        for default in (torch.float32, torch.float64, torch.float32):
            torch.set_default_dtype(default)
            fresh = make_random(21).lime_samples(90, 5, 1)
            samples, _ = lime_module._seeded_samples(90, 5, 21, default, torch.device("cpu"))
            assert torch.equal(samples, fresh)
            cached = _run(model, x, 21, 90)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(lime_module, "_CACHED_SAMPLE_CELLS", -1)
                assert torch.equal(cached, _run(model, x, 21, 90))
    finally:
        torch.set_default_dtype(previous)


def test_seeded_lime_cache_keys_and_fresh_sources():
    model = _mlp()
    x = torch.randn(2, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_run(model, x, 3, 100), _run(model, x, np.int64(3), 100))
    assert not torch.equal(_run(model, x, 3, 100), _run(model, x, 4, 100))
    # a generator draws afresh from its state: two calls differ, and match a fresh draw
    g, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first = _run(model, x, g, 100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lime_module, "_CACHED_SAMPLE_CELLS", -1)
        assert torch.equal(first, _run(model, x, ref, 100))
    assert torch.equal(g.get_state(), ref.get_state())
    assert not torch.equal(first, _run(model, x, g, 100))
    # None draws from the global generator: seeded alike, equal; the global state moves
    torch.manual_seed(0)
    a = _run(model, x, None, 100)
    state = torch.get_rng_state()
    torch.manual_seed(0)
    assert torch.equal(a, _run(model, x, None, 100)) and torch.equal(state, torch.get_rng_state())


def test_seeded_lime_cache_entries_are_read_only():
    model = _mlp()
    x = torch.randn(1, 12)
    before = _run(model, x, 11, 64)
    # nothing a caller gets shares the cached draws' memory
    out = Lime(model).attribute(x, target=1, n_samples=64, seed=11)
    out.attributions.add_(1.0)
    out.extras["interpretable_model"].representation().add_(1.0)
    seen = []

    def similarity(original, perturbed, sample, **kwargs):
        seen.append(sample)
        sample.fill_(0)  # a user's function writing into what it gets
        return torch.tensor(1.0)

    Lime(model, similarity_func=similarity).attribute(x, target=1, n_samples=64, seed=11)
    assert len(seen) == 64
    assert torch.equal(_run(model, x, 11, 64), before)
    # the entries themselves: an in-place write raises (an inference tensor), the array
    # cannot be written at all
    samples, design = lime_module._seeded_samples(
        64, 12, 11, torch.get_default_dtype(), torch.device("cpu")
    )
    assert samples.is_inference() and not design.flags.writeable
    with pytest.raises(ValueError):
        design[0, 0] = 5.0
    try:
        with pytest.raises(RuntimeError, match="inference tensor"):
            samples[:3].fill_(True)
    finally:
        lime_module._seeded_samples.cache_clear()  # the raising write may have landed


def test_seeded_lime_cache_from_two_threads():
    model = _mlp()
    x = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    lime_module._seeded_samples.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lime_module, "_CACHED_SAMPLE_CELLS", -1)
        want = {seed: _run(model, x, seed, 150) for seed in range(4)}
    got: dict[tuple[int, int], torch.Tensor] = {}

    def work(worker: int) -> None:
        for repeat in range(3):
            for seed in range(4):
                got[worker, seed * 10 + repeat] = _run(model, x, seed, 150)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 24
    assert all(torch.equal(value, want[key[1] // 10]) for key, value in got.items())


@pytest.mark.parametrize("batch", [1, 3])
def test_seeded_facade_lime_matches_captum(batch):
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as wa

    model = _mlp()
    x = torch.randn(batch, 12, generator=torch.Generator().manual_seed(batch))
    target = torch.tensor([0, 2, 1][:batch])
    torch.manual_seed(3)
    np.random.seed(3)
    ours = wa.Lime(model).attribute(x, target=target, n_samples=200)
    ours_state = torch.get_rng_state()
    torch.manual_seed(3)
    np.random.seed(3)
    theirs = captum_attr.Lime(model).attribute(x, target=target, n_samples=200)
    assert torch.equal(ours_state, torch.get_rng_state())
    torch.testing.assert_close(ours, theirs, rtol=2e-3, atol=2e-3)
    # and bit for bit the tensor route's fit on the same draws
    torch.manual_seed(3)
    again = wa.Lime(model).attribute(x, target=target, n_samples=200)
    assert torch.equal(ours, again)


def _old_check_finite_each(owner, checks):
    """``check_finite_each`` as it was (groups first, ``_finite_cpu`` per tensor)."""
    from whybox.core import perturbation as P

    groups = [
        (name, [t for t in tensors if t.is_floating_point() or t.is_complex()], expected)
        for name, tensors, expected in checks
    ]
    floats = [t for _, group, _ in groups for t in group]
    if not floats:
        return
    device = floats[0].device
    if device.type == "cpu" and all(t.device == device for t in floats):
        if all(P._finite_cpu(t) for t in floats):
            return
    else:
        flags = torch.stack([torch.isfinite(t).all().to(device) for t in floats])
        if bool(flags.all()):
            return
    for name, group, expected in groups:
        P._report_non_finite(owner, name, group, expected)


def _outcome(function, checks):
    try:
        function("Lime", checks)
    except Exception as error:  # noqa: BLE001 - the outcome is compared, whatever it is
        return type(error), str(error)
    return None


def test_check_finite_each_equals_the_old_checks():
    from whybox.core.perturbation import check_finite_each

    ok = torch.randn(5, 3)
    big = torch.full((4,), 3e38)  # finite, but its float32 sum overflows
    nan = torch.tensor([1.0, float("nan")])
    inf = torch.tensor([[float("inf")]], dtype=torch.float64)
    cnan = torch.tensor([1 + 1j, complex(0.0, float("nan"))])  # NaN in the imaginary part
    ints = torch.tensor([1, 2, 3])
    cases = [
        (),
        (("inputs", (ok,), "finite"), ("baselines", (), "finite")),
        (("inputs", (ok, big), "finite"), ("baselines", (ints,), "finite")),
        (("inputs", (ok,), "finite"), ("baselines", (nan, inf), "finite")),
        (("forward_func", (inf,), "a"), ("similarity_func", (nan,), "b")),
        (("inputs", (ints,), "finite"), ("x", (cnan,), "finite")),
        (("inputs", (torch.ones(2, dtype=torch.complex64),), "finite"),),
        (("inputs", (torch.zeros(0),), "finite"), ("y", (ok.double(),), "finite")),
    ]
    for checks in cases:
        assert _outcome(check_finite_each, checks) == _outcome(_old_check_finite_each, checks)
    assert _outcome(check_finite_each, cases[3])[0] is not None
