"""Every registered native method against the floor of its own model calls, and Captum.

    .venv/bin/python benchmarks/registry.py                 # cnn32 (batch 4) and cnn224 (batch 1)
    .venv/bin/python benchmarks/registry.py --quick         # cnn32 only, fewer rounds
    .venv/bin/python benchmarks/registry.py --methods lime grad_cam --workloads cnn224
    .venv/bin/python benchmarks/registry.py --workloads resnet64 \
        --output benchmarks/results-registry-resnet64.md   # a ResNet: BN, residuals, reused ReLUs

Issue 16 asks for *every* method in the registry within 1.2x of the floor and never slower
than Captum. The other benchmarks cover the families' main methods with many options; this
one walks :func:`whybox.core.registry.available_methods` so a method nobody benchmarked
cannot hide. For each method on each workload (interleaved rounds in one process, medians,
CPU-time clock, one torch thread):

* ``native``: the registered ``whybox.methods`` class, library defaults except the options
  listed in :data:`SPECS` (the same for Captum);
* ``floor``: the very rows the native call pushed through the model (recorded once with a
  forward pre-hook), replayed through the bare model at its best chunk size -- forward only
  for perturbation methods, forward+backward (gradient w.r.t. the rows) for gradient ones;
* ``facade`` and ``captum``: ``whybox.attr`` and Captum 0.9 with the same class name and
  arguments, where Captum has the method (CAM variants and attention flows have none);
  ``facade/floor`` is against the floor of the facade's own rows where they differ from the
  native call's (DeepLift: the facade runs inputs and references together, as Captum does,
  the native method runs each distinct reference once, apart). Where Captum raises on a
  workload (its DeepLift on a ReLU module called twice per forward), the row says so and
  lists the error under the table; the facade is still timed.

The floor of a layer-gradient method takes the gradient w.r.t. the model's input rows,
slightly more work than the gradient w.r.t. the layer the method needs. Attention methods
need a transformer with attention weights and are timed in the attention tests' models,
not here (listed as skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from _harness import configure_threads, seed_all
from models import build_workload
from overhead import interleaved

FLOOR_GOAL = 1.2
CAPTUM_GOAL = 1.0

#: registered methods this benchmark does not time, and why
SKIPPED = {
    "attention_flow": "needs a transformer's attention weights",
    "attention_rollout": "needs a transformer's attention weights",
    "gradient_weighted_rollout": "needs a transformer's attention weights",
}


@dataclass(frozen=True)
class Spec:
    """How to build and call one method (native and, where it exists, Captum)."""

    gradient: bool  # the floor is forward+backward
    layer: bool = False  # the constructor takes the benchmark layer
    native: dict[str, Any] = field(default_factory=dict)  # native attribute options
    captum: str | None = None  # Captum class name
    captum_options: dict[str, Any] = field(default_factory=dict)
    # name of an attribute option built per workload (see _workload_option)
    per_workload: tuple[str, ...] = ()
    min_batch: int = 1  # smaller batches are skipped (permutation needs two examples)


_NO_DELTA = {"return_delta": False}
_CAMS = (
    "upsampled_grad_cam",
    "grad_cam_plus_plus",
    "xgrad_cam",
    "hires_cam",
    "layer_cam",
    "score_cam",
    "ablation_cam",
    "eigen_cam",
)

SPECS: dict[str, Spec] = {
    "saliency": Spec(True, captum="Saliency"),
    "input_x_gradient": Spec(True, captum="InputXGradient"),
    "integrated_gradients": Spec(
        True,
        native={"n_steps": 50, **_NO_DELTA},
        captum="IntegratedGradients",
        captum_options={"n_steps": 50},
        per_workload=("zero_baselines",),
    ),
    "noise_tunnel": Spec(
        True,
        native={"nt_samples": 5, "stdevs": 0.1, "n_steps": 20, "seed": 0, **_NO_DELTA},
        captum="NoiseTunnel",
        captum_options={"nt_type": "smoothgrad", "nt_samples": 5, "stdevs": 0.1, "n_steps": 20},
        per_workload=("zero_baselines",),
    ),
    "gradient_shap": Spec(
        True,
        native={"n_samples": 20, "seed": 0, **_NO_DELTA},
        captum="GradientShap",
        captum_options={"n_samples": 20},
        per_workload=("reference_baselines",),
    ),
    "deeplift": Spec(True, native=_NO_DELTA, captum="DeepLift", per_workload=("zero_baselines",)),
    "deeplift_shap": Spec(
        True,
        native=_NO_DELTA,
        captum="DeepLiftShap",
        per_workload=("reference_baselines",),
    ),
    "guided_backprop": Spec(True, captum="GuidedBackprop"),
    "deconvolution": Spec(True, captum="Deconvolution"),
    "guided_grad_cam": Spec(True, layer=True, captum="GuidedGradCam"),
    # Captum's LRP fails on these models (no rule for nn.Flatten; with one, its MaxPool
    # hook raises "has changed the size of value"): native only
    "lrp": Spec(True, native=_NO_DELTA),
    "layer_activation": Spec(False, layer=True, captum="LayerActivation"),
    "grad_cam": Spec(True, layer=True, captum="LayerGradCam"),
    "internal_influence": Spec(
        True,
        layer=True,
        native={"n_steps": 20},
        captum="InternalInfluence",
        captum_options={"n_steps": 20},
    ),
    "layer_conductance": Spec(
        True,
        layer=True,
        native={"n_steps": 20, **_NO_DELTA},
        captum="LayerConductance",
        captum_options={"n_steps": 20},
    ),
    "neuron_conductance": Spec(
        True,
        layer=True,
        native={"n_steps": 20},
        captum="NeuronConductance",
        captum_options={"n_steps": 20},
        per_workload=("top_neuron",),
    ),
    "feature_ablation": Spec(False, captum="FeatureAblation", per_workload=("feature_mask",)),
    "feature_permutation": Spec(
        False,
        native={"seed": 0},
        captum="FeaturePermutation",
        per_workload=("feature_mask",),
        min_batch=2,
    ),
    "occlusion": Spec(False, captum="Occlusion", per_workload=("windows",)),
    "shapley_values": Spec(False, captum="ShapleyValues", per_workload=("four_groups",)),
    "shapley_value_sampling": Spec(
        False,
        native={"n_samples": 4, "seed": 0},
        captum="ShapleyValueSampling",
        captum_options={"n_samples": 4},
        per_workload=("feature_mask",),
    ),
    "lime": Spec(
        False,
        native={"n_samples": 200, "seed": 0},
        captum="Lime",
        captum_options={"n_samples": 200},
        per_workload=("feature_mask",),
    ),
    "kernel_shap": Spec(
        False,
        native={"n_samples": 200, "seed": 0},
        captum="KernelShap",
        captum_options={"n_samples": 200},
        per_workload=("feature_mask",),
    ),
    **{
        name: Spec(
            name != "score_cam" and name != "ablation_cam" and name != "eigen_cam", layer=True
        )
        for name in _CAMS
    },
}

#: per workload: batch size and the layer the layer methods explain
WORKLOAD_SETUP = {
    "cnn32": {"batch": 4, "layer": "features.6"},
    "cnn224": {"batch": 1, "layer": "features.9"},
    # batch norm, residual sums, reused in-place ReLUs: what a torchvision ResNet has
    "resnet64": {"batch": 2, "layer": "layer3"},
}


def _grid(h: int, w: int, cells: int) -> Tensor:
    """A ``(1, 1, h, w)`` mask of ``cells x cells`` groups shared by the channels."""
    rows = torch.arange(h) * cells // h
    cols = torch.arange(w) * cells // w
    return (rows[:, None] * cells + cols[None, :]).view(1, 1, h, w)


def _top_neuron(workload: Any, layer: str) -> tuple[int, ...]:
    """The layer unit with the largest activation on the first example (a unit the output
    depends on: a fixed index can sit where max-pooling passes no gradient)."""
    seen: list[Tensor] = []
    handle = _layer_of(workload.model, layer).register_forward_hook(
        lambda _m, _a, out: seen.append(out.detach())
    )
    try:
        with torch.no_grad():
            workload.model(workload.inputs[:1])
    finally:
        handle.remove()
    values = seen[0][0]
    flat = int(values.flatten().argmax())
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), values.shape))


def _workload_option(key: str, workload: Any, layer: str, *, captum: bool) -> dict[str, Any]:
    h, w = workload.inputs.shape[-2:]
    if key == "top_neuron":
        return {("neuron_selector" if captum else "neuron"): _top_neuron(workload, layer)}
    if key == "zero_baselines":
        return {"baselines": torch.zeros_like(workload.inputs)}
    if key == "reference_baselines":
        return {"baselines": workload.references}
    if key == "feature_mask":
        return {"feature_mask": _grid(h, w, 8)}
    if key == "four_groups":
        return {"feature_mask": _grid(h, w, 2)}
    if key == "windows":
        side = max(h // 7, 2)
        return {"sliding_window_shapes": (3, side, side), "strides": (3, side // 2, side // 2)}
    raise KeyError(key)


def _layer_of(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _native_call(name: str, spec: Spec, workload: Any, layer: str) -> Callable[[], Any]:
    from whybox import methods
    from whybox.core.registry import get_method

    model = workload.model
    if name == "noise_tunnel":
        method = methods.NoiseTunnel(methods.IntegratedGradients(model))
    elif spec.layer:
        method = get_method(name)(model, _layer_of(model, layer))
    else:
        method = get_method(name)(model)
    options = dict(spec.native)
    for key in spec.per_workload:
        options.update(_workload_option(key, workload, layer, captum=False))
    if name != "layer_activation":
        options["target"] = workload.target

    def run() -> Any:
        return method.attribute(workload.inputs, **options).attributions

    return run


def _captum_style_call(module: Any, name: str, spec: Spec, workload: Any, layer: str):
    """``module`` is ``captum.attr`` or ``whybox.attr``: same names, same arguments."""
    model = workload.model
    cls = getattr(module, spec.captum)
    if name == "noise_tunnel":
        method = cls(module.IntegratedGradients(model))
    elif spec.layer:
        method = cls(model, _layer_of(model, layer))
    else:
        method = cls(model)
    options = dict(spec.captum_options)
    for key in spec.per_workload:
        options.update(_workload_option(key, workload, layer, captum=True))
    if name != "layer_activation":
        options["target"] = workload.target

    def run() -> Any:
        return method.attribute(workload.inputs, **options)

    return run


def _failure(call: Callable[[], Any]) -> str | None:
    """``None`` when ``call`` runs, else its error's type and first line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seed_all(0)
            call()
    except Exception as error:  # noqa: BLE001 - reported in the table, not raised
        return f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
    return None


