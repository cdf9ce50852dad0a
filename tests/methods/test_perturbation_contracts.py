"""Contracts of the perturbation family (ablation, occlusion, permutation, Shapley, LIME):
dtypes (float64 in, float64 out), empty batches, NaN / inf, one chunk rule, random draws
only through the random source, declared parameters, hooks removed after errors.

Captum is only the oracle here; whybox never imports it.
"""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest
import torch
from torch import nn

import whybox.attr._perturbation as wa
from _support import module_hook_count
from whybox.core.randomness import GeneratorRandom
from whybox.core.surrogate import WeightedLinearRegression, get_exp_kernel_similarity_function
from whybox.core.validation import ParameterError
from whybox.methods.ablation import FeatureAblation, FeaturePermutation, Occlusion
from whybox.methods.lime import Lime, LimeBase, default_from_interp_rep_transform
from whybox.methods.shapley import KernelShap, ShapleyValues, ShapleyValueSampling

METHODS_DIR = pathlib.Path(inspect.getfile(Lime)).parent


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype).eval()


MASK = torch.tensor([[0, 0, 1, 2, 2, 3]])


def _limebase(model, **extra):
    def perturb(x, **kwargs):
        return torch.bernoulli(torch.full((1, 4), 0.5))

    def to_input(sample, x, **kwargs):
        return default_from_interp_rep_transform(sample, x, feature_mask=MASK, baselines=0.0)

    return LimeBase(
        model,
        interpretable_model=WeightedLinearRegression(),
        similarity_func=lambda *args, **kwargs: 1.0,
        perturb_func=perturb,
        from_interp_rep_transform=to_input,
        **extra,
    )


# -- dtypes ------------------------------------------------------------------------------
FACADE = {
    "Occlusion": (lambda m: wa.Occlusion(m), {"sliding_window_shapes": (2,), "strides": 2}),
    "ShapleyValueSampling": (lambda m: wa.ShapleyValueSampling(m), {"feature_mask": MASK}),
    "ShapleyValues": (lambda m: wa.ShapleyValues(m), {"feature_mask": MASK}),
    "Lime": (lambda m: wa.Lime(m), {"feature_mask": MASK, "n_samples": 30}),
    "KernelShap": (lambda m: wa.KernelShap(m), {"feature_mask": MASK, "n_samples": 16}),
    "FeatureAblation": (lambda m: wa.FeatureAblation(m), {"feature_mask": MASK}),
    "FeaturePermutation": (lambda m: wa.FeaturePermutation(m), {"feature_mask": MASK}),
}


