"""One cell of a job: one method on one model for one example, through ``whybox.explain``.

The model is wrapped so that every forward first checks the job's cancel flag: a
cancelled job stops inside a long method (IG's steps, occlusion's windows) at its next
forward instead of running to the end. The wrapper changes nothing else (same
submodules, same mode), so layers of the user's model are layers of the wrapper.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import whybox

from .catalog import Catalog, MethodSpec
from .faithfulness import deletion_check
from .render import png_data_uri
from .workspace import Workspace, to_device

__all__ = ["Cell", "Cancelled", "compute_cell", "resolve_target"]


class Cancelled(Exception):
    """Raised inside a model forward when the job was cancelled."""


class _Guarded(nn.Module):
    """The user's model behind a cancel check (one per cell; holds no state of its own)."""

    def __init__(self, model: nn.Module, check: Callable[[], None]) -> None:
        super().__init__()
        self.model = model
        self._check = check
        self.train(model.training)  # a fresh Module is in training mode; mirror the model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self.model(*args, **kwargs)


def _guarded(model: Any, check: Callable[[], None]) -> Any:
    if isinstance(model, nn.Module):
        return _Guarded(model, check)

    def forward(*args: Any, **kwargs: Any) -> Any:
        check()
        return model(*args, **kwargs)

    return forward


