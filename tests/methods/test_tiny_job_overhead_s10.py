"""Fast paths of tiny KernelSHAP / LIME jobs (issue 16) give the numbers of the old routes.

* :func:`~whybox.core.masks.coalitions._host_draws` (``where=`` sums, one gathered prefix
  row per group, an in-place flip, run boundaries for the counts, one broadcast xor for the
  pairs) and the code -> row lookup table, against the torch route re-derived from the
  same draws;
* :func:`~whybox.core.surrogate.fit._inv` and the one-pass condition number of
  :func:`~whybox.core.surrogate.fit.normal_factor`, against ``np.linalg.inv`` and the
  previous formula;
* :func:`~whybox.core.perturbation.coalition_rows` for one 2-D input with the default
  mask, against the general path;
* seeded facade calls: ``whybox.attr.KernelShap`` against the whole chain re-derived with
  the old primitives (and Captum on a linear model), ``whybox.attr.Lime`` against Captum.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whybox.core.masks import coalitions as C
from whybox.core.masks import kernel_shap_coalitions
from whybox.core.perturbation import coalition_rows, example_index, prepare_masks
from whybox.core.surrogate import fit


def _torch_route(m: int, n_samples: int, seed: int, paired: bool):
    """Sampled rows and weights from the same draws with torch ops (the non-CPU route)."""
    plan = C._kernel_shap_plan(m, n_samples, paired)
    g = torch.Generator().manual_seed(seed)
    if plan.n_draws == 0:
        return torch.zeros(0, m, dtype=torch.bool), torch.zeros(0, dtype=torch.float64), g
    pick = torch.multinomial(plan.g_masses, plan.n_draws, replacement=True, generator=g)
    size = plan.draw_sizes[pick]
    keys = torch.rand(plan.n_draws, m, generator=g, dtype=torch.float64)
    first = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1) < size[:, None]
    if paired and plan.draws_half:
        first = torch.where(((size * 2 == m) & ~first[:, 0])[:, None], ~first, first)
    rows, counts = torch.unique(first, dim=0, return_counts=True)
    weights = counts.to(torch.float64) * plan.per_draw_w
    if paired:
        rows = torch.stack([rows, ~rows], dim=1).reshape(-1, m)
        weights = weights.repeat_interleave(2)
    return rows, weights, g


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("m", [2, 3, 4, 6, 7, 11, 12, 13, 16, 25, 40])
@pytest.mark.parametrize("n_samples", [5, 30, 198, 1000])
def test_host_design_equals_the_torch_route(m: int, n_samples: int, paired: bool) -> None:
    for seed in (0, 5):
        g = torch.Generator().manual_seed(seed)
        design = kernel_shap_coalitions(m, n_samples, g, paired=paired)
        rows, weights, g_ref = _torch_route(m, n_samples, seed, paired)
        plan = C._kernel_shap_plan(m, n_samples, paired)
        enumerated = torch.cat(plan.blocks) if plan.blocks else torch.zeros(0, m, dtype=bool)
        assert torch.equal(design.masks, torch.cat([enumerated, rows]))
        w_enum = torch.cat(plan.weights) if plan.weights else torch.zeros(0, dtype=torch.float64)
        assert torch.equal(design.weights, torch.cat([w_enum, weights]))
        assert design.masks.dtype == torch.bool and design.masks.is_contiguous()
        assert torch.equal(g.get_state(), g_ref.get_state())


@pytest.mark.parametrize("m", range(1, C._ROW_TABLE_BITS + 1))
def test_code_row_table(m: int) -> None:
    bits = np.left_shift(np.int64(1), np.arange(m - 1, -1, -1, dtype=np.int64))
    codes = np.arange(1 << m, dtype=np.int64)
    table = C._code_rows(m)
    assert not table.flags.writeable
    assert np.array_equal(table, (codes[:, None] & bits) != 0)


def _old_normal_factor(X: np.ndarray, w: np.ndarray):
    """``normal_factor`` as it was: ``np.linalg.inv`` and one reduction per matrix."""
    null = fit._sum_zero_basis_np(X.shape[1])
    A = X @ null
    Aw = A.T * w
    gram = Aw @ A
    x_sum = X.sum(axis=1, keepdims=True)
    try:
        inverse = np.linalg.inv(gram)
    except np.linalg.LinAlgError:
        return x_sum, Aw, None
    cond = float(np.abs(gram).sum(axis=0).max()) * float(np.abs(inverse).sum(axis=0).max())
    return x_sum, Aw, inverse if cond <= fit._NORMAL_MAX_COND else None


@pytest.mark.parametrize("p", [2, 3, 5, 12, 17, 40])
@pytest.mark.parametrize("n", [3, 20, 400])
def test_normal_factor_equals_the_old_formula(p: int, n: int) -> None:
    rng = np.random.default_rng(p * 1000 + n)
    for trial in range(4):
        X = (rng.random((n, p)) < 0.5).astype(np.float64)
        if trial == 3:
            X[:, 1] = X[:, 0]  # collinear columns: singular or ill-conditioned
        w = rng.random(n) * (10.0 if trial == 1 else 1.0)
        want = _old_normal_factor(X, w)
        got = fit.normal_factor(X, w)
        assert np.array_equal(got.x_sum, want[0]) and np.array_equal(got.aw, want[1])
        if want[2] is None:
            assert got.inverse is None
        else:
            assert got.inverse is not None and np.array_equal(got.inverse, want[2])


def test_inv_is_numpys() -> None:
    rng = np.random.default_rng(0)
    for p in (1, 2, 5, 11, 39):
        a = rng.standard_normal((p, p))
        assert np.array_equal(fit._inv(a), np.linalg.inv(a))
    for singular in (np.zeros((3, 3)), np.ones((4, 4))):
        with pytest.raises(np.linalg.LinAlgError):
            fit._inv(singular)


def _general_rows(x: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``coalition_rows``'s general path for one input with the default mask."""
    k = keep.shape[0]
    flags = keep[:, 0 : x.shape[1]].unsqueeze(1).reshape((k, 1) + tuple(x.shape[1:]))
    if b.dim() == 0 and b.dtype != x.dtype:
        b = b.expand_as(x)
    rows = torch.where(flags, x, b)
    return rows.reshape((k * x.shape[0],) + tuple(x.shape[1:]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("m", [1, 2, 12, 40])
def test_one_flat_input_rows_equal_the_general_path(m: int, n: int, dtype) -> None:
    g = torch.Generator().manual_seed(m + n)
    x = torch.randn(n, m, generator=g, dtype=dtype)
    masks = prepare_masks(None, (x,), owner="T", shift_negative=False)
    baselines = [
        torch.tensor(0.0, dtype=dtype),
        torch.tensor(0.5, dtype=torch.float64),  # another dtype: promoted as before
        torch.randn(1, m, generator=g, dtype=dtype),
        torch.randn(n, m, generator=g, dtype=dtype),
        torch.randn(m, generator=g, dtype=dtype),
    ]
    for k in (1, 7, 200):
        keep = torch.rand(k, m, generator=g) < 0.5
        for b in baselines:
            got = coalition_rows((x,), (b,), masks, keep)
            want = _general_rows(x, b, keep)
            assert got.inputs[0].dtype == want.dtype and torch.equal(got.inputs[0], want)
            assert got.inputs[0].is_contiguous()
            index = torch.arange(n).expand(k, n).reshape(-1)
            assert torch.equal(got.example_index, index)
            assert got.example_index.dtype == torch.long


def test_example_index_of_one_example() -> None:
    for k in (0, 1, 9):
        assert torch.equal(example_index(1, k, "cpu"), torch.arange(1).expand(k, 1).reshape(-1))
        assert example_index(1, k, "cpu").dtype == torch.long


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).eval()


@pytest.mark.parametrize("n_samples", [100, 200, 400])
def test_seeded_facade_kernel_shap_equals_the_old_chain(n_samples: int) -> None:
    """The facade's seeded call, re-derived: torch-route design from the global generator,
    rows by ``torch.where``, one forward, the normal equations with ``np.linalg.inv``."""
    import whybox.attr as wa

    model = _mlp()
    x = torch.randn(1, 12)
    target = 1
    torch.manual_seed(11)
    got = wa.KernelShap(model).attribute(x, target=target, n_samples=n_samples)
    state = torch.get_rng_state()

    torch.manual_seed(11)
    budget = n_samples - 2
    plan = C._kernel_shap_plan(12, budget, True)
    pick = torch.multinomial(plan.g_masses, plan.n_draws, replacement=True)
    size = plan.draw_sizes[pick]
    keys = torch.rand(plan.n_draws, 12, dtype=torch.float64)
    first = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1) < size[:, None]
    first = torch.where(((size * 2 == 12) & ~first[:, 0])[:, None], ~first, first)
    uniq, counts = torch.unique(first, dim=0, return_counts=True)
    rows = torch.stack([uniq, ~uniq], dim=1).reshape(-1, 12)
    w = (counts.to(torch.float64) * plan.per_draw_w).repeat_interleave(2)
    masks = torch.cat([*plan.blocks, rows]) if plan.blocks else rows
    w = torch.cat([*plan.weights, w]) if plan.weights else w
    assert torch.equal(torch.get_rng_state(), state)
    keep = torch.cat([torch.zeros(1, 12, dtype=bool), torch.ones(1, 12, dtype=bool), masks])
    with torch.no_grad():
        values = model(torch.where(keep, x, torch.tensor(0.0)))[:, target].to(torch.float64)
    y = (values[2:] - values[0]).numpy()[:, None]
    total = (values[1] - values[0]).reshape(1).numpy()
    X = masks.to(torch.float64).numpy()
    x_sum, aw, inverse = _old_normal_factor(X, w.numpy())
    assert inverse is not None
    null = fit._sum_zero_basis_np(12)
    base = total / 12
    coef = base + null @ (inverse @ (aw @ (y - x_sum * base)))
    coef += (total - coef.sum(axis=0)) / 12
    want = torch.from_numpy(np.ascontiguousarray(coef.T)).to(torch.float32)
    assert torch.equal(got, want)


