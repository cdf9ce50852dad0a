"""Deletion / insertion / AOPC / faithfulness correlation / ROAD: closed forms and contracts."""

import math

import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM
from _dense_fill import dense_fill


@pytest.fixture
def patch_task():
    return WM.planted_patch_task(n_samples=6, size=12, patch=3, seed=1)


def test_deleting_the_planted_patch_collapses_the_score(patch_task):
    t = patch_task
    saliency = whybox.explain(t.model, t.inputs, method="saliency", target=1).attributions
    n_pixels = 12 * 12
    # 16 steps of 9 pixels: the first step removes exactly the patch
    result = WM.deletion(t.model, t.inputs, saliency, target=1, n_steps=16)
    assert result.curve.shape == (6, 17) and result.fractions.shape == (17,)
    assert bool((result.curve[:, 0] > 0).all())  # class 1 with the patch
    assert bool((result.curve[:, 1] < -4).all())  # collapsed once the patch is gone
    assert round(float(result.fractions[1]) * n_pixels) == 9
    # least relevant first keeps the patch until the very end: a much larger area
    lerf = WM.deletion(t.model, t.inputs, saliency, target=1, n_steps=16, order="lerf")
    assert bool((lerf.score > result.score + 2).all())
    ref = WM.deletion(t.model, t.inputs, saliency, target=1, n_steps=16, order="random", seed=0)
    assert bool((ref.score > result.score).all())


def test_insertion_and_aopc(patch_task):
    t = patch_task
    saliency = whybox.explain(t.model, t.inputs, method="saliency", target=1).attributions
    ins = WM.insertion(t.model, t.inputs, saliency, target=1, n_steps=16)
    assert bool((ins.curve[:, 0] < 0).all()) and bool((ins.curve[:, 1] > 0).all())
    aopc = WM.aopc(t.model, t.inputs, saliency, target=1, n_steps=16)
    torch.testing.assert_close(aopc.score, (aopc.curve[:, :1] - aopc.curve).mean(dim=1))
    assert aopc.name == "aopc" and bool((aopc.score > 0).all())


def test_curves_do_not_depend_on_the_chunk_size_and_keep_the_device_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    attr = torch.randn(5, 6, dtype=torch.float64)
    a = WM.deletion(model, x, attr, target=1, n_steps=6, chunk_size=3)
    b = WM.deletion(model, x, attr, target=1, n_steps=6)
    torch.testing.assert_close(a.curve, b.curve)
    assert a.curve.dtype == torch.float64
    c = WM.faithfulness_correlation(model, x, attr, target=1, seed=3, chunk_size=4)
    d = WM.faithfulness_correlation(model, x, attr, target=1, seed=3)
    torch.testing.assert_close(c.score, d.score)


def test_curve_points_equal_a_plain_loop():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    x, attr = torch.randn(3, 4), torch.randn(3, 4)
    base = torch.full((1, 4), 0.5)
    result = WM.deletion(model, x, attr, baselines=base, n_steps=4)
    for i in range(3):
        order = attr[i].argsort(descending=True, stable=True)
        for k in range(5):
            row = x[i].clone()
            row[order[:k]] = 0.5
            torch.testing.assert_close(result.curve[i, k], model(row[None])[0, 0])


def test_feature_groups_rank_by_summed_attribution():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0, 10.0, 10.0]]))
    x = torch.ones(1, 4)
    groups = torch.tensor([[0, 0, 1, 1]])
    attr = torch.tensor([[1.0, 1.0, 10.0, 10.0]])
    result = WM.deletion(model, x, attr, feature_mask=groups, n_steps=2)
    torch.testing.assert_close(result.curve, torch.tensor([[22.0, 2.0, 0.0]]))


def test_faithfulness_correlation_is_one_for_exact_attributions_of_a_linear_model():
    task = WM.linear_task(n_samples=4, n_features=10, seed=2)
    result = WM.faithfulness_correlation(
        task.model, task.inputs, task.attributions, subset_size=3, n_samples=20, seed=0
    )
    assert result.attribution_sums.shape == (4, 20)
    torch.testing.assert_close(result.score, torch.ones(4), rtol=0, atol=1e-5)


