"""Whole-dataset attribution throughput: ``whybox.scale`` local and Ray vs the floor.

    .venv/bin/python benchmarks/scale.py [--rows 8192] [--n-steps 16] [--shard-rows 512]

Prints dataset rows per second for

* ``floor``: the bare model pushing the rows IG needs (``rows * n_steps``, forward and
  backward) at its best chunk, one thread -- what no attribution of these rows can beat;
* ``one call``: ``whybox.explain`` on the whole dataset held in memory;
* ``local``: :func:`whybox.scale.attribute_dataset` streaming shards to disk, one thread;
* ``ray.data``: the same job through ``backend="ray"`` -- Ray Data ``map_batches`` over an
  actor pool of 2 actors of 1 CPU each (one more CPU for the reading tasks; ``ray.init``
  timed apart), the first run with the actors' start, then a second one; if Ray Data is
  installed;
* ``ray.data source, local``: a ``ray.data.Dataset`` of the same rows on the local backend.

On a shared or small machine Ray's fixed costs (starting actors that import torch, the
streaming executor) dominate small jobs; the rows/s of the second Ray run is the one to
compare with ``local``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

import whybox
from whybox.scale import attribute_dataset


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    ).eval()


def _floor(model: nn.Module, x: torch.Tensor, n_steps: int) -> float:
    """Seconds for the bare forward+backward of ``rows * n_steps`` rows, best chunk."""
    rows = x.repeat(n_steps, 1)
    best = float("inf")
    for chunk in (256, 1024, 4096):
        start = time.perf_counter()
        for part in rows.split(chunk):
            part = part.clone().requires_grad_(True)
            torch.autograd.grad(model(part)[:, 0].sum(), part)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--shard-rows", type=int, default=512)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = _model()
    torch.manual_seed(1)
    x, y = torch.randn(args.rows, 64), torch.randint(0, 10, (args.rows,))
    options = {"n_steps": args.n_steps, "return_delta": True}
    times: dict[str, float] = {"floor": _floor(model, x, args.n_steps)}

    start = time.perf_counter()
    whybox.explain(model, x, method="integrated_gradients", target=y, **options)
    times["one call"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        attribute_dataset(TensorDataset(x, y), "integrated_gradients", model, out=out,
                          shard_rows=args.shard_rows, show_progress=False, resume=False,
                          **options)  # fmt: skip
        times["local"] = time.perf_counter() - start

    try:
        import ray
        import ray.data
    except ImportError:
        print("ray.data: not installed (pip install 'whybox[ray]')")
    else:
        start = time.perf_counter()
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - start
        for label in ("ray.data (first, actors start)", "ray.data"):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                attribute_dataset(TensorDataset(x, y), "integrated_gradients", model, out=out,
                                  shard_rows=args.shard_rows, show_progress=False,
                                  backend="ray", num_workers=2, **options)  # fmt: skip
                times[label] = time.perf_counter() - start
        source = ray.data.from_numpy(x.numpy()).rename_columns({"data": "inputs"})
        source = source.zip(ray.data.from_numpy(y.numpy()).rename_columns({"data": "labels"}))
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            attribute_dataset(source, "integrated_gradients", model, out=out,
                              shard_rows=args.shard_rows, show_progress=False, **options)  # fmt: skip
            times["ray.data source, local"] = time.perf_counter() - start
        ray.shutdown()
        print(f"ray.init: {startup:.1f} s (not counted)")

    print(f"{args.rows} rows, IG n_steps={args.n_steps}, shard_rows={args.shard_rows}")
    for label, seconds in times.items():
        ratio = times["floor"] / seconds
        print(f"{label:>32}: {args.rows / seconds:10.0f} rows/s  ({ratio:.2f}x floor speed)")


if __name__ == "__main__":
    main()