@pytest.mark.parametrize("name", sorted(FACADE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_facade_returns_the_inputs_dtype(name, dtype):
    model = _model(dtype)
    make, options = FACADE[name]
    x = torch.randn(3, 6, dtype=dtype)
    torch.manual_seed(1)
    result = make(model).attribute(x, target=1, **options)
    assert result.dtype == dtype and result.shape == x.shape
    if name in ("Lime", "KernelShap"):
        table = make(model).attribute(x, target=1, return_input_shape=False, **options)
        assert table.dtype == dtype and table.shape == (3, 4)


@pytest.mark.parametrize("name", sorted(FACADE))
def test_float64_values_agree_with_captum(name):
    """Where the maths is Captum's, float64 results equal Captum's numbers (Captum
    computes these classes in float32 and returns float32; whybox keeps float64)."""
    captum_attr = pytest.importorskip("captum.attr")
    if name in ("Lime", "KernelShap"):
        pytest.skip("different surrogate / coalition design than Captum (see test below)")
    model = _model(torch.float64)
    make, options = FACADE[name]
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.manual_seed(2)
    theirs = getattr(captum_attr, name)(model).attribute(x, target=1, **options)
    torch.manual_seed(2)
    ours = make(model).attribute(x, target=1, **options)
    assert ours.dtype == torch.float64
    if theirs.dtype == torch.float64:  # FeatureAblation / FeaturePermutation: exact match
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-6)


def test_float64_kernel_shap_and_lime_are_computed_in_float64():
    """Not a cast: float64 results reach float64 accuracy (exact Shapley values with the
    full KernelSHAP budget; a linear model's exact coefficients for LIME)."""
    model = _model(torch.float64)
    x = torch.randn(2, 6, dtype=torch.float64)
    exact = wa.ShapleyValues(model).attribute(x, target=2, feature_mask=MASK)
    kernel = wa.KernelShap(model).attribute(x, target=2, feature_mask=MASK, n_samples=16)
    torch.testing.assert_close(kernel, exact, rtol=1e-10, atol=1e-12)
    weights = torch.randn(6, dtype=torch.float64)
    lime = wa.Lime(lambda t: t @ weights, interpretable_model=WeightedLinearRegression())
    coefs = lime.attribute(x, n_samples=40, return_input_shape=False)
    torch.testing.assert_close(coefs, weights * x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_limebase_dtype_follows_the_inputs(dtype):
    model = _model(dtype)
    x = torch.randn(1, 6, dtype=dtype)
    native = _limebase(model).attribute(x, target=0, n_samples=20)
    assert native.attributions.dtype == dtype and native.attributions.shape == (1, 4)
    facade = wa.LimeBase(
        model,
        WeightedLinearRegression(),
        lambda *a, **k: 1.0,
        lambda x, **k: torch.bernoulli(torch.full((1, 4), 0.5)),
        True,
        lambda s, x, **k: default_from_interp_rep_transform(s, x, feature_mask=MASK, baselines=0.0),
        None,
    )
    assert facade.attribute(x, target=0, n_samples=20).dtype == dtype


# -- empty batches -----------------------------------------------------------------------
NATIVE = {
    "feature_ablation": (lambda m: FeatureAblation(m), {"feature_mask": MASK}),
    "layer_feature_ablation": (lambda m: FeatureAblation(m, layer=m[1]), {}),
    "neuron_feature_ablation": (lambda m: FeatureAblation(m, layer=m[1]), {"neuron": 2}),
    "occlusion": (lambda m: Occlusion(m), {"sliding_window_shapes": (2,)}),
    "feature_permutation": (lambda m: FeaturePermutation(m), {}),
    "layer_feature_permutation": (lambda m: FeaturePermutation(m, layer=m[1]), {}),
    "shapley_values": (lambda m: ShapleyValues(m), {"feature_mask": MASK}),
    "shapley_value_sampling": (lambda m: ShapleyValueSampling(m), {"seed": 0}),
    "kernel_shap": (lambda m: KernelShap(m), {"seed": 0}),
    "lime": (lambda m: Lime(m), {"seed": 0}),
    "lime_base": (lambda m: _limebase(m), {"num_interp_features": 4}),  # **kwargs
}


def _expected_empty_shape(name):
    return (0, 5) if name.startswith("layer") else (0, 6)


@pytest.mark.parametrize("bypass_template", [False, True], ids=["template", "body"])
@pytest.mark.parametrize("name", sorted(NATIVE))
def test_empty_batch_gives_an_empty_result(name, bypass_template):
    """N = 0: an empty result shaped like the inputs (or the layer), nothing perturbed.

    ``body`` runs the method's own ``attribute`` without the template's early exit: the
    methods are empty-batch safe whatever the engine does with zero rows."""
    model = _model()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    make, options = NATIVE[name]
    method = make(model)
    x = torch.randn(0, 6)
    if bypass_template:
        result = inspect.unwrap(type(method).attribute)(method, x, **options)
    else:
        result = method.attribute(x, **options)
    assert tuple(result.attributions.shape) == _expected_empty_shape(name)
    assert result.attributions.dtype == torch.float32
    if type(method).has_delta:
        assert result.delta is not None and result.delta.shape == (0,)
    assert all(rows == 0 for rows in calls)  # at most a forward of the empty batch
    assert module_hook_count(model) == 1  # only the test's own hook


@pytest.mark.parametrize("method", [KernelShap, Lime])
def test_empty_batch_coefficient_tables(method):
    x = torch.randn(0, 6)
    result = method(_model()).attribute(x, feature_mask=MASK, return_input_shape=False, seed=0)
    assert result.attributions.shape == (0, 4)
    facade = getattr(wa, method.__name__)(_model(torch.float64))
    table = facade.attribute(x.double(), feature_mask=MASK, return_input_shape=False)
    assert table.shape == (0, 4) and table.dtype == torch.float64


def test_empty_batch_of_token_ids_gives_float_attributions():
    embedding = nn.EmbeddingBag(10, 3)
    tokens = torch.zeros(0, 5, dtype=torch.long)
    result = FeatureAblation(embedding).attribute(tokens, target=0)
    assert result.attributions.shape == (0, 5) and result.attributions.is_floating_point()


@pytest.mark.parametrize("name", sorted(FACADE))
def test_facade_empty_batch(name):
    make, options = FACADE[name]
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(0, 6, dtype=dtype)
        result = make(_model(dtype)).attribute(x, target=0, **options)
        assert result.shape == (0, 6) and result.dtype == dtype
    model, x = _model(), torch.randn(0, 6)
    assert wa.LayerFeatureAblation(model, model[1]).attribute(x).shape == (0, 5)
    assert wa.LayerFeaturePermutation(model, model[1]).attribute(x).shape == (0, 5)
    assert wa.NeuronFeatureAblation(model, model[1]).attribute(x, neuron_selector=1).shape == (
        0,
        6,
    )


# -- NaN / inf ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", [KernelShap, Lime])
def test_non_finite_inputs_baselines_and_outputs_are_clear_errors(method):
    model = _model()
    name = method.__name__
    x = torch.randn(2, 6)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = x.clone()
        broken[1, 3] = bad
        with pytest.raises(ParameterError, match=f"'inputs' parameter of {name} must be finite"):
            method(model).attribute(broken, target=0, seed=0)
        with pytest.raises(ParameterError, match=f"'inputs' parameter of {name} must be finite"):
            getattr(wa, name)(model).attribute(broken, target=0)
        baseline = torch.zeros(1, 6)
        baseline[0, 2] = bad
        with pytest.raises(ParameterError, match=f"'baselines' parameter of {name}"):
            method(model).attribute(x, baselines=baseline, target=0, seed=0)

    def nan_model(t):
        out = model(t)
        return torch.where(t[:, :1] > 0, out, torch.full_like(out, float("nan")))

    with pytest.raises(ParameterError, match=f"'forward_func' parameter of {name} .*finite"):
        method(nan_model).attribute(x.abs() * torch.tensor([1, -1]).view(2, 1), target=0, seed=0)


def test_limebase_names_the_function_that_produced_nan():
    model = _model()
    x = torch.randn(1, 6)
    with pytest.raises(ParameterError, match="'forward_func' parameter of LimeBase"):
        _limebase(lambda t: model(t) * float("nan")).attribute(x, target=0, n_samples=5)
    broken = _limebase(model)
    broken.similarity_func = lambda *a, **k: float("nan")
    with pytest.raises(ParameterError, match="'similarity_func' parameter of LimeBase"):
        broken.attribute(x, target=0, n_samples=5)


# -- one chunk rule ----------------------------------------------------------------------
class _Rows(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.inner(x)


CHUNKED = {
    "feature_ablation": (FeatureAblation, {"feature_mask": MASK}),
    "occlusion": (Occlusion, {"sliding_window_shapes": (2,)}),
    "feature_permutation": (FeaturePermutation, {"seed": 0}),
    "shapley_values": (ShapleyValues, {"feature_mask": MASK}),
    "shapley_value_sampling": (ShapleyValueSampling, {"seed": 0, "n_samples": 4}),
    "kernel_shap": (KernelShap, {"seed": 0, "n_samples": 20}),
    "lime": (Lime, {"seed": 0, "n_samples": 20}),
}


@pytest.mark.parametrize("name", sorted(CHUNKED))
def test_chunk_size_never_changes_results_and_bounds_rows(name):
    """``chunk_size`` rows per forward, rounded down to whole perturbations (N = 3 rows),
    at least one perturbation; results identical for every chunk."""
    method, options = CHUNKED[name]
    model = _Rows(_model())
    x = torch.randn(3, 6)
    reference = None
    for chunk, most in ((1, 3), (2, 3), (7, 6), (10**6, None), ("auto", None)):
        model.rows.clear()
        result = method(model).attribute(x, target=[0, 1, 2], chunk_size=chunk, **options)
        if most is not None:
            assert max(model.rows) == most
        assert all(rows % 3 == 0 for rows in model.rows)  # whole perturbations only
        if reference is None:
            reference = result.attributions
        else:
            torch.testing.assert_close(result.attributions, reference, rtol=1e-6, atol=1e-7)


def test_limebase_chunks_are_whole_samples_and_facade_maps_perturbations_per_eval():
    model = _Rows(_model())
    x = torch.randn(1, 6)
    results = []
    for chunk, most in ((1, 1), (3, 3), ("auto", None)):
        model.rows.clear()
        torch.manual_seed(4)
        results.append(_limebase(model).attribute(x, target=0, n_samples=9, chunk_size=chunk))
        if most is not None:
            assert max(model.rows) == most
    for result in results[1:]:
        torch.testing.assert_close(result.attributions, results[0].attributions)
    facade = wa.LimeBase(
        model,
        WeightedLinearRegression(),
        get_exp_kernel_similarity_function(),
        lambda x, **k: torch.bernoulli(torch.full((1, 4), 0.5)),
        True,
        lambda s, x, **k: default_from_interp_rep_transform(s, x, feature_mask=MASK, baselines=0.0),
        None,
    )
    for per_eval in (1, 4):  # Captum's meaning: samples per forward, 1 by default
        model.rows.clear()
        facade.attribute(x, target=0, n_samples=9, perturbations_per_eval=per_eval)
        assert max(model.rows) == per_eval


# -- random draws only through the source ------------------------------------------------
def test_methods_never_branch_on_the_kind_of_random_source():
    for path in METHODS_DIR.rglob("*.py"):
        text = path.read_text()
        assert "GlobalRandom" not in text, path.name
        assert not re.search(r"isinstance\([^)]*, *GeneratorRandom", text), path.name


class _Recording(GeneratorRandom):
    def __init__(self, seed):
        super().__init__(torch.Generator().manual_seed(seed))
        self.asked: list[tuple] = []

    def permutations(self, count, n, *, exclude_identity=False, device=None):
        self.asked.append(("permutations", count, n, exclude_identity))
        return super().permutations(count, n, exclude_identity=exclude_identity, device=device)

    def bernoulli(self, shape, p=0.5, *, device=None):
        self.asked.append(("bernoulli", tuple(shape), p))
        return super().bernoulli(shape, p, device=device)


def test_methods_ask_the_source_for_their_draws():
    model = _model()
    x = torch.randn(4, 6)
    source = _Recording(0)
    FeaturePermutation(model).attribute(x, target=0, feature_mask=MASK, seed=source)
    ShapleyValueSampling(model).attribute(x, target=0, feature_mask=MASK, n_samples=5, seed=source)
    Lime(model).attribute(x, target=0, feature_mask=MASK, n_samples=7, seed=source)
    assert source.asked == [
        ("permutations", 4, 4, True),  # one shuffle of the batch per feature
        ("permutations", 5, 4, False),  # one ordering of the features per sample
        ("bernoulli", (7, 4), 0.5),  # each group kept with probability 1/2
    ]
    # the same source state gives the same numbers
    a = KernelShap(model).attribute(x, target=0, n_samples=10, seed=_Recording(3))
    b = KernelShap(model).attribute(x, target=0, n_samples=10, seed=_Recording(3))
    assert torch.equal(a.attributions, b.attributions)


def test_seeded_native_results_reproduce():
    model = _model()
    x = torch.randn(4, 6)
    for method, options in [
        (FeaturePermutation, {}),
        (ShapleyValueSampling, {"n_samples": 3}),
        (KernelShap, {"n_samples": 12}),
        (Lime, {"n_samples": 12}),
    ]:
        first = method(model).attribute(x, target=1, seed=7, **options).attributions
        again = method(model).attribute(x, target=1, seed=7, **options).attributions
        other = method(model).attribute(x, target=1, seed=8, **options).attributions
        assert torch.equal(first, again)
        assert not torch.equal(first, other)


# -- declared parameters -----------------------------------------------------------------
def test_declared_parameters_give_the_uniform_errors():
    model = _model()
    x = torch.randn(2, 6)
    cases = [
        (
            lambda: Lime(model).attribute(x, n_samples=0),
            ValueError,
            "'n_samples' parameter of Lime",
        ),
        (lambda: Lime(model).attribute(x, seed="1"), TypeError, "'seed' parameter of Lime"),
        (
            lambda: Lime(model).attribute(x, return_input_shape=1),
            TypeError,
            "'return_input_shape' parameter of Lime",
        ),
        (
            lambda: Lime(model, similarity_func=3).attribute(x),
            TypeError,
            "'similarity_func' parameter of Lime",
        ),
        (
            lambda: Lime(model, interpretable_model=object()).attribute(x),
            TypeError,
            "'interpretable_model' parameter of Lime",
        ),
        (
            lambda: KernelShap(model).attribute(x, n_samples=1),
            ValueError,
            "'n_samples' parameter of KernelShap",
        ),
        (
            lambda: ShapleyValueSampling(model).attribute(x, seed=1.5),
            TypeError,
            "'seed' parameter of ShapleyValueSampling",
        ),
        (
            lambda: FeaturePermutation(model, perm_func=3).attribute(x),
            TypeError,
            "'perm_func' parameter of FeaturePermutation",
        ),
        (
            lambda: _limebase(model).attribute(x[:1], n_samples=0),
            ValueError,
            "'n_samples' parameter of LimeBase",
        ),
    ]
    for run, error, message in cases:
        with pytest.raises(error, match=message):
            run()


# -- hooks -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [FeatureAblation, FeaturePermutation])
def test_layer_hooks_removed_after_an_error(method):
    model = _model()
    calls = {"n": 0}

    def fail_on_perturbed(module, args):
        calls["n"] += 1
        if calls["n"] > 2:  # the layer's capture and the original pass, then a failure
            raise RuntimeError("boom")

    model[2].register_forward_pre_hook(fail_on_perturbed)
    before = module_hook_count(model)
    with pytest.raises(RuntimeError, match="boom"):
        method(model, layer=model[1]).attribute(torch.randn(3, 6), target=0, chunk_size=3)
    assert module_hook_count(model) == before


def test_feature_ablation_per_example_masks_with_several_outputs_per_example():
    """Captum's ``target=None`` on a model with O outputs gives ``(N * O, ...)`` rows,
    example-major; per-example masks used to fail there with a raw expand error (Captum
    fails too). Each example's O rows equal the example explained alone."""
    import whybox.attr as W

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.randn(3, 4)
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2], [1, 1, 2, 2]])
    together = W.FeatureAblation(model).attribute(x, target=None, feature_mask=mask)
    assert together.shape == (9, 4)
    for i in range(3):
        alone = W.FeatureAblation(model).attribute(
            x[i : i + 1], target=None, feature_mask=mask[i : i + 1]
        )
        torch.testing.assert_close(together[3 * i : 3 * i + 3], alone)
    # a mask shared by the examples: Captum's numbers
    captum_attr = pytest.importorskip("captum.attr")
    shared = W.FeatureAblation(model).attribute(x, target=None, feature_mask=mask[:1])
    want = captum_attr.FeatureAblation(model).attribute(x, target=None, feature_mask=mask[:1])
    torch.testing.assert_close(shared, want)


