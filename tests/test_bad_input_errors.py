"""Bad inputs found by an audit of the public calls: each is a clear whybox error naming
the parameter (never an arbitrary score from NaN, a dropped option, or a deep torch /
numpy traceback)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import whybox
import whybox.attr as W
import whybox.metrics as M
from whybox.core.validation import ParameterError, ParameterTypeError

NAN = float("nan")


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5)).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _raises(kind, parameter, call):
    with pytest.raises(kind) as info:
        call()
    assert f"'{parameter}'" in str(info.value)
    return info.value


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.sparseness(torch.full((2, 10), NAN)),
        lambda: M.sparseness(torch.tensor([[1.0, float("inf")]])),
        lambda: M.entropy(torch.tensor([[1.0, NAN]])),
        lambda: M.pointing_game(torch.full((2, 8, 8), NAN), torch.ones(2, 8, 8, dtype=torch.bool)),
        lambda: M.relevance_mass(torch.full((1, 4, 4), NAN), torch.ones(1, 4, 4, dtype=torch.bool)),
    ],
)
def test_maps_with_nan_or_inf_are_refused_not_scored(call):
    error = _raises(ParameterError, "attributions", call)
    assert "NaN" in str(error)


def test_deletion_and_insertion_refuse_nan_maps_instead_of_ranking_them(cnn, x):
    maps = torch.full_like(x, NAN)
    for metric in (M.deletion, M.insertion):
        _raises(
            ParameterError, "attributions", lambda m=metric: m(cnn, x, maps, target=0, n_steps=4)
        )
    # finite maps still score
    assert M.deletion(cnn, x, torch.rand_like(x), target=0, n_steps=4).score.isfinite().all()


def test_agreement_names_the_map_with_nan():
    a, b = torch.rand(2, 6), torch.rand(2, 6)
    b[1, 2] = NAN
    _raises(ParameterError, "b", lambda: M.rank_correlation(a, b))


def test_a_map_without_a_batch_dimension_is_a_clear_error():
    _raises(ParameterError, "attributions", lambda: M.sparseness(torch.tensor(1.0)))


def test_norms_are_checked_by_name(cnn, x):
    saliency = W.Saliency(cnn).attribute
    _raises(
        ParameterError,
        "norm_ord",
        lambda: M.sensitivity_max(saliency, x, target=0, norm_ord="bogus"),
    )
    _raises(ParameterError, "norm", lambda: M.max_sensitivity(cnn, x, target=0, norm="nuc"))
    # numbers (inf included) and "fro" are norms
    assert M.sensitivity_max(saliency, x, target=0, norm_ord=float("inf")).shape == (2,)
    assert M.max_sensitivity(cnn, x, target=0, norm=1, n_samples=2).score.shape == (2,)


def test_the_default_perturbation_needs_a_radius_of_at_least_zero(cnn, x):
    saliency = W.Saliency(cnn).attribute
    _raises(
        ParameterError,
        "perturb_radius",
        lambda: M.sensitivity_max(saliency, x, target=0, perturb_radius=-1.0),
    )
    assert M.sensitivity_max(saliency, x, target=0, perturb_radius=0.0).abs().max() == 0
    # a perturbation of the caller's own gets the radius as it is
    shifted = M.sensitivity_max(
        saliency, x, target=0, perturb_func=lambda t, r: t - r, perturb_radius=-1.0
    )
    assert shifted.shape == (2,)


def test_an_unknown_explain_name_is_blamed_on_explain(cnn, x):
    for metric in (M.max_sensitivity, M.model_parameter_randomisation):
        error = _raises(ParameterError, "explain", lambda m=metric: m(cnn, x, explain="bogus"))
        assert metric.__name__ in str(error) and "saliency" in str(error)


def test_noise_tunnel_never_drops_baselines_its_inner_method_cannot_take(cnn, x):
    _raises(
        ParameterTypeError,
        "baselines",
        lambda: whybox.explain(
            cnn, x, method="noise_tunnel", target=0, nt_samples=2, baselines="zz"
        ),
    )
    facade = W.NoiseTunnel(W.Saliency(cnn))
    _raises(
        TypeError,
        "baselines",
        lambda: facade.attribute(x, target=0, nt_samples=2, baselines=torch.zeros_like(x)),
    )
    # an inner method that takes baselines still gets them
    with_ig = W.NoiseTunnel(W.IntegratedGradients(cnn))
    assert (
        with_ig.attribute(x, target=0, nt_samples=2, baselines=torch.zeros_like(x)).shape == x.shape
    )


def test_noise_tunnel_checks_seed_and_what_it_wraps(cnn, x):
    _raises(
        ParameterTypeError,
        "seed",
        lambda: whybox.explain(cnn, x, method="noise_tunnel", target=0, nt_samples=2, seed="x"),
    )
    _raises(ParameterTypeError, "attribution_method", lambda: W.NoiseTunnel(cnn))


def test_gradient_shap_needs_at_least_one_reference(cnn, x):
    _raises(
        ParameterError,
        "baselines",
        lambda: W.GradientShap(cnn).attribute(x, target=0, baselines=torch.zeros(0, 3, 8, 8)),
    )
    _raises(
        ParameterError,
        "baselines",
        lambda: whybox.explain(
            cnn, x, method="gradient_shap", target=0, baselines=torch.zeros(0, 3, 8, 8)
        ),
    )


@pytest.mark.parametrize("cls", ["LayerIntegratedGradients", "LayerGradCam", "LayerConductance"])
def test_a_layer_method_without_its_layer_is_an_error_not_the_input_method(cnn, x, cls):
    method = getattr(W, cls)(cnn, None)
    _raises(TypeError, "layer", lambda: method.attribute(x, target=0))


@pytest.mark.parametrize("layer", [False, True])
def test_integer_outputs_are_a_clear_error_for_gradient_methods(cnn, x, layer):
    def counts(t):
        return cnn(t).long()

    method = W.LayerIntegratedGradients(counts, cnn[0]) if layer else W.IntegratedGradients(counts)
    error = _raises(TypeError, "forward_func", lambda: method.attribute(x, target=0))
    assert "int64" in str(error)


@pytest.mark.parametrize(
    ("options", "blamed"),
    [
        ({"sliding_window_shapes": (3, 2, 2), "strides": 0}, "strides"),
        ({"sliding_window_shapes": (3, 2, 2), "strides": (1, 3, 3)}, "strides"),
        ({"sliding_window_shapes": (3, 9, 2)}, "sliding_window_shapes"),
    ],
)
def test_occlusion_blames_the_option_that_does_not_fit(cnn, x, options, blamed):
    error = _raises(ValueError, blamed, lambda: W.Occlusion(cnn).attribute(x, target=0, **options))
    assert "sliding_window_masks" not in str(error)