def _recorded_rows(model: nn.Module, call: Callable[[], Any]) -> list[Tensor]:
    """The input rows of every forward ``call`` runs (a forward pre-hook on ``model``)."""
    seen: list[Tensor] = []

    def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args[0].detach().clone())

    handle = model.register_forward_pre_hook(record)
    try:
        seed_all(0)
        call()
    finally:
        handle.remove()
    return seen


def _floor(model: nn.Module, rows: Tensor, gradient: bool, budget_s: float):
    """The fastest loop over prebuilt ``rows`` at the best of a few chunk sizes."""
    total = rows.shape[0]
    index = torch.zeros(total, 1, dtype=torch.long)

    def loop(chunk: int) -> Callable[[], None]:
        parts = [(rows[b : b + chunk], index[b : b + chunk]) for b in range(0, total, chunk)]

        def run() -> None:
            for part, picked in parts:
                if gradient:
                    leaf = part.detach().requires_grad_(True)
                    torch.autograd.grad(model(leaf).gather(1, picked).sum(), leaf)
                else:
                    with torch.no_grad():
                        model(part)

        return run

    candidates = sorted({c for c in (4, 16, 64, 256) if c < total} | {total})
    best, best_t = total, float("inf")
    for chunk in candidates:
        run = loop(chunk)
        run()
        samples = []
        deadline = time.process_time() + budget_s / len(candidates)
        while len(samples) < 3 or (time.process_time() < deadline and len(samples) < 15):
            start = time.process_time()
            run()
            samples.append(time.process_time() - start)
        seconds = statistics.median(samples)
        if seconds < best_t:
            best, best_t = chunk, seconds
    return loop(best), best


