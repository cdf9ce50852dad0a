"""Run registered methods on the ground-truth tasks: faithfulness, agreement and time.

:func:`run_benchmark` returns one row (a dict) per task and method; :func:`format_table`
prints them. Two reference rows per task frame the numbers: ``"random"`` (random
attributions) and ``"ground_truth"`` (the task's own truth as the attribution).

Columns
-------
task, method, status
    ``status`` is ``"ok"``, ``"skipped: <why>"`` or ``"error: <message>"``.
time_s
    Wall time of the explanation call (one batch of ``n_samples`` examples).
top_k_agreement
    Feature agreement with the truth's top-``k`` features (``k`` the number that matter;
    for images and texts the truth is the planted region, so this is the relevance rank).
sign_agreement
    The same, counting only features whose sign agrees (tabular tasks).
rank_correlation
    Spearman correlation of magnitudes with the exact attributions (where defined).
relevance_mass
    Share of the positive relevance on the features that matter.
deletion_auc, insertion_auc
    MoRF deletion / insertion areas (per task's target output; lower deletion and higher
    insertion are better; compare within a task).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.progress import progress
from whybox.core.validation import check_int, fail

from .agreement import feature_agreement, rank_correlation, sign_agreement
from .faithfulness import deletion, insertion
from .ground_truth import TASKS, GroundTruthTask, make_task
from .localisation import relevance_mass

__all__ = ["run_benchmark", "format_table", "COLUMNS", "REFERENCES"]

COLUMNS = (
    "task",
    "method",
    "status",
    "time_s",
    "top_k_agreement",
    "sign_agreement",
    "rank_correlation",
    "relevance_mass",
    "deletion_auc",
    "insertion_auc",
)
#: pseudo-methods added to every task: what chance and the truth score
REFERENCES = ("random", "ground_truth")

# fast settings per method (the benchmark compares methods, not their convergence)
_FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 32},
    "internal_influence": {"n_steps": 16},
    "layer_conductance": {"n_steps": 16},
    "gradient_shap": {"n_samples": 16, "seed": 0},
    "kernel_shap": {"n_samples": 128, "seed": 0},
    "lime": {"n_samples": 128, "seed": 0},
    "shapley_value_sampling": {"n_samples": 4, "seed": 0},
    "feature_permutation": {"seed": 0},
    "saliency": {"abs": False},
    "noise_tunnel": {
        "base_method": "saliency",
        "abs": False,
        "nt_samples": 8,
        "stdevs": 0.1,
        "seed": 0,
    },
}
_EXACT_SHAPLEY_MAX = 12
_COARSE = (
    "feature_ablation",
    "feature_permutation",
    "shapley_value_sampling",
    "shapley_values",
    "kernel_shap",
    "lime",
)
_WITH_BASELINES = (
    "integrated_gradients",
    "deeplift",
    "feature_ablation",
    "occlusion",
    "shapley_value_sampling",
    "shapley_values",
    "kernel_shap",
    "lime",
    "internal_influence",
    "layer_conductance",
)
_NOT_RUN = {
    "neuron_conductance": "explains a neuron (needs 'neuron')",
    "layer_activation": "has no target (layer activations)",
    "feature_permutation": "permutes features across the batch (not a per-example method)",
}


def run_benchmark(
    methods: Sequence[str] | None = None,
    tasks: Sequence[str | GroundTruthTask] | None = None,
    *,
    n_samples: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    n_steps: int = 10,
    references: bool = True,
    warmup: bool = True,
    repeats: int = 1,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """Run methods on ground-truth tasks and measure faithfulness, agreement and time.

    Parameters
    ----------
    methods : sequence of str, optional
        Registered method names (``None``: every registered method; those that cannot
        run on a task are reported as skipped).
    tasks : sequence of str or GroundTruthTask, optional
        Names from :data:`whybox.metrics.ground_truth.TASKS` or built tasks (``None``:
        every task).
    n_samples : int, keyword-only
        Examples per task.
    seed : int, keyword-only
        Seeds the tasks, the methods' sampling and the random reference.
    device : str or torch.device, optional, keyword-only
        Where to run (``None``: CPU).
    method_options : mapping, optional, keyword-only
        ``{method: {option: value}}`` overriding the fast defaults.
    n_steps : int, keyword-only
        Points of the deletion / insertion curves.
    references : bool, keyword-only
        Add the ``"random"`` and ``"ground_truth"`` rows.
    warmup : bool, keyword-only
        Run each method once on one example, untimed, before the timed call.
    repeats : int, keyword-only
        Timed calls per method and task; ``time_s`` is the fastest (a shared machine only
        ever adds time). The attributions are those of the first call.
    show_progress : bool, keyword-only
        Show a bar over the (task, method) pairs.

    Returns
    -------
    list of dict
        One row per task and method with the keys in :data:`COLUMNS` plus ``"note"`` (why
        a method was skipped or failed, or the warnings it gave); metric values are means
        over examples, ``float("nan")`` where undefined or not run. Save them with
        :func:`whybox.metrics.save_benchmark`, draw them with
        :func:`whybox.metrics.plot_benchmark`.
    """
    import whybox

    check_int("run_benchmark", "n_samples", n_samples, minimum=1)
    check_int("run_benchmark", "seed", seed)
    check_int("run_benchmark", "n_steps", n_steps, minimum=1)
    names = list(whybox.available_methods() if methods is None else methods)
    unknown = [m for m in names if m not in whybox.available_methods() and m not in REFERENCES]
    if unknown:
        fail(
            "run_benchmark",
            "methods",
            f"registered method names ({whybox.available_methods()})",
            unknown[0],
        )
    check_int("run_benchmark", "repeats", repeats, minimum=1)
    chosen = list(tasks) if tasks is not None else list(TASKS)
    for task in chosen:
        if isinstance(task, str) and task not in TASKS:
            fail("run_benchmark", "tasks", f"task names from {list(TASKS)}", task)
    built = [_task(t, n_samples, seed, device) for t in chosen]
    extra = dict(method_options or {})
    order = list(REFERENCES if references else ()) + [m for m in names if m not in REFERENCES]
    bar = progress(len(built) * len(order), show_progress, "benchmark", unit="run")
    rows: list[dict[str, Any]] = []
    try:
        for task in built:
            for name in order:
                rows.append(
                    _run_one(task, name, extra.get(name, {}), seed, n_steps, warmup, repeats)
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows


def format_table(
    rows: Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    hide_skipped: bool = True,
) -> str:
    """A plain-text table of benchmark rows (floats to 3 decimals, ``-`` for NaN).

    Parameters
    ----------
    rows : iterable of dict
        As returned by :func:`run_benchmark`.
    columns : sequence of str, optional, keyword-only
        Which keys to show, in order (``None``: :data:`COLUMNS` present in the rows).
    hide_skipped : bool, keyword-only
        Leave skipped rows out of the table and list them in one line at the end; errors
        are always shown with their note.

    Returns
    -------
    str
    """
    rows = list(rows)
    skipped = [r for r in rows if r.get("status") == "skipped"] if hide_skipped else []
    rows = [r for r in rows if r not in skipped]
    rows = [{**r, "status": _status(r)} for r in rows]
    if columns is None:
        present = set().union(*(row.keys() for row in rows)) if rows else set(COLUMNS)
        columns = [c for c in COLUMNS if c in present]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    if skipped:
        names = sorted({f"{r.get('method')}" for r in skipped})
        out.append(
            f"skipped ({len(skipped)} task/method pairs that do not apply): {', '.join(names)}"
        )
    return "\n".join(out)


def _status(row: Mapping[str, Any]) -> str:
    status = str(row.get("status", ""))
    note = str(row.get("note", "") or "")
    if status == "ok" or not note:
        return status
    first = note.splitlines()[0]
    return f"{status}: {first[:57] + '...' if len(first) > 60 else first}"


# -- internals -------------------------------------------------------------------------------
def _task(task: str | GroundTruthTask, n_samples: int, seed: int, device: Any) -> GroundTruthTask:
    if isinstance(task, GroundTruthTask):
        built = task
    elif isinstance(task, str):
        built = make_task(task, n_samples=n_samples, seed=seed)
    else:
        fail("run_benchmark", "tasks", "task names or GroundTruthTask objects", task)
    return built.to(device) if device is not None else built


def _options(
    task: GroundTruthTask, name: str, seed: int, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    from whybox.core.registry import get_method

    cls = get_method(name)
    init, call = cls.option_names()
    options = dict(_FAST.get(name, {}))
    if "seed" in options:
        options["seed"] = seed
    if name in _WITH_BASELINES and "baselines" in call:
        options["baselines"] = task.baselines
    if name == "deeplift_shap" or name == "gradient_shap":
        options["baselines"] = task.baselines[:4]  # a small reference distribution
    if name in _COARSE and "feature_mask" in call:
        options["feature_mask"] = task.coarse_mask
    if name == "occlusion":
        options["sliding_window_shapes"] = task.sliding_window
    if cls.needs_layer:
        options["layer"] = task.layer
    options.update(overrides)
    return options


def _run_one(
    task: GroundTruthTask,
    name: str,
    overrides: Mapping[str, Any],
    seed: int,
    n_steps: int,
    warmup: bool,
    repeats: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task.name, "method": name, "status": "ok", "note": ""}
    row.update({c: math.nan for c in COLUMNS[3:]})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            attributions, seconds = _explain(task, name, overrides, seed, warmup, repeats)
    except _Skip as skip:
        row["status"], row["note"] = "skipped", str(skip)
        return row
    except Exception as error:  # noqa: BLE001 - a benchmark reports every failure as a row
        row["status"], row["note"] = "error", f"{type(error).__name__}: {error}"
        return row
    row["time_s"] = seconds
    said = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    if said:  # e.g. "found no nn.ReLU module": the numbers need that context
        row["note"] = "warning: " + "; ".join(said)
    try:
        row.update(_measure(task, attributions, n_steps))
    except Exception as error:  # noqa: BLE001
        row["status"], row["note"] = "error", f"in metrics: {type(error).__name__}: {error}"
    return row


class _Skip(Exception):
    """A method that cannot run on this task (reported, not an error)."""


def _first_rows(options: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Options for the first example only (per-example tensors cut to one row)."""
    return {
        k: v[:1] if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == batch else v
        for k, v in options.items()
    }