@pytest.mark.parametrize("masks", ["shared", "mixed", "disjoint"])
@pytest.mark.parametrize("per_eval", [1, 3])
def test_feature_permutation_multi_input_draws_are_captums(masks, per_eval):
    """Seeded FeaturePermutation over several inputs draws Captum 0.9's permutations: a
    feature held by two inputs is shuffled apart in each (Captum calls its perm_func per
    input), and a forward of several features draws one per feature for every input
    holding one of them. Same numbers and the same generator state afterwards."""
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as W

    torch.manual_seed(0)
    inputs = (torch.randn(6, 2, 2), torch.randn(6, 2, 3))
    feature_mask = {
        "shared": (torch.arange(4).view(1, 2, 2), torch.arange(6).view(1, 2, 3)),
        "mixed": (torch.tensor([[[0, 1], [2, 2]]]), torch.tensor([[[1, 3, 3], [0, 4, 4]]])),
        "disjoint": (torch.arange(4).view(1, 2, 2), 4 + torch.arange(6).view(1, 2, 3)),
    }[masks]

    def model(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1.flatten(1).sum(1, keepdim=True) * x2.flatten(1).sum(1, keepdim=True)

    options = {"feature_mask": feature_mask, "target": 0, "perturbations_per_eval": per_eval}
    torch.manual_seed(1)
    ours = W.FeaturePermutation(model).attribute(inputs, **options)
    ours_state = torch.random.get_rng_state()
    torch.manual_seed(1)
    theirs = captum_attr.FeaturePermutation(model).attribute(inputs, **options)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    assert torch.equal(ours_state, torch.random.get_rng_state())


@pytest.mark.parametrize("cls", ["FeaturePermutation", "FeatureAblation", "Occlusion"])
def test_loss_against_batch_labels_runs_as_captum(cls):
    """Permutation importance's usual forward: a loss of the batch against labels of the
    batch's size. A forward of several stacked perturbations would break it before its
    scalar output shows it is one; without a target the first perturbation runs alone
    (as Captum runs each), so the call runs one perturbation per forward, Captum's
    numbers. A per-row model without a target still gets stacked perturbations."""
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as W

    torch.manual_seed(0)
    labels = torch.randn(8)
    rows_seen: list[int] = []

    def loss(x: torch.Tensor) -> torch.Tensor:
        rows_seen.append(x.shape[0])
        return torch.mean((x.sum(1) - labels) ** 2)

    x = torch.randn(8, 5)
    options = {"sliding_window_shapes": (1,)} if cls == "Occlusion" else {}
    torch.manual_seed(1)
    ours = getattr(W, cls)(loss).attribute(x, **options)
    assert set(rows_seen) == {8}
    torch.manual_seed(1)
    theirs = getattr(captum_attr, cls)(loss).attribute(x, **options)
    torch.testing.assert_close(ours, theirs)

    rows_seen.clear()
    per_row = nn.Linear(5, 3)
    hook = per_row.register_forward_pre_hook(lambda m, a: rows_seen.append(a[0].shape[0]))
    try:
        getattr(W, cls)(per_row).attribute(x, **options)
    finally:
        hook.remove()
    assert rows_seen[0] == 8 and max(rows_seen) > 8, rows_seen  # alone, then stacked
