"""The ground-truth benchmark's report: saved rows read back the same, the plot shows every
run, the CLI saves and draws, and the runner skips / notes / times as documented."""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest

import whybox.metrics as WM
from whybox import cli
from whybox.metrics import benchmark_report


@pytest.fixture(scope="module")
def rows():
    return WM.run_benchmark(
        ["saliency", "integrated_gradients", "grad_cam", "attention_rollout"],
        ["linear", "planted_patch"],
        n_samples=4,
        n_steps=3,
    )


def _same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b) if isinstance(a, float) else a == b


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_saved_rows_read_back_equal(rows, tmp_path, suffix):
    path = WM.save_benchmark(rows, tmp_path / "deep" / f"rows{suffix}")
    back = WM.load_benchmark(path)
    assert len(back) == len(rows)
    for original, loaded in zip(rows, back):
        for key in WM.benchmark.COLUMNS:
            assert _same(original[key], loaded[key]), (key, original[key], loaded[key])
        assert loaded["note"] == original["note"]
    # NaN (not run) is written as an empty cell / null, never as the string "nan"
    text = path.read_text()
    assert "nan" not in text.lower().replace("planted", "")


def test_json_is_valid_and_csv_has_a_header(rows, tmp_path):
    data = json.loads(WM.save_benchmark(rows, tmp_path / "r.json").read_text())
    assert {d["method"] for d in data} >= {"saliency", "grad_cam", "random"}
    with WM.save_benchmark(rows, tmp_path / "r.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header[: len(WM.benchmark.COLUMNS)] == list(WM.benchmark.COLUMNS)


def test_markdown_has_one_line_per_row(rows, tmp_path):
    lines = WM.save_benchmark(rows, tmp_path / "r.md").read_text().strip().splitlines()
    assert len(lines) == len(rows) + 2
    assert set(lines[1]) == {"|", "-"}
    body = [lines[0], *lines[2:]]
    assert all(line.startswith("| ") and line.endswith(" |") for line in body)
    assert {line.count(" | ") for line in body} == {len(WM.benchmark.COLUMNS)}


def test_save_rejects_unknown_formats(rows, tmp_path):
    with pytest.raises(ValueError, match="'path'"):
        WM.save_benchmark(rows, tmp_path / "rows.txt")
    with pytest.raises(ValueError, match="'format'"):
        WM.save_benchmark(rows, tmp_path / "rows.csv", format="xlsx")
    with pytest.raises(ValueError, match="'path'"):
        WM.load_benchmark(tmp_path / "rows.md")


def test_plot_has_a_panel_per_metric_and_a_cell_per_run(rows, tmp_path):
    pytest.importorskip("matplotlib")
    metrics = ("top_k_agreement", "deletion_auc", "time_s")
    fig = WM.plot_benchmark(rows, metrics=metrics, path=tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(" ")[0] for ax in panels] == list(metrics)
    ran = [r for r in rows if r["status"] == "ok"]
    methods = list(dict.fromkeys(r["method"] for r in ran))
    tasks = list(dict.fromkeys(r["task"] for r in ran))
    top_k = panels[0]
    assert [t.get_text() for t in top_k.get_yticklabels()] == methods
    assert [t.get_text() for t in top_k.get_xticklabels()] == tasks
    # one annotation per run with a number, none for grad_cam on the tabular task
    assert len(top_k.texts) == sum(not math.isnan(r["top_k_agreement"]) for r in ran)
    shown = top_k.images[0].get_array()
    i, j = methods.index("grad_cam"), tasks.index("linear")
    assert np.ma.is_masked(shown[i, j])
    # skipped methods (attention) are not drawn at all
    assert "attention_rollout" not in methods


def test_plot_rejects_bad_metrics_and_empty_rows(rows):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="'metrics'"):
        WM.plot_benchmark(rows, metrics=("speed",))
    with pytest.raises(ValueError, match="'rows'"):
        WM.plot_benchmark([r for r in rows if r["status"] != "ok"])