def _explain(
    task: GroundTruthTask,
    name: str,
    overrides: Mapping[str, Any],
    seed: int,
    warmup: bool,
    repeats: int = 1,
) -> tuple[Tensor, float]:
    if name == "random":
        generator = torch.Generator().manual_seed(seed)
        values = torch.randn(tuple(task.inputs.shape), generator=generator)
        return values.to(task.inputs.device, task.inputs.dtype), 0.0
    if name == "ground_truth":
        return task.truth, 0.0
    from whybox.core.registry import get_method
    from whybox.methods import build

    if name in _NOT_RUN:
        raise _Skip(_NOT_RUN[name])
    cls = get_method(name)
    if cls.__module__.startswith("whybox.attention"):
        raise _Skip("needs a transformer's attention weights (the tasks' models have none)")
    if cls.needs_layer and task.layer is None:
        raise _Skip("needs a layer (the task has no convolutional layer)")
    options = _options(task, name, seed, overrides)
    if name == "shapley_values" and int(task.coarse_mask.max()) + 1 > _EXACT_SHAPLEY_MAX:
        raise _Skip(f"exact Shapley values need 2**M forwards (M > {_EXACT_SHAPLEY_MAX} here)")
    method, call_options = build(name, task.model, **options)
    if task.target is not None:
        call_options["target"] = task.target
    if warmup:
        # one untimed call on one example: first-call costs (autograd set-up, lazy
        # imports) are not the method's
        method.attribute(task.inputs[:1], **_first_rows(call_options, task.inputs.shape[0]))
    synchronise = task.inputs.device.type == "cuda"
    if synchronise:
        torch.cuda.synchronize(task.inputs.device)
    result, seconds = None, math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        outcome = method.attribute(task.inputs, **call_options)
        if synchronise:
            torch.cuda.synchronize(task.inputs.device)
        seconds = min(seconds, time.perf_counter() - start)
        result = outcome if result is None else result
    attributions = result.attributions if hasattr(result, "attributions") else result
    if isinstance(attributions, (tuple, list)):
        attributions = attributions[0]
    return _input_shaped(task, attributions.detach()), seconds