@dataclass
class Cell:
    """A computed (or failed) cell; ``attributions`` stay on the server for exports."""

    example: int
    model: int
    model_name: str
    method: str
    method_label: str
    params: dict[str, Any]
    target: int | None = None
    target_name: str | None = None
    views: list[dict[str, Any]] = field(default_factory=list)
    delta: list[float | None] | None = None
    contributions: list[dict[str, Any]] | None = None
    #: the deletion check of :mod:`whybox.app.faithfulness` (input-shaped maps only)
    faithfulness: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    attributions: list[tuple[str, Tensor]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What the page draws (no tensors)."""
        return {
            "example": self.example,
            "model": self.model,
            "model_name": self.model_name,
            "method": self.method,
            "method_label": self.method_label,
            "params": self.params,
            "target": self.target,
            "target_name": self.target_name,
            "views": self.views,
            "delta": self.delta,
            "contributions": self.contributions,
            "faithfulness": self.faithfulness,
            "seconds": round(self.seconds, 4),
            "error": self.error,
            "warnings": self.warnings,
        }


def resolve_target(ws: Workspace, model_index: int, example_index: int, target: Any) -> int | None:
    """The class a cell explains: the model's top prediction, the label, or a given class;
    ``None`` when the workspace does not pass labels to the methods."""
    if not ws.use_label_for_attr:
        return None
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if target == "label":
        label = ws.example(example_index).label
        if label is not None:
            return label
    return ws.predictions(model_index, [example_index])[0].predicted


def _finite_list(values: np.ndarray, warnings: list[str]) -> list[Any]:
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        warnings.append(f"{bad} non-finite attribution value(s) shown as 0")
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return values.tolist()


def _first_image(ws: Workspace) -> int | None:
    for i, feature in enumerate(ws.features):
        if feature.kind == "image":
            return i
    return None


def _views(
    ws: Workspace,
    example: int,
    leaves: list[Tensor],
    spec: MethodSpec,
    layer: str | None,
    warnings: list[str],
) -> list[dict[str, Any]]:
    per_feature = spec.output == "input" and len(leaves) == len(ws.features)
    views: list[dict[str, Any]] = []
    if not per_feature:
        a = leaves[0][0].detach().to("cpu", torch.float64) if leaves else torch.zeros(0)
        view: dict[str, Any] = {
            "type": "layer",
            "layer": layer or spec.label,
            "shape": list(a.shape),
        }
        if a.dim() >= 3:
            a = a.reshape(-1, *a.shape[-2:]).sum(0)
        if a.dim() == 2:
            view["map"] = _finite_list(a.numpy(), warnings)
            view["height"], view["width"] = a.shape
            image = _first_image(ws)
            if image is not None:
                view["image_feature"] = image
                view["image"] = png_data_uri(ws.image_png(example, image))
        else:
            values = a.reshape(-1).numpy()
            view["values"] = _finite_list(values, warnings)
            view["names"] = [f"unit {i}" for i in range(values.size)]
        return [view]
    for index, (feature, leaf) in enumerate(zip(ws.features, leaves)):
        a = leaf[0].detach().to("cpu", torch.float64)
        base = {"feature": feature.name, "feature_index": index}
        if feature.kind == "empty":
            continue
        if feature.kind == "image" and a.dim() >= 2:
            grid = a.reshape(-1, *a.shape[-2:]).sum(0)  # channels summed, as Captum's views do
            views.append(
                {
                    "type": "image",
                    **base,
                    "map": _finite_list(grid.numpy(), warnings),
                    "height": grid.shape[0],
                    "width": grid.shape[1],
                    "image_feature": index,
                    "image": png_data_uri(ws.image_png(example, index)),
                }
            )
        elif feature.kind == "text" and a.dim() >= 1:
            values = a.reshape(a.shape[0], -1).sum(1).numpy()
            tokens = ws.tokens(example, index)
            if len(tokens) != values.size:
                tokens = (tokens + [f"[{i}]" for i in range(len(tokens), values.size)])[
                    : values.size
                ]
            views.append(
                {"type": "text", **base, "tokens": tokens, "values": _finite_list(values, warnings)}
            )
        else:
            values = a.reshape(-1).numpy()
            names = list(feature.categories or ())
            if len(names) != values.size:
                names = [f"{feature.name}[{i}]" for i in range(values.size)]
            raw = ws.display_value(example, index)
            inputs = None
            if isinstance(raw, Tensor) and raw.numel() == values.size:
                inputs = _finite_list(raw.detach().to("cpu", torch.float64).reshape(-1).numpy(), [])
            views.append(
                {
                    "type": "general",
                    **base,
                    "names": names,
                    "values": _finite_list(values, warnings),
                    "inputs": inputs,
                }
            )
    return views


def _contributions(ws: Workspace, leaves: list[Tensor]) -> list[dict[str, Any]] | None:
    """Each feature's net attribution, scaled so the magnitudes sum to 1 (Captum Insights'
    "contribution" of each input)."""
    if len(leaves) != len(ws.features) or len(leaves) < 2:
        return None
    sums = [float(t.detach().double().sum()) for t in leaves]
    norm = sum(abs(s) for s in sums if math.isfinite(s))
    return [
        {"name": f.name, "value": (s / norm if norm and math.isfinite(s) else 0.0)}
        for f, s in zip(ws.features, sums)
    ]


def _checked_faithfulness(
    runner: Any,
    inputs: tuple[Tensor, ...],
    leaves: list[Tensor],
    baselines: tuple[Tensor, ...],
    options: dict[str, Any],
    check: Callable[[], None],
    warnings_out: list[str],
) -> dict[str, Any] | None:
    """The cell's deletion check; a model that cannot take the removal rows leaves the
    cell without one (and says why) instead of failing the cell."""
    try:
        return deletion_check(
            runner,
            inputs,
            leaves,
            baselines,
            target=options.get("target"),
            forward_args=options.get("forward_args"),
        )
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - the explanation itself stands
        check()  # a cancel wrapped on its way up is a cancel
        warnings_out.append(f"no deletion check: {error}")
        return None


def compute_cell(
    ws: Workspace,
    catalog: Catalog,
    *,
    example: int,
    model: int,
    spec: MethodSpec,
    params: dict[str, Any],
    target: Any,
    check: Callable[[], None],
) -> Cell:
    """Run one method on one model for one example.

    Method errors (a ``ValueError`` / ``TypeError`` from the library's checks, or the
    model failing) become the cell's ``error``; :class:`Cancelled` propagates.
    """
    cell = Cell(
        example=example,
        model=model,
        model_name=ws.model_names[model],
        method=spec.name,
        method_label=spec.label,
        params=dict(params),
    )
    started = time.perf_counter()
    try:
        inputs, baselines = ws.model_inputs(example)
        device = ws.device(model)
        if device is not None:
            inputs = tuple(t.to(device) for t in inputs)
            baselines = tuple(t.to(device) for t in baselines)
        options = catalog.native_options(
            spec,
            params,
            model_index=model,
            example_index=example,
            inputs=inputs,
            baselines=baselines,
        )
        extra = ws.example(example).forward_args
        if extra is not None:
            options["forward_args"] = to_device(extra, device)
        if spec.takes_target:
            cell.target = resolve_target(ws, model, example, target)
            cell.target_name = ws.class_name(cell.target)
            if cell.target is not None:
                options["target"] = cell.target
        runner = _guarded(ws.models[model], check)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            explanation = whybox.explain(runner, inputs, method=spec.name, **options)
        # the library's warnings (e.g. "no nn.ReLU found") belong next to the picture
        cell.warnings.extend(dict.fromkeys(str(w.message) for w in caught))
        attributions = explanation.attributions
        leaves = list(attributions) if isinstance(attributions, (tuple, list)) else [attributions]
        leaves = [t for t in leaves if isinstance(t, Tensor)]
        layer = None
        if spec.needs_layer:
            layer = params.get("layer") or spec.layers[model]["default"]
        cell.views = _views(ws, example, leaves, spec, layer, cell.warnings)
        if spec.output == "input":
            cell.contributions = _contributions(ws, leaves)
        if isinstance(explanation.delta, Tensor) and explanation.delta.numel():
            cell.delta = [
                v if math.isfinite(v) else None
                for v in explanation.delta.detach().double().reshape(-1).tolist()
            ]
        names = (
            [f.name for f in ws.features]
            if len(leaves) == len(ws.features)
            else [layer or "layer"] * len(leaves)
        )
        cell.attributions = [(n, t.detach().cpu()) for n, t in zip(names, leaves)]
        if spec.output == "input" and ws.deletion_check:
            cell.faithfulness = _checked_faithfulness(
                runner, inputs, leaves, baselines, options, check, cell.warnings
            )
    except Cancelled:
        raise
    except Exception as error:
        check()  # an error raised because of the cancel (wrapped on its way up) is a cancel
        # the library's own checks word these for people (their type adds nothing); other
        # errors come from the model or the data, and their type helps
        plain = isinstance(error, (ValueError, TypeError))
        cell.error = str(error) if plain else f"{type(error).__name__}: {error}"
    cell.seconds = time.perf_counter() - started
    return cell
