"""Timing, bare-cost and peak-memory measurement for the benchmarks.

* Times are medians of several calls; the two libraries' calls are interleaved (whybox,
  Captum, whybox, ...) so slow drifts of a shared machine hit both alike.
* The *bare cost* of ``R`` rows is the fastest way to push ``R`` rows through the model's
  forward and backward (``autograd.grad`` of the selected outputs' sum w.r.t. the input) in
  equal chunks of prebuilt rows. The chunk ``c`` is chosen among a few sizes from per-chunk
  median times (``R`` rows cost about ``(R // c) * t(c) + t(R % c)``), then the bare loop
  is timed interleaved with the two libraries' calls, like a third library.
* Peak memory on CPU is the peak RSS increase of one call, measured in a fresh process
  forked from a clean fork server (no heap left over from earlier calls): the peak is reset
  with ``/proc/self/clear_refs`` (falling back to ``getrusage`` peak RSS) after a warm-up
  call and ``malloc_trim``, then ``VmHWM - VmRSS`` is read around a second call. On CUDA it is
  ``torch.cuda.max_memory_allocated`` growth, measured in-process.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import multiprocessing
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "configure_threads",
    "set_clock",
    "seed_all",
    "synchronize",
    "interleaved_times",
    "BareCost",
    "bare_step",
    "MemoryProbe",
    "cuda_peak_mb",
    "compare",
]

MB = 2**20


def configure_threads(threads: int) -> None:
    """Fix torch's intra-op (and, when still possible, inter-op) thread count."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already started
        pass


