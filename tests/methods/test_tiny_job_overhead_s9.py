"""Tiny-job fast paths of the Shapley family give the reference paths' numbers bit for bit.

* ShapleyValueSampling builds every item's coalition at once for small jobs (the walk
  table) instead of a dozen ops per chunk, and skips the id -> position mapping of its
  orderings when every id is present;
* KernelSHAP post-processes its draws on int64 codes without ``np.unique`` (the facade
  draws a design on every call), and caches the normal equations' design part
  (:func:`~whybox.core.surrogate.fit.normal_factor`) with a design drawn from an int seed;
* the lasso's moments and duality gap use ufunc reductions.

Each fast path is compared with a path the test forces (the per-chunk build, the torch
post-processing of the draws, an uncached design, the one-piece solve written out here)
with ``torch.equal``, and the global generator is left where the reference leaves it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import whybox.attr as facade
from whybox.core.masks import coalitions as coalition_module
from whybox.core.masks import kernel_shap_coalitions
from whybox.core.surrogate import fit
from whybox.methods import KernelShap, ShapleyValueSampling
from whybox.methods import shapley as shapley_module


def _mlp(d: int = 8, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype).eval()


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.out = nn.Linear(5, 4), nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        return self.out(torch.relu(self.a(x) + self.b(y))) * scale


def _masks(batch: int) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(batch)
    return {
        "default": None,
        "groups": (torch.arange(8) // 3).unsqueeze(0),
        "absent_ids": torch.tensor([[0, 0, 2, 2, 5, 5, 7, 7]]),  # ids 1, 3, 4, 6 absent
        "per_example": torch.randint(0, 4, (batch, 8), generator=g),
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _twice(monkeypatch, patch: tuple[object, str, object], run):
    """``run()`` on the fast path, then with ``patch`` applied (the reference path), each
    from the same global generator state: both results and both generator states."""
    torch.manual_seed(11)
    fast = run()
    fast_state = torch.get_rng_state()
    with monkeypatch.context() as m:
        m.setattr(*patch)
        torch.manual_seed(11)
        reference = run()
        reference_state = torch.get_rng_state()
    return fast, reference, torch.equal(fast_state, reference_state)


# -- ShapleyValueSampling ------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mask", ["default", "groups", "absent_ids", "per_example"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("n_samples", "rows", "baselines"), [(1, 0, None), (5, 4, 0.5), (7, 1, None)]
)
def test_svs_walk_table_equals_the_per_chunk_build(
    monkeypatch, batch, mask, dtype, n_samples, rows, baselines
):
    model = _mlp(dtype=dtype)
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    feature_mask = _masks(batch)[mask]
    target = torch.arange(batch) % 3
    chunk = rows * batch if rows else "auto"  # several chunks, one item per chunk, or auto
    patch = (shapley_module, "_WALK_TABLE_CELLS", 0)  # every chunk built on its own

    def native():
        out = ShapleyValueSampling(model).attribute(
            x,
            target=target,
            baselines=baselines,
            feature_mask=feature_mask,
            n_samples=n_samples,
            seed=3,
            chunk_size=chunk,
        )
        return out.attributions, out.delta

    fast, reference, same_state = _twice(monkeypatch, patch, native)
    assert _same(fast, reference) and same_state

    def captum_dropin():
        return facade.ShapleyValueSampling(model).attribute(
            x,
            target=target,
            baselines=baselines,
            feature_mask=feature_mask,
            n_samples=n_samples,
            perturbations_per_eval=max(rows, 1),
        )

    fast, reference, same_state = _twice(monkeypatch, patch, captum_dropin)
    assert _same(fast, reference) and same_state


def test_svs_walk_table_with_tuple_inputs_and_forward_args(monkeypatch):
    model = _TwoInputs()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 5, generator=g), torch.randn(3, 3, generator=g)
    masks = (torch.tensor([[0, 0, 1, 1, 2]]), torch.tensor([[3, 3, 5]]))  # id 4 absent
    for feature_mask in (None, masks):

        def run(feature_mask=feature_mask):
            return facade.ShapleyValueSampling(model).attribute(
                (x, y),
                target=1,
                additional_forward_args=(2.0,),
                feature_mask=feature_mask,
                n_samples=6,
                show_progress=False,
            )

        fast, reference, same_state = _twice(
            monkeypatch, (shapley_module, "_WALK_TABLE_CELLS", 0), run
        )
        assert _same(fast, reference) and same_state


def test_svs_walk_table_is_every_items_coalition():
    ranks = torch.stack([torch.randperm(5) for _ in range(4)])
    table = shapley_module._walk_coalitions(ranks, inner=4)
    assert table.shape == (2 + 4 * 4, 5) and table.dtype == torch.bool
    assert not table[0].any() and table[-1].all()
    for s in range(4):
        for j in range(4):  # item 1 + s * inner + j keeps the first j + 1 of ordering s
            assert torch.equal(table[1 + s * 4 + j], ranks[s] < j + 1)
    one_feature = shapley_module._walk_coalitions(torch.zeros(3, 1, dtype=torch.long), 0)
    assert torch.equal(one_feature, torch.tensor([[False], [True]]))


@pytest.mark.parametrize("present", [[0, 1, 2, 3, 4, 5], [0, 2, 5], [1, 3, 4, 5]])
def test_svs_orderings_skip_the_mapping_only_when_every_id_is_present(present):
    class Fixed:
        def permutations(self, count, n):
            g = torch.Generator().manual_seed(7)
            return torch.stack([torch.randperm(n, generator=g) for _ in range(count)])

    ids = torch.tensor(present)
    got = shapley_module._permutations(Fixed(), 6, 5, ids)
    perms = Fixed().permutations(5, 6)
    # the reference: each ordering's present ids, as positions in ``present``
    position = {int(f): i for i, f in enumerate(present)}
    expected = torch.tensor(
        [[position[int(f)] for f in row if int(f) in position] for row in perms]
    )
    assert got.dtype == torch.long and torch.equal(got, expected)


# -- KernelSHAP ----------------------------------------------------------------------------


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize(
    ("m", "budget"), [(3, 4), (6, 30), (8, 60), (12, 198), (12, 398), (15, 90)]
)
def test_kernel_shap_host_design_equals_the_torch_route(monkeypatch, m, budget, paired):
    def draw():
        g = torch.Generator().manual_seed(m * budget)
        design = kernel_shap_coalitions(m, budget, g, paired=paired)
        return design.masks, design.weights, design.n_enumerated, g.get_state()

    fast = draw()
    with monkeypatch.context() as patch:
        patch.setattr(coalition_module, "_MAX_CODE_BITS", 0)  # torch ops for every design
        reference = draw()
    assert fast[0].dtype == torch.bool and fast[1].dtype == torch.float64
    assert all(_same(a, b) for a, b in zip(fast, reference))
    # results are fresh tensors: writing to one leaves the next design alone
    fast[0].fill_(False)
    fast[1].fill_(0.0)
    assert all(_same(a, b) for a, b in zip(draw(), reference))


@pytest.mark.parametrize("batch", [1, 3, 32])
@pytest.mark.parametrize("mask", ["default", "groups", "absent_ids", "per_example"])
@pytest.mark.parametrize(
    ("n_samples", "ppe", "baselines"), [(3, 1, None), (40, 1, 0.25), (200, 4, None)]
)
def test_kernel_shap_dropin_equals_the_torch_design_route(
    monkeypatch, batch, mask, n_samples, ppe, baselines
):
    model = _mlp()
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(batch))
    feature_mask = _masks(batch)[mask]

    def run():
        return facade.KernelShap(model).attribute(
            x,
            target=1,
            baselines=baselines,
            feature_mask=feature_mask,
            n_samples=n_samples,
            perturbations_per_eval=ppe,
        )

    fast, reference, same_state = _twice(monkeypatch, (coalition_module, "_MAX_CODE_BITS", 0), run)
    assert _same(fast, reference) and same_state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mask", ["default", "absent_ids", "per_example"])
@pytest.mark.parametrize("n_samples", [10, 60, 300])
def test_kernel_shap_cached_design_factor_equals_a_fresh_solve(
    monkeypatch, dtype, batch, mask, n_samples
):
    model = _mlp(dtype=dtype)
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(4)).to(dtype)
    feature_mask = _masks(batch)[mask]
    shapley_module._seeded_design.cache_clear()

    def run():
        out = KernelShap(model).attribute(
            x, target=2, feature_mask=feature_mask, n_samples=n_samples, seed=9
        )
        return out.attributions, out.delta

    first = run()
    cached = run()  # the design and its factor from the cache
    with monkeypatch.context() as patch:
        # the uncached route: a fresh design, its factor computed inside the solve
        patch.setattr(shapley_module, "_CACHED_DESIGN_CELLS", -1)
        uncached = run()
    assert _same(first, cached) and _same(cached, uncached)


def _one_piece_normal(X, y, w, total):
    """The normal-equations solve as one function (the code before its split)."""
    p = X.shape[1]
    null = fit._sum_zero_basis_np(p)
    base = total / p
    resid = y - X.sum(axis=1, keepdims=True) * base
    A = X @ null
    Aw = A.T * w
    gram = Aw @ A
    try:
        inverse = np.linalg.inv(gram)
    except np.linalg.LinAlgError:
        return None
    cond = float(np.abs(gram).sum(axis=0).max()) * float(np.abs(inverse).sum(axis=0).max())
    if not cond <= fit._NORMAL_MAX_COND:
        return None
    coef = base + null @ (inverse @ (Aw @ resid))
    coef += (total - coef.sum(axis=0)) / p
    return np.ascontiguousarray(coef.T)


@pytest.mark.parametrize(("m", "budget"), [(2, 2), (5, 20), (8, 100), (12, 198), (20, 400)])
def test_split_normal_solve_equals_the_one_piece_solve(m, budget):
    design = kernel_shap_coalitions(m, budget, torch.Generator().manual_seed(budget))
    X = design.masks.double().numpy()
    w = design.weights.numpy()
    g = torch.Generator().manual_seed(m)
    y = (torch.randn(X.shape[0], 3, generator=g, dtype=torch.float64) * 3).numpy()
    total = torch.randn(3, generator=g, dtype=torch.float64).numpy()
    expected = _one_piece_normal(X, y, w, total)
    got = fit._constrained_normal(X, y, w, total)
    assert (got is None) == (expected is None)
    if expected is not None:
        assert np.array_equal(got, expected)
        factor = fit.normal_factor(X, w)
        assert np.array_equal(fit._normal_apply(factor, y, total), expected)


def test_split_normal_solve_keeps_the_fallbacks():
    g = torch.Generator().manual_seed(0)
    singular = (torch.rand(4, 9, generator=g) > 0.5).double().numpy()
    scaled = (torch.rand(50, 6, generator=g, dtype=torch.float64) * 10.0 ** torch.arange(6)).numpy()
    for X in (singular, scaled):
        w = np.ones(X.shape[0])
        y = np.ones((X.shape[0], 1))
        assert _one_piece_normal(X, y, w, np.ones(1)) is None
        assert fit.normal_factor(X, w).inverse is None
        assert fit._constrained_normal(X, y, w, np.ones(1)) is None


# -- the lasso's moments and duality gap ---------------------------------------------------


def test_lasso_moments_and_fit_equal_the_method_reductions():
    g = torch.Generator().manual_seed(3)
    X = (torch.rand(200, 12, generator=g) > 0.5).double().numpy()
    y = torch.randn(200, 2, generator=g, dtype=torch.float64).numpy()
    w = torch.rand(200, generator=g, dtype=torch.float64).numpy()
    gram, xty, yty, x_mean, y_mean = fit._host_lasso_moments(X, y, w, True, "test")
    total = float(w.sum())
    xm, ym = (w @ X) / total, (w @ y) / total
    Xc, yc = X - xm, y - ym
    v = (w / total)[:, None]
    assert np.array_equal(gram, (Xc * v).T @ Xc) and np.array_equal(xty, (Xc * v).T @ yc)
    assert np.array_equal(yty, (v * yc * yc).sum(axis=0))
    assert np.array_equal(x_mean, xm) and np.array_equal(y_mean, ym)
    coef, n_iter, gap = fit._lasso_cd(gram, xty[:, 0], float(yty[0]), 0.01, max_iter=1000, tol=1e-4)
    # the duality gap at the returned coefficients, with the array methods
    g_coef = gram @ coef
    corr = xty[:, 0] - g_coef
    r_sq = max(float(yty[0]) - 2.0 * coef @ xty[:, 0] + coef @ g_coef, 0.0)
    scale = min(1.0, 0.01 / float(np.max(np.abs(corr))))
    primal = 0.5 * r_sq + 0.01 * float(np.abs(coef).sum())
    dual = scale * (float(yty[0]) - coef @ xty[:, 0]) - 0.5 * scale * scale * r_sq
    assert n_iter >= 1 and gap == pytest.approx(primal - dual, rel=1e-9, abs=1e-15)


# -- rows and ablation scatter -------------------------------------------------------------


def _where_reference(keep, x, b):
    """The rows as coalition_rows built them before: ``where`` on unsqueezed, expanded
    tensors."""
    return torch.where(keep, x.unsqueeze(0), b.expand_as(x).unsqueeze(0))


@pytest.mark.parametrize(
    ("x_dtype", "b"),
    [
        (torch.float32, torch.tensor(0.5)),
        (torch.float32, torch.tensor(0.5, dtype=torch.float64)),  # 0-dim, other dtype
        (torch.float64, torch.tensor(0.25, dtype=torch.float32)),
        (torch.int64, torch.tensor(2.5)),  # fractional baseline of token ids: promotes
        (torch.int64, torch.tensor(3)),
        (torch.float32, torch.randn(1, 6, dtype=torch.float64)),  # dimensioned, other dtype
        (torch.float32, torch.randn(3, 6)),
        (torch.float32, torch.randn(6)),
    ],
)
@pytest.mark.parametrize("keep_rows", [1, 3])
def test_keep_or_baseline_equals_the_expanded_where(x_dtype, b, keep_rows):
    from whybox.core.perturbation import keep_or_baseline

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 6, generator=g) * 4).to(x_dtype)
    keep = torch.rand(5, keep_rows, 6, generator=g) < 0.5
    got = keep_or_baseline(keep, x, b)
    expected = _where_reference(keep, x, b)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected) and got.is_contiguous()


@pytest.mark.parametrize("batch", [1, 3, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", [1, None])
def test_feature_ablation_transpose_equals_the_scatter(batch, dtype, target):
    model = _mlp(dtype=dtype)
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(6)).to(dtype)
    ablation = facade.FeatureAblation(model)
    default = ablation.attribute(x, target=target)  # the default masks: the transpose
    ids = ablation.attribute(x, target=target, feature_mask=torch.arange(8).unsqueeze(0))
    assert default.dtype == ids.dtype and torch.equal(default, ids)
    assert default.is_contiguous()


@pytest.mark.parametrize("layout", ["row_major", "column_major"])
@pytest.mark.parametrize("shared", [True, False])
def test_lasso_groups_equal_one_fit_per_group(layout, shared):
    g = torch.Generator().manual_seed(8)
    n, groups, p = 120, 4, 12
    X = (torch.rand(n, p, generator=g) > 0.5).double()
    if not shared:
        X = (torch.rand(n, groups, p, generator=g) > 0.5).double()
    y = torch.randn(n, groups, generator=g, dtype=torch.float64)
    if layout == "column_major":
        y = y.T.contiguous().T  # the same values, columns contiguous
    w = torch.rand(n, groups, generator=g, dtype=torch.float64)
    options = {"alpha": 0.01, "fit_intercept": True, "max_iter": 1000, "tol": 1e-4}
    coef, intercept, _ = fit.lasso_groups(X, y, w, caller="test", **options)
    for k in range(groups):
        xk = X if shared else X[:, k]
        one, one_b, _ = fit._lasso_checked(xk, y[:, k].unsqueeze(1), w[:, k], caller="t", **options)
        assert torch.equal(coef[k : k + 1], one) and torch.equal(intercept[k : k + 1], one_b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [1.0, 0.25, 3.0, 17.3])
def test_exp_kernel_equals_its_textbook_expression(dtype, width):
    from whybox.core.surrogate import get_exp_kernel_similarity_function

    kernel = get_exp_kernel_similarity_function(kernel_width=width)
    g = torch.Generator().manual_seed(int(width * 10))
    for n in (1, 7, 8, 9, 31, 200, 4097):  # vector bodies and scalar tails
        distance = (torch.rand(n, generator=g, dtype=torch.float64) * 3).to(dtype)
        expected = torch.exp(-(distance**2) / (2.0 * width**2))
        got = kernel._kernel(distance)
        assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("cls", ["Lime", "KernelShap"])
@pytest.mark.parametrize("batch", [1, 3])
def test_default_baselines_skip_only_the_check(cls, batch):
    model = _mlp()
    x = torch.randn(batch, 8, generator=torch.Generator().manual_seed(batch))
    runs = []
    for baselines in (None, 0.0):  # 0.0 is checked; None is known to be zeros
        torch.manual_seed(3)
        runs.append(getattr(facade, cls)(model).attribute(x, target=0, baselines=baselines))
    assert torch.equal(runs[0], runs[1])
    bad = x.clone()
    bad[0, 2] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        getattr(facade, cls)(model).attribute(bad, target=0)
    with pytest.raises(ValueError, match="baselines"):
        getattr(facade, cls)(model).attribute(x, target=0, baselines=float("inf"))
