"""The methods the app offers: read from the registry, with parameters the browser can set.

Each registered method is described once (:class:`MethodSpec`) from its signature and its
declared constraints (:attr:`whybox.core.method.Method.parameters`): the app exposes the
options a person tunes (``n_steps``, ``n_samples``, ``rule``, a ``layer`` for layer
methods, ...) and a few app-level ones that become tensors per example (``baseline``,
``grid`` -> ``feature_mask``, ``window`` / ``stride`` -> Occlusion's shapes). Every value
is checked against the app's bounds (:class:`Limits`, so one request cannot exhaust the
machine) and then against the method's own declared constraint, with its message.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.registry import available_methods, get_method

from .workspace import Feature, Workspace

__all__ = ["Limits", "ParamSpec", "MethodSpec", "Catalog", "RequestError"]


class RequestError(Exception):
    """A request the app refuses, with the HTTP status and a message for the person."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one request may ask for.

    Parameters
    ----------
    max_examples_per_job, max_methods_per_job, max_models_per_job, max_cells_per_job : int
        Size of one attribution job (cells = examples x models x methods).
    max_n_steps, max_n_samples, max_nt_samples : int
        Upper bounds of those method parameters.
    max_evaluations : int
        Model rows one cell may cost (e.g. ``n_steps``, occlusion windows, ``2**groups``).
    max_page_size : int
        Examples per page.
    max_scan : int
        Examples one page request may run the model on while looking for filter matches.
    max_pending_jobs : int
        Jobs queued or running at once; more get 429.
    kept_jobs : int
        Finished jobs kept for polling and export.
    max_background : int
        Dataset examples used as the baseline distribution of the SHAP methods.
    """

    max_examples_per_job: int = 8
    max_methods_per_job: int = 6
    max_models_per_job: int = 4
    max_cells_per_job: int = 48
    max_n_steps: int = 300
    max_n_samples: int = 500
    max_nt_samples: int = 64
    max_evaluations: int = 25_000
    max_page_size: int = 100
    max_scan: int = 5_000
    max_pending_jobs: int = 8
    kept_jobs: int = 24
    max_background: int = 8

    def to_json(self) -> dict[str, int]:
        """The limits as a plain dict (shown by the API)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter the browser can set.

    ``native`` is the method option it sets (``None`` for app-level parameters that are
    turned into tensors per example). ``nullable`` parameters take ``null`` for "choose
    automatically" (the default layer, a grid that gives a sensible number of groups).
    """

    name: str
    type: str  # "int" | "float" | "bool" | "choice" | "layer"
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    native: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON description (what the front end builds its form from)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        for key in ("minimum", "maximum", "choices"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "choices" else value
        if self.exclusive_minimum:
            out["exclusive_minimum"] = True
        out["nullable"] = self.nullable
        out["help"] = self.help
        return out

    def check(self, method: str, value: Any) -> Any:
        """``value`` if it fits, else a :class:`RequestError` saying what would."""
        where = f"Parameter '{self.name}' of {method}"
        if value is None:
            if self.nullable:
                return None
            raise RequestError(f"{where} must not be null.")
        if self.type == "bool":
            if not isinstance(value, bool):
                raise RequestError(f"{where} must be true or false; got {_shown(value)}.")
            return value
        if self.type in ("choice", "layer"):
            if self.choices is not None and value not in self.choices:
                raise RequestError(
                    f"{where} must be one of {list(self.choices)}; got {_shown(value)}."
                )
            if self.type == "layer" and not isinstance(value, str):
                raise RequestError(f"{where} must be a layer name (a string) or null.")
            return value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.type == "int" and not (numeric and float(value).is_integer()):
            raise RequestError(f"{where} must be an integer; got {_shown(value)}.")
        if self.type == "float" and not (numeric and math.isfinite(value)):
            raise RequestError(f"{where} must be a finite number; got {_shown(value)}.")
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.exclusive_minimum else value < low)
        if too_low or (high is not None and value > high):
            lo = "" if low is None else (f"> {low}" if self.exclusive_minimum else f">= {low}")
            hi = "" if high is None else f"<= {high}"
            bounds = " and ".join(b for b in (lo, hi) if b)
            raise RequestError(f"{where} must be {bounds}; got {_shown(value)}.")
        return int(value) if self.type == "int" else float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class MethodSpec:
    """One registered method as the app offers it."""

    name: str
    label: str
    description: str
    available: bool
    reason: str
    has_delta: bool
    needs_layer: bool
    takes_target: bool
    output: str  # "input" (input-shaped) or "layer" (layer-shaped)
    params: tuple[ParamSpec, ...] = ()
    layers: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called ``name``, if the method has it."""
        for p in self.params:
            if p.name == name:
                return p
        return None

    def to_json(self) -> dict[str, Any]:
        """JSON description (``layers``: per model, its layer names and default)."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "available": self.available,
            "reason": self.reason,
            "has_delta": self.has_delta,
            "needs_layer": self.needs_layer,
            "output": self.output,
            "params": [p.to_json() for p in self.params],
            "layers": {str(k): dict(v) for k, v in self.layers.items()},
        }


_LABELS = {
    "integrated_gradients": (
        "Integrated Gradients",
        "Path integral of gradients from the baseline.",
    ),
    "saliency": ("Saliency", "Gradient of the class score (its absolute value by default)."),
    "input_x_gradient": ("Input x Gradient", "Input times the gradient of the class score."),
    "deeplift": ("DeepLift", "Rescale rule: differences from the baseline, backpropagated."),
    "deeplift_shap": ("DeepLift SHAP", "DeepLift averaged over a baseline distribution."),
    "gradient_shap": ("Gradient SHAP", "Expected gradients on random points between baselines."),
    "guided_backprop": ("Guided Backprop", "Gradients with negative signals removed at ReLUs."),
    "deconvolution": ("Deconvolution", "Backpropagation through ReLUs of the gradient's sign."),
    "guided_grad_cam": ("Guided Grad-CAM", "Guided backprop times an upsampled Grad-CAM map."),
    "lrp": ("LRP", "Layer-wise relevance propagation with the default rules."),
    "noise_tunnel": ("Noise Tunnel", "SmoothGrad / VarGrad: a method averaged over noisy inputs."),
    "occlusion": ("Occlusion", "Score drop when a sliding window is set to the baseline."),
    "feature_ablation": ("Feature Ablation", "Score drop when each group of features is removed."),
    "shapley_value_sampling": ("Shapley Value Sampling", "Shapley values from random orderings."),
    "shapley_values": ("Shapley Values (exact)", "Exact Shapley values over feature groups."),
    "kernel_shap": ("Kernel SHAP", "Shapley values from a weighted linear surrogate."),
    "lime": ("LIME", "A local linear surrogate on random coalitions of features."),
    "feature_permutation": ("Feature Permutation", "Score change when features are shuffled."),
    "grad_cam": ("Grad-CAM (layer)", "Gradient-weighted layer activations (Captum LayerGradCam)."),
    "layer_conductance": ("Layer Conductance", "Integrated-gradients flow through a layer."),
    "internal_influence": ("Internal Influence", "Integrated gradients of a layer's values."),
    "layer_activation": ("Layer Activation", "The layer's values themselves."),
    "neuron_conductance": ("Neuron Conductance", "Conductance of one neuron."),
    "upsampled_grad_cam": ("Grad-CAM", "Grad-CAM upsampled to the input."),
    "grad_cam_plus_plus": ("Grad-CAM++", "Grad-CAM with higher-order weights."),
    "xgrad_cam": ("XGrad-CAM", "Axiom-based Grad-CAM weights."),
    "hires_cam": ("HiRes-CAM", "Element-wise gradient times activation."),
    "layer_cam": ("Layer-CAM", "Positive gradients times activations."),
    "score_cam": ("Score-CAM", "Weights from the score of each masked activation map."),
    "ablation_cam": ("Ablation-CAM", "Weights from the score drop when a map is ablated."),
    "eigen_cam": ("Eigen-CAM", "First principal component of the layer's activations."),
}

_UNAVAILABLE = {
    "neuron_conductance": "explains one neuron of a layer; the app explains class outputs",
    "feature_permutation": (
        "permutes features across a batch of examples; the app explains one example at a time"
    ),
}

_NOISE_TUNNEL_BASES = (
    "saliency",
    "integrated_gradients",
    "input_x_gradient",
    "guided_backprop",
    "deconvolution",
)
_SHAP_DISTRIBUTION = ("gradient_shap", "deeplift_shap")
# methods whose layer must have spatial maps (N, C, *spatial)
_SPATIAL_LAYER_METHODS = (
    "grad_cam",
    "guided_grad_cam",
    "upsampled_grad_cam",
    "grad_cam_plus_plus",
    "xgrad_cam",
    "hires_cam",
    "layer_cam",
    "score_cam",
    "ablation_cam",
    "eigen_cam",
)
# the order the native options appear in the form
_NATIVE_ORDER = (
    "n_steps",
    "rule",
    "n_samples",
    "stdevs",
    "nt_type",
    "nt_samples",
    "multiply_by_inputs",
    "abs",
    "eps",
    "relu_attributions",
    "upsample",
    "normalize",
    "seed",
)


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for func in (cls.__init__, cls.attribute):
        for p in inspect.signature(func).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return out


def _constraint_bounds(constraint: Any) -> dict[str, Any]:
    """Bounds and choices read from a declared constraint (Int / Real / Choice)."""
    out: dict[str, Any] = {}
    for key in ("minimum", "maximum"):
        value = getattr(constraint, key, None)
        if value is not None:
            out[key] = value
    if getattr(constraint, "strict_minimum", False):
        out["exclusive_minimum"] = True
    options = getattr(constraint, "options", None)
    if options is not None:
        out["choices"] = tuple(options)
    return out


def _native_param(name: str, cls: type, default: Any, limits: Limits) -> ParamSpec | None:
    declared = _constraint_bounds(cls.parameters.get(name))
    if name == "n_steps":
        low = declared.get("minimum", 1)
        return ParamSpec(
            name, "int", default, "integration steps", low, limits.max_n_steps, native=name
        )
    if name == "rule":
        choices = declared.get("choices") or (default,)
        return ParamSpec(name, "choice", default, "integration rule", choices=choices, native=name)
    if name == "n_samples":
        low = declared.get("minimum", 1)
        return ParamSpec(
            name, "int", default, "random samples", low, limits.max_n_samples, native=name
        )
    if name == "stdevs":
        return ParamSpec(
            name, "float", float(default), "noise standard deviation", 0.0, 100.0, native=name
        )
    if name == "nt_samples":
        return ParamSpec(
            name, "int", default, "noisy samples", 1, limits.max_nt_samples, native=name
        )
    if name == "nt_type":
        choices = declared.get("choices") or (default,)
        return ParamSpec(name, "choice", default, "aggregation", choices=choices, native=name)
    if name in ("multiply_by_inputs", "abs", "relu_attributions", "upsample", "normalize"):
        helps = {
            "multiply_by_inputs": "global attribution (times input - baseline)",
            "abs": "absolute value of the gradient",
            "relu_attributions": "keep positive evidence only",
            "upsample": "resize the map to the input",
            "normalize": "scale each map to [0, 1]",
        }
        return ParamSpec(name, "bool", bool(default), helps[name], native=name)
    if name == "eps":
        return ParamSpec(
            name,
            "float",
            float(default),
            "stabiliser of the rescale rule",
            0.0,
            1.0,
            exclusive_minimum=True,
            native=name,
        )
    if name == "seed":
        # a fixed default seed: the same request gives the same picture
        return ParamSpec(name, "int", 0, "random seed", 0, 2**31 - 1, native=name)
    return None


# options a person does not tune in the app (plumbing, or set by the app itself)
_NOT_OFFERED = frozenset(
    {
        "show_progress",
        "return_delta",
        "attribute_to_layer_input",
        "return_input_shape",
        "draw_baseline_from_distrib",
        "verbose",
        "attr_dim_summation",
        "nt_samples_batch_size",
        "unresizable",
        "interpolate_mode",
    }
)


def _declared_param(name: str, constraint: Any, default: Any) -> ParamSpec | None:
    """A form field from a declared constraint alone (``Bool``, ``Choice``, ``Int``)."""
    kind = type(constraint).__name__
    if kind == "Bool" and isinstance(default, bool):
        return ParamSpec(name, "bool", default, native=name)
    if kind == "Choice" and default in constraint.options:
        return ParamSpec(name, "choice", default, choices=tuple(constraint.options), native=name)
    if kind == "Int" and isinstance(default, int) and not isinstance(default, bool):
        high = constraint.maximum if constraint.maximum is not None else 10**6
        return ParamSpec(
            name, "int", default, minimum=constraint.minimum, maximum=high, native=name
        )
    return None


def layer_names(model: Any) -> list[str]:
    """Names of a model's submodules (what a layer parameter may be)."""
    if not isinstance(model, nn.Module):
        return []
    return [name for name, _ in model.named_modules() if name]