def seed_all(seed: int = 0) -> None:
    """Seed every global generator either library may draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def set_clock(name: str) -> None:
    """``"wall"`` (``perf_counter``) or ``"cpu"`` (``process_time``: CPU seconds of this
    process, all threads; with one torch thread it is immune to time lost to other
    processes on a shared machine)."""
    global _clock
    _clock = CLOCKS[name]


def _timed(call: Callable[[], Any], device: str, inner: int = 1) -> tuple[float, Any]:
    """Seconds per call over ``inner`` back-to-back calls (each seeded), and the last output."""
    output = None
    synchronize(device)
    start = _clock()
    for _ in range(inner):
        seed_all()
        output = call()
    synchronize(device)
    return (_clock() - start) / inner, output


def interleaved_times(
    calls: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    min_repeats: int,
    budget_s: float,
    device: str,
    min_sample_s: float = 0.05,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Per-call lists of seconds per call, and each call's (seeded) output.

    Each call is warmed up (twice when fast), then timed in interleaved rounds; fast calls
    are repeated back to back within a sample so that a sample lasts ``min_sample_s``. The
    number of rounds is ``repeats``, lowered (not below ``min_repeats``) so that the rounds
    take about ``budget_s``.
    """
    outputs: dict[str, Any] = {}
    inner: dict[str, int] = {}
    warm = 0.0
    for name, call in calls.items():
        seconds, outputs[name] = _timed(call, device)
        if seconds < 0.5:
            seconds, outputs[name] = _timed(call, device)
        inner[name] = max(1, int(min_sample_s / max(seconds, 1e-9)))
        warm += seconds * inner[name]
    rounds = max(min_repeats, min(repeats, int(budget_s / max(warm, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(_timed(call, device, inner[name])[0])
    return times, outputs


def bare_step(model: nn.Module, rows: Tensor, target: Tensor) -> Tensor:
    """One forward+backward: gradient of the selected outputs' sum w.r.t. ``rows``."""
    leaf = rows.detach().requires_grad_(True)
    selected = model(leaf).gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(selected, leaf)
    return grad


class BareCost:
    """The bare batched forward+backward cost of a model, per number of rows.

    Parameters
    ----------
    model, inputs, target : the workload; rows cycle through its examples
    device : where to run
    repeats : samples per chunk-size median
    chunks : candidate chunk sizes (the whole batch is a further candidate when its
        input takes at most ``max_all_bytes``)
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor,
        target: Tensor,
        *,
        device: str,
        repeats: int,
        chunks: Sequence[int] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        max_all_bytes: int = 64 * MB,
        min_sample_s: float = 0.02,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.target = target
        self.device = device
        self.repeats = repeats
        self.chunks = tuple(chunks)
        self.max_all_bytes = max_all_bytes
        self.min_sample_s = min_sample_s
        self.example_bytes = inputs[:1].numel() * inputs.element_size()
        self._seconds: dict[int, float] = {}

    def seconds_per_step(self, rows: int) -> float:
        """Median seconds of one forward+backward of ``rows`` rows (cached)."""
        if rows not in self._seconds:
            x, target = self._rows(rows)
            bare_step(self.model, x, target)  # warm-up
            synchronize(self.device)
            start = _clock()
            bare_step(self.model, x, target)
            synchronize(self.device)
            once = _clock() - start
            inner = max(1, int(self.min_sample_s / max(once, 1e-9)))
            samples = []
            for _ in range(self.repeats):
                synchronize(self.device)
                start = _clock()
                for _ in range(inner):
                    bare_step(self.model, x, target)
                synchronize(self.device)
                samples.append((_clock() - start) / inner)
            self._seconds[rows] = statistics.median(samples)
        return self._seconds[rows]

    def call(self, total_rows: int, chunk: int) -> Callable[[], Tensor]:
        """A call that pushes ``total_rows`` rows through in chunks of ``chunk`` rows."""
        full, rest = divmod(total_rows, chunk)
        parts = [(self._rows(chunk), full)] + ([(self._rows(rest), 1)] if rest else [])

        def run() -> Tensor:
            grad = None
            for (x, target), count in parts:
                for _ in range(count):
                    grad = bare_step(self.model, x, target)
            assert grad is not None
            return grad

        return run

    def _rows(self, rows: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(rows, device=self.inputs.device) % self.inputs.shape[0]
        return self.inputs[index].contiguous(), self.target[index]

    def best_chunk(self, total_rows: int) -> tuple[int, float]:
        """``(chunk, estimated seconds)``: the cheapest chunk for ``total_rows`` rows, from
        per-chunk medians."""
        candidates = [c for c in self.chunks if c < total_rows]
        if total_rows * self.example_bytes <= self.max_all_bytes or not candidates:
            candidates.append(total_rows)
        best: tuple[float, int] | None = None
        for chunk in candidates:
            full, rest = divmod(total_rows, chunk)
            seconds = full * self.seconds_per_step(chunk)
            if rest:
                seconds += self.seconds_per_step(rest)
            if best is None or seconds < best[1]:
                best = (chunk, seconds)
        assert best is not None
        return best


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _probe(connection: Any, module: str, factory: str, args: tuple[Any, ...], threads: int) -> None:
    """Child side of :class:`MemoryProbe`: warm up, reset the peak, run once, report MB."""
    try:
        configure_threads(threads)
        call = getattr(importlib.import_module(module), factory)(*args)
        seed_all()
        call()  # warm-up: one-time lazy imports and caches are not the call's memory
        _release_free_memory()
        reset = _reset_peak_rss()
        before = _status_kb("VmRSS") if reset else _maxrss_kb()
        seed_all()
        output = call()
        peak = _status_kb("VmHWM") if reset else _maxrss_kb()
        del output
        if before is None or peak is None:
            connection.send("no peak RSS on this platform")
        else:
            connection.send((peak - before) / 1024)
    except BaseException as error:  # report, never hang the parent
        connection.send(f"{type(error).__name__}: {error}")
    finally:
        connection.close()


class MemoryProbe:
    """Peak RSS increase of single calls, each in a fresh process from a clean fork server.

    ``factory`` (a function ``module.factory(*args)``) returns the call. It runs once as a
    warm-up (so one-time lazy initialisation is not counted), then freed memory is handed
    back to the OS (``malloc_trim``) and the second call is measured.
    """

    def __init__(self, preload: Sequence[str], threads: int) -> None:
        self.threads = threads
        methods = multiprocessing.get_all_start_methods()
        self.context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        if "forkserver" in methods:
            self.context.set_forkserver_preload(list(preload))

    def peak_mb(self, module: str, factory: str, *args: Any) -> float | str | None:
        """Peak RSS growth in MB of the call, or an error message."""
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_probe, args=(sender, module, factory, args, self.threads)
        )
        process.start()
        sender.close()
        try:
            result = receiver.recv()
        except EOFError:
            result = None
        process.join()
        return f"probe died (exit code {process.exitcode})" if result is None else result


def cuda_peak_mb(call: Callable[[], Any]) -> float:
    """Growth of ``torch.cuda.max_memory_allocated`` over one call (after a warm-up), in MB."""
    seed_all()
    call()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    seed_all()
    output = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del output
    return (peak - before) / MB


def compare(ours: Any, theirs: Any, *, rtol: float = 1e-3) -> str:
    """``"yes"`` when the outputs agree to ``rtol`` of the largest magnitude, else the error."""
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    if len(ours) != len(theirs):
        return "no (structure)"
    worst = 0.0
    for a, b in zip(ours, theirs):
        if a.shape != b.shape:
            return "no (shape)"
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        scale = max(b.abs().max().item(), 1e-12)
        worst = max(worst, (a - b).abs().max().item() / scale)
    return "yes" if worst <= rtol else f"no ({worst:.1e})"


def environment() -> dict[str, str]:
    """Versions and settings to print with the results."""
    import captum

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "captum": captum.__version__,
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "torch threads": str(torch.get_num_threads()),
    }


# -- table formatting shared by run.py and layer.py ------------------------------------


def fmt_seconds(value: float | None) -> str:
    """Seconds with enough digits for millisecond-sized calls; ``-`` when absent."""
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value:.5f}"
    return f"{value:.4f}" if value < 1 else f"{value:.3f}"


def fmt_ratio(value: float | None, goal: float | None = None) -> str:
    """A ratio, in bold when it misses ``goal``."""
    if value is None:
        return "-"
    text = f"{value:.2f}"
    return f"**{text}**" if goal is not None and value > goal else text


def fmt_mb(value: float | str | None) -> str:
    """Megabytes; a string means the memory probe failed."""
    if value is None:
        return "-"
    return "error" if isinstance(value, str) else f"{value:.1f}"


def markdown_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A markdown table of already formatted cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines.extend("| " + " | ".join(cells) + " |" for cells in rows)
    return "\n".join(lines)
