"""Run the benchmarks and rewrite the README's benchmark tables (``make bench``).

    .venv/bin/python benchmarks/readme_tables.py            # full runs (~40 min), README.md
    .venv/bin/python benchmarks/readme_tables.py --quick    # smoke runs (~5 min)
    .venv/bin/python benchmarks/readme_tables.py --no-run   # tables from the last JSON only

Each benchmark runs as a subprocess with ``--json DIR/<name>.json`` (``_results.py`` schema):
``run.py`` (gradient family), ``perturbation.py``, ``layer.py`` (MiniLM LayerIG at 128 and
512 tokens, Grad-CAM / Score-CAM on the 224x224 CNN) and, when CUDA is available,
``gpu.py``. The README holds one block per table between markers::

    <!-- bench:gradient -->
    ...generated, replaced whole...
    <!-- /bench:gradient -->

Only the text between a block's two markers is replaced; a block whose benchmark did not
run (no JSON) is left as it is. Each table carries the date and the machine it ran on.
Columns: whybox and Captum time (medians of interleaved rounds), whybox/floor (the same rows
through the bare model at its best chunk), whybox/Captum, and both libraries' peak memory.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_JSON_DIR = ROOT / "out" / "bench"
BLOCKS = ("gradient", "layer", "perturbation", "gpu")
SCRIPTS = {
    "gradient": "run.py",
    "layer": "layer.py",
    "perturbation": "perturbation.py",
    "gpu": "gpu.py",
}
# README rows of the gradient table: case keys per workload, in this order. A quick run has
# no cnn224 and no IG n=200, so it shows the cnn32 / mlp12 rows it has.
GRADIENT_ROWS: dict[str, tuple[str, ...]] = {
    "cnn224": ("saliency", "ig50", "ig200", "nt_ig", "gradient_shap", "deeplift", "deeplift_shap"),
    "cnn32": ("saliency", "ig50", "ig200", "gradient_shap"),
    "mlp12": ("ig50", "ig200", "deeplift_shap", "ig5000_cold"),
}
PERTURBATION_LABELS = {
    "cnn32": "CNN 3x32x32",
    "cnn128": "CNN 3x128x128",
    "cnn224": "CNN 3x224x224",
    "mlp12": "MLP 12 features",
}
# perturbation.py's case keys -> the README's method names
PERTURBATION_METHODS = {
    "occlusion": "Occlusion",
    "feature_ablation": "FeatureAblation",
    "shapley_sampling": "ShapleyValueSampling",
    "lime": "Lime",
    "kernel_shap": "KernelShap",
}
COLUMNS = (
    "workload",
    "method",
    "whybox s",
    "Captum s",
    "whybox/floor",
    "whybox/Captum",
    "whybox peak MB",
    "Captum peak MB",
)

__all__ = [
    "BLOCKS",
    "replace_block",
    "render",
    "update_readme",
    "parse_markdown_table",
    "perturbation_payload_from_markdown",
    "main",
]


# -- the README blocks -------------------------------------------------------------------------
def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between block ``name``'s two markers replaced by ``body``.

    The markers themselves and everything outside them are kept byte for byte.

    Raises
    ------
    ValueError
        When a marker is missing or repeated, or the closing marker comes first.
    """
    start, end = _markers(name)
    for marker in (start, end):
        count = text.count(marker)
        if count != 1:
            raise ValueError(f"README block {name!r}: marker {marker!r} found {count} times")
    begin = text.index(start) + len(start)
    finish = text.index(end)
    if finish < begin:
        raise ValueError(f"README block {name!r}: {end!r} comes before {start!r}")
    return text[:begin] + "\n" + body.strip("\n") + "\n" + text[finish:]


def update_readme(readme: Path, bodies: dict[str, str]) -> list[str]:
    """Rewrite the blocks of ``readme`` named in ``bodies``; the names rewritten.

    Every block is checked before the file is written, so a bad marker leaves it untouched.
    """
    text = readme.read_text()
    for name, body in bodies.items():
        text = replace_block(text, name, body)
    readme.write_text(text)
    return list(bodies)


