"""Native robustness (seeded, chunk-invariant) and the axiomatic checks."""

import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()


def test_saliency_of_a_linear_model_has_zero_sensitivity_and_lipschitz():
    torch.manual_seed(1)
    model = nn.Linear(6, 1)
    x = torch.randn(4, 6)
    for metric in (WM.max_sensitivity, WM.avg_sensitivity, WM.local_lipschitz):
        result = metric(model, x, explain_options={"abs": False}, radius=0.5, seed=0)
        assert result.score.shape == (4,) and result.score.abs().max() == 0
    # and zero infidelity in the native form too
    w = model.weight.detach().expand_as(x)
    assert WM.infidelity_score(model, x, w, seed=0).abs().max() < 1e-10
    assert WM.infidelity_score(model, x, w * x, multiply_by_inputs=True, seed=0).abs().max() < 1e-10


def test_seed_reproduces_and_chunking_never_changes_the_numbers(net):
    x = torch.randn(4, 5)
    a = WM.max_sensitivity(net, x, target=[0, 1, 2, 0], seed=3, radius=0.1)
    b = WM.max_sensitivity(net, x, target=[0, 1, 2, 0], seed=3, radius=0.1, chunk_size=5)
    torch.testing.assert_close(a.samples, b.samples)
    torch.testing.assert_close(a.score, a.samples.max(dim=1).values)
    c = WM.avg_sensitivity(net, x, target=1, seed=3, radius=0.1)
    torch.testing.assert_close(c.score, c.samples.mean(dim=1))
    attr = torch.randn(4, 5)
    d = WM.infidelity_score(net, x, attr, target=1, seed=2, chunk_size=3)
    e = WM.infidelity_score(net, x, attr, target=1, seed=2)
    assert d.shape == (4,)
    torch.testing.assert_close(d, e)


def test_per_example_options_follow_their_rows_and_a_callable_explainer(net):
    x = torch.randn(3, 5)
    baselines = torch.randn(3, 5)
    seen = []

    def explain(model, inputs, target, baselines):
        seen.append((inputs.shape[0], baselines.shape[0]))
        return whybox.explain(
            model,
            inputs,
            method="integrated_gradients",
            target=target,
            baselines=baselines,
            n_steps=4,
        ).attributions

    WM.local_lipschitz(
        net,
        x,
        explain=explain,
        explain_options={"baselines": baselines},
        target=1,
        n_samples=4,
        seed=0,
        chunk_size=6,
    )
    assert seen[0] == (3, 3) and all(rows == b for rows, b in seen[1:])


def test_keep_prediction_leaves_out_perturbations_that_flip_the_class(net):
    x = torch.randn(4, 5)
    result = WM.max_sensitivity(net, x, target=1, radius=3.0, seed=0, keep_prediction=True)
    flipped = torch.isnan(result.samples)
    assert bool(flipped.any())
    kept = torch.nan_to_num(result.samples, nan=-1.0).max(dim=1).values
    torch.testing.assert_close(result.score[kept >= 0], kept[kept >= 0])


def test_completeness_and_non_sensitivity(net):
    x = torch.randn(4, 5)
    ig = whybox.explain(net, x, method="integrated_gradients", target=1)
    gap = WM.completeness(net, x, ig, target=1)
    torch.testing.assert_close(gap, ig.delta)
    assert gap.abs().max() < 1e-4
    model = nn.Linear(5, 1)
    with torch.no_grad():
        model.weight[0, 2] = 0.0
    exact = whybox.explain(model, x, method="integrated_gradients").attributions
    assert WM.non_sensitivity(model, x, exact).violations.tolist() == [0, 0, 0, 0]
    result = WM.non_sensitivity(model, x, torch.ones_like(x))
    assert result.violations.tolist() == [1, 1, 1, 1] and result.effects.shape == (4, 5)


def test_input_invariance_passes_gradients_and_fails_x_times_gradient(net):
    x = torch.randn(4, 5)
    assert bool(
        WM.input_invariance(net, x, target=1, explain_options={"abs": False}).invariant.all()
    )
    moved = WM.input_invariance(net, x, explain="input_x_gradient", target=1, shift=2.0)
    assert not bool(moved.invariant.any())
    fixed = WM.input_invariance(
        net, x, explain="integrated_gradients", target=1, explain_options={"n_steps": 8}
    )
    assert not bool(fixed.invariant.any())  # a zero baseline does not move with the data


@pytest.mark.parametrize("metric", ["max_sensitivity", "avg_sensitivity", "local_lipschitz"])
def test_show_progress_counts_every_sample_and_never_changes_the_numbers(net, metric, capsys):
    x = torch.randn(3, 5)
    fn = getattr(WM, metric)
    quiet = fn(net, x, target=0, seed=4, radius=0.1, n_samples=7, chunk_size=6)
    shown = fn(net, x, target=0, seed=4, radius=0.1, n_samples=7, chunk_size=6, show_progress=True)
    torch.testing.assert_close(quiet.samples, shown.samples)
    err = capsys.readouterr().err
    assert f"{metric}: perturbation samples" in err and "7/7" in err


def test_show_progress_is_checked(net):
    with pytest.raises(TypeError, match="show_progress"):
        WM.max_sensitivity(net, torch.randn(2, 5), target=0, show_progress="yes")