def _has_conv(model: Any) -> bool:
    return isinstance(model, nn.Module) and any(
        isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules()
    )


def default_layer(model: Any) -> str | None:
    """The layer a layer method uses when none is chosen: the last convolution, else the
    last leaf module with parameters before the output layer."""
    if not isinstance(model, nn.Module):
        return None
    named = [(n, m) for n, m in model.named_modules() if n]
    convs = [n for n, m in named if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if convs:
        return convs[-1]
    leaves = [n for n, m in named if not list(m.children()) and list(m.parameters(False))]
    if len(leaves) >= 2:
        return leaves[-2]
    return leaves[-1] if leaves else None


class Catalog:
    """The app's view of the registry for one workspace.

    Parameters
    ----------
    workspace : Workspace
    limits : Limits
    """

    def __init__(self, workspace: Workspace, limits: Limits) -> None:
        self.workspace = workspace
        self.limits = limits
        self._specs = {name: self._describe(name) for name in available_methods()}

    @property
    def names(self) -> list[str]:
        """Registered method names."""
        return list(self._specs)

    def specs(self) -> list[MethodSpec]:
        """Every method, available first."""
        return sorted(self._specs.values(), key=lambda s: (not s.available, s.label))

    def get(self, name: Any) -> MethodSpec:
        """The method called ``name``; 404 for an unknown one."""
        spec = self._specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise RequestError(
                f"Unknown method {_shown(name)}; known methods: {sorted(self._specs)}.",
                status=404,
            )
        return spec

    # -- describing ------------------------------------------------------------------------------
    def _describe(self, name: str) -> MethodSpec:
        cls = get_method(name)
        init_names, call_names = cls.option_names()
        options = init_names | call_names
        defaults = _defaults(cls)
        label, description = _LABELS.get(name, (name.replace("_", " ").title(), ""))
        params: list[ParamSpec] = []
        if cls.needs_layer:
            params.append(
                ParamSpec(
                    "layer",
                    "layer",
                    None,
                    "layer to explain (null: the last convolution)",
                    nullable=True,
                )
            )
        if name == "noise_tunnel":
            params.append(
                ParamSpec(
                    "base_method",
                    "choice",
                    "saliency",
                    "method averaged over the noise",
                    choices=_NOISE_TUNNEL_BASES,
                    native="base_method",
                )
            )
        for option in _NATIVE_ORDER:
            if option in options or (name == "noise_tunnel" and option == "stdevs"):
                param = _native_param(option, cls, defaults.get(option), self.limits)
                if param is not None:
                    params.append(param)
        # any other option with a declared bool / choice / int rule (methods registered
        # later, e.g. attention's head_fusion) is offered too, with its declared bounds
        offered = {p.native for p in params}
        for option in sorted(options - offered - _NOT_OFFERED):
            param = _declared_param(option, cls.parameters.get(option), defaults.get(option))
            if param is not None:
                params.append(param)
        if "baselines" in call_names:
            choices: tuple[str, ...] = ("feature", "zeros")
            default = "feature"
            if name in _SHAP_DISTRIBUTION:
                choices, default = ("dataset", "feature", "zeros"), "dataset"
            params.append(
                ParamSpec(
                    "baseline",
                    "choice",
                    default,
                    "feature: the features' baseline transforms; dataset: other examples",
                    choices=choices,
                )
            )
        if "feature_mask" in call_names:
            params.append(
                ParamSpec(
                    "grid",
                    "int",
                    None,
                    "features perturbed together: patch size in pixels, tokens or columns "
                    "(null: automatic)",
                    1,
                    256,
                    nullable=True,
                )
            )
        if "sliding_window_shapes" in call_names:
            params.append(
                ParamSpec(
                    "window", "int", None, "window size (null: automatic)", 1, 512, nullable=True
                )
            )
            params.append(
                ParamSpec(
                    "stride", "int", None, "window stride (null: automatic)", 1, 512, nullable=True
                )
            )

        reason = _UNAVAILABLE.get(name, "")
        ws = self.workspace
        if not reason and cls.__module__.startswith("whybox.attention"):
            if not any(f.kind == "text" for f in ws.features):
                reason = "explains attention over tokens; this workspace has no text feature"
        module_only = cls.needs_layer or getattr(cls, "needs_module", False)
        if not reason and module_only and not all(isinstance(m, nn.Module) for m in ws.models):
            reason = "needs nn.Module models"
        spatial = name in _SPATIAL_LAYER_METHODS
        if not reason and spatial and not any(_has_conv(m) for m in ws.models):
            reason = "needs a convolutional layer, and none of the models has one"
        layers: dict[int, dict[str, Any]] = {}
        if cls.needs_layer:
            for i, model in enumerate(ws.models):
                # a spatial method has no sensible default outside convolutional models
                fallback = default_layer(model) if not spatial or _has_conv(model) else None
                layers[i] = {"choices": layer_names(model), "default": fallback}
        cam_family = name in ("grad_cam", "layer_conductance", "internal_influence")
        output = "layer" if cam_family or name == "layer_activation" else "input"
        # NoiseTunnel's has_delta is a property of its inner method: not a class fact
        declared = inspect.getattr_static(cls, "has_delta", False)
        has_delta = isinstance(declared, bool) and declared and "return_delta" in call_names
        return MethodSpec(
            name=name,
            label=label,
            description=description,
            available=not reason,
            reason=reason,
            has_delta=has_delta,
            needs_layer=bool(cls.needs_layer),
            takes_target="target" in call_names,
            output=output,
            params=tuple(params),
            layers=layers,
        )

    # -- validating ------------------------------------------------------------------------------
    def validate(
        self, name: Any, params: Any, *, models: Sequence[int]
    ) -> tuple[MethodSpec, dict[str, Any]]:
        """Check a method request; returns its spec and every parameter (defaults filled).

        Raises
        ------
        RequestError
            404 for an unknown method; 422 for an unavailable one, an unknown parameter, or
            a value out of the app's bounds or the method's declared constraint.
        """
        spec = self.get(name)
        if not spec.available:
            raise RequestError(f"Method {spec.name} is not offered by the app: it {spec.reason}.")
        if not isinstance(params, Mapping):
            raise RequestError(f"The params of {spec.name} must be a JSON object.")
        known = {p.name for p in spec.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise RequestError(
                f"Unknown parameter {unknown[0]!r} for {spec.name}; its parameters: {sorted(known)}."
            )
        cls = get_method(spec.name)
        out: dict[str, Any] = {}
        for p in spec.params:
            value = p.check(spec.name, params.get(p.name, p.default))
            if p.native and value is not None and p.native in cls.parameters:
                try:  # the method's own declared rule, in the library's message format
                    cls.parameters[p.native](cls.__name__, p.native, value)
                except (TypeError, ValueError) as error:
                    raise RequestError(str(error)) from None
            out[p.name] = value
        if spec.needs_layer:
            layer = out.get("layer")
            defaults = [spec.layers.get(m, {}).get("default") for m in models]
            if layer is None and all(d is None for d in defaults):
                names = [self.workspace.model_names[m] for m in models]
                raise RequestError(f"{spec.name} has no default layer in {names}; choose a layer.")
            # side by side, a model without a default layer gets an error cell of its own
            for m in models:
                info = spec.layers.get(m, {})
                choices = info.get("choices", [])
                if layer is not None and layer not in choices:
                    raise RequestError(
                        f"Parameter 'layer' of {spec.name}: {layer!r} is not a submodule of "
                        f"{self.workspace.model_names[m]}; its layers: {choices[:30]}."
                    )
        return spec, out

    # -- per-example options ----------------------------------------------------------------------
    def evaluations(
        self, spec: MethodSpec, params: Mapping[str, Any], inputs: Sequence[Tensor]
    ) -> int:
        """Model rows one cell costs (an estimate, for the bound on work per request)."""
        name = spec.name
        shapes = [tuple(t.shape[1:]) for t in inputs]
        if name in ("integrated_gradients", "layer_conductance", "internal_influence"):
            return int(params["n_steps"]) + 1
        if name == "gradient_shap":
            return int(params["n_samples"])
        if name == "deeplift_shap":
            return self.limits.max_background + 1
        if name == "noise_tunnel":
            base = 51 if params["base_method"] == "integrated_gradients" else 1
            return int(params["nt_samples"]) * base
        if name == "occlusion":
            total = 1
            for feature, shape in zip(self.workspace.features, shapes):
                window, stride = self._window(feature, shape, params)
                total += math.prod((n - w) // s + 1 for n, w, s in zip(shape, window, stride))
            return total
        if name in ("feature_ablation", "shapley_value_sampling", "shapley_values", "lime"):
            groups = self._group_count(spec, params, shapes)
            if name == "feature_ablation":
                return groups + 1
            if name == "shapley_value_sampling":
                return int(params["n_samples"]) * groups + 2
            if name == "shapley_values":
                return 2**groups if groups < 60 else 2**60
            return int(params["n_samples"])
        if name == "kernel_shap":
            return int(params["n_samples"])
        return 2

    def check_cost(
        self, spec: MethodSpec, params: Mapping[str, Any], inputs: Sequence[Tensor]
    ) -> None:
        """A :class:`RequestError` when one cell would cost more than ``max_evaluations``."""
        cost = self.evaluations(spec, params, inputs)
        if cost > self.limits.max_evaluations:
            hint = {
                "occlusion": "a larger window or stride",
                "shapley_values": "a larger grid (fewer groups)",
                "shapley_value_sampling": "a larger grid or fewer samples",
                "feature_ablation": "a larger grid",
            }.get(spec.name, "smaller parameters")
            shown = f"{cost}" if cost < 10**9 else f"{cost:.1e}"
            raise RequestError(
                f"{spec.name} with these parameters needs about {shown} model evaluations per "
                f"example, above the limit of {self.limits.max_evaluations}; use {hint}."
            )

    def native_options(
        self,
        spec: MethodSpec,
        params: Mapping[str, Any],
        *,
        model_index: int,
        example_index: int,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
    ) -> dict[str, Any]:
        """The options ``whybox.explain`` gets for one cell (tensors built per example)."""
        options: dict[str, Any] = {}
        for p in spec.params:
            if p.native is not None and params.get(p.name) is not None:
                options[p.native] = params[p.name]
        if spec.needs_layer:
            model = self.workspace.models[model_index]
            name = params.get("layer") or spec.layers[model_index]["default"]
            if name is None:
                raise ValueError(
                    f"{spec.label} needs a convolutional layer and "
                    f"{self.workspace.model_names[model_index]} has none; choose a layer."
                )
            options["layer"] = model.get_submodule(name)
        if "baseline" in params:
            options["baselines"] = self._baselines(
                params["baseline"], example_index, inputs, baselines
            )
        if "grid" in params:
            options["feature_mask"] = self._masks(spec, params, inputs)
        if "window" in params:
            windows, strides = [], []
            for feature, x in zip(self.workspace.features, inputs):
                window, stride = self._window(feature, tuple(x.shape[1:]), params)
                windows.append(window)
                strides.append(stride)
            options["sliding_window_shapes"] = tuple(windows)
            options["strides"] = tuple(strides)
        if spec.has_delta:
            options["return_delta"] = True
        return options

    def _baselines(
        self,
        choice: str,
        example_index: int,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Tensor, ...],
    ) -> tuple[Tensor, ...]:
        if choice == "zeros":
            return tuple(torch.zeros_like(x) for x in inputs)
        if choice == "feature":
            return baselines
        # "dataset": other loaded examples of the same shapes, as the SHAP background
        ws = self.workspace
        shapes = [x.shape for x in inputs]
        rows: list[tuple[Tensor, ...]] = []
        for i in range(min(ws.loaded, 256)):
            if len(rows) >= self.limits.max_background:
                break
            if i == example_index:
                continue
            other, _ = ws.model_inputs(i)
            if [t.shape for t in other] == shapes:
                rows.append(other)
        if not rows:
            return baselines
        return tuple(torch.cat(parts, 0).to(x.device) for parts, x in zip(zip(*rows), inputs))

    # feature groups (feature_mask) and windows, per kind of feature --------------------------
    def _patch(
        self, spec: MethodSpec, params: Mapping[str, Any], feature: Feature, shape: tuple[int, ...]
    ) -> int:
        if params.get("grid") is not None:
            return int(params["grid"])
        # automatic: about 64 groups per image (9 for exact Shapley values, 2**M rows)
        per_side = 3 if spec.name == "shapley_values" else 8
        if feature.kind == "image" and len(shape) >= 2:
            return max(1, math.ceil(max(shape[-2:]) / per_side))
        if spec.name == "shapley_values" and shape:
            return max(1, math.ceil(shape[0] / 10))
        return 1

    def _mask(self, feature: Feature, shape: tuple[int, ...], patch: int) -> Tensor:
        if feature.kind == "empty" or not shape:
            return torch.zeros((1,) + (1,) * len(shape), dtype=torch.long)
        if feature.kind == "image" and len(shape) >= 2:
            h, w = shape[-2:]
            cols = math.ceil(w / patch)
            ys = torch.arange(h).div(patch, rounding_mode="floor")
            xs = torch.arange(w).div(patch, rounding_mode="floor")
            grid = ys[:, None] * cols + xs[None, :]
            return grid.reshape((1,) + (1,) * (len(shape) - 2) + (h, w))
        ids = torch.arange(shape[0]).div(patch, rounding_mode="floor")
        return ids.reshape((1, shape[0]) + (1,) * (len(shape) - 1))

    def _masks(
        self, spec: MethodSpec, params: Mapping[str, Any], inputs: Sequence[Tensor]
    ) -> tuple[Tensor, ...]:
        masks, offset = [], 0
        for feature, x in zip(self.workspace.features, inputs):
            shape = tuple(x.shape[1:])
            mask = self._mask(feature, shape, self._patch(spec, params, feature, shape))
            masks.append((mask + offset).to(x.device))
            offset += int(mask.max()) + 1  # groups of different inputs stay apart
        return tuple(masks)

    def _group_count(
        self, spec: MethodSpec, params: Mapping[str, Any], shapes: Sequence[tuple[int, ...]]
    ) -> int:
        total = 0
        for feature, shape in zip(self.workspace.features, shapes):
            total += (
                int(self._mask(feature, shape, self._patch(spec, params, feature, shape)).max()) + 1
            )
        return total

    def _window(
        self, feature: Feature, shape: tuple[int, ...], params: Mapping[str, Any]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if not shape:
            return (), ()
        if feature.kind == "empty":
            return shape, tuple(1 for _ in shape)
        if feature.kind == "image" and len(shape) >= 2:
            h, w = shape[-2:]
            size = params.get("window") or max(1, round(min(h, w) / 6))
            step = params.get("stride") or max(1, size // 2)
            lead = tuple(shape[:-2])
            window = lead + (min(size, h), min(size, w))
            stride = tuple(1 for _ in lead) + (min(step, h), min(step, w))
            return window, stride
        size = min(params.get("window") or 1, shape[0])
        step = min(params.get("stride") or 1, shape[0])
        return (size,) + tuple(shape[1:]), (step,) + tuple(1 for _ in shape[1:])


def with_limits(limits: Limits | None, **changes: Any) -> Limits:
    """``limits`` (default: :class:`Limits()`) with some fields changed."""
    return replace(limits or Limits(), **changes)
