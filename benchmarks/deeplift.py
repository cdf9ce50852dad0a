"""DeepLift / DeepLiftShap against a plain forward+backward of the same rows.

    .venv/bin/python benchmarks/deeplift.py           # writes benchmarks/results-deeplift.md
    .venv/bin/python benchmarks/deeplift.py --quick   # smoke run (about 1 min)

DeepLift evaluates every input row with its reference row in one forward (the rows of a
chunk are ``[inputs; references]``) and takes the multipliers from one backward, so its cost
should be that of a plain forward+backward of those rows. For every workload of
``models.py`` and every method, one call is timed interleaved with two bare loops
(``autograd.grad`` of the selected outputs w.r.t. the rows, :func:`_harness.bare_step`):

* **same chunks**: exactly the row chunks the call fed the model (recorded with a forward
  pre-hook), built from the same inputs and references: ``whybox / same`` is the overhead
  of DeepLift's rules, hooks and bookkeeping;
* **floor**: the same number of rows at the best chunk size (:class:`_harness.BareCost`), the
  floor of the benchmarks in ``run.py``.

Goal (issue 16): ``whybox / same <= 1.3``. Methods: the facade (``whybox.attr``, Captum's
rule set: on these models the max pools after a ReLU lose their rule, as in Captum) and the
native methods (``whybox.methods``, the textbook Rescale rules, max-pool rule included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from _harness import (
    BareCost,
    bare_step,
    configure_threads,
    environment,
    fmt_ratio,
    fmt_seconds,
    interleaved_times,
    markdown_table,
    set_clock,
)
from models import WORKLOADS, Workload, build_workload

HERE = Path(__file__).resolve().parent
GOAL = 1.3
# --quick: the two small workloads, the CNN with a smaller batch (as run.py --quick)
QUICK_WORKLOADS = {"cnn32": 4, "mlp12": None}
#: method key -> (label, needs a reference distribution)
METHODS: dict[str, tuple[str, bool]] = {
    "attr_deeplift": ("whybox.attr.DeepLift", False),
    "attr_deeplift_shap": ("whybox.attr.DeepLiftShap", True),
    "native_deeplift": ("whybox.methods.DeepLift", False),
    "native_deeplift_shap": ("whybox.methods.DeepLiftShap", True),
}
COLUMNS = (
    "workload",
    "method",
    "rows",
    "whybox s",
    "bare same chunks s (rows per forward)",
    "whybox/same",
    "floor s (chunk)",
    "whybox/floor",
)


@dataclass
class Row:
    workload: str
    method: str
    rows: int
    whybox_s: float
    same_s: float
    chunks: list[int]
    floor_s: float
    floor_chunk: int

    @property
    def vs_same(self) -> float:
        return self.whybox_s / self.same_s

    @property
    def vs_floor(self) -> float:
        return self.whybox_s / self.floor_s


def method_call(key: str, workload: Workload) -> Callable[[], Any]:
    """One ``attribute`` call of method ``key`` on ``workload`` (returns the attributions)."""
    model, x, target = workload.model, workload.inputs, workload.target
    shap = METHODS[key][1]
    refs = workload.references if shap else workload.baseline
    if key.startswith("attr_"):
        import whybox.attr as attr

        method = (attr.DeepLiftShap if shap else attr.DeepLift)(model)
        return lambda: method.attribute(x, baselines=refs, target=target)
    from whybox.methods.deeplift import DeepLift, DeepLiftShap

    native = (DeepLiftShap if shap else DeepLift)(model)
    return lambda: native.attribute(x, baselines=refs, target=target).attributions


def rows_per_forward(workload: Workload, call: Callable[[], Any]) -> list[int]:
    """The number of rows of each forward ``call`` runs, in order."""
    seen: list[int] = []

    def pre_hook(module: Any, args: tuple[Any, ...]) -> None:
        seen.append(int(args[0].shape[0]))

    handle = workload.model.register_forward_pre_hook(pre_hook)
    try:
        call()
    finally:
        handle.remove()
    return seen


def pair_rows(workload: Workload, shap: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, references, targets)`` of every pair, example-major (as DeepLift pairs
    them)."""
    x, target = workload.inputs, workload.target
    if not shap:
        return x, workload.baseline, target
    n_refs = workload.references.shape[0]
    pairs = torch.arange(x.shape[0] * n_refs, device=x.device)
    examples = pairs // n_refs
    return x[examples], workload.references[pairs % n_refs], target[examples]


def same_chunks_call(workload: Workload, shap: bool, chunks: list[int]) -> Callable[[], Tensor]:
    """Bare forward+backward of exactly ``chunks`` (rows per forward) of ``[x; b]`` rows."""
    xs, bs, targets = pair_rows(workload, shap)
    prebuilt = []
    start = 0
    for rows in chunks:
        stop = start + rows // 2
        prebuilt.append(
            (
                torch.cat([xs[start:stop], bs[start:stop]]).contiguous(),
                torch.cat([targets[start:stop], targets[start:stop]]),
            )
        )
        start = stop

    def run() -> Tensor:
        grad = None
        for rows, target in prebuilt:
            grad = bare_step(workload.model, rows, target)
        assert grad is not None
        return grad

    return run


