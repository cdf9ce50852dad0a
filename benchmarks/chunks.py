"""Check the automatic chunk (``chunk_size="auto"``) against every fixed chunk size.

    .venv/bin/python benchmarks/chunks.py [--workloads cnn32 ...] [--methods ig ...]
    git show HEAD:src/whybox/core/chunks.py > /tmp/before.py
    .venv/bin/python benchmarks/chunks.py --baseline /tmp/before.py   # before vs after

For each workload and method (native ``IntegratedGradients``: forward + backward;
``FeatureAblation`` with 64 feature groups: forward only; and, on cnn32 (batch 4) and cnn224
(batch 1), ``gradient_shap``, ``neuron_conductance`` and ``kernel_shap`` called as
benchmarks/registry.py calls them) this times a sweep of fixed chunk sizes (rows per
forward), ``"auto"`` with its throughput probe (after a few warm-up calls, so the probe has
settled and its choice is cached, as in a long-running process) and ``"auto"`` with the
probe off (the byte-sized choice alone), interleaved, and prints one table: the best fixed
chunk, the chunk the probe chose (the most common rows per forward of an automatic call),
and each automatic time over the best fixed one (goal: auto/best <= 1.1). ``first/best`` is
one automatic call that probes from scratch (the model warm), the probe's one-off cost.

With ``--baseline FILE`` (another version of ``whybox/core/chunks.py``, e.g. the last
commit's) its ``ChunkPlan`` is timed too, in the same rounds (``base`` columns): a change
to the probe is judged against the old one under the same load.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from _harness import CLOCKS, configure_threads, interleaved_times, set_clock
from models import WORKLOADS, Workload, build_workload
from perturbation import MidCNN
from registry import SPECS, WORKLOAD_SETUP, _layer_of, _workload_option
from whybox.core import chunks, forward
from whybox.core.registry import get_method
from whybox.methods import FeatureAblation, IntegratedGradients

SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: registered methods timed as benchmarks/registry.py calls them (its workloads only)
REGISTRY_METHODS = ("gradient_shap", "neuron_conductance", "kernel_shap")
METHODS = ("ig", "feature_ablation", *REGISTRY_METHODS)
GOAL = 1.1


def _workload(name: str, method: str) -> Workload:
    """The benchmark workload; perturbation cases explain one image (as in the issue),
    registry methods use benchmarks/registry.py's batch."""
    if method in REGISTRY_METHODS:
        return build_workload(name, batch=WORKLOAD_SETUP[name]["batch"])
    if name == "cnn128":
        torch.manual_seed(0)
        model = MidCNN().eval()
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn((1, 3, 128, 128), generator=generator)
        with torch.no_grad():
            target = model(inputs).argmax(dim=1)
        return Workload(name, model, inputs, target, 0.1 * inputs, inputs)
    image = len(WORKLOADS[name][1]) == 3
    return build_workload(name, batch=1 if image and method != "ig" else None)


def _runner(method: str, workload: Workload, n_steps: int) -> tuple[Callable, int]:
    """``run(chunk_size)`` for one attribution call, and the rows it evaluates."""
    inputs, target = workload.inputs, workload.target
    if method in REGISTRY_METHODS:
        return _registry_runner(method, workload)
    if method == "ig":
        ig = IntegratedGradients(workload.model)

        def run_ig(chunk: Any) -> Any:
            return ig.attribute(
                inputs,
                baselines=workload.baseline,
                target=target,
                n_steps=n_steps,
                chunk_size=chunk,
                return_delta=False,
            )

        return run_ig, workload.batch * n_steps
    mask = None
    groups = workload.example_shape[-1]
    if inputs.dim() == 4:  # 64 square groups of pixels, shared by the channels
        h, w = inputs.shape[-2:]
        cell_h, cell_w = h // 8, w // 8
        rows = torch.arange(h) // cell_h
        cols = torch.arange(w) // cell_w
        mask = (rows[:, None] * 8 + cols[None, :]).view(1, 1, h, w)
        groups = 64
    ablation = FeatureAblation(workload.model)

    def run_ablation(chunk: Any) -> Any:
        return ablation.attribute(inputs, target=target, feature_mask=mask, chunk_size=chunk)

    return run_ablation, workload.batch * (groups + 1)


def _registry_runner(method: str, workload: Workload) -> tuple[Callable, int]:
    """``run(chunk_size)`` for a registered method called as benchmarks/registry.py calls
    it, and the rows one call evaluates (counted with a forward pre-hook)."""
    spec, layer = SPECS[method], WORKLOAD_SETUP[workload.name]["layer"]
    model = workload.model
    cls = get_method(method)
    explainer = cls(model, _layer_of(model, layer)) if spec.layer else cls(model)
    options = dict(spec.native, target=workload.target)
    for key in spec.per_workload:
        options.update(_workload_option(key, workload, layer, captum=False))

    def run(chunk: Any) -> Any:
        return explainer.attribute(workload.inputs, chunk_size=chunk, **options)

    seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        run(8)
    finally:
        hook.remove()
    return run, sum(seen)


