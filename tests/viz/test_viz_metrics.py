"""Views of metric results: what is drawn and listed is the result's own numbers."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from whybox import metrics, viz
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.viz.metrics import metric_kind, metric_table, plot_metric

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.fixture(scope="module")
def rows():
    return torch.randn(5, 6, generator=torch.Generator().manual_seed(1))


def saliency(model, x):
    x = x.clone().requires_grad_(True)
    model(x)[:, 0].sum().backward()
    return x.grad.detach()


def bold_line(fig):
    """The line drawn thickest (the mean, or the one example asked for)."""
    lines = fig.axes[0].get_lines()
    return max(lines, key=lambda line: line.get_linewidth())


def test_deletion_curve_draws_the_mean_curve_over_fractions(mlp, rows):
    result = metrics.deletion(mlp, rows, saliency(mlp, rows), target=0, n_steps=10)
    fig = result.plot()
    line = bold_line(fig)
    np.testing.assert_allclose(line.get_xdata(), result.fractions.numpy())
    np.testing.assert_allclose(line.get_ydata(), result.mean_curve.numpy(), rtol=1e-6)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"mean of 5 example(s), AUC = {result.score.mean().item():.4g}"]
    # one thin line per example under the mean
    assert len(fig.axes[0].get_lines()) == 5 + 1
    assert fig.axes[0].get_title() == "deletion curve (MORF)"


def test_one_example_draws_that_examples_curve(mlp, rows):
    result = metrics.insertion(mlp, rows, saliency(mlp, rows), target=0, n_steps=8)
    fig = result.plot(example=-1)
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), result.curve[4].numpy(), rtol=1e-6)
    assert f"{result.score[4].item():.4g}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert fig.axes[0].get_xlabel() == "fraction of features inserted"


def test_curve_table_lists_the_points_and_the_score_statistics(mlp, rows):
    result = metrics.deletion(mlp, rows, saliency(mlp, rows), target=0, n_steps=4)
    summary, header, points = metric_table(result)
    summary = dict(summary)
    assert summary["metric"] == "deletion (MORF)"
    assert summary["examples"] == "5"
    assert float(summary["AUC mean"]) == pytest.approx(result.score.mean().item(), rel=1e-5)
    assert float(summary["AUC max"]) == pytest.approx(result.score.max().item(), rel=1e-5)
    assert header == ["fraction", "mean output"]
    got = np.array([[float(v) for v in row] for row in points])
    np.testing.assert_allclose(got[:, 0], result.fractions.numpy(), rtol=1e-5)
    np.testing.assert_allclose(got[:, 1], result.mean_curve.numpy(), rtol=1e-5)


class EdgeDetector:
    """An 'explanation' that ignores the model: a horizontal difference of the input."""

    def __call__(self, model, inputs, target=None, **options):
        return torch.nn.functional.pad(inputs[:, 1:] - inputs[:, :-1], (0, 1))


def test_randomisation_view_flags_an_edge_detector_and_passes_gradients(mlp, rows):
    edge = metrics.model_parameter_randomisation(mlp, rows, target=0, explain=EdgeDetector())
    grads = metrics.model_parameter_randomisation(mlp, rows, target=0, explain="saliency")
    assert edge.flagged and not grads.flagged
    for result, verdict in ((edge, "FLAGGED"), (grads, "passed")):
        fig = result.plot()
        ax = fig.axes[0]
        assert verdict in ax.get_title()
        assert [t.get_text() for t in ax.get_xticklabels()] == result.layers
        np.testing.assert_allclose(
            bold_line(fig).get_ydata(), result.mean_similarity.numpy(), rtol=1e-6
        )
        threshold_lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert [ln.get_ydata()[0] for ln in threshold_lines] == [result.threshold]
        summary, header, points = metric_table(result)
        assert dict(summary)["verdict"].startswith("flagged" if result.flagged else "passed")
        assert [row[0] for row in points] == result.layers
        below = (result.similarity < result.threshold).sum(dim=1).tolist()
        assert [int(row[2]) for row in points] == below


def test_robustness_view_has_one_box_per_example_and_marks_the_scores(mlp, rows):
    result = metrics.max_sensitivity(mlp, rows, target=0, n_samples=6, seed=0)
    ax = result.plot().axes[0]
    scores = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(np.asarray(scores)[:, 1], result.score.numpy(), rtol=1e-6)
    assert len(ax.get_xticklabels()) == 5 and len(ax.patches) == 5  # one box each
    one = result.plot(example=2).axes[0]
    counts = sum(patch.get_height() for patch in one.patches)
    assert counts == int(torch.isfinite(result.samples[2]).sum())


def test_text_views_use_the_metric_name_and_tokens():
    torch.manual_seed(0)

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(20, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, ids, attention_mask=None):
            return self.head(self.embedding(ids).mean(1))

    model = Bag().eval()
    ids = torch.randint(1, 20, (3, 5))
    scores = torch.randn(3, 5)
    kept = metrics.sufficiency(model, ids, scores, target=0)
    assert kept.name == "sufficiency"
    ax = kept.plot().axes[0]
    assert ax.get_xlabel() == "fraction of tokens kept"
    np.testing.assert_allclose(
        bold_line(ax.figure).get_ydata(), kept.drops.mean(0).numpy(), rtol=1e-6
    )
    loo = metrics.tau_loo(model, ids, scores, target=0)
    assert loo.name == "tau_loo" and metric_kind(loo) == "text_loo"
    tokens = ["a", "<b>", "c", "d", "e"]
    ax = loo.plot(example=1, tokens=tokens).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    np.testing.assert_allclose([p.get_height() for p in ax.patches], loo.drops[1].numpy())
    with pytest.raises(ParameterError, match="'tokens'.*one token per position \\(5\\)"):
        loo.plot(example=0, tokens=tokens[:4])
    html = loo.to_html(example=1, tokens=tokens)
    assert "tau-LOO, example 1" in html


def test_html_is_self_contained_and_escapes_the_title(mlp, rows):
    result = metrics.aopc(mlp, rows, saliency(mlp, rows), target=0, n_steps=5)
    html = result.to_html(title="<b>AOPC</b> & more")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "data:image/png;base64," in html
    assert "&lt;b&gt;AOPC&lt;/b&gt; &amp; more" in html and "<b>AOPC" not in html
    fragment = result._repr_html_()
    assert fragment.startswith('<div class="whybox-view">') and "<html" not in fragment
    assert fragment.count("<tr>") == html.count("<tr>")


def test_nan_scores_are_counted_apart():
    # a constant map has no correlation: NaN for that example
    model = nn.Linear(4, 1)
    x = torch.randn(3, 4)
    maps = torch.randn(3, 4)
    maps[1] = 1.0
    result = metrics.faithfulness_correlation(model, x, maps, target=0, seed=0)
    assert math.isnan(result.score[1].item())
    summary = dict(metric_table(result)[0])
    assert summary["undefined (NaN)"] == "1"
    finite = result.score[torch.isfinite(result.score)]
    assert float(summary["mean"]) == pytest.approx(finite.mean().item(), rel=1e-5)
    ax = result.plot(example=0).axes[0]
    offsets = np.asarray(ax.collections[0].get_offsets())
    np.testing.assert_allclose(offsets[:, 0], result.attribution_sums[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(offsets[:, 1], result.output_drops[0].numpy(), rtol=1e-6)


def test_empty_batches_draw_without_error():
    model = nn.Linear(4, 2)
    x = torch.zeros(0, 4)
    for result in (
        metrics.deletion(model, x, x, target=0),
        metrics.max_sensitivity(model, x, target=0),
        metrics.faithfulness_correlation(model, x, x, target=0),
    ):
        assert result.plot().axes
        assert dict(metric_table(result)[0])["examples"] == "0"
        with pytest.raises(ParameterError, match="'example'.*0 example"):
            result.plot(example=0)


def test_draws_into_a_given_axes(mlp, rows):
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    result = metrics.deletion(mlp, rows, saliency(mlp, rows), target=0, n_steps=3)
    assert result.plot(ax=right) is fig
    assert right.get_lines() and not left.get_lines()


def test_bad_arguments_name_the_parameter(mlp, rows):
    result = metrics.deletion(mlp, rows, saliency(mlp, rows), target=0, n_steps=3)
    with pytest.raises(ParameterError, match="'example'.*5 example"):
        result.plot(example=5)
    with pytest.raises(ParameterTypeError, match="'example'"):
        result.plot(example=True)
    with pytest.raises(ParameterError, match="'tokens'"):
        result.plot(tokens=["a"])
    with pytest.raises(ParameterTypeError, match="'result' parameter of whybox.viz.plot_metric"):
        plot_metric(object())
    with pytest.raises(ParameterTypeError, match="'full_page'"):
        viz.metric_html(result, full_page="no")
    assert object.__new__(type(result)) is not None  # results stay plain dataclasses


def test_every_result_type_has_views():
    for cls in (
        metrics.CurveResult,
        metrics.CorrelationResult,
        metrics.RandomisationResult,
        metrics.RandomLogitResult,
        metrics.RobustnessResult,
        metrics.TextFaithfulnessResult,
        metrics.NonSensitivityResult,
        metrics.InvarianceResult,
    ):
        assert callable(cls.plot) and callable(cls.to_html) and callable(cls._repr_html_)


def test_importing_metrics_does_not_import_matplotlib():
    code = "import sys, whybox.metrics; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
