import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from whybox.core.masks import enumerate_coalitions, kernel_shap_coalitions, shapley_kernel_weight
from whybox.core.surrogate import (
    SkLearnLasso,
    SkLearnLinearModel,
    SkLearnLinearRegression,
    SkLearnRidge,
    SurrogateModel,
    WeightedLasso,
    WeightedLinearRegression,
    WeightedRidge,
    default_perturb_func,
    get_exp_kernel_similarity_function,
    solve_constrained_wls,
    weighted_least_squares,
)

sklearn_lm = pytest.importorskip("sklearn.linear_model")


def _problem(n=80, p=6, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.1
    coef = torch.randn(p if k is None else (k, p), generator=g, dtype=torch.float64)
    return X, w, coef, g


# ---------------------------------------------------------------------------
# Weighted least squares / ridge / lasso
# ---------------------------------------------------------------------------


def test_wls_recovers_noiseless_coefficients_and_intercept():
    X, w, coef, _ = _problem()
    y = X @ coef + 1.5
    model = WeightedLinearRegression().fit_tensors(X, y, w)
    assert model.representation().shape == (1, X.shape[1])
    torch.testing.assert_close(model.representation()[0], coef, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias(), torch.tensor([1.5], dtype=torch.float64))
    torch.testing.assert_close(model(X)[:, 0], y)


def test_wls_weights_matter_and_match_sklearn():
    X, w, coef, g = _problem()
    y = X @ coef + torch.randn(X.shape[0], generator=g, dtype=torch.float64)
    ours = WeightedLinearRegression().fit_tensors(X, y, w)
    unweighted = WeightedLinearRegression().fit_tensors(X, y)
    ref = sklearn_lm.LinearRegression().fit(X.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(ours.representation()[0].numpy(), ref.coef_, atol=1e-10)
    np.testing.assert_allclose(ours.bias().item(), ref.intercept_, atol=1e-10)
    assert not torch.allclose(unweighted.representation(), ours.representation(), atol=1e-3)


def test_wls_rank_deficient_gives_min_norm_solution():
    X, w, _, _ = _problem(p=3)
    X = torch.cat([X, X[:, :1]], dim=1)  # duplicated column
    y = X[:, 0] * 2.0 + X[:, 1]
    coef, _ = weighted_least_squares(X, y, w, fit_intercept=False)
    # the weight 2 on the duplicated column is split evenly by the minimum-norm solution
    torch.testing.assert_close(
        coef[0], torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_fit_without_intercept_and_multi_output():
    X, w, coef, _ = _problem(k=3)
    y = X @ coef.T
    model = WeightedLinearRegression(fit_intercept=False).fit_tensors(X, y, w)
    assert model.representation().shape == (3, X.shape[1])
    torch.testing.assert_close(model.representation(), coef, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias(), torch.zeros(3, dtype=torch.float64))


def test_ridge_matches_closed_form_and_sklearn():
    X, w, coef, g = _problem()
    y = X @ coef + 0.3 * torch.randn(X.shape[0], generator=g, dtype=torch.float64) - 2.0
    alpha = 3.0
    model = WeightedRidge(alpha).fit_tensors(X, y, w)
    # closed form with explicit weighted centering
    xm = (w @ X) / w.sum()
    ym = (w @ y) / w.sum()
    Xc, yc = X - xm, y - ym
    A = Xc.T @ (w[:, None] * Xc) + alpha * torch.eye(X.shape[1], dtype=torch.float64)
    expected = torch.linalg.solve(A, Xc.T @ (w * yc))
    torch.testing.assert_close(model.representation()[0], expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias()[0], ym - xm @ expected, rtol=0, atol=1e-10)
    ref = sklearn_lm.Ridge(alpha=alpha).fit(X.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(model.representation()[0].numpy(), ref.coef_, atol=1e-8)
    # more penalty shrinks the norm
    strong = WeightedRidge(100.0).fit_tensors(X, y, w)
    assert strong.representation().norm() < model.representation().norm()


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [0.01, 0.08])
def test_lasso_matches_sklearn_with_sample_weight(alpha, fit_intercept):
    g = torch.Generator().manual_seed(1)
    n, p = 120, 10
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) * 3
    true = torch.zeros(p, dtype=torch.float64)
    true[:3] = torch.tensor([2.0, -1.5, 1.0], dtype=torch.float64)
    y = X @ true + 0.7 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    ours = WeightedLasso(alpha, fit_intercept=fit_intercept, tol=1e-12, max_iter=10000)
    ours.fit_tensors(X, y, w)
    ref = sklearn_lm.Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-12, max_iter=100000)
    ref.fit(X.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(ours.representation()[0].numpy(), ref.coef_, atol=1e-6)
    np.testing.assert_allclose(ours.bias()[0].item(), ref.intercept_, atol=1e-6)


def test_lasso_default_tolerance_close_to_sklearn_default_and_zeros_irrelevant():
    g = torch.Generator().manual_seed(2)
    n, p = 200, 12
    X = (torch.rand(n, p, generator=g) > 0.5).double()  # LIME-like binary design
    w = torch.rand(n, generator=g, dtype=torch.float64)
    true = torch.zeros(p, dtype=torch.float64)
    true[[1, 4, 7]] = torch.tensor([1.0, -0.8, 0.6], dtype=torch.float64)
    y = X @ true + 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    ours = WeightedLasso(alpha=0.05).fit_tensors(X, y, w).representation()[0]
    ref = sklearn_lm.Lasso(alpha=0.05).fit(X.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(ours.numpy(), ref.coef_, atol=1e-5)
    irrelevant = torch.ones(p, dtype=torch.bool)
    irrelevant[[1, 4, 7]] = False
    assert torch.all(ours[irrelevant] == 0)
    assert torch.all(ours[~irrelevant] != 0)
    assert torch.equal(torch.sign(ours[[1, 4, 7]]), torch.tensor([1.0, -1.0, 1.0]).double())


def test_lasso_huge_alpha_gives_all_zero_and_multi_output():
    X, w, coef, _ = _problem(k=2)
    y = X @ coef.T
    zero = WeightedLasso(1e6).fit_tensors(X, y, w)
    assert zero.representation().shape == (2, X.shape[1])
    assert torch.all(zero.representation() == 0)
    torch.testing.assert_close(zero.bias(), (w @ y) / w.sum())
    small = WeightedLasso(1e-6, tol=1e-12, max_iter=5000).fit_tensors(X, y, w)
    torch.testing.assert_close(small.representation(), coef, rtol=0, atol=1e-4)


def test_lasso_warns_when_not_converged():
    X, w, coef, _ = _problem(p=8)
    X = X @ torch.randn(8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = X @ coef
    with pytest.warns(RuntimeWarning, match="did not converge"):
        WeightedLasso(1e-4, max_iter=1, tol=1e-12).fit_tensors(X, y, w)


def test_output_dtype_follows_inputs():
    X, w, coef, _ = _problem()
    y = X @ coef
    model = WeightedLasso(0.01).fit_tensors(X.float(), y.float(), w.float())
    assert model.representation().dtype == torch.float32
    assert model.bias().dtype == torch.float32


@pytest.mark.parametrize(
    "bad",
    [-1, float("nan"), "0.1", True],
)
def test_alpha_validation(bad):
    with pytest.raises(ValueError, match="'alpha' parameter of WeightedLasso"):
        WeightedLasso(bad)


def test_shape_and_weight_validation():
    X = torch.randn(5, 2)
    with pytest.raises(ValueError, match="'y' parameter"):
        WeightedLinearRegression().fit_tensors(X, torch.randn(4))
    with pytest.raises(ValueError, match="'sample_weight' parameter"):
        WeightedLinearRegression().fit_tensors(X, torch.randn(5), -torch.ones(5))
    with pytest.raises(RuntimeError, match="not fitted"):
        WeightedRidge().representation()


# ---------------------------------------------------------------------------
# Captum's DataLoader contract
# ---------------------------------------------------------------------------


def _loader(X, y, w, batch_size):
    return DataLoader(TensorDataset(X.float(), y.float(), w.float()), batch_size=batch_size)


@pytest.mark.parametrize(
    "model",
    [WeightedLinearRegression(), WeightedRidge(0.5), WeightedLasso(0.01), SkLearnLasso(alpha=0.01)],
)
def test_fit_dataloader_equals_fit_tensors(model):
    X, w, coef, _ = _problem()
    y = X @ coef
    stats = model.fit(_loader(X, y, w, batch_size=17))  # several batches are concatenated
    assert "train_time" in stats
    via_loader = model.representation().clone()
    assert via_loader.shape == (1, X.shape[1]) and via_loader.dtype == torch.float32
    model.fit_tensors(X.float(), y.float(), w.float())
    torch.testing.assert_close(via_loader, model.representation())
    assert isinstance(model, SurrogateModel)


def test_fit_accepts_pairs_without_weights():
    X, _, coef, _ = _problem()
    y = X @ coef + 1.0
    model = WeightedLinearRegression()
    model.fit(DataLoader(TensorDataset(X, y), batch_size=len(X)))
    torch.testing.assert_close(model.representation()[0], coef, rtol=0, atol=1e-9)


def test_captum_style_user_model_satisfies_protocol():
    class UserModel:
        def fit(self, train_data, **kwargs):
            self.x = next(iter(train_data))[0]

        def representation(self):
            return torch.zeros(1, self.x.shape[1])

    assert isinstance(UserModel(), SurrogateModel)
    assert not isinstance(object(), SurrogateModel)


def test_captum_linear_models_satisfy_protocol():
    from captum._utils.models.linear_model import SkLearnLasso as CaptumLasso

    assert isinstance(CaptumLasso(alpha=0.1), SurrogateModel)


# ---------------------------------------------------------------------------
# sklearn adapters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (SkLearnLasso(alpha=0.08, max_iter=3000, selection="cyclic"), "Lasso"),
        (SkLearnRidge(alpha=2.0, solver="cholesky"), "Ridge"),
        (SkLearnLinearRegression(fit_intercept=False), "LinearRegression"),
        (SkLearnLinearModel("linear_model.ElasticNet", alpha=0.05, l1_ratio=0.3), "ElasticNet"),
    ],
)
def test_sklearn_adapters_pass_kwargs_and_match_sklearn(ours, theirs):
    X, w, coef, _ = _problem()
    y = X @ coef + 0.5
    ours.fit(_loader(X, y, w, batch_size=len(X)))
    kwargs = ours.construct_kwargs
    ref = getattr(sklearn_lm, theirs)(**kwargs)
    ref.fit(X.float().numpy(), y.float().numpy(), sample_weight=w.float().numpy())
    np.testing.assert_allclose(ours.representation()[0].numpy(), ref.coef_, atol=1e-6)
    np.testing.assert_allclose(ours.bias().numpy(), np.atleast_1d(ref.intercept_), atol=1e-5)
    assert ours.estimator_.get_params()[next(iter(kwargs))] == kwargs[next(iter(kwargs))]


def test_sklearn_adapter_equals_torch_lasso():
    X, w, coef, _ = _problem()
    y = X @ coef
    a = SkLearnLasso(alpha=0.05, tol=1e-12, max_iter=100000).fit_tensors(X, y, w)
    b = WeightedLasso(0.05, tol=1e-12, max_iter=10000).fit_tensors(X, y, w)
    torch.testing.assert_close(a.representation(), b.representation(), rtol=0, atol=1e-6)


def test_sklearn_adapter_classifier_classes_and_unknown_module():
    X, w, coef, _ = _problem()
    labels = (X @ coef > 0).long()
    model = SkLearnLinearModel("linear_model.LogisticRegression")
    model.fit_tensors(X, labels, w)
    assert model.representation().shape == (1, X.shape[1])
    assert model.classes().tolist() == [0, 1]
    with pytest.raises(ValueError, match="no estimator 'linear_model.Nope'"):
        SkLearnLinearModel("linear_model.Nope").fit_tensors(X, labels)


def test_sklearn_adapter_without_sample_weight_support_warns():
    X, w, coef, _ = _problem()
    y = X @ coef
    model = SkLearnLinearModel("linear_model.Lars")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit_tensors(X, y, w)
    assert any("sample_weight" in str(c.message) for c in caught)
    torch.testing.assert_close(model.representation()[0], coef, rtol=0, atol=1e-8)


# ---------------------------------------------------------------------------
# Constrained WLS (KernelSHAP)
# ---------------------------------------------------------------------------


def _exact_shapley(value, m):
    phi = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            for sub in itertools.combinations(others, r):
                weight = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                phi[i] += weight * (value(set(sub) | {i}) - value(set(sub)))
    return phi


def _kernel_fit(value, m):
    coal = enumerate_coalitions(m)[1:-1]
    sizes = coal.sum(1)
    w = shapley_kernel_weight(m, sizes)
    y = torch.tensor(
        [value({j for j in range(m) if row[j]}) for row in coal.tolist()], dtype=torch.float64
    )
    base, full = value(set()), value(set(range(m)))
    return solve_constrained_wls(coal.double(), y.double() - base, w, full - base)


def test_constrained_wls_two_player_interaction_game():
    def f(s):
        a, b = float(0 in s), float(1 in s)
        return 2 * a + 2 * b + 6 * a * b

    phi = _kernel_fit(f, 2)
    torch.testing.assert_close(phi, torch.tensor([5.0, 5.0], dtype=torch.float64))


def test_constrained_wls_equals_exact_shapley_with_dummy_player():
    def f(s):
        a, b, c = (float(i in s) for i in range(3))  # player 3 is a dummy
        return 1.0 + 3 * a - b + 4 * a * b * c + 2 * b * c

    phi = _kernel_fit(f, 4)
    expected = _exact_shapley(f, 4)
    torch.testing.assert_close(phi, expected, rtol=0, atol=1e-10)
    assert abs(phi[3].item()) < 1e-10
    assert phi.sum().item() == pytest.approx(f({0, 1, 2, 3}) - f(set()), abs=1e-12)


def test_constrained_wls_with_kernel_shap_enumeration_is_exact():
    g = torch.Generator().manual_seed(3)
    m = 5
    table = torch.randn(2**m, generator=g, dtype=torch.float64)  # arbitrary game

    def f(s):
        return table[sum(1 << i for i in s)].item()

    coal = kernel_shap_coalitions(m, 2**m - 2, g)
    y = torch.tensor(
        [f({j for j in range(m) if r[j]}) for r in coal.masks.tolist()], dtype=torch.float64
    )
    phi = solve_constrained_wls(
        coal.masks.double(), y - f(set()), coal.weights, f(set(range(m))) - f(set())
    )
    torch.testing.assert_close(phi, _exact_shapley(f, m), rtol=0, atol=1e-10)


def test_constrained_wls_constraint_exact_and_multi_output():
    g = torch.Generator().manual_seed(4)
    X = (torch.rand(30, 7, generator=g) > 0.5).double()
    y = torch.randn(30, 3, generator=g, dtype=torch.float64)
    w = torch.rand(30, generator=g, dtype=torch.float64)
    total = torch.tensor([1.0, -2.5, 1e3], dtype=torch.float64)
    phi = solve_constrained_wls(X, y, w, total)
    assert phi.shape == (3, 7)
    torch.testing.assert_close(phi.sum(1), total, rtol=1e-15, atol=1e-12)
    # optimality: the constrained solution beats any other point of the constraint set
    resid = ((y.T - phi @ X.T) ** 2 * w).sum()
    other = phi + torch.tensor([1e-3, -1e-3, 0, 0, 0, 0, 0], dtype=torch.float64)
    assert resid < ((y.T - other @ X.T) ** 2 * w).sum()
    # fewer samples than features: still satisfies the constraint
    few = solve_constrained_wls(X[:3], y[:3, 0], w[:3], 2.0)
    assert few.shape == (7,)
    assert few.sum().item() == pytest.approx(2.0, abs=1e-12)


def test_constrained_wls_matches_captum_style_large_weight_regression():
    # Captum's KernelSHAP approximates the constraints with weight 1e6 rows.
    g = torch.Generator().manual_seed(5)
    m = 6
    coal = kernel_shap_coalitions(m, 40, g)
    y = torch.randn(coal.masks.shape[0], generator=g, dtype=torch.float64)
    total = 3.0
    phi = solve_constrained_wls(coal.masks.double(), y, coal.weights, total)
    X = torch.cat([coal.masks.double(), torch.zeros(1, m), torch.ones(1, m)]).double()
    yy = torch.cat([y, torch.tensor([0.0, total], dtype=torch.float64)])
    ww = torch.cat([coal.weights, torch.tensor([1e9, 1e9], dtype=torch.float64)])
    approx, _ = weighted_least_squares(X, yy, ww, fit_intercept=False)
    torch.testing.assert_close(phi, approx[0], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# Similarity and perturbation functions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cosine", "euclidean"])
@pytest.mark.parametrize("width", [0.3, 1.0, 4])
def test_similarity_matches_captum(mode, width):
    from captum.attr._core.lime import get_exp_kernel_similarity_function as captum_fn

    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 3, 4, 4, generator=g)
    ours = get_exp_kernel_similarity_function(mode, kernel_width=width)
    theirs = captum_fn(mode, kernel_width=width)
    sims = []
    for _ in range(5):
        pert = x * (torch.rand(x.shape, generator=g) > 0.3)
        interp = torch.ones(1, 8)
        a = ours(x, pert, interp, num_interp_features=8)
        b = theirs(x, pert, interp, num_interp_features=8)
        assert isinstance(a, float)
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
        sims.append(a)
        # tuple inputs are concatenated
        a2 = ours((x, x[:, :1]), (pert, pert[:, :1]), interp)
        b2 = theirs((x, x[:, :1]), (pert, pert[:, :1]), interp)
        assert a2 == pytest.approx(b2, rel=1e-5, abs=1e-7)
    assert ours(x, x, None) == pytest.approx(1.0)
    assert len(set(sims)) > 1


def test_similarity_batch_equals_single_calls():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 10, generator=g)
    perts = torch.randn(6, 10, generator=g)
    fn = get_exp_kernel_similarity_function("euclidean", 2.0)
    batched = fn.batch(x, perts)
    singles = torch.tensor([fn(x, p[None], None) for p in perts])
    torch.testing.assert_close(batched, singles)


@pytest.mark.parametrize("bad", [-1, 0, float("inf"), "1"])
def test_similarity_kernel_width_validation(bad):
    with pytest.raises(ValueError) as err:
        get_exp_kernel_similarity_function(kernel_width=bad)
    assert "'kernel_width' parameter of get_exp_kernel_similarity_function" in str(err.value)
    assert "float > 0" in str(err.value)


def test_similarity_error_message_exact():
    with pytest.raises(ValueError) as err:
        get_exp_kernel_similarity_function(kernel_width=-1)
    assert str(err.value) == (
        "The 'kernel_width' parameter of get_exp_kernel_similarity_function must be a "
        "float > 0. Got -1."
    )
    with pytest.raises(ValueError, match="'distance_mode'"):
        get_exp_kernel_similarity_function("manhattan")


def test_default_perturb_func_is_bernoulli_half_and_seeded():
    x = torch.randn(1, 5)
    g = torch.Generator().manual_seed(0)
    draws = torch.cat(
        [default_perturb_func(x, num_interp_features=20, generator=g) for _ in range(50)]
    )
    assert draws.shape == (50, 20) and draws.dtype == torch.long
    assert set(draws.unique().tolist()) == {0, 1}
    assert 0.4 < draws.double().mean().item() < 0.6
    g2 = torch.Generator().manual_seed(0)
    again = torch.cat(
        [default_perturb_func(x, num_interp_features=20, generator=g2) for _ in range(50)]
    )
    assert torch.equal(draws, again)


def test_missing_sklearn_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    with pytest.raises(ImportError, match=r"whybox\[sklearn\]"):
        SkLearnLasso(alpha=0.08).fit_tensors(torch.randn(4, 2), torch.randn(4))


# ---------------------------------------------------------------------------
# Non-finite training data: one clear error from the one place data enter a fit
# ---------------------------------------------------------------------------


def _fits():
    """Every fit entry point, as ``fit(X, y, w)``."""
    return {
        "weighted_least_squares": lambda X, y, w: weighted_least_squares(X, y, w),
        "solve_constrained_wls": lambda X, y, w: solve_constrained_wls(X, y, w, 1.0),
        "WeightedLinearRegression": lambda X, y, w: WeightedLinearRegression().fit_tensors(X, y, w),
        "WeightedRidge": lambda X, y, w: WeightedRidge().fit_tensors(X, y, w),
        "WeightedLasso": lambda X, y, w: WeightedLasso(0.01).fit_tensors(X, y, w),
        "SkLearnLasso": lambda X, y, w: SkLearnLasso(alpha=0.01).fit_tensors(X, y, w),
    }


@pytest.mark.parametrize("fit", sorted(_fits()))
@pytest.mark.parametrize("where", ["X", "y", "sample_weight"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_training_data_is_a_clear_value_error(fit, where, value):
    X, w, coef, _ = _problem(n=12, p=3)
    y = X @ coef
    data = {"X": X.clone(), "y": y.clone(), "sample_weight": w.clone()}
    data[where][5].view(-1)[0] = value  # one bad entry, in row 5
    with pytest.raises(ValueError, match=f"The '{where}' parameter of .* must be finite") as err:
        _fits()[fit](data["X"], data["y"], data["sample_weight"])
    assert "first in row 5" in str(err.value)
    kind = "NaN" if value != value else "infinite"
    assert f"1 {kind}" in str(err.value)


def test_non_finite_message_names_every_bad_part_and_total():
    X, w, coef, _ = _problem(n=12, p=3)
    y = X @ coef
    y[0] = float("nan")
    w[3] = float("inf")
    with pytest.raises(ValueError, match="'y' and 'sample_weight' parameters of WeightedLasso"):
        WeightedLasso(0.01).fit_tensors(X, y, w)
    with pytest.raises(ValueError, match="'total' parameter of solve_constrained_wls"):
        solve_constrained_wls(X, X @ coef, torch.ones(12), float("nan"))


def test_kernel_shap_on_nan_inputs_raises_a_clear_error():
    from whybox.methods import KernelShap

    model = torch.nn.Linear(4, 2)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    x[1, 2] = float("nan")
    # Before the checks this reached torch.linalg.lstsq and failed an internal assert.
    # The method may name its inputs first; the fit's own check is the backstop.
    with pytest.raises(ValueError, match="finite"):
        KernelShap(model).attribute(x, target=0, n_samples=30, seed=0)