def measure(
    workload_names: list[str], method_names: list[str], *, rounds: int, budget: float
) -> list[dict[str, Any]]:
    """One row per (workload, method): seconds and ratios."""
    import captum.attr as captum_attr

    import whybox.attr as whybox_attr

    rows: list[dict[str, Any]] = []
    for workload_name in workload_names:
        setup = WORKLOAD_SETUP[workload_name]
        workload = build_workload(workload_name, batch=setup["batch"])
        for name in method_names:
            spec = SPECS[name]
            if workload.batch < spec.min_batch:
                continue
            native = _native_call(name, spec, workload, setup["layer"])
            recorded = _recorded_rows(workload.model, native)
            all_rows = torch.cat(recorded)
            floor, chunk = _floor(workload.model, all_rows, spec.gradient, budget / 4)
            calls = {"native": native, "floor": floor}
            facade_chunk = None
            captum_error = facade_error = None
            if spec.captum is not None:
                calls["facade"] = _captum_style_call(
                    whybox_attr, name, spec, workload, setup["layer"]
                )
                calls["captum"] = _captum_style_call(
                    captum_attr, name, spec, workload, setup["layer"]
                )
                captum_error = _failure(calls["captum"])
                if captum_error is not None:  # e.g. Captum's LRP without a rule for a module
                    del calls["captum"]
                # the facade refuses what Captum refuses (DeepLift on reused modules)
                facade_error = _failure(calls["facade"])
                if facade_error is not None:
                    del calls["facade"]
                # the facade may push other rows than the native method (DeepLift's facade
                # runs inputs and references together, the native one apart): its own floor
                facade_rows = (
                    all_rows
                    if facade_error is not None
                    else torch.cat(_recorded_rows(workload.model, calls["facade"]))
                )
                if facade_rows.shape != all_rows.shape or not torch.equal(facade_rows, all_rows):
                    calls["facade floor"], facade_chunk = _floor(
                        workload.model, facade_rows, spec.gradient, budget / 4
                    )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = interleaved(calls, rounds=rounds, budget_s=budget, min_sample_s=0.02)
            row = {
                "workload": workload_name,
                "method": name,
                "rows": all_rows.shape[0],
                "forwards": len(recorded),
                "floor_chunk": chunk,
                **{f"{key}_s": value for key, value in seconds.items()},
            }
            row["native/floor"] = seconds["native"] / seconds["floor"]
            row["facade_floor_chunk"] = facade_chunk
            if captum_error is not None:
                row["captum_error"] = captum_error
            if facade_error is not None:
                row["facade_error"] = facade_error
            if "facade" in seconds:
                row["facade/floor"] = seconds["facade"] / seconds.get(
                    "facade floor", seconds["floor"]
                )
            if "captum" in seconds:
                row["facade/floor"] = seconds["facade"] / seconds.get(
                    "facade floor", seconds["floor"]
                )
                row["facade/captum"] = seconds["facade"] / seconds["captum"]
                row["native/captum"] = seconds["native"] / seconds["captum"]
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _fmt(value: float | None, *, goal: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"
    return f"**{text}**" if goal is not None and value > goal else text


def _captum_cell(row: dict[str, Any]) -> str:
    error = row.get("captum_error")
    return f"fails ({error.split(':')[0]})" if error else _fmt(row.get("captum_s"))


def _facade_cell(row: dict[str, Any]) -> str:
    error = row.get("facade_error")
    return f"fails ({error.split(':')[0]})" if error else _fmt(row.get("facade_s"))


def _line(row: dict[str, Any]) -> str:
    return (
        f"| {row['workload']} | {row['method']} | {row['rows']} ({row['forwards']}) "
        f"| {_fmt(row['native_s'])} | {_fmt(row['floor_s'])} ({row['floor_chunk']}) "
        f"| {_fmt(row['native/floor'], goal=FLOOR_GOAL)} "
        f"| {_facade_cell(row)} | {_captum_cell(row)} "
        f"| {_fmt(row.get('facade/floor'), goal=FLOOR_GOAL)} "
        f"| {_fmt(row.get('facade/captum'), goal=CAPTUM_GOAL)} |"
    )


HEADER = (
    "| workload | method | rows (forwards) | native s | floor s (chunk) | native/floor "
    "| facade s | Captum s | facade/floor | facade/Captum |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    from whybox.core.registry import available_methods

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cnn32 only, fewer rounds")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOAD_SETUP))
    parser.add_argument("--methods", nargs="+", help="registry names (default: all)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timing per case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="markdown file to write")
    args = parser.parse_args(argv)

    configure_threads(args.threads)
    registered = available_methods()
    missing = sorted(set(registered) - set(SPECS) - set(SKIPPED))
    if missing:
        parser.error(f"registered methods without a spec here: {missing}")
    names = args.methods or [name for name in registered if name in SPECS]
    workloads = args.workloads or (["cnn32"] if args.quick else ["cnn32", "cnn224"])
    rounds, budget = (5, 2.0) if args.quick else (args.rounds, args.budget)

    started = time.time()
    print(HEADER, flush=True)
    rows = measure(workloads, names, rounds=rounds, budget=budget)
    here = Path(__file__).resolve().parent
    output = args.output or str(
        here / ("results-registry-quick.md" if args.quick else "results-registry.md")
    )
    import platform

    import captum

    lines = [
        "# Every registered method: whybox vs its floor and Captum",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python benchmarks/registry.py{''.join(' ' + a for a in (argv or sys.argv[1:]))}` in "
        f"{time.time() - started:.0f} s; torch {torch.__version__}, Captum "
        f"{captum.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} torch thread(s), CPU clock, medians of interleaved rounds.",
        "",
        "Workloads: "
        + "; ".join(
            f"{key}: batch {WORKLOAD_SETUP[key]['batch']}, layer `{WORKLOAD_SETUP[key]['layer']}`"
            for key in workloads
        )
        + ". Options per method: `SPECS` in benchmarks/registry.py (defaults otherwise).",
        f"Bold: above {FLOOR_GOAL}x the floor or slower than Captum.",
        "Skipped: " + ", ".join(f"{k} ({v})" for k, v in SKIPPED.items()) + ".",
        "",
        HEADER,
        *(_line(row) for row in rows),
        "",
        *(
            f"- Captum fails on {row['workload']} / {row['method']}: {row['captum_error']}"
            for row in rows
            if row.get("captum_error")
        ),
        *(
            f"- the facade refuses {row['workload']} / {row['method']} as Captum does: "
            f"{row['facade_error']}"
            for row in rows
            if row.get("facade_error")
        ),
        "",
    ]
    with open(output, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
