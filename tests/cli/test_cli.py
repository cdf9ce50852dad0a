"""The ``whybox`` command: explain equals the Python API, every error is one line, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import whybox
from whybox import cli
from whybox.attr import IntegratedGradients

FACTORY_SOURCE = """
import torch
from torch import nn


def make_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 5),
    )


def make_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
"""


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A TorchScript CNN, a .pt batch, an image, a CSV, a factory module, bad files."""
    root = tmp_path_factory.mktemp("cli")
    model = _cnn()
    torch.jit.script(model).save(str(root / "cnn.ts"))
    torch.manual_seed(1)
    torch.save(torch.rand(2, 3, 8, 8), root / "x.pt")
    torch.save(torch.rand(2, 7), root / "wrong_shape.pt")
    (root / "junk.ts").write_bytes(b"not a model")
    (root / "models_for_cli.py").write_text(FACTORY_SOURCE)
    (root / "row.csv").write_text("a,b,c\n0.5,-1,2\n")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.image import imsave

    imsave(root / "img.png", torch.rand(8, 8, 3).numpy())
    return root


def run(argv, capsys, cwd=None):
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        status = cli.main([str(a) for a in argv])
    finally:
        os.chdir(old)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_explain_json_equals_the_captum_facade(files, capsys):
    out = files / "ig.json"
    status, _, err = run(
        [
            "explain",
            files / "cnn.ts",
            files / "x.pt",
            "--method",
            "integrated_gradients",
            "--target",
            "1",
            "--out",
            out,
        ],
        capsys,
    )
    assert status == 0, err
    data = json.loads(out.read_text())
    model = torch.jit.load(str(files / "cnn.ts")).eval()
    x = torch.load(files / "x.pt")
    expected = IntegratedGradients(model).attribute(x, target=1)
    got = torch.tensor(data["attributions"])
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # the same numbers, exactly
    assert data["method"] == "integrated_gradients" and data["target"] == 1
    assert data["parameters"]["n_steps"] == 50 and data["parameters"]["rule"] == "gausslegendre"
    _, delta = IntegratedGradients(model).attribute(x, target=1, return_convergence_delta=True)
    torch.testing.assert_close(torch.tensor(data["delta"]), delta, rtol=1e-5, atol=1e-6)


def test_python_dash_m_writes_json_to_stdout(files):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whybox",
            "explain",
            str(files / "cnn.ts"),
            str(files / "x.pt"),
            "--method",
            "saliency",
            "--target",
            "pred",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    model = torch.jit.load(str(files / "cnn.ts")).eval()
    x = torch.load(files / "x.pt")
    target = model(x).argmax(1).tolist()
    assert data["target"] == target
    expected = whybox.explain(model, x, method="saliency", target=target).attributions
    torch.testing.assert_close(torch.tensor(data["attributions"]), expected)
    assert "delta" not in data  # saliency defines none


def test_factory_layer_options_and_other_inputs(files, capsys):
    factory = "models_for_cli:make_cnn"
    status, out, err = run(
        ["explain", factory, files / "img.png", "-m", "grad_cam", "--layer", "0", "-t", "2"],
        capsys,
        cwd=files,
    )
    assert status == 0, err
    data = json.loads(out)
    assert data["parameters"]["layer"] == "0" and len(data["attributions"]) == 1
    status, out, err = run(
        [
            "explain",
            factory,
            files / "x.pt",
            "-m",
            "occlusion",
            "-t",
            "0",
            "-o",
            "sliding_window_shapes=(3,2,2)",
            "-o",
            "strides=[3,2,2]",
        ],
        capsys,
        cwd=files,
    )
    assert status == 0, err
    assert json.loads(out)["parameters"]["sliding_window_shapes"] == [3, 2, 2]
    status, out, err = run(
        [
            "explain",
            "models_for_cli:make_mlp",
            files / "row.csv",
            "-m",
            "kernel_shap",
            "-t",
            "1",
            "-o",
            "n_samples=64",
            "-o",
            "seed=0",
        ],
        capsys,
        cwd=files,
    )
    assert status == 0, err
    data = json.loads(out)
    assert data["feature_names"] == ["a", "b", "c"] and len(data["attributions"][0]) == 3


def test_torch_export_program(files, capsys):
    model = _cnn()
    batch = torch.export.Dim("batch")  # IG sends n_steps x N rows at once
    program = torch.export.export(
        model, (torch.rand(2, 3, 8, 8),), dynamic_shapes={"input": {0: batch}}
    )
    torch.export.save(program, str(files / "cnn.pt2"))
    out = files / "export.json"
    status, _, err = run(
        ["explain", files / "cnn.pt2", files / "x.pt", "-t", "3", "--out", out], capsys
    )
    assert status == 0, err
    expected = IntegratedGradients(model).attribute(torch.load(files / "x.pt"), target=3)
    torch.testing.assert_close(torch.tensor(json.loads(out.read_text())["attributions"]), expected)


@pytest.mark.parametrize("fmt", ["html", "png"])
def test_views(files, capsys, fmt):
    out = files / f"view.{fmt}"
    status, _, err = run(
        ["explain", files / "cnn.ts", files / "x.pt", "-t", "1", "--out", out], capsys
    )
    assert status == 0, err
    data = out.read_bytes()
    if fmt == "png":
        assert data.startswith(b"\x89PNG")
    else:
        text = data.decode()
        assert text.startswith("<!DOCTYPE html>") and "example 1" in text and "http" not in text