def _load_baseline(path: str) -> type:
    """``ChunkPlan`` of another version of ``whybox/core/chunks.py`` (its own probe cache),
    accepting the keywords the current engine passes."""
    name = "whybox.core._chunks_baseline"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.set_probe(True)
    known = set(module.ChunkPlan.record.__code__.co_varnames)

    class Baseline(module.ChunkPlan):
        def record(self, items: int, seconds: float, **options: Any) -> None:
            super().record(items, seconds, **{k: v for k, v in options.items() if k in known})

    Baseline.clear = staticmethod(module.clear_probe_cache)
    return Baseline


def _with_plan(plan: type, run: Callable[[Any], Any]) -> Callable[[], Any]:
    """``run("auto")`` with the engine's ``ChunkPlan`` replaced by ``plan``."""

    def call() -> Any:
        current = forward.ChunkPlan
        forward.ChunkPlan = plan
        try:
            return run("auto")
        finally:
            forward.ChunkPlan = current

    return call


def _chosen_rows(model: torch.nn.Module, call: Callable[[], Any]) -> int:
    """The most common rows per forward of ``call``."""
    seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        call()
    finally:
        hook.remove()
    return Counter(seen).most_common(1)[0][0]


def _without_probe(run: Callable[[Any], Any]) -> Callable[[], Any]:
    def call() -> Any:
        chunks.set_probe(False)
        try:
            return run("auto")
        finally:
            chunks.set_probe(None)

    return call


def _case(
    name: str, method: str, args: argparse.Namespace, baseline: type | None
) -> tuple[str, float]:
    """One table row for ``method`` on workload ``name``, and auto's time over the best."""
    workload = _workload(name, method)
    run, total = _runner(method, workload, args.n_steps)
    run(8)  # warm the model up before the one-off probe timing
    chunks.clear_probe_cache()
    clock = CLOCKS[args.clock]
    began = clock()
    run("auto")  # probes from scratch
    first = clock() - began
    for _ in range(6):  # the probe may need a few calls to time every candidate
        run("auto")
    auto_rows = _chosen_rows(workload.model, lambda: run("auto"))
    base = None
    if baseline is not None:
        base = _with_plan(baseline, run)
        baseline.clear()
        for _ in range(7):
            base()
        base_rows = _chosen_rows(workload.model, base)
    off = _without_probe(run)
    bytes_rows = _chosen_rows(workload.model, off)
    sizes = [s for s in SIZES if s < total] + [total]
    calls: dict[str, Callable[[], Any]] = {
        str(size): (lambda size=size: run(size)) for size in sizes
    }
    calls["auto"] = lambda: run("auto")
    calls["bytes"] = off
    if base is not None:
        calls["base"] = base
    times, _ = interleaved_times(
        calls, repeats=args.repeats, min_repeats=3, budget_s=args.budget, device="cpu"
    )
    medians = {key: statistics.median(values) for key, values in times.items()}
    fixed = {key: medians[key] for key in map(str, sizes)}
    best = min(fixed, key=fixed.__getitem__)
    ratio = medians["auto"] / fixed[best]
    if args.verbose:
        print(workload.describe(), method)
        for key, seconds in medians.items():
            print(f"  {key:>6}: {seconds:.4f} s{' best' if key == best else ''}")
    mark = "**" if ratio > GOAL else ""
    line = (
        f"| {name} | {method} | {total} | {best} | {fixed[best]:.4f} | {auto_rows} | "
        f"{mark}{ratio:.2f}{mark} | {bytes_rows} | {medians['bytes'] / fixed[best]:.2f} | "
        f"{first / fixed[best]:.2f} |"
    )
    if base is not None:
        line += f" {base_rows} | {medians['base'] / fixed[best]:.2f} |"
    return line, ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted([*WORKLOADS, "cnn128"]))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--verbose", action="store_true", help="print every fixed chunk's time")
    parser.add_argument("--baseline", help="another chunks.py whose ChunkPlan is timed too")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    set_clock(args.clock)
    chunks.set_probe(True)
    baseline = _load_baseline(args.baseline) if args.baseline else None
    extra = " base choice | base/best |" if baseline is not None else ""
    lines = [
        "| workload | method | rows | best fixed | s | auto choice | auto/best | "
        "bytes-only choice | bytes/best | first/best |" + extra,
        "|" + "---|" * (12 if baseline is not None else 10),
    ]
    misses = []
    for name in args.workloads or [*WORKLOADS, "cnn128"]:
        for method in args.methods:
            if method in REGISTRY_METHODS and name not in WORKLOAD_SETUP:
                continue  # registry methods on registry workloads only
            line, ratio = _case(name, method, args, baseline)
            lines.append(line)
            if ratio > GOAL:
                misses.append(f"{name}/{method}: auto {ratio:.2f}x the best fixed chunk")
    print("\n".join(lines))
    print(f"\nGoal: auto/best <= {GOAL}. " + ("Misses: " + "; ".join(misses) if misses else ""))


if __name__ == "__main__":
    main()
