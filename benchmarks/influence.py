"""Time whybox.influence's TracIn, whybox.concept's TCAV and whybox.robust's PGD against
Captum 0.9 in one run.

    .venv/bin/python benchmarks/influence.py            # full run (a few minutes, 1 thread)
    .venv/bin/python benchmarks/influence.py --quick    # smoke run

Cases (checkpoints are ``state_dict`` files on disk, loaded by each library's default
loader; the same data, checkpoints and seeds for both libraries):

* ``TracInCP influence / self_influence, mlp``: TabularMLP (12 -> 64 -> 64 -> 2, 5k
  parameters), 1024 training examples as a ``Dataset`` with ``batch_size=32``, 16 test
  examples, 5 checkpoints, ``CrossEntropyLoss(reduction="none")`` (Captum's default
  per-example path) and, marked ``sample-wise``, ``reduction="sum"`` with
  ``sample_wise_grads_per_batch=True`` (Captum's hook trick);
* ``TracInCP, cnn``: SmallCNN (0.1M parameters) 3x32x32, 256 training examples (128 on
  Captum's per-example path), 8 test examples, 3 checkpoints;
* ``TracInCPFast, cnn``: the same, the final linear layer;
* ``TCAV, cnn``: SmallCNN, two layers, 6 concepts of 64 images, 8 experimental sets (the
  tutorial's ``[concept, random_i]`` and ``[random_0, random_i]``), 32 inputs, the default
  classifier, seeded (the two give the same scores); a fresh cache folder per call;
* ``PGD``: ``benchmarks/robust.py``'s ``cnn32 / CE`` and ``mlp12 / CE`` cases (``Linf``,
  20 steps, random start; its floor: the same passes through the bare model).

``floor`` (TracIn): per checkpoint, one ``load_state_dict`` and one batched forward +
backward of all training and test rows -- a lower bound: per-example gradients cost more
than one batched backward. Goal: whybox at least 3x faster than Captum's TracInCP with the
same numbers. Torch runs on one thread; times are CPU seconds (medians of interleaved
rounds, see ``_harness.py``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _harness import compare, configure_threads, interleaved_times, seed_all, set_clock
from models import SmallCNN, TabularMLP

SPEED_GOAL = 3.0


def _checkpoints(model: nn.Module, count: int, folder: str) -> list[str]:
    g = torch.Generator().manual_seed(0)
    paths = []
    for c in range(count):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        path = os.path.join(folder, f"checkpoint-{c}.pt")
        torch.save(model.state_dict(), path)
        paths.append(path)
    return paths


def _floor(
    model: nn.Module, paths: list[str], x: torch.Tensor, y: torch.Tensor
) -> Callable[[], Any]:
    def run() -> Any:
        total = 0.0
        for path in paths:
            model.load_state_dict(torch.load(path))
            loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
            grads = torch.autograd.grad(loss, list(model.parameters()))
            total += float(grads[0].sum())
        return torch.tensor(total)

    return run


def tracin_cases(quick: bool, folder: str) -> list[tuple[str, dict[str, Callable[[], Any]]]]:
    import captum.influence as C

    import whybox.influence as W

    cases = []
    g = torch.Generator().manual_seed(1)
    n, q = (256, 8) if quick else (1024, 16)
    torch.manual_seed(0)
    mlp = TabularMLP().eval()
    x, y = torch.randn(n, 12, generator=g), torch.randint(0, 2, (n,), generator=g)
    test = (torch.randn(q, 12, generator=g), torch.randint(0, 2, (q,), generator=g))
    paths = _checkpoints(mlp, 3 if quick else 5, os.path.join(folder, "mlp"))
    train = TensorDataset(x, y)
    floor = _floor(mlp, paths, torch.cat([x, test[0]]), torch.cat([y, test[1]]))
    for label, options in (
        ("", {"loss_fn": nn.CrossEntropyLoss(reduction="none")}),
        (
            ", sample-wise",
            {"loss_fn": nn.CrossEntropyLoss(reduction="sum"), "sample_wise_grads_per_batch": True},
        ),
    ):
        ours = W.TracInCP(mlp, train, paths, batch_size=32, **options)
        theirs = C.TracInCP(mlp, train, paths, batch_size=32, **options)
        cases.append(
            (
                f"TracInCP influence, mlp{label}",
                {
                    "whybox": lambda m=ours, t=test: m.influence(t),
                    "captum": lambda m=theirs, t=test: m.influence(t),
                    "floor": floor,
                },
            )
        )
        cases.append(
            (
                f"TracInCP self_influence, mlp{label}",
                {
                    "whybox": lambda m=ours: m.self_influence(),
                    "captum": lambda m=theirs: m.self_influence(),
                    "floor": floor,
                },
            )
        )
    n, q = (64, 4) if quick else (256, 8)
    torch.manual_seed(0)
    cnn = SmallCNN().eval()
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    test = (torch.randn(q, 3, 32, 32, generator=g), torch.randint(0, 10, (q,), generator=g))
    paths = _checkpoints(cnn, 3, os.path.join(folder, "cnn"))
    train = TensorDataset(x, y)
    floor = _floor(cnn, paths, torch.cat([x, test[0]]), torch.cat([y, test[1]]))
    per_example = nn.CrossEntropyLoss(reduction="none")
    few = TensorDataset(x[: n // 2], y[: n // 2])  # Captum's per-example loop is slow here
    few_floor = _floor(
        cnn, paths, torch.cat([x[: n // 2], test[0]]), torch.cat([y[: n // 2], test[1]])
    )
    ours = W.TracInCP(cnn, few, paths, batch_size=32, loss_fn=per_example)
    theirs = C.TracInCP(cnn, few, paths, batch_size=32, loss_fn=per_example)
    cases.append(
        (
            f"TracInCP influence, cnn ({n // 2} examples)",
            {
                "whybox": lambda m=ours, t=test: m.influence(t),
                "captum": lambda m=theirs, t=test: m.influence(t),
                "floor": few_floor,
            },
        )
    )
    loss = nn.CrossEntropyLoss(reduction="sum")
    ours = W.TracInCP(
        cnn, train, paths, batch_size=32, loss_fn=loss, sample_wise_grads_per_batch=True
    )
    theirs = C.TracInCP(
        cnn, train, paths, batch_size=32, loss_fn=loss, sample_wise_grads_per_batch=True
    )
    cases.append(
        (
            "TracInCP influence, cnn, sample-wise",
            {
                "whybox": lambda m=ours, t=test: m.influence(t),
                "captum": lambda m=theirs, t=test: m.influence(t),
                "floor": floor,
            },
        )
    )
    fast_ours = W.TracInCPFast(cnn, "classifier.3", train, paths, batch_size=32, loss_fn=loss)
    fast_theirs = C.TracInCPFast(cnn, cnn.classifier[3], train, paths, batch_size=32, loss_fn=loss)
    cases.append(
        (
            "TracInCPFast influence, cnn",
            {
                "whybox": lambda m=fast_ours, t=test: m.influence(t),
                "captum": lambda m=fast_theirs, t=test: m.influence(t),
            },
        )
    )
    cases.append(
        (
            "TracInCPFast self_influence, cnn",
            {
                "whybox": lambda m=fast_ours: m.self_influence(),
                "captum": lambda m=fast_theirs: m.self_influence(),
            },
        )
    )
    return cases


def tcav_case(quick: bool, folder: str) -> tuple[str, dict[str, Callable[[], Any]]]:
    import captum.concept as C

    import whybox.concept as W

    torch.manual_seed(0)
    model = SmallCNN().eval()
    g = torch.Generator().manual_seed(2)
    per = 24 if quick else 64
    data = [torch.randn(per, 3, 32, 32, generator=g) + (0.5 if k == 0 else 0.0) for k in range(6)]
    inputs = torch.randn(16 if quick else 32, 3, 32, 32, generator=g)
    layers = ["features.4", "classifier.2"]
    import sklearn.linear_model  # noqa: F401  (imported before seeding: the import draws from `random`)

    def run(lib: Any) -> Callable[[], Any]:
        concepts = [
            lib.Concept(k, f"c{k}", DataLoader(d, batch_size=32)) for k, d in enumerate(data)
        ]
        sets = [[concepts[0], r] for r in concepts[2:]] + [[concepts[1], r] for r in concepts[2:]]

        def call() -> Any:
            with tempfile.TemporaryDirectory(dir=folder) as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tcav = lib.TCAV(model, layers, save_path=tmp + "/")
                random.seed(0)
                np.random.seed(0)
                scores = tcav.interpret(inputs, sets, target=3)
            return tuple(
                scores[k][layer][s]
                for k in scores
                for layer in layers
                for s in ("sign_count", "magnitude")
            )

        return call

    return "TCAV, cnn, 2 layers, 8 sets", {"whybox": run(W), "captum": run(C)}


def pgd_rows(quick: bool, only: str | None) -> list[tuple[Any, ...]]:
    """Table rows of ``robust.py``'s PGD cases on the CNN and the MLP (cross-entropy)."""
    import robust

    rows = []
    for case in robust.cases(quick):
        name = f"PGD, {case['name']}"
        if case["name"] not in ("cnn32 / CE", "mlp12 / CE") or (only and only not in name):
            continue
        result = robust.run_case(
            case, 5 if quick else 20, 3 if quick else 7, 3.0 if quick else 15.0
        )
        m = result["medians"]
        rows.append(
            (
                name,
                m["whybox"],
                m["captum"],
                m["floor"],
                m["captum"] / m["whybox"],
                m["whybox"] / m["floor"],
                result["match"],
            )
        )
        print(f"{name}: whybox {m['whybox']:.4f}s captum {m['captum']:.4f}s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="run only the cases whose name has this")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    set_clock("cpu")
    seed_all(0)
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.makedirs(os.path.join(folder, "mlp"))
        os.makedirs(os.path.join(folder, "cnn"))
        cases = tracin_cases(args.quick, folder) + [tcav_case(args.quick, folder)]
        for name, calls in cases:
            if args.only and args.only not in name:
                continue
            times, outputs = interleaved_times(
                calls,
                repeats=3 if args.quick else 5,
                min_repeats=2,
                budget_s=20.0 if args.quick else 60.0,
                device="cpu",
            )
            median = {k: statistics.median(v) for k, v in times.items()}
            ours, theirs = median["whybox"], median["captum"]
            floor = median.get("floor")
            rows.append(
                (
                    name,
                    ours,
                    theirs,
                    floor,
                    theirs / ours,
                    None if floor is None else ours / floor,
                    compare(outputs["whybox"], outputs["captum"], rtol=1e-4),
                )
            )
            print(
                f"{name}: whybox {ours:.4f}s captum {theirs:.4f}s ({theirs / ours:.1f}x)",
                file=sys.stderr,
            )
    rows.extend(pgd_rows(args.quick, args.only))
    print(
        f"# whybox.influence / whybox.concept / whybox.robust vs Captum 0.9\n\ntorch threads {args.threads}, clock cpu; see benchmarks/influence.py.\n"
    )
    print(
        "| case | whybox (s) | captum (s) | floor (s) | captum / whybox | whybox / floor | same numbers |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, ours, theirs, floor, speedup, over_floor, same in rows:
        floor_text = "-" if floor is None else f"{floor:.4f}"
        over_text = "-" if over_floor is None else f"{over_floor:.2f}x"
        print(
            f"| {name} | {ours:.4f} | {theirs:.4f} | {floor_text} | {speedup:.1f}x | {over_text} | {same} |"
        )
    slow = [r[0] for r in rows if r[0].startswith("TracInCP ") and r[4] < SPEED_GOAL]
    if slow:
        print(f"\nbelow the {SPEED_GOAL:.0f}x goal: {', '.join(slow)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