def test_seeded_facade_kernel_shap_matches_captum_on_a_linear_model() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as wa

    torch.manual_seed(0)
    model = torch.nn.Linear(12, 2).eval()
    x = torch.randn(1, 12)
    torch.manual_seed(0)
    ours = wa.KernelShap(model).attribute(x, target=1, n_samples=200)
    torch.manual_seed(0)
    theirs = captum_attr.KernelShap(model).attribute(x, target=1, n_samples=200)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours, (model.weight[1] * x).detach(), rtol=1e-4, atol=1e-5)


def test_inverse_falls_back_to_numpy_when_the_private_gufunc_is_unusable(monkeypatch):
    """On a numpy whose private inversion gufunc is missing or behaves otherwise, ``_inv``
    is ``np.linalg.inv``: the same values, the same refusal of a singular matrix."""
    from whybox.core.surrogate import fit

    a = np.array([[2.0, 0.5], [0.5, 1.0]])
    monkeypatch.setattr(fit, "_INV_GUFUNC", lambda *args, **kwargs: np.zeros((2, 2)))
    assert not fit._gufunc_matches_inv()  # a gufunc giving other values is refused
    fit._checked_gufunc.cache_clear()
    assert np.array_equal(fit._inv(a), np.linalg.inv(a))  # the refused gufunc is not used
    fit._checked_gufunc.cache_clear()
    monkeypatch.setattr(fit, "_INV_GUFUNC", None)
    assert not fit._gufunc_matches_inv()
    assert np.array_equal(fit._inv(a), np.linalg.inv(a))
    with pytest.raises(np.linalg.LinAlgError):
        fit._inv(np.zeros((2, 2)))
    monkeypatch.undo()
    fit._checked_gufunc.cache_clear()  # the real gufunc is vouched for again
    assert fit._checked_gufunc() is fit._INV_GUFUNC