ERRORS = {
    "missing model": (["explain", "{d}/nope.ts", "{d}/x.pt"], "model file not found"),
    "missing input": (["explain", "{d}/cnn.ts", "{d}/nope.pt"], "input file not found"),
    "model that does not load": (["explain", "{d}/junk.ts", "{d}/x.pt"], "cannot load model"),
    "bad factory": (["explain", "no_such_module_xyz:make", "{d}/x.pt"], "cannot import"),
    "wrong input shape": (["explain", "{d}/cnn.ts", "{d}/wrong_shape.pt"], "does not fit"),
    "unknown method": (
        ["explain", "{d}/cnn.ts", "{d}/x.pt", "-m", "integrated_gradient"],
        "unknown method 'integrated_gradient' (did you mean integrated_gradients",
    ),
    "unknown option": (
        ["explain", "{d}/cnn.ts", "{d}/x.pt", "-t", "1", "-o", "n_stepz=3"],
        "n_stepz",
    ),
    "target out of range": (["explain", "{d}/cnn.ts", "{d}/x.pt", "-t", "9"], "out of range"),
    "unknown layer": (
        ["explain", "models_for_cli:make_cnn", "{d}/x.pt", "-m", "grad_cam", "--layer", "conv9"],
        "no such layer",
    ),
    "hooks in TorchScript": (
        ["explain", "{d}/cnn.ts", "{d}/x.pt", "-m", "deeplift", "-t", "1"],
        "TorchScript",
    ),
    "usage": (["explain", "{d}/cnn.ts"], "required"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_and_write_nothing(files, capsys, case):
    argv, expected = ERRORS[case]
    out_dir = files / f"out-{case.replace(' ', '_')}"
    argv = [a.format(d=files) for a in argv] + ["--out", str(out_dir / "result.json")]
    if case == "usage":
        argv = argv[:2]
    status, out, err = run(argv, capsys, cwd=files)
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("whybox: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists()  # nothing written, not even the folder


def test_an_error_in_a_subprocess_is_one_line(files):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whybox",
            "explain",
            str(files / "cnn.ts"),
            str(files / "wrong_shape.pt"),
            "--out",
            str(files / "never.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "(2, 7)" in proc.stderr and not (files / "never.json").exists()


def test_debug_shows_the_traceback(files):
    with pytest.raises(cli.CliError, match="model file not found"):
        cli.main(["explain", str(files / "nope.ts"), str(files / "x.pt"), "--debug"])


def test_methods_lists_the_registry(capsys):
    status, out, _ = run(["methods"], capsys)
    assert status == 0
    lines = out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert sorted(names) == sorted(whybox.available_methods())  # optional packages loaded
    rows = {line.split()[0]: line.split(None, 2) for line in lines}
    assert rows["integrated_gradients"][1:] == [
        "gradient",
        "IntegratedGradients / LayerIntegratedGradients / NeuronIntegratedGradients",
    ]
    assert rows["grad_cam"][1:] == ["cam", "LayerGradCam"]
    assert rows["kernel_shap"][1:] == ["perturbation", "KernelShap"]
    status, out, _ = run(["methods", "--json"], capsys)
    assert {row["name"] for row in json.loads(out)} == set(names)
    # every registered method has a Captum name (or "-") and a cost in the table
    assert set(names) <= set(cli.METHOD_INFO)


def test_serve_and_benchmark_hooks(monkeypatch, capsys):
    calls = []
    app = types.ModuleType("whybox.app")
    app.serve_demo = lambda **kw: calls.append(kw)
    monkeypatch.setitem(sys.modules, "whybox.app", app)
    assert run(["serve", "--demo", "--port", "8123"], capsys)[0] == 0
    assert run(["serve", "--demo", "--port", "8124", "--no-minilm"], capsys)[0] == 0
    assert calls == [
        {"port": 8123, "blocking": True, "minilm": True},
        {"port": 8124, "blocking": True, "minilm": False},
    ]

    bench = types.ModuleType("whybox.metrics.benchmark")
    bench.run_benchmark = lambda: [("m", 1.0)]
    bench.format_table = lambda rows: f"table {rows}"
    monkeypatch.setitem(sys.modules, "whybox.metrics.benchmark", bench)
    status, out, _ = run(["benchmark"], capsys)
    assert status == 0 and out.strip() == "table [('m', 1.0)]"

    # not installed: one clear line, non-zero
    monkeypatch.setitem(sys.modules, "whybox.app", None)
    monkeypatch.setitem(sys.modules, "whybox.metrics.benchmark", None)
    for argv, what in ((["serve", "--demo"], "web app"), (["benchmark"], "benchmark")):
        status, _, err = run(argv, capsys)
        assert status == 2 and len(err.strip().splitlines()) == 1 and what in err


def test_option_values_parse_like_python():
    assert cli.parse_options(["n_steps=32", "rule=riemann_left", "strides=[1,2]", "abs=false"]) == {
        "n_steps": 32,
        "rule": "riemann_left",
        "strides": (1, 2),
        "abs": False,
    }


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("whybox")
    if not script.exists():
        pytest.skip("whybox is not pip-installed in this environment")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("whybox ")