# -- formatting --------------------------------------------------------------------------------
def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3g}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def _mb(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return "error"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(row["label"]),
        str(row["method"]),
        _seconds(row.get("whybox_s")),
        _seconds(row.get("captum_s")),
        _ratio(row.get("whybox_s"), row.get("floor_s")),
        _ratio(row.get("whybox_s"), row.get("captum_s")),
        _mb(row.get("whybox_mb")),
        _mb(row.get("captum_mb")),
    )


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(payload: dict[str, Any]) -> str:
    """``Measured <date> by `<command>` on <cpu/gpu>, torch ..., Captum ...``."""
    env = payload.get("environment", {})
    date = str(payload.get("generated", "an unknown date"))[:10]
    parts = []
    if payload.get("device", "cpu").startswith("cuda") and env.get("gpu"):
        parts.append(env["gpu"])
    if env.get("cpu"):
        parts.append(env["cpu"])
    for key, name in (("torch", "torch"), ("captum", "Captum")):
        if env.get(key):
            parts.append(f"{name} {env[key]}")
    if env.get("torch threads"):
        threads = env["torch threads"]
        parts.append(f"{threads} torch thread" + ("" if threads == "1" else "s"))
    if env.get("clock"):
        parts.append(f"{env['clock']} clock")
    line = f"Measured {date} by `{payload.get('command', '?')}` on " + ", ".join(parts) + "."
    if payload.get("quick"):
        line += " Quick run (smaller workloads, fewer rounds): not the reference numbers."
    return line


def render_gradient(payload: dict[str, Any]) -> str:
    wanted = [(workload, key) for workload, keys in GRADIENT_ROWS.items() for key in keys]
    order = {pair: index for index, pair in enumerate(wanted)}
    rows = [r for r in payload["rows"] if (r["workload"].split(" ")[0], r["key"]) in order]
    rows.sort(key=lambda r: order[(r["workload"].split(" ")[0], r["key"])])
    return machine_line(payload) + "\n\n" + _table(rows)


def render_layer(payload: dict[str, Any]) -> str:
    text = machine_line(payload) + "\n\n" + _table(payload["rows"])
    verdict = payload.get("memory_verdict")
    return text + (f"\n\n{verdict}" if verdict else "")


def render_perturbation(payload: dict[str, Any]) -> str:
    rows = []
    for row in payload["rows"]:
        row = dict(row)
        row.setdefault("label", PERTURBATION_LABELS.get(row["workload"], row["workload"]))
        rows.append(row)
    return machine_line(payload) + "\n\n" + _table(rows)


def render_gpu(payload: dict[str, Any]) -> str:
    columns = (*COLUMNS, "host syncs (whybox / Captum)")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in payload["rows"]:
        syncs = f"{_count(row.get('whybox_syncs'))} / {_count(row.get('captum_syncs'))}"
        lines.append("| " + " | ".join((*_cells(row), syncs)) + " |")
    return machine_line(payload) + "\n\n" + "\n".join(lines)


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "gradient": render_gradient,
    "layer": render_layer,
    "perturbation": render_perturbation,
    "gpu": render_gpu,
}


def render(name: str, payload: dict[str, Any]) -> str:
    """The markdown body of README block ``name`` from a benchmark's JSON payload."""
    if name not in RENDERERS:
        raise ValueError(f"unknown README block {name!r}; expected one of {BLOCKS}")
    return RENDERERS[name](payload)


