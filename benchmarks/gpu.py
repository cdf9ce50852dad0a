"""The benchmark table on CUDA: gradient and perturbation methods, whybox vs Captum vs floor.

    .venv/bin/python benchmarks/gpu.py                          # CUDA, writes results-gpu.md
    .venv/bin/python benchmarks/gpu.py --json out/bench/gpu.json
    .venv/bin/python benchmarks/gpu.py --device cpu --quick     # CPU smoke test (< 20 s)

Workloads (``models.py``): the 224x224 CNN (batch 1), the 32x32 CNN (batch 16) and the
12-feature MLP (batch 256); gradient cases from ``cases.py`` (Saliency, IG n=50 / 200,
NoiseTunnel(IG), GradientShap, DeepLift, DeepLiftShap) and the perturbation family
(Occlusion 16px windows stride 8, FeatureAblation / ShapleyValueSampling n=4 / Lime n=200 /
KernelShap n=200 over 64 feature groups on the 224x224 CNN). ``--quick`` runs small versions
on the 32x32 CNN and the MLP.

What a call is: the user's path. The model, baselines, targets and masks live on the device;
the *inputs start on the CPU* (pageable memory, as a user's batch usually does) and each
timed call copies them in, runs ``attribute`` and copies the attributions back. The floor
does the same copies around the bare work: for gradient methods the same number of rows
through forward+backward at the best chunk (``_harness.BareCost``); for perturbation methods
the very rows whybox evaluated (recorded once), replayed forward-only at the best chunk.

* time: median of interleaved rounds (whybox, Captum, floor, whybox, ...), wall clock, with
  ``torch.cuda.synchronize()`` before every clock read (CPU: one torch thread, CPU-time clock);
* peak MB: growth of ``torch.cuda.max_memory_allocated`` over one call (CUDA only);
* host syncs: synchronising CUDA operations inside one ``attribute`` call (copies excluded),
  counted as the warnings of ``torch.cuda.set_sync_debug_mode("warn")`` (CUDA only). The goal
  is 0 inside chunk loops; a handful per call (result building) is tolerable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from _harness import (
    BareCost,
    compare,
    configure_threads,
    cuda_peak_mb,
    environment,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    interleaved_times,
    markdown_table,
    seed_all,
    set_clock,
    synchronize,
)
from _results import command_line, workload_label, write_results
from cases import CASES, library
from models import Workload, build_workload

HERE = Path(__file__).resolve().parent
FLOOR_GOAL = 1.2
CAPTUM_GOAL = 1.0
LIBS = ("whybox", "captum")

# (workload, batch, gradient case keys, perturbation case keys)
FULL_PLAN: tuple[tuple[str, int | None, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "cnn224",
        None,
        ("saliency", "ig50", "ig200", "nt_ig", "gradient_shap", "deeplift", "deeplift_shap"),
        ("occlusion", "feature_ablation", "shapley_sampling", "lime", "kernel_shap"),
    ),
    ("cnn32", None, ("saliency", "ig200", "gradient_shap"), ()),
    ("mlp12", None, ("ig200", "deeplift_shap"), ()),
)
QUICK_PLAN: tuple[tuple[str, int | None, tuple[str, ...], tuple[str, ...]], ...] = (
    ("cnn32", 2, ("saliency", "ig50"), ("occlusion", "kernel_shap")),
    ("mlp12", 8, ("ig50",), ()),
)


# -- perturbation cases ------------------------------------------------------------------------
def group_mask(shape: tuple[int, ...], groups_per_side: int, device: str) -> Tensor:
    """A ``(1, 1, H, W)`` mask of ``groups_per_side ** 2`` square feature groups."""
    height, width = shape[-2:]
    rows = torch.arange(height) * groups_per_side // height
    cols = torch.arange(width) * groups_per_side // width
    mask = rows[:, None] * groups_per_side + cols[None, :]
    return mask.view(1, 1, height, width).to(device)


def perturbation_options(key: str, workload: Workload, quick: bool) -> tuple[str, dict]:
    """``(class name, attribute options)`` of perturbation case ``key`` on ``workload``."""
    channels, height, _ = workload.example_shape
    window = max(height // 14, 4)  # 16 px on 224x224, 4 px on 32x32
    groups = 4 if quick else 8  # 16 or 64 feature groups
    samples = 16 if quick else 200
    mask = group_mask(workload.example_shape, groups, str(workload.inputs.device))
    if key == "occlusion":
        stride = window if quick else window // 2
        return "Occlusion", {
            "sliding_window_shapes": (channels, window, window),
            "strides": (channels, stride, stride),
        }
    if key == "feature_ablation":
        return "FeatureAblation", {"feature_mask": mask}
    if key == "shapley_sampling":
        return "ShapleyValueSampling", {"feature_mask": mask, "n_samples": 2 if quick else 4}
    if key == "lime":
        return "Lime", {"feature_mask": mask, "n_samples": samples}
    if key == "kernel_shap":
        return "KernelShap", {"feature_mask": mask, "n_samples": samples}
    raise ValueError(f"unknown perturbation case {key!r}")


PERTURBATION_LABELS = {
    "occlusion": "Occlusion",
    "feature_ablation": "FeatureAblation",
    "shapley_sampling": "ShapleyValueSampling",
    "lime": "Lime",
    "kernel_shap": "KernelShap",
}
DETERMINISTIC = ("occlusion", "feature_ablation", "shapley_sampling")


class Recording(nn.Module):
    """Keeps every row pushed through ``inner`` (the perturbation floor replays them)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


