"""Time whybox.robust's PGD against Captum 0.9's in one run, with the floor.

    .venv/bin/python benchmarks/robust.py            # full run (~1-2 min on 1 thread)
    .venv/bin/python benchmarks/robust.py --quick    # smoke run

Cases (``Linf``, 20 steps unless said, random start, the same global seed for both
libraries so they start from the same point and give the same result):

* ``cnn32 / CE``: SmallCNN 3x32x32, batch 64, ``loss_func=CrossEntropyLoss(reduction=
  "none")`` (whybox then runs the whole batch in one call, as Captum);
* ``cnn32 / -log p``: the same CNN with a softmax head and the default loss (whybox
  chunks automatically);
* ``mlp12 / CE``: 12-feature tabular MLP, batch 4096 (per-step overhead dominates);
* ``mlp12 / L2``: the same, ``L2`` ball (no random start: Captum's L2 random start fails
  for batches of more than one example).

``floor``: the same number of forward+backward passes of the loss through the bare model
(plus the sign step and the projection), with no library around it. Goal: whybox never
slower than Captum and within 1.15x of the floor. Torch runs on one thread; times are CPU
seconds (medians of interleaved rounds, see ``_harness.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from _harness import compare, configure_threads, interleaved_times, seed_all, set_clock
from models import SmallCNN, TabularMLP

FLOOR_GOAL = 1.15


class WithSoftmax(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.softmax(self.inner(x))


def floor_pgd(
    model: nn.Module,
    loss: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    radius: float,
    step_size: float,
    steps: int,
    norm: str,
) -> Tensor:
    """PGD by hand: one forward+backward per step, the sign step, the projection and the
    box (``[-10, 10]``, as in the library calls)."""
    start = x + (torch.rand_like(x) * 2 - 1) * radius if norm == "Linf" else x
    current = start.clamp(-10, 10)
    for _ in range(steps):
        leaf = current.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(leaf), y).sum(), leaf)
        stepped = torch.where(grad.abs() > 1e-6, leaf + step_size * grad.sign(), leaf)
        diff = stepped.detach() - x
        diff = diff.clamp(-radius, radius) if norm == "Linf" else torch.renorm(diff, 2, 0, radius)
        current = (x + diff).clamp(-10, 10)  # the box both libraries apply
    return current


def cases(quick: bool) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    cnn = SmallCNN().eval()
    mlp = TabularMLP().eval()
    ce = nn.CrossEntropyLoss(reduction="none")
    cnn_batch, mlp_batch = (16, 512) if quick else (64, 4096)
    x_cnn = torch.rand(cnn_batch, 3, 32, 32)
    x_mlp = torch.randn(mlp_batch, 12)
    return [
        {"name": "cnn32 / CE", "model": cnn, "loss": ce, "x": x_cnn, "norm": "Linf"},
        {
            "name": "cnn32 / -log p",
            "model": WithSoftmax(cnn).eval(),
            "loss": None,
            "x": x_cnn,
            "norm": "Linf",
        },
        {"name": "mlp12 / CE", "model": mlp, "loss": ce, "x": x_mlp, "norm": "Linf"},
        {"name": "mlp12 / L2", "model": mlp, "loss": ce, "x": x_mlp, "norm": "L2"},
    ]


def run_case(case: dict[str, Any], steps: int, repeats: int, budget: float) -> dict[str, Any]:
    import captum.robust as CR

    import whybox.robust as WR

    model, loss, x, norm = case["model"], case["loss"], case["x"], case["norm"]
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    radius, step_size = (0.03, 0.01) if norm == "Linf" else (0.5, 0.05)
    random_start = norm == "Linf"
    args = (radius, step_size, steps, y)
    options = {"random_start": random_start, "norm": norm}
    ours = WR.PGD(model, loss, lower_bound=-10, upper_bound=10)
    theirs = CR.PGD(model, loss, lower_bound=-10, upper_bound=10)

    def neg_log(out: Tensor, target: Tensor) -> Tensor:
        return -torch.log(out.gather(1, target.view(-1, 1))).view(-1)

    floor_loss = loss if loss is not None else neg_log

    def captum_call() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Captum warns on every step
            return theirs.perturb(x, *args, **options)

    calls = {
        "whybox": lambda: ours.perturb(x, *args, **options),
        "captum": captum_call,
        "floor": lambda: floor_pgd(model, floor_loss, x, y, radius, step_size, steps, norm),
    }
    times, outputs = interleaved_times(
        calls, repeats=repeats, min_repeats=3, budget_s=budget, device="cpu"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "name": case["name"],
        "shape": "x".join(str(s) for s in x.shape),
        "medians": medians,
        "match": compare(outputs["whybox"], outputs["captum"], rtol=1e-5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    options = parser.parse_args(argv)
    configure_threads(options.threads)
    set_clock(options.clock)
    seed_all()
    steps = options.steps or (5 if options.quick else 20)
    budget = options.budget or (3.0 if options.quick else 15.0)
    print(f"PGD, {steps} steps; torch {torch.__version__}, {options.threads} thread(s), "
          f"{options.clock} clock")  # fmt: skip
    header = "| case | input | whybox ms | captum ms | floor ms | whybox / captum | whybox / floor | same result |"
    print(header)
    print("|" + "---|" * 8)
    misses = []
    for case in cases(options.quick):
        result = run_case(case, steps, options.repeats, budget)
        m = result["medians"]
        vs_captum = m["whybox"] / m["captum"]
        vs_floor = m["whybox"] / m["floor"]
        print(
            f"| {result['name']} | {result['shape']} | {m['whybox'] * 1e3:.1f} | "
            f"{m['captum'] * 1e3:.1f} | {m['floor'] * 1e3:.1f} | {vs_captum:.2f} | "
            f"{vs_floor:.2f} | {result['match']} |"
        )
        if vs_captum > 1.0 or vs_floor > FLOOR_GOAL or result["match"] != "yes":
            misses.append(result["name"])
    if misses:
        print(
            f"\nmisses (slower than Captum, above {FLOOR_GOAL}x the floor, or different): {misses}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
