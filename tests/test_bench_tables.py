"""The benchmark plumbing: README table blocks, the JSON schema, and ``gpu.py``'s CPU smoke run.

No timing is asserted: only that tables are written where they belong, from the numbers given.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def tables(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import readme_tables

    return readme_tables


def _payload(rows, **extra):
    return {
        "benchmark": "gradient",
        "generated": "2031-05-17T10:00:00+00:00",
        "command": "python benchmarks/run.py",
        "quick": False,
        "device": "cpu",
        "environment": {
            "torch": "9.9",
            "captum": "0.9.0",
            "cpu": "Test CPU (2 logical cores)",
            "torch threads": "1",
            "clock": "cpu",
        },
        "rows": rows,
        **extra,
    }


def _row(workload, key, method, whybox, captum, floor, **extra):
    row = {
        "workload": workload,
        "label": f"label-{workload}",
        "key": key,
        "method": method,
        "whybox_s": whybox,
        "captum_s": captum,
        "floor_s": floor,
        "whybox_mb": 12.0,
        "captum_mb": 340.0,
    }
    row.update(extra)
    return row


DOC = (
    "# Title\n\nintro <!-- not a marker -->\n\n"
    "<!-- bench:gradient -->\nold gradient table\n<!-- /bench:gradient -->\n\n"
    "between\n\n<!-- bench:layer -->\nold layer\n<!-- /bench:layer -->\ntail text\n"
)


def test_replace_block_changes_only_the_marked_block(tables):
    out = tables.replace_block(DOC, "gradient", "NEW TABLE")
    start = DOC.index("<!-- bench:gradient -->") + len("<!-- bench:gradient -->")
    end = DOC.index("<!-- /bench:gradient -->")
    assert out == DOC[:start] + "\nNEW TABLE\n" + DOC[end:]
    assert "old gradient table" not in out
    assert "old layer" in out and out.endswith("tail text\n")
    # idempotent: replacing again with the same body gives the same text
    assert tables.replace_block(out, "gradient", "NEW TABLE") == out


@pytest.mark.parametrize(
    "text, problem",
    [
        ("no markers at all\n", "found 0 times"),
        ("<!-- bench:gradient -->\n<!-- bench:gradient -->\n<!-- /bench:gradient -->\n", "2 times"),
        ("<!-- /bench:gradient -->\nx\n<!-- bench:gradient -->\n", "comes before"),
    ],
)
def test_replace_block_refuses_bad_markers(tables, text, problem):
    with pytest.raises(ValueError, match=problem):
        tables.replace_block(text, "gradient", "body")


def test_update_readme_writes_nothing_when_one_block_is_bad(tables, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(DOC)
    with pytest.raises(ValueError, match="perturbation"):
        tables.update_readme(readme, {"gradient": "new", "perturbation": "new"})
    assert readme.read_text() == DOC
    assert tables.update_readme(readme, {"layer": "LAYER"}) == ["layer"]
    text = readme.read_text()
    assert "LAYER" in text and "old layer" not in text and "old gradient table" in text


def test_gradient_table_ratios_selection_and_machine_line(tables):
    rows = [
        _row("mlp12", "ig200", "IG n=200", 0.05, 0.75, 0.05),
        _row("cnn224", "ig200", "IG n=200", 3.0, 6.0, 2.5),
        _row("cnn224", "ig50_equal", "IG n=50 ibs=64", 1.0, 1.0, 1.0),  # not a README row
        _row("cnn224", "saliency", "Saliency", 0.011, 0.010, 0.010, whybox_mb="probe died"),
    ]
    body = tables.render("gradient", _payload(rows))
    lines = body.splitlines()
    assert lines[0].startswith("Measured 2031-05-17 by `python benchmarks/run.py` on Test CPU")
    assert "Captum 0.9.0" in lines[0] and "Quick run" not in lines[0]
    table = [line for line in lines if line.startswith("| label-")]
    # README order: cnn224 saliency, cnn224 ig200, then mlp12; ig50_equal left out
    assert [line.split(" | ")[1] for line in table] == ["Saliency", "IG n=200", "IG n=200"]
    cells = [cell.strip() for cell in table[1].strip("|").split("|")]
    assert cells == ["label-cnn224", "IG n=200", "3.00", "6.00", "1.20", "0.50", "12", "340"]
    assert "error" in table[0]  # a failed memory probe is shown, not hidden
    header = lines[2]
    for column in ("whybox/floor", "whybox/Captum", "whybox peak MB", "Captum peak MB"):
        assert column in header


def test_quick_runs_say_so(tables):
    body = tables.render("layer", _payload([], quick=True, memory_verdict="flat."))
    assert "Quick run" in body.splitlines()[0]
    assert body.endswith("flat.")


def test_perturbation_markdown_fallback_reads_the_last_table(tables):
    printed = (
        "| workload | method | whybox | captum | floor | whybox/floor | match |\n"
        "|---|---|---|---|---|---|---|\n"
        "| cnn32 | occlusion | 9.0 | 9.0 | 9.0 | 1.00 | yes |\n\n"
        "| workload | method | whybox | captum | floor | whybox/floor | match |\n"
        "|---|---|---|---|---|---|---|\n"
        "| cnn32 | occlusion | 0.0580 | 0.1990 | 0.0550 | **1.05** | yes |\n"
        "| mlp12 | lime | 0.0021 | 0.0460 | 0.0004 | **5.25** | n/a |\n\n"
        "P = 16 perturbations per forward\n"
    )
    payload = tables.perturbation_payload_from_markdown(printed, quick=True, command="x")
    assert [row["workload"] for row in payload["rows"]] == ["cnn32", "mlp12"]
    assert payload["rows"][0]["whybox_s"] == pytest.approx(0.058)
    assert payload["rows"][1]["floor_s"] == pytest.approx(0.0004)
    body = tables.render("perturbation", payload)
    assert "| CNN 3x32x32 | Occlusion | 0.058 | 0.199 | 1.05 | 0.29 | - | - |" in body


def test_the_readme_has_every_block_once(tables):
    text = (ROOT / "README.md").read_text()
    for name in tables.BLOCKS:
        for marker in (f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"):
            assert text.count(marker) == 1, marker
        section = text[text.index("## Benchmarks") :]
        assert f"<!-- bench:{name} -->" in section.split("\n## ")[0]


def test_gpu_benchmark_cpu_smoke_run_writes_its_table(tables, tmp_path):
    output, data = tmp_path / "gpu.md", tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--quick"]
        + ["--no-memory", "--output", str(output), "--json", str(data)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()
    assert "| workload | method | whybox s | Captum s | floor s (chunk) |" in report
    from _results import ROW_FIELDS, read_results

    payload = read_results(data)
    assert payload["benchmark"] == "gpu" and payload["device"] == "cpu" and payload["quick"]
    keys = [row["key"] for row in payload["rows"]]
    assert {"saliency", "ig50", "occlusion", "kernel_shap"} <= set(keys)
    for row in payload["rows"]:
        assert set(ROW_FIELDS) <= set(row)
        assert row["whybox_s"] > 0 and row["captum_s"] > 0 and row["floor_s"] > 0
        assert row["whybox_syncs"] is None  # counted on CUDA only
        if row["key"] in ("saliency", "ig50", "occlusion"):
            assert row["equal"] == "yes", row  # deterministic: same numbers as Captum
    body = tables.render("gpu", payload)
    assert body.count("\n| CNN 3x32x32 (batch 2) |") == 4
    assert body.count("\n| MLP 12 features (batch 8) |") == 1
    json.dumps(payload)  # plain JSON


def test_gpu_benchmark_refuses_cuda_without_a_gpu(tables, capsys):
    import torch

    import gpu

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit) as stopped:
        gpu.parse_args(["--device", "cuda"])
    assert stopped.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_perturbation_json_with_its_own_names_is_normalised(tables):
    raw = {
        "rows": [
            {"workload": "cnn128", "case": "lime", "whybox": 0.8, "captum": 1.6, "floor": 0.4},
            {
                "workload": "mlp12",
                "method": "KernelShap",
                "whybox_s": 0.002,
                "captum_s": 0.02,
                "floor_s": 0.001,
                "whybox_peak_mb": 3.0,
            },
        ],
        "generated": "2031-01-02T00:00:00+00:00",
        "environment": {"cpu": "Test CPU"},
    }
    payload = tables.normalise_perturbation(raw)
    first, second = payload["rows"]
    assert (first["key"], first["method"], first["label"]) == ("lime", "Lime", "CNN 3x128x128")
    assert (first["whybox_s"], first["captum_s"], first["floor_s"]) == (0.8, 1.6, 0.4)
    assert second["key"] == "KernelShap" and second["whybox_mb"] == 3.0
    body = tables.render("perturbation", payload)
    assert body.startswith("Measured 2031-01-02")
    assert "| CNN 3x128x128 | Lime | 0.8 | 1.60 | 2.00 | 0.50 | - | - |" in body
    assert "| MLP 12 features | KernelShap | 0.002 | 0.02 | 2.00 | 0.10 | 3.0 | - |" in body


def test_no_run_rewrites_only_the_blocks_with_json(tables, tmp_path):
    from _results import write_results

    rows = [_row("cnn224", "ig50", "IG n=50", 0.66, 1.3, 0.7)]
    write_results(
        tmp_path / "json" / "gradient.json",
        benchmark="gradient",
        rows=rows,
        environment={"cpu": "Test CPU", "torch threads": "1"},
        quick=False,
        elapsed_s=1.0,
        command="python benchmarks/run.py",
    )
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    readme.write_text(text)
    code = tables.main(["--no-run", "--json-dir", str(tmp_path / "json"), "--readme", str(readme)])
    assert code == 0
    new = readme.read_text()
    start, end = "<!-- bench:gradient -->", "<!-- /bench:gradient -->"
    assert new[: new.index(start)] == text[: text.index(start)]
    assert new[new.index(end) :] == text[text.index(end) :]  # layer, perturbation, gpu as they were
    block = new[new.index(start) : new.index(end)]
    assert "| label-cnn224 | IG n=50 | 0.66 | 1.30 | 0.94 | 0.51 | 12 | 340 |" in block


def test_perturbation_json_with_nested_seconds(tables):
    raw = {
        "rows": [
            {
                "workload": "cnn32",
                "case": "kernel_shap",
                "method": "KernelShap",
                "seconds": {"whybox": 0.04, "captum": 0.1, "whybox@P": 0.03, "floor": 0.032},
                "match": "n/a",
            }
        ],
        "misses": [],
    }
    (row,) = tables.normalise_perturbation(raw)["rows"]
    assert (row["whybox_s"], row["captum_s"], row["floor_s"]) == (0.04, 0.1, 0.032)
    assert row["key"] == "kernel_shap" and row["label"] == "CNN 3x32x32"


def test_registry_benchmark_covers_every_registered_method(monkeypatch):
    """A newly registered method must get a spec in benchmarks/registry.py (or a skip reason)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import registry
    from whybox.core.registry import available_methods

    covered = set(registry.SPECS) | set(registry.SKIPPED)
    assert set(available_methods()) <= covered
    assert not set(registry.SPECS) & set(registry.SKIPPED)