def _input_shaped(task: GroundTruthTask, attributions: Tensor) -> Tensor:
    """Layer-shaped maps of images (CAMs) upsampled to the image; others must match."""
    shape = tuple(task.inputs.shape)
    if tuple(attributions.shape) == shape:
        return attributions.to(task.inputs.dtype)
    if task.kind == "image" and attributions.dim() == 4 and attributions.shape[0] == shape[0]:
        resized = F.interpolate(
            attributions.float(), size=shape[2:], mode="bilinear", align_corners=False
        )
        return resized.mean(dim=1, keepdim=True).expand(shape).to(task.inputs.dtype)
    if (
        attributions.dim() >= 1
        and attributions.shape[0] == shape[0]
        and attributions.numel() == task.inputs.numel()
    ):
        return attributions.reshape(shape).to(task.inputs.dtype)
    raise _Skip(f"attributions of shape {tuple(attributions.shape)} are not input-shaped")


def _group(values: Tensor, task: GroundTruthTask) -> Tensor:
    """``(N, M)`` values summed per task feature (pixels, tokens, tabular features)."""
    n = values.shape[0]
    ids = task.feature_mask.to(values.device).expand(values.shape).reshape(n, -1)
    m = int(task.feature_mask.max()) + 1
    out = torch.zeros(n, m, dtype=values.dtype, device=values.device)
    return out.scatter_add_(1, ids, values.reshape(n, -1))


def _measure(task: GroundTruthTask, attributions: Tensor, n_steps: int) -> dict[str, float]:
    grouped = _group(attributions, task)
    truth = _group(task.truth, task)
    relevant = _group(task.mask.to(attributions.dtype), task) > 0
    k = min(task.top_k, grouped.shape[1])
    out = {
        "top_k_agreement": _mean(feature_agreement(grouped, truth, k=k)),
        "relevance_mass": _mean(relevance_mass(grouped, relevant)),
    }
    if task.attributions is not None:
        out["sign_agreement"] = _mean(sign_agreement(grouped, truth, k=k))
        out["rank_correlation"] = _mean(rank_correlation(grouped, truth))
    common = {
        "baselines": task.baselines,
        "target": task.target,
        "feature_mask": task.feature_mask,
        "n_steps": n_steps,
    }
    out["deletion_auc"] = _mean(deletion(task.model, task.inputs, attributions, **common).score)
    out["insertion_auc"] = _mean(insertion(task.model, task.inputs, attributions, **common).score)
    return out


def _mean(values: Tensor) -> float:
    values = values.double()
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else math.nan


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)
