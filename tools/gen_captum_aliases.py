"""Generate whybox's alias modules for Captum 0.9's module paths.

A Captum user migrates by replacing ``captum`` with ``whybox`` in import lines, including
lines that import from Captum's submodules (``from captum.attr._core.lime import
get_exp_kernel_similarity_function``). So every module of ``captum.attr`` and
``captum._utils.models`` that defines a public name gets a module at the same path under
``whybox`` that re-exports whybox's object for each name. The alias modules hold no logic.

Two steps, two files:

1. ``--from-captum`` (needs Captum installed) walks Captum's source with ``ast`` and writes
   ``tests/captum_dropin/captum_public_names.json``: for each module, the public names it
   *defines* (classes, functions, module-level assignments; not re-imports), or for a
   package ``__init__``, the names it exports (``__all__``).
2. Without options, this script (no Captum needed) reads that list, finds whybox's object
   for each name (``OVERRIDES``, else the first of ``SOURCES`` whose ``__all__`` has the
   name), writes one alias module per Captum module (plus ``__init__.py`` for packages),
   and records the names whybox does not provide (``MISSING``, each with the issue that
   owns it) in the same JSON file. A name that is neither found nor listed in ``MISSING``
   is an error. ``--check`` writes nothing and fails if a file is out of date.

The generated files are formatted with ruff (the project's configuration), so
``ruff check`` and ``ruff format --check`` pass on them. ``whybox/attr/__init__.py`` is
written by hand and only checked, not generated.

Usage::

    python tools/gen_captum_aliases.py --from-captum   # refresh the name list from Captum
    python tools/gen_captum_aliases.py                 # write the alias modules
    python tools/gen_captum_aliases.py --check         # verify (used by the tests)
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import pathlib
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
NAMES_FILE = ROOT / "tests" / "captum_dropin" / "captum_public_names.json"

#: the Captum packages whose modules get aliases (the other namespaces -- metrics, robust,
#: concept, influence, module, insights -- belong to their own issues)
SCOPE = ("captum.attr", "captum._utils.models")

#: modules written by hand (the alias tree only checks them)
HAND_WRITTEN = {"captum.attr"}

#: Captum's private modules its code and tests import from, provided whole:
#: (Captum module) -> (whybox module, names)
_UTILS = "whybox.attr._captum_utils"
EXTRA_MODULES: dict[str, tuple[str, list[str]]] = {
    "captum._utils.typing": (
        _UTILS,
        [
            "TensorOrTupleOfTensorsGeneric",
            "TupleOrTensorOrBoolGeneric",
            "PassThroughOutputType",
            "ModuleOrModuleList",
            "TargetType",
            "BaselineTupleType",
            "BaselineType",
            "TensorLikeList1D",
            "TensorLikeList2D",
            "TensorLikeList3D",
            "TensorLikeList4D",
            "TensorLikeList5D",
            "TensorLikeList",
            "SliceIntType",
            "BatchEncodingType",
            "TokenizerLike",
            # re-exported by Captum's module (its tests import them from there)
            "Tensor",
            "Module",
        ],
    ),
    "captum._utils.gradient": (
        _UTILS,
        [
            "compute_gradients",
            "apply_gradient_requirements",
            "undo_gradient_requirements",
            "compute_layer_gradients_and_eval",
            "_forward_layer_eval",
        ],
    ),
    "captum._utils.common": (
        _UTILS,
        [
            "_is_tuple",
            "_format_tensor_into_tuples",
            "_format_additional_forward_args",
            "_format_output",
            "_format_baseline",
            "_zeros",
            "_format_input",
            "_reduce_list",
            "safe_div",
            "_select_targets",
            "_sort_key_list",
            "_is_mask_valid",
            "_format_inputs",
            "_run_forward",
            "_format_feature_mask",
            "_get_max_feature_index",
            "_get_feature_idx_to_tensor_idx",
            "_flatten_tensor_or_tuple",
            "_extract_device",
            "parse_version",
            "ExpansionTypes",
            "_expand_target",
            "_expand_additional_forward_args",
        ],
    ),
    # the activation-vector store of captum.concept (TCAV); its tests import it from here
    "captum._utils.av": ("whybox.concept._av", ["AV"]),
    # per-example parameter gradients in one backward (TracIn's fast path)
    "captum._utils.sample_gradient": (
        "whybox.attr._sample_gradient",
        [
            "LossMode",
            "SUPPORTED_MODULES",
            "SampleGradientWrapper",
            "conv2d_param_grads",
            "linear_param_grads",
            "_reset_sample_grads",
        ],
    ),
    "captum._utils.exceptions": (
        "whybox.attr._exceptions",
        ["FeatureAblationFutureError", "ShapleyValueFutureError"],
    ),
    "captum._utils.progress": (
        "whybox.attr._progress",
        [
            "BaseProgress",
            "IterableProgress",
            "Progress",
            "DisableErrorIOWrapper",
            "NullProgress",
            "SimpleProgress",
            "progress",
        ],
    ),
    "captum.attr._utils.batching": (
        _UTILS,
        [
            "_select_example",
            "_batch_example_iterator",
            "_tuple_splice_range",
            "_batched_generator",
            "_batched_operator",
        ],
    ),
}

#: the helpers of this round, one module per Captum module they come from
_COMMON = "whybox.attr._captum_common_helpers"
_GRADIENT = "whybox.attr._captum_gradient_helpers"
_ATTR_COMMON = "whybox.attr._captum_attr_common_helpers"
_METHODS = "whybox.attr._captum_method_helpers"
_VISUAL = "whybox.attr._captum_visualization_helpers"

#: names of an EXTRA_MODULES module that live elsewhere in whybox (importing them through
#: ``_UTILS`` would be circular): (Captum module) -> [(whybox module, name)]
EXTRA_MODULE_NAMES: dict[str, list[tuple[str, str]]] = {
    # TCAV's tests import it from here
    "captum._utils.common": [
        ("whybox.concept._utils.common", "_get_module_from_name"),
        *(
            (_COMMON, name)
            for name in (
                "_validate_target",
                "_validate_input",
                "_format_float_or_tensor_into_tuples",
                "_expand_feature_mask",
                "_expand_and_update_baselines",
                "_expand_and_update_additional_forward_args",
                "_expand_and_update_target",
                "_expand_and_update_feature_mask",
                "_format_outputs",
                "_contains_slice",
                "_verify_select_column",
                "_verify_select_neuron",
                "_maybe_expand_parameters",
                "_register_backward_hook",
                "_construct_future_forward",
            )
        ),
    ],
    # the Jacobians with respect to the parameters (Captum's tests of them import them here)
    "captum._utils.gradient": [
        ("whybox.attr._sample_gradient", "_compute_jacobian_wrt_params"),
        ("whybox.attr._sample_gradient", "_compute_jacobian_wrt_params_with_sample_wise_trick"),
        ("whybox.attr._sample_gradient", "_extract_parameters_from_layers"),
        *(
            (_GRADIENT, name)
            for name in (
                "_neuron_gradients",
                "construct_neuron_grad_fn",
                "_forward_layer_eval_with_neuron_grads",
                "_extract_device_ids",
                "_gather_distributed_tensors",
                "_forward_layer_distributed_eval",
            )
        ),
    ],
    "captum.attr._utils.batching": [(_ATTR_COMMON, "_batch_attribution")],
}

#: private names Captum's own tests import from a public module, re-exported beside the
#: public ones (not in ``__all__``): (Captum module) -> [(whybox module, name)]
PRIVATE: dict[str, list[tuple[str, str]]] = {
    "captum.attr._utils.common": [
        (_UTILS, "_construct_default_feature_mask"),
        (_UTILS, "_format_input_baseline"),
        (_UTILS, "_format_baseline"),
        (_UTILS, "_format_tensor_into_tuples as _format_input"),
        (_UTILS, "_tensorize_baseline"),
        (_UTILS, "_validate_input"),
        (_UTILS, "_validate_noise_tunnel_type"),
        ("whybox.attr._approximation", "SUPPORTED_METHODS"),
        (_COMMON, "_validate_target"),
        *(
            (_ATTR_COMMON, name)
            for name in (
                "_sum_rows",
                "_format_callable_baseline",
                "_format_and_verify_strides",
                "_format_and_verify_sliding_window_shapes",
                "_compute_conv_delta_and_format_attrs",
                "_reshape_and_sum",
                "_call_custom_attribution_func",
                "_find_output_mode_and_verify",
            )
        ),
    ],
    "captum.attr._core.llm_attr": [
        (_UTILS, "_convert_ids_to_pretty_tokens"),
        (_UTILS, "_convert_ids_to_pretty_tokens_fallback"),
        (_UTILS, "_clean_up_pretty_token"),
        (_UTILS, "_encode_with_offsets"),
        ("whybox.attr._llm", "_PlaceholderModel"),
    ],
    "captum.attr._core.feature_permutation": [("whybox.attr._perturbation", "_permute_feature")],
    "captum.attr._core.shapley_value": [
        (_UTILS, "_shape_feature_mask"),
        (_METHODS, "_all_perm_generator"),
        (_METHODS, "_perm_generator"),
    ],
    "captum.attr._core.gradient_shap": [(_METHODS, "_scale_input")],
    "captum.attr._core.deep_lift": [(_METHODS, "_compute_diffs")],
    "captum.attr._core.feature_ablation": [
        (_METHODS, "_parse_forward_out"),
        (_METHODS, "_should_skip_inputs_and_warn"),
    ],
    "captum.attr._core.dataloader_attr": [
        (_METHODS, name)
        for name in (
            "_concat_tensors",
            "_create_perturbation_mask",
            "_perturb_inputs",
            "_convert_output_shape",
        )
    ],
    "captum.attr._utils.interpretable_input": [(_METHODS, "_scatter_itp_attr_by_mask")],
    "captum.attr._utils.summarizer": [(_METHODS, "_reorder_stats")],
    "captum.attr._utils.visualization": [
        (_VISUAL, name)
        for name in (
            "HAS_IPYTHON",
            "_prepare_image",
            "_normalize_scale",
            "_cumulative_sum_threshold",
            "_normalize_attr",
            "_get_color",
            "_create_default_plot",
            "_initialize_cmap_and_vmin_vmax",
            "_visualize_original_image",
            "_visualize_heat_map",
            "_visualize_blended_heat_map",
            "_visualize_masked_image",
            "_visualize_alpha_scaling",
            "_plot_attrs_as_axvspan",
            "_visualize_overlay_individual",
            "_visualize_overlay_combined",
            "_visualize_colored_graph",
        )
    ],
    "captum._utils.models.linear_model.train": [
        ("whybox.attr._captum_linear_model_helpers", name)
        for name in ("_init_linear_model", "_get_point", "_import_sklearn", "_import_numpy")
    ],
    "captum.attr._models.base": [
        ("whybox.attr._interpretable_embedding", "_set_deep_layer_value"),
        ("whybox.attr._interpretable_embedding", "_get_deep_layer_name"),
    ],
}

#: where whybox's objects are looked up, in order: the first module whose ``__all__`` lists
#: the name provides it
SOURCES = (
    "whybox.attr",
    "whybox.attr.visualization",
    "whybox.attr._stat",
    "whybox.attr._summarizer",
    "whybox.attr._dataloader_attribution",
    "whybox.attr._input_wrapper",
    "whybox.attr._interpretable_embedding",
    "whybox.attr._helpers",
    "whybox.core.surrogate.captum_models",
    "whybox.core.surrogate.trainers",
)

#: (Captum module, name) -> (whybox module, whybox name): names found elsewhere, or
#: ambiguous (two Captum modules define ``SUPPORTED_METHODS``)
OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    # DeepLift's backward-hook functions (whybox's own DeepLift uses its rules as data)
    **{
        ("captum.attr._core.deep_lift", name): ("whybox.attr._deeplift_rule_functions", name)
        for name in (
            "nonlinear",
            "softmax",
            "maxpool1d",
            "maxpool2d",
            "maxpool3d",
            "maxpool",
            "SUPPORTED_NON_LINEAR",
        )
    },
    **{
        ("captum.attr._core.lrp", name): ("whybox.attr._lrp", name)
        for name in ("SUPPORTED_LAYERS_WITH_RULES", "SUPPORTED_NON_LINEAR_LAYERS")
    },
    ("captum.attr._core.dataloader_attr", "SUPPORTED_METHODS"): (
        "whybox.attr._dataloader_attribution",
        "SUPPORTED_METHODS",
    ),
    ("captum.attr._utils.approximation_methods", "SUPPORTED_METHODS"): (
        "whybox.attr._approximation",
        "SUPPORTED_METHODS",
    ),
    ("captum.attr._utils.approximation_methods", "SUPPORTED_RIEMANN_METHODS"): (
        "whybox.attr._approximation",
        "SUPPORTED_RIEMANN_METHODS",
    ),
    ("captum.attr._utils.approximation_methods", "Riemann"): (
        "whybox.attr._approximation",
        "Riemann",
    ),
    ("captum.attr._utils.approximation_methods", "approximation_parameters"): (
        "whybox.attr._approximation",
        "approximation_parameters",
    ),
    ("captum.attr._utils.approximation_methods", "riemann_builders"): (
        "whybox.attr._approximation",
        "riemann_builders",
    ),
    ("captum.attr._utils.approximation_methods", "gauss_legendre_builders"): (
        "whybox.attr._approximation",
        "gauss_legendre_builders",
    ),
    # the module-level helpers of Captum's FeatureAblation and Lime
    **{
        ("captum.attr._core.feature_ablation", name): (_METHODS, name)
        for name in ("logger", "process_initial_eval", "format_result", "check_output_shape_valid")
    },
    ("captum.attr._core.lime", "construct_feature_mask"): (_METHODS, "construct_feature_mask"),
    # the inner steps of (Layer)GradientShap, as Captum's classes
    ("captum.attr._core.gradient_shap", "InputBaselineXGradient"): (
        "whybox.attr._input_baseline_x_gradient",
        "InputBaselineXGradient",
    ),
    ("captum.attr._core.layer.layer_gradient_shap", "LayerInputBaselineXGradient"): (
        "whybox.attr._input_baseline_x_gradient",
        "LayerInputBaselineXGradient",
    ),
    # the LLM attribution's base class, generation defaults and gradient step
    **{
        ("captum.attr._core.llm_attr", name): (source, name)
        for source, name in (
            ("whybox.attr._llm", "BaseLLMAttribution"),
            ("whybox.attr._llm", "GradientForwardFunc"),
            ("whybox.llm.targets", "DEFAULT_GEN_ARGS"),
        )
    },
    ("captum.attr._core.guided_backprop_deconvnet", "ModifiedReluGradientAttribution"): (
        "whybox.attr._guided",
        "ModifiedReluGradientAttribution",
    ),
    # Captum's base of the layer and neuron bases is whybox's _Scoped (same constructor)
    ("captum.attr._utils.attribution", "InternalAttribution"): ("whybox.attr._layer", "_Scoped"),
}

_LLM = "issue 14 (attribution for generative language models)"
_INTERNAL = "issue 9: Captum-internal helper, not part of the drop-in surface ({})"

#: names whybox does not provide, and who owns them: by name (any module) ...
MISSING_NAMES: dict[str, str] = {}
#: ... and by (module, name)
MISSING: dict[tuple[str, str], str] = {
    ("captum.attr._core.remote_provider", "logger"): _LLM,
    ("captum.attr._core.layer.layer_lrp", "T"): _INTERNAL.format("a typing variable"),
}

_HEADER = '"""{title}\n\nGenerated by ``tools/gen_captum_aliases.py``; do not edit.{notes}\n"""\n'


# -- step 1: Captum's public names -------------------------------------------------------
def _defined_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def _exported_names(tree: ast.Module) -> list[str]:
    """A package ``__init__``'s ``__all__`` (else its public imports and definitions)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    imported = [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    return [n for n in dict.fromkeys(imported + _defined_names(tree)) if not n.startswith("_")]