def forward_floor(
    model: nn.Module, rows: Tensor, device: str, *, max_bytes: int = 256 * 2**20
) -> tuple[int, Callable[[], Tensor]]:
    """``(chunk, call)``: the fastest forward-only, no-grad loop over prebuilt ``rows``."""
    total = rows.shape[0]
    row_bytes = rows[:1].numel() * rows.element_size()
    candidates = [c for c in (8, 16, 32, 64, 128, 256, 512, 1024) if c < total]
    candidates.append(total)
    candidates = [c for c in candidates if c * row_bytes <= max_bytes] or [1]
    best, best_s = candidates[0], float("inf")
    with torch.no_grad():
        for chunk in candidates:
            model(rows[:chunk])
            synchronize(device)
            start = time.perf_counter()
            for begin in range(0, total, chunk):
                model(rows[begin : begin + chunk])
            synchronize(device)
            seconds = time.perf_counter() - start
            if seconds < best_s:
                best, best_s = chunk, seconds

    def run() -> Tensor:
        with torch.no_grad():
            out = None
            for begin in range(0, total, best):
                out = model(rows[begin : begin + best])
        assert out is not None
        return out

    return best, run


# -- the user's path: inputs from the host, attributions back to it ----------------------------
@dataclass
class UserCall:
    """``attribute()`` runs the method on device inputs; ``__call__`` is the user's path
    (copy the CPU inputs in, attribute, copy the result out).

    ``workload.inputs`` is rebound to the fresh device copy before each call, so the
    case's closure (which reads ``workload.inputs`` when called) sees it.
    """

    workload: Workload
    host_inputs: Tensor
    attribute: Callable[[], Any]
    device: str

    def move_in(self) -> None:
        self.workload.inputs = self.host_inputs.to(self.device)

    def __call__(self) -> Any:
        self.move_in()
        output = self.attribute()
        output = output[0] if isinstance(output, tuple) else output
        return output.cpu()


def count_syncs(call: UserCall) -> int | None:
    """Synchronising CUDA operations inside one ``attribute`` (``None`` off CUDA)."""
    if not call.device.startswith("cuda"):
        return None
    call.move_in()
    torch.cuda.synchronize()
    seed_all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call.attribute()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(item.message).lower() for item in caught)


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Row:
    workload: str
    label: str
    key: str
    method: str
    whybox_s: float
    captum_s: float | None
    floor_s: float
    floor_chunk: int
    whybox_mb: float | None = None
    captum_mb: float | None = None
    whybox_syncs: int | None = None
    captum_syncs: int | None = None
    equal: str = "-"
    rounds: int = 0
    family: str = "gradient"
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.pop("extra")
        return data


