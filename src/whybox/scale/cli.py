"""``whybox explain-dataset``: a whole-dataset job from files (the CLI calls this function).

    whybox explain-dataset --model model.pt --data data.npy --method integrated_gradients \
        --out run/ [--labels labels.npy | --label-column y] [--option n_steps=32] ...

``--model`` is a TorchScript file; ``--data`` a ``.pt`` (a tensor, ``(inputs, labels)`` or
``{"inputs": ..., "labels": ...}``), ``.npy`` or ``.csv`` (header row; ``--label-column``
names the label column) file. Options are ``NAME=VALUE`` with JSON values.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["explain_dataset_cli", "load_table"]


def load_table(
    path: str, *, labels: str | None = None, label_column: str | None = None
) -> TensorDataset:
    """A ``TensorDataset`` of ``(inputs, labels)`` (or inputs only) from a data file."""
    suffix = Path(path).suffix.lower()
    y: Any = None
    if suffix == ".pt":
        data = torch.load(path, weights_only=True)
        if isinstance(data, dict):
            x, y = data["inputs"], data.get("labels")
        elif isinstance(data, (tuple, list)):
            x, y = data[0], data[1] if len(data) > 1 else None
        else:
            x = data
    elif suffix == ".npy":
        x = torch.from_numpy(np.load(path, allow_pickle=False))
    elif suffix == ".csv":
        header = Path(path).open().readline().strip().split(",")
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        if label_column is not None:
            if label_column not in header:
                raise ValueError(f"--label-column {label_column!r} is not in {header}")
            column = header.index(label_column)
            y = torch.from_numpy(table[:, column]).to(torch.int64)
            table = np.delete(table, column, axis=1)
        x = torch.from_numpy(table).to(torch.float32)
    else:
        raise ValueError(f"--data must be a .pt, .npy or .csv file, got {path!r}")
    if labels is not None:
        y = torch.from_numpy(np.load(labels, allow_pickle=False))
    return TensorDataset(x, y) if y is not None else TensorDataset(x)


def _option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option must be NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value  # a bare string


def explain_dataset_cli(argv: Sequence[str] | None = None) -> int:
    """Run ``explain-dataset`` with command-line arguments ``argv``; returns the exit code."""
    from .job import attribute_dataset

    parser = argparse.ArgumentParser(prog="whybox explain-dataset")
    parser.add_argument("--model", required=True, help="TorchScript model file")
    parser.add_argument("--data", required=True, help=".pt, .npy or .csv data file")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--out", required=True)
    parser.add_argument("--labels", help=".npy labels file")
    parser.add_argument("--label-column", help="label column of a CSV file")
    parser.add_argument("--target", default="auto", help="auto, labels, predicted or an int")
    parser.add_argument("--shard-rows", type=int, default=256)
    parser.add_argument("--chunk-size", default="auto")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--option", type=_option, action="append", default=[])
    args = parser.parse_args(argv)
    dataset = load_table(args.data, labels=args.labels, label_column=args.label_column)
    model = torch.jit.load(args.model).eval()
    target: Any = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    chunk: Any = int(args.chunk_size) if args.chunk_size.isdigit() else args.chunk_size
    # a TensorDataset of one tensor yields 1-tuples: inputs only
    result = attribute_dataset(
        dataset,
        args.method,
        model,
        out=args.out,
        target=target,
        chunk_size=chunk,
        shard_rows=args.shard_rows,
        resume=not args.no_resume,
        backend=args.backend,
        **dict(args.option),
    )
    print(f"{result.n_rows} examples in {result.n_shards} shards under {result.out}")
    return 0
