"""Ground-truth tasks have the answers they claim; the benchmark runs and prints."""

import math

import pytest
import torch

import whybox
import whybox.metrics as WM


def test_integrated_gradients_on_the_linear_task_equals_w_times_x_minus_b():
    task = WM.linear_task(n_samples=8, n_features=6, seed=3)
    w = task.model.weight.detach()[0]
    base = torch.randn(1, 6)
    ig = whybox.explain(task.model, task.inputs, method="integrated_gradients", baselines=base)
    torch.testing.assert_close(ig.attributions, w * (task.inputs - base), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(task.attributions, w * task.inputs)
    assert task.mask.sum(dim=1).tolist() == [task.top_k] * 8


@pytest.mark.parametrize("name", ["additive", "boolean_and", "boolean_or", "boolean_xor"])
def test_exact_shapley_values_match_the_truth(name):
    task = WM.make_task(name, n_samples=6, seed=1)
    exact = whybox.explain(
        task.model, task.inputs, method="shapley_values", baselines=task.baselines
    )
    torch.testing.assert_close(exact.attributions, task.attributions, rtol=1e-5, atol=1e-5)


def test_cluster_task_gradients_are_the_masked_weights():
    task = WM.gaussian_clusters_task(n_samples=12, seed=0)
    grads = whybox.explain(task.model, task.inputs, method="saliency", target=1, abs=False)
    torch.testing.assert_close(grads.attributions, task.attributions)
    assert torch.equal(task.mask, task.attributions != 0)


def test_planted_patch_and_keyword_decide_the_class():
    patch = WM.planted_patch_task(n_samples=5, seed=2)
    assert patch.model(patch.inputs).argmax(dim=1).tolist() == [1] * 5
    assert patch.model(patch.inputs * ~patch.mask).argmax(dim=1).tolist() == [0] * 5
    text = WM.planted_keyword_task(n_samples=5, seed=2)
    assert text.model(text.inputs).argmax(dim=1).tolist() == [1] * 5
    assert text.model(text.inputs * ~text.mask).argmax(dim=1).tolist() == [0] * 5
    assert text.extras["token_ids"].shape == (5, 12)


def test_run_benchmark_rows_and_table():
    rows = WM.run_benchmark(
        ["saliency", "integrated_gradients", "grad_cam", "feature_ablation"],
        ["linear", "planted_patch"],
        n_samples=4,
        n_steps=4,
    )
    assert len(rows) == 2 * (4 + 2)
    by = {(r["task"], r["method"]): r for r in rows}
    assert set(WM.benchmark.COLUMNS) <= set(rows[0])
    assert by[("linear", "grad_cam")]["status"] == "skipped"
    ig = by[("linear", "integrated_gradients")]
    assert ig["status"] == "ok" and ig["rank_correlation"] == pytest.approx(1.0)
    truth, chance = by[("planted_patch", "ground_truth")], by[("planted_patch", "random")]
    assert truth["deletion_auc"] < chance["deletion_auc"]
    assert by[("planted_patch", "grad_cam")]["status"] == "ok"
    assert math.isnan(by[("planted_patch", "saliency")]["rank_correlation"])
    table = WM.format_table(rows)
    assert "integrated_gradients" in table and "skipped" in table.splitlines()[-1]
    assert "grad_cam" in WM.format_table(rows, hide_skipped=False)