def test_curve_areas_are_coloured_within_each_task():
    values = np.array([[1.0, -4.0], [3.0, np.nan], [2.0, -2.0], [5.0, -3.0]])
    scaled = benchmark_report._per_column(values)
    assert np.nanmin(scaled, axis=0).tolist() == [0.0, 0.0]
    assert np.nanmax(scaled, axis=0).tolist() == [1.0, 1.0]
    assert np.isnan(scaled[1, 1])
    # order within a column is kept
    assert np.argsort(scaled[:, 0]).tolist() == np.argsort(values[:, 0]).tolist()
    assert benchmark_report._per_column(np.array([[2.0], [2.0]])).tolist() == [[0.5], [0.5]]


def test_attention_methods_are_skipped_with_the_reason(rows):
    by = {(r["task"], r["method"]): r for r in rows}
    for task in ("linear", "planted_patch"):
        row = by[(task, "attention_rollout")]
        assert row["status"] == "skipped" and "attention" in row["note"]


def test_warnings_land_in_the_note():
    # the linear task's model has no nn.ReLU: guided backprop says so, and the row keeps it
    (_, _, row) = WM.run_benchmark(["guided_backprop"], ["linear"], n_samples=3, n_steps=3)
    assert row["status"] == "ok" and row["note"].startswith("warning:")
    assert "ReLU" in row["note"]


def test_repeats_time_more_calls_and_keep_the_first_result():
    task = WM.make_task("linear", n_samples=4, seed=0)
    calls = []
    handle = task.model.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    try:
        once = WM.run_benchmark(["saliency"], [task], references=False, warmup=False, n_steps=2)
        before_curves = len(calls)
        calls.clear()
        three = WM.run_benchmark(
            ["saliency"], [task], references=False, warmup=False, n_steps=2, repeats=3
        )
    finally:
        handle.remove()
    assert len(calls) == before_curves + 2  # two more explanation forwards
    for key in WM.benchmark.COLUMNS[4:]:
        assert _same(once[0][key], three[0][key])


def test_runner_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'tasks'"):
        WM.run_benchmark(["saliency"], ["nope"])
    with pytest.raises(ValueError, match="'repeats'"):
        WM.run_benchmark(["saliency"], ["linear"], repeats=0)


def test_progress_bar_counts_the_runs(capsys):
    WM.run_benchmark(["saliency"], ["linear"], n_samples=2, n_steps=2, show_progress=True)
    err = capsys.readouterr().err
    assert "benchmark" in err and "3/3" in err  # random, ground_truth, saliency


def test_cli_prints_saves_and_draws(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_csv, out_png = tmp_path / "rows.csv", tmp_path / "plot.png"
    argv = ["benchmark", "--methods", "saliency", "--tasks", "linear", "additive"]
    argv += ["--n-samples", "4", "--steps", "3", "--seed", "1", "--repeats", "2"]
    argv += ["--output", str(out_csv), "--plot", str(out_png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "saliency" in out and f"wrote {out_csv}" in out
    saved = WM.load_benchmark(out_csv)
    assert [(r["task"], r["method"]) for r in saved] == [
        (t, m) for t in ("linear", "additive") for m in ("random", "ground_truth", "saliency")
    ]
    direct = WM.run_benchmark(["saliency"], ["linear", "additive"], n_samples=4, n_steps=3, seed=1)
    for mine, theirs in zip(saved, direct):
        assert _same(mine["top_k_agreement"], theirs["top_k_agreement"])
    assert out_png.stat().st_size > 1000


def test_cli_checks_file_names_before_running(monkeypatch, tmp_path, capsys):
    def never(**_):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(WM.benchmark, "run_benchmark", never)
    monkeypatch.setitem(sys.modules, "whybox.metrics.benchmark", WM.benchmark)
    for flag, name in (("--output", "rows.xlsx"), ("--plot", "plot.jpg")):
        assert cli.main(["benchmark", flag, str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert flag in err and len(err.strip().splitlines()) == 1


def test_cli_quick_is_smaller(monkeypatch, capsys):
    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(WM.benchmark, "run_benchmark", record)
    assert cli.main(["benchmark", "--quick"]) == 0
    assert seen["n_samples"] < 16 and seen["n_steps"] < 10