def captum_public_names() -> dict[str, object]:
    """``{"modules": {module: names}, "packages": [...]}`` from the installed Captum."""
    import captum  # the oracle; whybox itself never imports it

    base = pathlib.Path(captum.__file__).resolve().parent
    modules: dict[str, list[str]] = {}
    packages: set[str] = set()
    for scope in SCOPE:
        folder = base.joinpath(*scope.split(".")[1:])
        for path in sorted(folder.rglob("*.py")):
            parts = ("captum", *path.relative_to(base).with_suffix("").parts)
            tree = ast.parse(path.read_text())
            if parts[-1] == "__init__":
                name = ".".join(parts[:-1])
                packages.add(name)
                modules[name] = _exported_names(tree)
            else:
                modules[".".join(parts)] = _defined_names(tree)
        # the parents of a scope are packages too (whybox._utils)
        parts = scope.split(".")
        for i in range(2, len(parts)):
            parent = ".".join(parts[:i])
            packages.add(parent)
            modules.setdefault(parent, [])
    kept = {m: n for m, n in sorted(modules.items()) if n or m in packages}
    return {
        "captum_version": captum.__version__,
        "modules": kept,
        "packages": sorted(packages),
    }


# -- step 2: the alias modules ----------------------------------------------------------
def _source(module: str, name: str) -> tuple[str, str] | None:
    if (module, name) in OVERRIDES:
        return OVERRIDES[(module, name)]
    for source in SOURCES:
        if name in getattr(importlib.import_module(source), "__all__", ()):
            return source, name
    return None


