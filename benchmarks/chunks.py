"""Sweep whybox's chunk size (rows per forward+backward) to check the ``"auto"`` choice.

    .venv/bin/python benchmarks/chunks.py [--workloads cnn32 ...] [--n-steps 50]

Times native ``IntegratedGradients`` (every row goes through the chunked evaluator) at a
range of fixed chunk sizes and at ``"auto"``, and prints seconds per 1000 rows; the
evidence behind ``_AUTO_BYTES`` / ``_AUTO_MIN_ROWS`` / ``_AUTO_MAX_ROWS`` in
``whybox/core/chunks.py``.
"""

from __future__ import annotations

import argparse
import statistics

from _harness import configure_threads, interleaved_times, set_clock
from models import WORKLOADS, build_workload
from whybox.core.call import prepare_call
from whybox.methods import IntegratedGradients

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS))
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    set_clock(args.clock)
    for name in args.workloads or list(WORKLOADS):
        workload = build_workload(name)
        total = workload.batch * args.n_steps
        auto = prepare_call("chunks", workload.model, workload.inputs).chunk_rows
        method = IntegratedGradients(workload.model)
        sizes = [s for s in SIZES if s < total] + [total]

        def call(chunk, w=workload, method=method):
            return lambda: method.attribute(
                w.inputs,
                baselines=w.baseline,
                target=w.target,
                n_steps=args.n_steps,
                chunk_size=chunk,
                return_delta=False,
            )

        calls = {str(size): call(size) for size in sizes}
        times, _ = interleaved_times(
            calls, repeats=args.repeats, min_repeats=3, budget_s=60.0, device="cpu"
        )
        medians = {key: statistics.median(values) for key, values in times.items()}
        best = min(medians, key=medians.get)
        print(f"{workload.describe()}; {total} rows; auto = {auto} rows")
        for key, seconds in medians.items():
            marks = (" best" if key == best else "") + (" auto" if int(key) == auto else "")
            print(f"  {key:>6} rows/chunk: {1000 * seconds / total:8.4f} s per 1000 rows{marks}")
        if auto not in sizes:
            auto_s = statistics.median(
                interleaved_times(
                    {"auto": call("auto")},
                    repeats=args.repeats,
                    min_repeats=3,
                    budget_s=30.0,
                    device="cpu",
                )[0]["auto"]
            )
            print(f"  {'auto':>6} ({auto}): {1000 * auto_s / total:8.4f} s per 1000 rows")


if __name__ == "__main__":
    main()