def test_registry_benchmark_floor_replays_the_recorded_rows(monkeypatch):
    """The floor runs exactly the rows the method fed the model (count and values)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import registry

    workload = registry.build_workload("cnn32", batch=2)
    spec = registry.SPECS["feature_ablation"]
    native = registry._native_call("feature_ablation", spec, workload, "features.6")
    recorded = registry._recorded_rows(workload.model, native)
    rows = torch.cat(recorded)
    # 64 groups + the unperturbed rows, for each of the 2 examples
    assert rows.shape[0] == 2 * 65
    seen = []
    handle = workload.model.register_forward_pre_hook(lambda _m, a: seen.append(a[0].clone()))
    try:
        floor, chunk = registry._floor(workload.model, rows, False, budget_s=0.05)
        seen.clear()
        floor()
    finally:
        handle.remove()
    assert torch.equal(torch.cat(seen), rows)
    assert all(part.shape[0] <= chunk for part in seen)


def test_registry_benchmark_reports_captum_and_the_facade_refusing(monkeypatch):
    """On the ResNet workload Captum's DeepLift raises (a ReLU module called twice per
    forward), and the facade refuses it as Captum does: the row names both errors and
    still times the native method."""
    monkeypatch.syspath_prepend(str(BENCH))
    import registry

    monkeypatch.setitem(registry.WORKLOAD_SETUP, "resnet64", {"batch": 1, "layer": "layer3"})
    monkeypatch.setattr(registry, "interleaved", lambda calls, **_: {k: 1e-3 for k in calls})
    monkeypatch.setattr(registry, "_floor", lambda *a, **k: (lambda: None, 1))
    (row,) = registry.measure(["resnet64"], ["deeplift"], rounds=1, budget=0.01)
    assert row["captum_error"].startswith("RuntimeError")
    assert row["facade_error"].startswith("RuntimeError")
    assert "captum_s" not in row and "facade_s" not in row and row["native/floor"] == 1.0
    assert registry._line(row).count("fails (RuntimeError)") == 2
    # and a workload Captum runs has no error entry
    (row,) = registry.measure(["resnet64"], ["saliency"], rounds=1, budget=0.01)
    assert "captum_error" not in row and row["facade/captum"] == 1.0