# -- perturbation.py without --json: its printed markdown table ---------------------------------
def parse_markdown_table(text: str, first_column: str = "workload") -> list[dict[str, str]]:
    """The rows of the last markdown table in ``text`` whose header starts with
    ``first_column``, as ``{header: cell}`` dicts."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if re.match(rf"\|\s*{first_column}\s*\|", line)]
    if not headers:
        return []
    start = headers[-1]
    names = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        rows.append(dict(zip(names, cells)))
    return rows


def _number(cell: str | None) -> float | None:
    try:
        return float(cell) if cell not in (None, "", "-") else None
    except ValueError:
        return None


def perturbation_payload_from_markdown(stdout: str, *, quick: bool, command: str) -> dict:
    """A ``_results`` payload from ``perturbation.py``'s printed table (columns ``whybox``,
    ``captum``, ``floor``, ...; times in seconds, no memory)."""
    from _harness import environment

    rows = []
    for cells in parse_markdown_table(stdout):
        rows.append(
            {
                "workload": cells["workload"],
                "label": PERTURBATION_LABELS.get(cells["workload"], cells["workload"]),
                "key": cells["method"],
                "method": PERTURBATION_METHODS.get(cells["method"], cells["method"]),
                "whybox_s": _number(cells.get("whybox")),
                "captum_s": _number(cells.get("captum")),
                "floor_s": _number(cells.get("floor")),
                "whybox_mb": None,
                "captum_mb": None,
                "equal": cells.get("match", "-"),
            }
        )
    env = environment()
    env["torch threads"], env["clock"] = "1", "cpu"  # perturbation.py's fixed settings
    return {
        "benchmark": "perturbation",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "device": "cpu",
        "environment": env,
        "rows": rows,
    }


def _first_of(row: dict[str, Any], *names: str) -> Any:
    return next((row[name] for name in names if row.get(name) is not None), None)


def normalise_perturbation(payload: dict[str, Any]) -> dict[str, Any]:
    """``perturbation.py``'s own JSON in the ``_results`` schema: row keys such as
    ``case`` / ``whybox`` / ``floor`` (or ``seconds: {whybox, captum, floor}``) are mapped to
    ``key`` / ``whybox_s`` / ``floor_s``; a missing label or environment is filled in."""
    from _harness import environment

    payload = dict(payload)
    rows = payload.get("rows", payload.get("results", []))
    normal = []
    for row in rows:
        # perturbation.py --json nests the times: {"seconds": {"whybox": .., "floor": ..}}
        nested = row.get("seconds") if isinstance(row.get("seconds"), dict) else {}
        times = {**row, **{name: value for name, value in nested.items() if value is not None}}
        method = _first_of(row, "method", "case", "name", "key")
        workload = str(_first_of(row, "workload") or "?")
        normal.append(
            {
                **row,
                "workload": workload,
                "label": _first_of(row, "label") or PERTURBATION_LABELS.get(workload, workload),
                "key": _first_of(row, "key", "case") or method,
                "method": PERTURBATION_METHODS.get(str(method), method),
                "whybox_s": _first_of(times, "whybox_s", "whybox", "whybox_seconds"),
                "captum_s": _first_of(times, "captum_s", "captum", "captum_seconds"),
                "floor_s": _first_of(times, "floor_s", "floor", "bare_s", "floor_seconds"),
                "whybox_mb": _first_of(row, "whybox_mb", "whybox_peak_mb"),
                "captum_mb": _first_of(row, "captum_mb", "captum_peak_mb"),
            }
        )
    payload["rows"] = normal
    payload.setdefault("benchmark", "perturbation")
    payload.setdefault("generated", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    payload.setdefault("device", "cpu")
    if "environment" not in payload:
        payload["environment"] = {**environment(), "torch threads": "1", "clock": "cpu"}
    return payload


# -- running -----------------------------------------------------------------------------------
def _supports_json(script: Path) -> bool:
    helped = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    )
    return "--json" in helped.stdout


def run_benchmark(name: str, json_dir: Path, *, quick: bool) -> dict[str, Any]:
    """Run benchmark ``name`` in a subprocess and return its JSON payload.

    Raises
    ------
    RuntimeError
        When the benchmark exits with an error.
    """
    from _results import read_results

    script = HERE / SCRIPTS[name]
    target = json_dir / f"{name}.json"
    command = [sys.executable, str(script), *(["--quick"] if quick else [])]
    shown = " ".join(["python", f"benchmarks/{script.name}", *command[2:]])
    print(f"== {shown}", file=sys.stderr, flush=True)
    if name == "perturbation" and not _supports_json(script):
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(f"{shown} failed with exit code {done.returncode}")
        payload = perturbation_payload_from_markdown(done.stdout, quick=quick, command=shown)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(payload, indent=1) + "\n")
        return payload
    done = subprocess.run([*command, "--json", str(target)], check=False, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{shown} failed with exit code {done.returncode}")
    payload = json.loads(target.read_text())
    if name == "perturbation":  # its JSON may name things its own way
        payload = normalise_perturbation(payload)
        payload.setdefault("quick", quick)
    payload["command"] = shown  # the run as a reader would type it (no --json path)
    target.write_text(json.dumps(payload, indent=1) + "\n")
    return read_results(target)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick run")
    parser.add_argument(
        "--no-run", action="store_true", help="rewrite the tables from the JSON already there"
    )
    parser.add_argument(
        "--only", nargs="+", choices=BLOCKS, help="these tables only (default: all; gpu on CUDA)"
    )
    parser.add_argument("--json-dir", type=Path, default=DEFAULT_JSON_DIR, help="JSON folder")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="file to rewrite")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from _results import read_results

    names = list(args.only or BLOCKS)
    if not args.only and not args.no_run and not _cuda_available():
        names.remove("gpu")
        print("no CUDA device: the gpu table is left as it is", file=sys.stderr)
    payloads: dict[str, dict[str, Any]] = {}
    for name in names:
        if args.no_run:
            path = args.json_dir / f"{name}.json"
            if not path.exists():
                print(f"{path} missing: the {name} table is left as it is", file=sys.stderr)
                continue
            payloads[name] = read_results(path)
        else:
            payloads[name] = run_benchmark(name, args.json_dir, quick=args.quick)
    bodies = {name: render(name, payload) for name, payload in payloads.items()}
    written = update_readme(args.readme, bodies)
    print(f"rewrote {args.readme}: {', '.join(written) or 'nothing'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