def measure(args: argparse.Namespace, workload: Workload, bare: BareCost, key: str) -> Row:
    label, shap = METHODS[key]
    call = method_call(key, workload)
    chunks = rows_per_forward(workload, call)
    n_rows = sum(chunks)
    floor_chunk, _ = bare.best_chunk(n_rows)
    calls = {
        "whybox": call,
        "same": same_chunks_call(workload, shap, chunks),
        "floor": bare.call(n_rows, floor_chunk),
    }
    times, _ = interleaved_times(
        calls,
        repeats=args.repeats,
        min_repeats=args.min_repeats,
        budget_s=args.budget,
        device=args.device,
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    return Row(
        workload=workload.name,
        method=label,
        rows=n_rows,
        whybox_s=medians["whybox"],
        same_s=medians["same"],
        chunks=chunks,
        floor_s=medians["floor"],
        floor_chunk=floor_chunk,
    )


def describe_chunks(chunks: list[int]) -> str:
    """``32`` or ``84 x3 + 4``: the rows of each forward, run-length encoded."""
    parts: list[str] = []
    for rows in chunks:
        if parts and parts[-1].split(" x")[0] == str(rows):
            head, _, count = parts[-1].partition(" x")
            parts[-1] = f"{head} x{int(count or 1) + 1}"
        else:
            parts.append(str(rows))
    return " + ".join(parts)


def table(rows: list[Row]) -> str:
    """The results as a markdown table; ratios over the goal are in bold."""
    cells = [
        (
            row.workload,
            row.method,
            str(row.rows),
            fmt_seconds(row.whybox_s),
            f"{fmt_seconds(row.same_s)} ({describe_chunks(row.chunks)})",
            fmt_ratio(row.vs_same, GOAL),
            f"{fmt_seconds(row.floor_s)} ({row.floor_chunk})",
            fmt_ratio(row.vs_floor),
        )
        for row in rows
    ]
    return markdown_table(COLUMNS, cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (about 1 min)")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), help="subset")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="subset")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 15; --quick 5)")
    parser.add_argument("--budget", type=float, help="seconds of timed calls per row (20)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        help="cpu: process CPU time (default with 1 thread on the CPU); wall: elapsed time",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--output", type=Path, help="markdown file to write")
    args = parser.parse_args(argv)
    args.workloads = args.workloads or list(QUICK_WORKLOADS if args.quick else WORKLOADS)
    args.methods = args.methods or list(METHODS)
    args.repeats = args.repeats or (5 if args.quick else 15)
    args.min_repeats = 3 if args.quick else 5
    args.budget = args.budget if args.budget is not None else (1.0 if args.quick else 20.0)
    args.clock = args.clock or ("cpu" if args.threads == 1 and args.device == "cpu" else "wall")
    name = "results-deeplift-quick.md" if args.quick else "results-deeplift.md"
    args.output = args.output or HERE / name
    return args


def render(
    args: argparse.Namespace, env: dict[str, str], described: list[str], result: str, elapsed: float
) -> str:
    """The markdown report written to ``--output``."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/deeplift.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    lines = [
        "# DeepLift / DeepLiftShap vs a plain forward+backward of the same rows",
        "",
        f"Generated {stamp} by `{command}` in {elapsed:.0f} s.",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        f"- device: {args.device}; medians of {args.min_repeats} to {args.repeats} "
        "interleaved rounds (whybox, bare same chunks, floor) after warm-up calls",
        "- bare same chunks: the `[inputs; references]` rows of every forward the call ran, "
        "prebuilt, through forward+backward (`autograd.grad` w.r.t. the rows)",
        "- floor: the same number of rows at the best chunk size",
        f"- goal: whybox/same <= {GOAL} (misses in bold)",
        "",
        "Workloads:",
        "",
        *(f"- {text}" for text in described),
        "",
        result,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_threads(args.threads)
    set_clock(args.clock)
    started = time.perf_counter()
    env = environment()
    env["clock"] = args.clock
    print("  ".join(f"{k}: {v}" for k, v in env.items()), file=sys.stderr)
    rows: list[Row] = []
    described: list[str] = []
    for name in args.workloads:
        batch = QUICK_WORKLOADS.get(name) if args.quick else None
        workload = build_workload(name, device=args.device, batch=batch)
        described.append(workload.describe())
        print(workload.describe(), file=sys.stderr)
        bare = BareCost(
            workload.model,
            workload.inputs,
            workload.target,
            device=args.device,
            repeats=max(args.min_repeats, 3),
        )
        for key in args.methods:
            row = measure(args, workload, bare, key)
            rows.append(row)
            print(
                f"  {row.method}: whybox {fmt_seconds(row.whybox_s)} s, same chunks "
                f"{fmt_seconds(row.same_s)} s ({row.vs_same:.2f}x), floor "
                f"{fmt_seconds(row.floor_s)} s ({row.vs_floor:.2f}x)",
                file=sys.stderr,
            )
    elapsed = time.perf_counter() - started
    result = table(rows)
    print(result)
    args.output.write_text(render(args, env, described, result, elapsed))
    print(f"\nwrote {args.output} ({elapsed:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