def test_noisy_linear_imputation_reproduces_a_linear_ramp_and_keeps_kept_pixels():
    image = torch.linspace(0, 1, 12).view(1, 1, 1, 12).expand(2, 3, 12, 12).contiguous()
    removed = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    removed[0, :, 3:8, 2:9] = True
    removed[1, :, 1:11:2, 1:11:3] = True  # interior: a border pixel averages fewer sides
    out = WM.noisy_linear_impute(image, removed, max_iterations=200, tolerance=1e-7)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)
    noisy = WM.noisy_linear_impute(image, removed, noise=torch.ones_like(image))
    keep = ~removed.expand_as(image)
    assert torch.equal(noisy[keep], image[keep])


def test_road_curves(patch_task):
    t = patch_task
    saliency = whybox.explain(t.model, t.inputs, method="saliency", target=1).attributions
    morf = WM.road(t.model, t.inputs, saliency, target=1, n_steps=8, seed=0)
    lerf = WM.road(t.model, t.inputs, saliency, target=1, n_steps=8, order="lerf", seed=0)
    assert morf.curve.shape == (6, 9) and bool((morf.score < lerf.score).all())
    accuracy = WM.road(t.model, t.inputs, saliency, target=1, n_steps=8, measure="accuracy", seed=0)
    assert torch.equal(accuracy.curve[:, 0], torch.ones(6))
    assert float(accuracy.curve[:, 2].mean()) == 0.0  # the patch is gone after 2/8


def test_errors_name_the_parameter():
    model = nn.Linear(3, 1)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="'attributions'"):
        WM.deletion(model, x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="'order'"):
        WM.deletion(model, x, x, order="best")
    with pytest.raises(ValueError, match="'n_steps'"):
        WM.insertion(model, x, x, n_steps=0)
    with pytest.raises(ValueError, match="'inputs'"):
        WM.road(model, x, x)
    with pytest.raises(ValueError, match="'subset_size'"):
        WM.faithfulness_correlation(model, x, x, subset_size=5)
    assert math.isclose(WM.deletion(model, x, x).fractions[-1].item(), 1.0)


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_noisy_linear_imputation_solves_the_harmonic_system(solver):
    if solver == "direct":
        pytest.importorskip("scipy")
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(3, 2, 9, 7, generator=generator)
    removed = torch.rand(3, 1, 9, 7, generator=generator) < torch.tensor([0.2, 0.6, 0.9]).view(
        3, 1, 1, 1
    )
    removed[1, :, 2:7, 1:6] = True  # a blob: far pixels only see other unknowns
    out = WM.noisy_linear_impute(images, removed, solver=solver)
    for r in range(3):
        expected = dense_fill(images[r], removed[r, 0])
        torch.testing.assert_close(out[r].double(), expected, atol=1e-5, rtol=0)
    # per-channel masks and a wholly removed image (nothing pins it: zeros)
    per_channel = removed.expand(3, 2, 9, 7).clone()
    per_channel[0, 1] = True
    out = WM.noisy_linear_impute(images, per_channel, solver=solver)
    torch.testing.assert_close(out[0, 1], torch.zeros(9, 7))
    expected = dense_fill(images[0, :1], per_channel[0, 0])
    torch.testing.assert_close(out[0, :1].double(), expected, atol=1e-5, rtol=0)


def test_noisy_linear_imputation_cg_raises_when_it_cannot_converge():
    images = torch.rand(1, 1, 16, 16)
    removed = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    removed[0, 0, 0, 0] = False
    with pytest.raises(RuntimeError, match="max_iterations"):
        WM.noisy_linear_impute(images, removed, solver="cg", max_iterations=2, tolerance=1e-9)
    with pytest.raises(ValueError, match="'solver'"):
        WM.noisy_linear_impute(images, removed, solver="lu")