def _missing_reason(module: str, name: str) -> str | None:
    return MISSING.get((module, name), MISSING_NAMES.get(name))


def _path(module: str, packages: set[str]) -> pathlib.Path:
    parts = ["whybox", *module.split(".")[1:]]
    if module in packages:
        return SRC.joinpath(*parts, "__init__.py")
    return SRC.joinpath(*parts[:-1], parts[-1] + ".py")


def _ruff(texts: dict[pathlib.Path, str]) -> dict[pathlib.Path, str]:
    """``texts`` as ruff leaves them under the project's configuration (imports sorted,
    formatted): one ruff run over a scratch copy, so checking stays fast."""
    config = str(ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory() as scratch:
        copies = {path: pathlib.Path(scratch) / path.relative_to(ROOT) for path in texts}
        for path, copy in copies.items():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(texts[path])
        for command in (
            ["check", "--select", "I", "--fix", "--quiet", "--exit-zero"],
            ["format", "--quiet"],
        ):
            subprocess.run(
                [sys.executable, "-m", "ruff", *command, "--config", config, scratch],
                check=True,
                capture_output=True,
            )
        return {path: copy.read_text() for path, copy in copies.items()}


def render(module: str, names: list[str], packages: set[str]) -> tuple[str | None, dict[str, str]]:
    """The alias module's text (``None``: nothing to provide) and its missing names."""
    imports: dict[str, list[str]] = {}
    provided: list[str] = []
    missing: dict[str, str] = {}
    for name in names:
        reason = _missing_reason(module, name)
        found = None if reason else _source(module, name)
        if reason is not None:
            missing[name] = reason
            continue
        if found is None:
            raise SystemExit(
                f"whybox has no object for {module}.{name}: implement it, add it to "
                "OVERRIDES, or list it in MISSING with the issue that owns it"
            )
        source, target = found
        imports.setdefault(source, []).append(target if target == name else f"{target} as {name}")
        provided.append(name)
    if not provided and module not in packages:
        return None, missing
    notes = ""
    if missing:
        listed = ", ".join(f"``{n}``" for n in missing)
        notes = "\n\n" + textwrap.fill(
            f"Not provided (see ``{NAMES_FILE.name}``): {listed}.", width=96
        )
    title = f"Alias of Captum 0.9's ``{module}``: its public names, as whybox objects."
    if not names:
        title = f"Package of the alias of Captum 0.9's ``{module}``."
    lines = [_HEADER.format(title=title, notes=notes)]
    for source, targets in imports.items():
        lines.append(f"from {source} import {', '.join(targets)}")
    for source, target in PRIVATE.get(module, []):
        lines.append(f"from {source} import {target}  # noqa: F401 - used by Captum's tests")
    if provided:
        lines.append("")
        lines.append(f"__all__ = {provided!r}")
    return "\n".join(lines) + "\n", missing


def generate(check: bool) -> int:
    """Write (or with ``check``, verify) the alias modules and the missing-name record."""
    data = json.loads(NAMES_FILE.read_text())
    packages = set(data["packages"])
    texts: dict[pathlib.Path, str] = {}
    all_missing: dict[str, dict[str, str]] = {}
    for module, names in data["modules"].items():
        text, missing = render(module, names, packages)
        if missing:
            all_missing[module] = missing
        if text is not None and module not in HAND_WRITTEN:
            texts[_path(module, packages)] = text
    for module, (source, names) in EXTRA_MODULES.items():
        title = f"Alias of Captum 0.9's ``{module}``: the names Captum-style code imports."
        lines = [_HEADER.format(title=title, notes=""), f"from {source} import {', '.join(names)}"]
        more = EXTRA_MODULE_NAMES.get(module, [])
        lines += [f"from {other} import {name}" for other, name in more]
        lines += ["", f"__all__ = {names + [name for _, name in more]!r}"]
        texts[_path(module, packages)] = "\n".join(lines) + "\n"
    stale: list[pathlib.Path] = []
    for path, text in _ruff(texts).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    names_text = json.dumps({**data, "expected_missing": all_missing}, indent=1) + "\n"
    if NAMES_FILE.read_text() != names_text:
        stale.append(NAMES_FILE)
        if not check:
            NAMES_FILE.write_text(names_text)
    shown = [str(path.relative_to(ROOT)) for path in stale]
    if check and stale:
        print("out of date (run tools/gen_captum_aliases.py):", *shown, sep="\n  ")
        return 1
    for path in shown:
        print("wrote", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--from-captum", action="store_true", help="refresh the name list")
    group.add_argument("--check", action="store_true", help="verify, write nothing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(SRC))
    if args.from_captum:
        NAMES_FILE.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(NAMES_FILE.read_text()) if NAMES_FILE.exists() else {}
        fresh = captum_public_names()
        fresh["expected_missing"] = old.get("expected_missing", {})
        NAMES_FILE.write_text(json.dumps(fresh, indent=1) + "\n")
        print("wrote", NAMES_FILE.relative_to(ROOT))
        return 0
    return generate(check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
