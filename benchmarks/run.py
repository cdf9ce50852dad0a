"""Time whybox against Captum on the gradient family; the one benchmark command.

    .venv/bin/python benchmarks/run.py            # full run, writes benchmarks/results.md
    .venv/bin/python benchmarks/run.py --quick    # smoke run (< 60 s), results-quick.md
    .venv/bin/python benchmarks/run.py --json out/bench/gradient.json   # also the JSON

Both libraries run the same calls on the same models and inputs in this process, with torch's
thread count fixed (``--threads``, default 1). Each row reports median wall times, their
ratio, the bare cost of the same number of forward+backward rows at the best chunk size,
the peak memory of one call of each library, and whether the two outputs agree.
Goals: whybox <= 1.15x the bare cost, and never slower than Captum.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from torch import Tensor

from _harness import (
    BareCost,
    MemoryProbe,
    compare,
    configure_threads,
    cuda_peak_mb,
    environment,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    interleaved_times,
    markdown_table,
    set_clock,
)
from _results import command_line, workload_label, write_results
from cases import CASES, library, make_call, probe_calls
from models import WORKLOADS, build_workload
from whybox.core.paths import path_plan

HERE = Path(__file__).resolve().parent
BARE_GOAL = 1.15
CAPTUM_GOAL = 1.0
# --quick: the two small workloads (the CNN with a smaller batch), all cases but IG n=200.
QUICK_WORKLOADS = {"cnn32": 4, "mlp12": None}
QUICK_SKIP = ("ig200", "ig200_equal")
# IG with n_steps=5000 on a few MLP rows, from a cold quadrature: the Gauss-Legendre set-up
# dominates. whybox's plan cache is cleared before every call; Captum recomputes its nodes
# (numpy's leggauss, twice) on every call, so each of its calls is a first call. Not in
# --quick; runs whenever mlp12 is among the workloads.
COLD_KEY = "ig5000_cold"
COLD_STEPS = 5000
COLD_WORKLOAD = ("mlp12", 4)


@dataclass
class Row:
    workload: str
    method: str
    whybox_s: float | None
    captum_s: float | None
    bare_s: float
    bare_chunk: int
    rows: int
    whybox_mb: float | str | None
    captum_mb: float | str | None
    equal: str
    rounds: int
    bare_goal: float | None = BARE_GOAL  # None: the row times set-up on purpose
    key: str = ""  # the case key (``cases.CASES``, or ``COLD_KEY``)
    batch: int | None = None  # examples per call

    def record(self) -> dict:
        """The row as a JSON-ready dict (``_results`` schema: ``floor_s`` is the bare cost)."""
        data = dataclasses.asdict(self)
        data["floor_s"] = data.pop("bare_s")
        data["floor_chunk"] = data.pop("bare_chunk")
        data["label"] = workload_label(self.workload.split(" ")[0], self.batch)
        return data

    @property
    def vs_captum(self) -> float | None:
        if self.whybox_s is None or self.captum_s is None:
            return None
        return self.whybox_s / self.captum_s

    @property
    def vs_bare(self) -> float | None:
        return None if self.whybox_s is None else self.whybox_s / self.bare_s

    @property
    def captum_vs_bare(self) -> float | None:
        return None if self.captum_s is None else self.captum_s / self.bare_s


COLUMNS = (
    "workload",
    "method",
    "whybox s",
    "Captum s",
    "whybox/Captum",
    "bare s (chunk)",
    "whybox/bare",
    "Captum/bare",
    "whybox peak MB",
    "Captum peak MB",
    "outputs match",
)


def table(rows: list[Row]) -> str:
    """The results as a markdown table; ratios that miss a goal are in bold."""
    cells = [
        (
            row.workload,
            row.method,
            fmt_seconds(row.whybox_s),
            fmt_seconds(row.captum_s),
            fmt_ratio(row.vs_captum, CAPTUM_GOAL),
            f"{fmt_seconds(row.bare_s)} ({row.bare_chunk})",
            fmt_ratio(row.vs_bare, row.bare_goal),
            fmt_ratio(row.captum_vs_bare),
            fmt_mb(row.whybox_mb),
            fmt_mb(row.captum_mb),
            row.equal,
        )
        for row in rows
    ]
    return markdown_table(COLUMNS, cells)


def misses(rows: list[Row]) -> list[str]:
    """One line per goal missed."""
    found = []
    for row in rows:
        where = f"{row.workload} / {row.method}"
        if row.vs_bare is not None and row.bare_goal and row.vs_bare > row.bare_goal:
            found.append(f"{where}: whybox is {row.vs_bare:.2f}x the bare cost")
        if row.vs_captum is not None and row.vs_captum > CAPTUM_GOAL:
            found.append(f"{where}: whybox is {row.vs_captum:.2f}x Captum's time")
        if not row.equal.startswith("yes") and row.equal != "-":
            found.append(f"{where}: outputs differ ({row.equal})")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (< 60 s)")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), help="subset")
    parser.add_argument(
        "--cases", nargs="+", choices=sorted([*CASES, COLD_KEY]), help="subset of methods"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, help="timed calls per library (default 7)")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds of timed calls per case; slow cases get fewer repeats (default 40)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        help="cpu: process CPU time (default with 1 thread: robust on a shared machine); "
        "wall: elapsed time (default with more threads)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--output", type=Path, help="markdown file to write")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON (_results.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.workloads = args.workloads or list(QUICK_WORKLOADS)
    args.workloads = args.workloads or list(WORKLOADS)
    if args.quick and not args.cases:
        args.cases = [key for key in CASES if key not in QUICK_SKIP]
    args.cases = args.cases or [*CASES, COLD_KEY]
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.min_repeats = 1 if args.quick else 3
    args.budget = args.budget if args.budget is not None else (1.0 if args.quick else 40.0)
    args.clock = args.clock or ("cpu" if args.threads == 1 and args.device == "cpu" else "wall")
    args.output = args.output or HERE / ("results-quick.md" if args.quick else "results.md")
    return args


def measure_case(args, workload, bare, key, probe) -> Row | None:
    case = CASES[key]
    libraries = {name: library(name) for name in ("whybox", "captum")}
    if not case.available(libraries["whybox"]):
        return None
    present = [name for name, attr in libraries.items() if case.available(attr)]
    calls = {name: make_call(workload, key, name) for name in present}
    n_rows = case.rows(workload)
    chunk, _ = bare.best_chunk(n_rows)
    calls["bare"] = bare.call(n_rows, chunk)
    times, outputs = interleaved_times(
        calls,
        repeats=args.repeats,
        min_repeats=args.min_repeats,
        budget_s=args.budget,
        device=args.device,
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    equal = compare(outputs["whybox"], outputs["captum"]) if "captum" in outputs else "-"
    peaks: dict[str, float | str | None] = {}
    for name in present:
        if args.no_memory:
            peaks[name] = None
        elif args.device.startswith("cuda"):
            peaks[name] = cuda_peak_mb(
                probe_calls(workload.name, key, name, args.device, workload.batch)
            )
        else:
            peaks[name] = probe.peak_mb(
                "cases", "probe_calls", workload.name, key, name, args.device, workload.batch
            )
            if isinstance(peaks[name], str):
                print(f"  memory probe failed: {peaks[name]}", file=sys.stderr)
    return Row(
        workload=workload.name,
        method=case.label(workload),
        whybox_s=medians["whybox"],
        captum_s=medians.get("captum"),
        bare_s=medians["bare"],
        bare_chunk=chunk,
        rows=n_rows,
        whybox_mb=peaks.get("whybox"),
        captum_mb=peaks.get("captum"),
        equal=equal,
        rounds=len(times["whybox"]),
        key=key,
        batch=workload.batch,
    )


def cold_ig_call(lib: str, device: str = "cpu") -> Callable[[], Tensor]:
    """One IG ``n_steps=COLD_STEPS`` call of ``lib`` on ``COLD_WORKLOAD``, quadrature included.

    Also the factory of the memory probe (module ``run``), whose child process imports it.
    """
    name, batch = COLD_WORKLOAD
    workload = build_workload(name, device=device, batch=batch)
    method = library(lib).IntegratedGradients(workload.model)

    def call() -> Tensor:
        if lib == "whybox":
            path_plan.cache_clear()  # pay for the nodes and weights on every call
        return method.attribute(
            workload.inputs, baselines=workload.baseline, target=workload.target, n_steps=COLD_STEPS
        )

    return call


def measure_cold_ig(args, probe) -> Row:
    """The ``COLD_KEY`` row: whybox, Captum and the bare cost of ``COLD_STEPS * batch`` rows."""
    name, batch = COLD_WORKLOAD
    workload = build_workload(name, device=args.device, batch=batch)
    bare = BareCost(
        workload.model,
        workload.inputs,
        workload.target,
        device=args.device,
        repeats=max(args.repeats, 3),
    )
    n_rows = COLD_STEPS * batch
    chunk, _ = bare.best_chunk(n_rows)
    calls = {lib: cold_ig_call(lib, args.device) for lib in ("whybox", "captum")}
    calls["bare"] = bare.call(n_rows, chunk)
    # One round can take Captum over 10 s: never insist on more rounds than the budget allows.
    times, outputs = interleaved_times(
        calls, repeats=args.repeats, min_repeats=1, budget_s=args.budget, device=args.device
    )
    medians = {lib: statistics.median(values) for lib, values in times.items()}
    peaks: dict[str, float | str | None] = {}
    for lib in ("whybox", "captum"):
        if args.no_memory:
            peaks[lib] = None
        elif args.device.startswith("cuda"):
            peaks[lib] = cuda_peak_mb(cold_ig_call(lib, args.device))
        else:
            peaks[lib] = probe.peak_mb("run", "cold_ig_call", lib, args.device)
    return Row(
        workload=f"{name} (batch {batch})",
        method=f"IntegratedGradients n={COLD_STEPS} cold quadrature",
        whybox_s=medians["whybox"],
        captum_s=medians["captum"],
        bare_s=medians["bare"],
        bare_chunk=chunk,
        rows=n_rows,
        whybox_mb=peaks["whybox"],
        captum_mb=peaks["captum"],
        equal=compare(outputs["whybox"], outputs["captum"]),
        rounds=len(times["whybox"]),
        bare_goal=None,  # the quadrature set-up is the point of this row, not overhead
        key=COLD_KEY,
        batch=batch,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_threads(args.threads)
    set_clock(args.clock)
    started = time.perf_counter()
    probe = None
    if not args.no_memory and not args.device.startswith("cuda"):
        preload = ["torch", "numpy", "captum.attr", "whybox.attr", "models", "cases", "_harness"]
        probe = MemoryProbe(preload, args.threads)
    env = environment()
    env["clock"] = args.clock
    print("  ".join(f"{k}: {v}" for k, v in env.items()), file=sys.stderr)
    rows: list[Row] = []
    skipped: list[str] = []
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
            repeats=max(args.repeats, 3),
        )
        for key in args.cases:
            if key == COLD_KEY:
                continue  # its own workload, after this loop
            row = measure_case(args, workload, bare, key, probe)
            if row is None:
                if key not in skipped:
                    skipped.append(key)
                continue
            rows.append(row)
            print(
                f"  {row.method}: whybox {fmt_seconds(row.whybox_s)} s, Captum "
                f"{fmt_seconds(row.captum_s)} s, bare {fmt_seconds(row.bare_s)} s "
                f"({row.bare_chunk}-row chunks), peak MB {fmt_mb(row.whybox_mb)} / "
                f"{fmt_mb(row.captum_mb)}, match {row.equal}, {row.rounds} rounds",
                file=sys.stderr,
            )
    if COLD_KEY in args.cases and COLD_WORKLOAD[0] in args.workloads:
        row = measure_cold_ig(args, probe)
        rows.append(row)
        print(
            f"  {row.workload} {row.method}: whybox {fmt_seconds(row.whybox_s)} s, Captum "
            f"{fmt_seconds(row.captum_s)} s, bare {fmt_seconds(row.bare_s)} s, match {row.equal}",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - started
    result = table(rows)
    print(result)
    report = render(args, env, described, result, misses(rows), skipped, elapsed)
    args.output.write_text(report)
    if args.json:
        write_results(
            args.json,
            benchmark="gradient",
            rows=[row.record() for row in rows],
            environment=env,
            quick=args.quick,
            elapsed_s=elapsed,
            command=command_line("run.py"),
            device=args.device,
            workloads=described,
        )
        print(f"wrote {args.json}", file=sys.stderr)
    print(f"\nwrote {args.output} ({elapsed:.0f} s)", file=sys.stderr)
    return 0


def render(args, env, described, result, missed, skipped, elapsed) -> str:
    """The markdown report written to ``--output``."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = [
        "# whybox vs Captum: gradient family",
        "",
        f"Generated {stamp} by `{command}` in {elapsed:.0f} s.",
        "",
        *(f"- {key}: {value}" for key, value in env.items()),
        f"- device: {args.device}; timed rounds per case: {args.min_repeats} to {args.repeats} "
        f"(median; fewer for slow cases, budget {args.budget:g} s), interleaved, after one "
        "warm-up call each",
        "- bare: the same number of rows through forward+backward (`autograd.grad` of the "
        "selected outputs w.r.t. the input) at the best chunk size (in parentheses, chosen "
        "from per-chunk medians), timed interleaved with the two libraries",
        "- peak MB: peak RSS growth of one call in a fresh forked process (CUDA: "
        "`max_memory_allocated` growth)",
        f"- goals: whybox/bare <= {BARE_GOAL}, whybox/Captum <= {CAPTUM_GOAL} (misses in bold)",
        "",
        "Workloads:",
        "",
        *(f"- {text}" for text in described),
        "",
        result,
        "",
    ]
    if skipped:
        lines += [f"Skipped (not in whybox.attr yet): {', '.join(skipped)}.", ""]
    lines += ["Goals missed:", ""]
    lines += [f"- {text}" for text in missed] if missed else ["- none"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