def _measure(
    args: argparse.Namespace,
    workload: Workload,
    calls: dict[str, UserCall],
    floor: Callable[[], Any],
) -> tuple[dict[str, float], dict[str, Any], int]:
    timed: dict[str, Callable[[], Any]] = dict(calls)
    timed["floor"] = floor
    times, outputs = interleaved_times(
        timed,
        repeats=args.repeats,
        min_repeats=args.min_repeats,
        budget_s=args.budget,
        device=args.device,
        min_sample_s=0.005 if args.quick else 0.05,
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    return medians, outputs, len(times["floor"])


def _peaks_and_syncs(args: argparse.Namespace, calls: dict[str, UserCall]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for lib, call in calls.items():
        cuda = args.device.startswith("cuda")
        found[f"{lib}_mb"] = cuda_peak_mb(call) if cuda and not args.no_memory else None
        found[f"{lib}_syncs"] = count_syncs(call)
    return found


def _user_calls(
    build: Callable[[Any, Workload], Callable[[], Any]],
    workload: Workload,
    host: Tensor,
    device: str,
) -> dict[str, UserCall]:
    calls = {}
    for lib in LIBS:
        attr = library(lib)
        calls[lib] = UserCall(workload, host, build(attr, workload), device)
    return calls


def gradient_row(args: argparse.Namespace, workload: Workload, host: Tensor, key: str) -> Row:
    case = CASES[key]
    calls = _user_calls(case.build, workload, host, args.device)
    bare = BareCost(
        workload.model,
        workload.inputs,
        workload.target,
        device=args.device,
        repeats=1 if args.quick else 3,
        min_sample_s=0.002 if args.quick else 0.02,
    )
    n_rows = case.rows(workload)
    chunk, _ = bare.best_chunk(n_rows)
    bare_loop = bare.call(n_rows, chunk)

    def floor() -> Tensor:
        host.to(args.device)  # the same copy in as the libraries' calls
        return bare_loop().cpu()

    medians, outputs, rounds = _measure(args, workload, calls, floor)
    return Row(
        workload=workload.name,
        label=workload_label(workload.name, workload.batch),
        key=key,
        method=case.label(workload),
        whybox_s=medians["whybox"],
        captum_s=medians["captum"],
        floor_s=medians["floor"],
        floor_chunk=chunk,
        equal=compare(outputs["whybox"], outputs["captum"]),
        rounds=rounds,
        **_peaks_and_syncs(args, calls),
    )


def perturbation_row(args: argparse.Namespace, workload: Workload, host: Tensor, key: str) -> Row:
    cls, options = perturbation_options(key, workload, args.quick)
    target = workload.target

    def build(attr: Any, w: Workload) -> Callable[[], Any]:
        method = getattr(attr, cls)(w.model)
        return lambda: method.attribute(w.inputs, target=target, **options)

    calls = _user_calls(build, workload, host, args.device)
    recorder = Recording(workload.model)
    workload.inputs = host.to(args.device)
    seed_all()
    getattr(library("whybox"), cls)(recorder).attribute(workload.inputs, target=target, **options)
    rows = torch.cat(recorder.seen)
    chunk, replay = forward_floor(workload.model, rows, args.device)

    def floor() -> Tensor:
        host.to(args.device)
        return replay().cpu()

    medians, outputs, rounds = _measure(args, workload, calls, floor)
    equal = compare(outputs["whybox"], outputs["captum"]) if key in DETERMINISTIC else "n/a"
    return Row(
        workload=workload.name,
        label=workload_label(workload.name, workload.batch),
        key=key,
        method=describe_perturbation(cls, options),
        whybox_s=medians["whybox"],
        captum_s=medians["captum"],
        floor_s=medians["floor"],
        floor_chunk=chunk,
        equal=equal,
        rounds=rounds,
        family="perturbation",
        **_peaks_and_syncs(args, calls),
    )


def describe_perturbation(cls: str, options: dict[str, Any]) -> str:
    if cls == "Occlusion":
        _, size, _ = options["sliding_window_shapes"]
        _, stride, _ = options["strides"]
        return f"Occlusion {size}px windows, stride {stride}"
    groups = int(options["feature_mask"].max()) + 1
    samples = f" n={options['n_samples']}" if "n_samples" in options else ""
    return f"{cls}{samples}, {groups} groups"


# -- command -----------------------------------------------------------------------------------
COLUMNS = (
    "workload",
    "method",
    "whybox s",
    "Captum s",
    "floor s (chunk)",
    "whybox/floor",
    "whybox/Captum",
    "whybox peak MB",
    "Captum peak MB",
    "host syncs whybox / Captum",
    "outputs match",
)


def table(rows: list[Row]) -> str:
    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    cells = [
        (
            row.label,
            row.method,
            fmt_seconds(row.whybox_s),
            fmt_seconds(row.captum_s),
            f"{fmt_seconds(row.floor_s)} ({row.floor_chunk})",
            fmt_ratio(row.whybox_s / row.floor_s, FLOOR_GOAL),
            fmt_ratio(None if row.captum_s is None else row.whybox_s / row.captum_s, CAPTUM_GOAL),
            fmt_mb(row.whybox_mb),
            fmt_mb(row.captum_mb),
            f"{count(row.whybox_syncs)} / {count(row.captum_syncs)}",
            row.equal,
        )
        for row in rows
    ]
    return markdown_table(COLUMNS, cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    parser.add_argument("--quick", action="store_true", help="small workloads, one round")
    parser.add_argument("--repeats", type=int, help="timed rounds per row (default 7; quick 1)")
    parser.add_argument("--budget", type=float, help="seconds of timed rounds per row")
    parser.add_argument("--no-memory", action="store_true", help="skip the CUDA peak memory")
    parser.add_argument("--output", type=Path, help="markdown file to write")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON (_results.py)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available (use --device cpu --quick)")
    args.repeats = args.repeats or (1 if args.quick else 7)
    args.min_repeats = 1 if args.quick else 3
    args.budget = args.budget if args.budget is not None else (0.2 if args.quick else 20.0)
    name = "results-gpu-quick.md" if args.quick else "results-gpu.md"
    args.output = args.output or HERE / name
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda:
        set_clock("wall")
    else:
        configure_threads(1)
        set_clock("cpu")
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    started = time.perf_counter()
    env = environment()
    env["clock"] = "wall (synchronised)" if cuda else "cpu"
    if cuda:
        env["gpu"] = torch.cuda.get_device_name()
    print("  ".join(f"{k}: {v}" for k, v in env.items()), file=sys.stderr)
    rows: list[Row] = []
    described: list[str] = []
    for name, batch, gradient_keys, perturbation_keys in QUICK_PLAN if args.quick else FULL_PLAN:
        workload = build_workload(name, device=args.device, batch=batch)
        host = workload.inputs.cpu()
        described.append(workload.describe())
        jobs = [(gradient_row, key) for key in gradient_keys]
        jobs += [(perturbation_row, key) for key in perturbation_keys]
        for measure, key in jobs:
            row = measure(args, workload, host, key)
            rows.append(row)
            print(
                f"  {row.label} / {row.method}: whybox {fmt_seconds(row.whybox_s)} s, Captum "
                f"{fmt_seconds(row.captum_s)} s, floor {fmt_seconds(row.floor_s)} s, peak MB "
                f"{fmt_mb(row.whybox_mb)} / {fmt_mb(row.captum_mb)}, syncs "
                f"{row.whybox_syncs} / {row.captum_syncs}, match {row.equal}",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - started
    result = table(rows)
    print(result)
    args.output.write_text(render(args, env, described, result, elapsed))
    print(f"\nwrote {args.output} ({elapsed:.0f} s)", file=sys.stderr)
    if args.json:
        write_results(
            args.json,
            benchmark="gpu",
            rows=[row.record() for row in rows],
            environment=env,
            quick=args.quick,
            elapsed_s=elapsed,
            command=command_line("gpu.py"),
            device=args.device,
            workloads=described,
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def render(args, env, described, result, elapsed) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# whybox vs Captum on {args.device}",
            "",
            f"Generated {stamp} by `{command_line('gpu.py')}` in {elapsed:.0f} s.",
            "",
            *(f"- {key}: {value}" for key, value in env.items()),
            "- each call: inputs copied from (pageable) CPU memory, `attribute`, result copied "
            "back; the floor does the same copies around the bare work",
            "- floor: gradient methods, the same rows through forward+backward at the best "
            "chunk; perturbation methods, the rows whybox evaluated, replayed forward-only",
            f"- timed rounds: {args.min_repeats} to {args.repeats} (median), interleaved",
            "- peak MB: `torch.cuda.max_memory_allocated` growth over one call",
            '- host syncs: `torch.cuda.set_sync_debug_mode("warn")` warnings in one `attribute`',
            f"- goals: whybox/floor <= {FLOOR_GOAL}, whybox/Captum <= {CAPTUM_GOAL} (bold: missed)",
            "",
            "Workloads:",
            "",
            *(f"- {text}" for text in described),
            "",
            result,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
