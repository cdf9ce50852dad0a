"""The ``whybox`` command line: ``methods``, ``explain``, ``demo``, ``serve``, ``benchmark``.

Every explanation goes through the registry's :func:`whybox.explain` (one dispatch path for
the command line, the web app and Python), so the command's numbers equal the Python API's
for the same options. Examples::

    whybox methods
    whybox explain cnn.pt image.png --method integrated_gradients --target 3 --out a.json
    whybox explain mypkg.models:make_cnn x.pt --method grad_cam --layer features.3 \\
        --target pred --format png --out cam.png
    whybox demo --out whybox-demo

Errors (a missing file, a model that does not load, an input that does not fit the model,
an unknown method or option) exit with status 2 after ONE line on stderr naming what is
wrong, and write nothing; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main", "METHOD_INFO", "method_family", "captum_name", "method_rows"]

# -- what the registry does not say: Captum's name and the cost of each method ------------
# (native name -> (Captum 0.9 class(es), cost in forward / backward passes per example)).
# "F" is one forward pass, "B" one backward pass; M is the number of features (or feature
# groups), C the channels of the explained layer, K the number of baselines.
METHOD_INFO: dict[str, tuple[str, str]] = {
    "saliency": ("Saliency / NeuronGradient", "1F + 1B"),
    "input_x_gradient": ("InputXGradient / LayerGradientXActivation", "1F + 1B"),
    "integrated_gradients": (
        "IntegratedGradients / LayerIntegratedGradients / NeuronIntegratedGradients",
        "n_steps x (1F + 1B), default 50; +2F for the delta",
    ),
    "gradient_shap": (
        "GradientShap / LayerGradientShap / NeuronGradientShap",
        "n_samples x (1F + 1B), default 5",
    ),
    "noise_tunnel": ("NoiseTunnel", "nt_samples x the base method, default 5"),
    "deeplift": (
        "DeepLift / LayerDeepLift / NeuronDeepLift",
        "1F of the distinct baselines + 1F + 1B of the inputs (small calls and layers: "
        "1F + 1B over 2 rows)",
    ),
    "deeplift_shap": (
        "DeepLiftShap / LayerDeepLiftShap",
        "1F of the K baselines + 1F + 1B over K rows (small calls and layers: over 2K rows)",
    ),
    "guided_backprop": ("GuidedBackprop / NeuronGuidedBackprop", "1F + 1B"),
    "deconvolution": ("Deconvolution / NeuronDeconvolution", "1F + 1B"),
    "lrp": ("LRP / LayerLRP", "1F + 1B"),
    "guided_grad_cam": ("GuidedGradCam", "2F + 2B"),
    "grad_cam": ("LayerGradCam", "1F + 1B"),
    "upsampled_grad_cam": ("- (pytorch-grad-cam GradCAM)", "1F + 1B"),
    "grad_cam_plus_plus": ("- (pytorch-grad-cam GradCAMPlusPlus)", "1F + 1B"),
    "xgrad_cam": ("- (pytorch-grad-cam XGradCAM)", "1F + 1B"),
    "hires_cam": ("- (pytorch-grad-cam HiResCAM)", "1F + 1B"),
    "layer_cam": ("- (pytorch-grad-cam LayerCAM)", "1F + 1B"),
    "score_cam": ("- (pytorch-grad-cam ScoreCAM)", "1F + C forwards"),
    "ablation_cam": ("- (pytorch-grad-cam AblationCAM)", "1F + C forwards"),
    "eigen_cam": ("- (pytorch-grad-cam EigenCAM)", "1F, no backward"),
    "layer_activation": ("LayerActivation", "1F"),
    "internal_influence": ("InternalInfluence", "n_steps x (1F + 1B), default 50"),
    "layer_conductance": ("LayerConductance", "(n_steps + 1) x (1F + 1B), default 50"),
    "neuron_conductance": ("NeuronConductance", "n_steps x (1F + 1B), default 50"),
    "feature_ablation": (
        "FeatureAblation / LayerFeatureAblation / NeuronFeatureAblation",
        "1 + M forwards",
    ),
    "feature_permutation": ("FeaturePermutation / LayerFeaturePermutation", "1 + M forwards"),
    "occlusion": ("Occlusion", "1 + one forward per window position"),
    "shapley_value_sampling": ("ShapleyValueSampling", "n_samples x (M + 1) forwards, default 25"),
    "shapley_values": ("ShapleyValues", "2^M forwards, exact (Captum: M x M!)"),
    "kernel_shap": ("KernelShap", "n_samples forwards, default 25"),
    "lime": ("Lime / LimeBase", "n_samples forwards, default 25"),
    "attention_rollout": ("- (Abnar & Zuidema rollout)", "1F, no backward"),
    "attention_flow": ("- (Abnar & Zuidema attention flow)", "1F + one max-flow per token"),
    "gradient_weighted_rollout": ("- (Chefer et al. 2021)", "1F + 1B"),
}

# module under whybox.methods (or a top-level package) -> family shown by ``whybox methods``
_FAMILY_BY_MODULE = {
    "gradient": "gradient",
    "integrated_gradients": "gradient",
    "gradient_shap": "gradient",
    "noise_tunnel": "gradient",
    "deeplift": "backprop rules",
    "guided": "backprop rules",
    "lrp": "backprop rules",
    "cam": "cam",
    "guided_grad_cam": "cam",
    "layer": "layer",
    "neuron_conductance": "neuron",
    "ablation": "perturbation",
    "shapley": "perturbation",
    "lime": "perturbation",
    "attention": "attention",
}
# Grad-CAM lives with the layer methods (Captum's LayerGradCam) but reads like the CAMs.
_FAMILY_BY_NAME = {"grad_cam": "cam"}


# packages whose methods register themselves on import but that ``import whybox`` does not
# load (they may be absent from an install)
_OPTIONAL_METHOD_PACKAGES = ("whybox.attention",)


def load_optional_methods() -> None:
    """Import the optional method packages present in this install (fills the registry)."""
    for module in _OPTIONAL_METHOD_PACKAGES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def method_family(name: str) -> str:
    """The family of a registered method, derived from the module that defines it.

    Parameters
    ----------
    name : str
        A registered method name.

    Returns
    -------
    str
        ``"gradient"``, ``"backprop rules"``, ``"cam"``, ``"layer"``, ``"neuron"``,
        ``"perturbation"``, ``"attention"`` or the defining module's name for new ones.
    """
    import whybox

    if name in _FAMILY_BY_NAME:
        return _FAMILY_BY_NAME[name]
    parts = whybox.get_method(name).__module__.split(".")
    # whybox.methods.cam.gradient -> "cam"; whybox.attention.rollout -> "attention"
    key = parts[2] if len(parts) > 2 and parts[1] == "methods" else parts[min(1, len(parts) - 1)]
    return _FAMILY_BY_MODULE.get(key, key.replace("_", " "))


def captum_name(name: str) -> str:
    """Captum 0.9's class name(s) for a native method (``"-"`` where Captum has none)."""
    return METHOD_INFO.get(name, ("-", ""))[0]


def method_rows() -> list[tuple[str, str, str, str]]:
    """``(name, family, Captum name, cost)`` for every registered method, sorted by family."""
    import whybox

    load_optional_methods()
    rows = [
        (n, method_family(n), captum_name(n), METHOD_INFO.get(n, ("", "?"))[1])
        for n in whybox.available_methods()
    ]
    return sorted(rows, key=lambda row: (row[1], row[0]))


# -- errors: one line, no traceback -------------------------------------------------------
class CliError(Exception):
    """A user-facing error: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (like every other error here)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise CliError(f"{message} (see '{self.prog} --help')")


def _one_line(error: BaseException) -> str:
    """The part of an error message that says what is wrong, on one line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # TorchScript errors carry a serialized traceback; the cause is on the last line
    text = lines[-1] if "TorchScript" in lines[0] else lines[0]
    if "PytorchStreamReader" in text:
        text = text.split(". ")[0]  # the rest is advice about corrupted checkpoints
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


# -- models ----------------------------------------------------------------------------------
def load_model(spec: str) -> Any:
    """Load MODEL: a TorchScript file, a ``torch.export`` program (``.pt2``) or
    ``module:factory`` (a dotted module or a ``.py`` file, and a factory or a module object).

    The model is put in eval mode: explanations are of the deployed behaviour.
    """
    import torch

    path = Path(spec)
    if path.is_file():
        if path.suffix == ".pt2":
            try:
                model = torch.export.load(str(path)).module()
            except Exception as error:
                raise CliError(
                    f"cannot load model {spec}: not a torch.export program ({_one_line(error)})"
                ) from error
        else:
            try:
                model = torch.jit.load(str(path), map_location="cpu")
            except Exception as error:
                raise CliError(
                    f"cannot load model {spec}: not a TorchScript file ({_one_line(error)}); "
                    "save one with torch.jit.script(model).save(path), or pass module:factory"
                ) from error
    elif ":" in spec and not path.suffix == ".pt":
        model = _model_from_factory(spec)
    else:
        raise CliError(f"model file not found: {spec}")
    if isinstance(model, torch.nn.Module):
        try:
            model.eval()
        except NotImplementedError:  # torch.export programs have no train/eval switch
            pass
    elif not callable(model):
        raise CliError(f"model {spec} is not callable (got {type(model).__name__})")
    return model


def _model_from_factory(spec: str) -> Any:
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise CliError(f"model {spec!r} must be FILE or module:factory")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise CliError(f"model file not found: {module_name}")
            loader = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
            loader.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            # the current folder first, as `python -m` would
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except CliError:
        raise
    except Exception as error:
        raise CliError(
            f"cannot import {module_name} for model {spec}: {_one_line(error)}"
        ) from error
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise CliError(
                f"cannot load model {spec}: {module_name} has no attribute {attribute!r}"
            )
        factory = getattr(factory, part)
    import torch

    if isinstance(factory, torch.nn.Module):
        return factory
    if not callable(factory):
        raise CliError(f"cannot load model {spec}: {attribute} is not a model or a factory")
    try:
        model = factory()
    except Exception as error:
        raise CliError(
            f"cannot load model {spec}: {attribute}() failed: {_one_line(error)}"
        ) from error
    return model


def _model_dtype(model: Any) -> Any:
    import torch

    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
    return torch.float32


def _named_layer(model: Any, name: str) -> Any:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise CliError(f"--layer {name}: the model is a function, not a module with layers")
    modules = dict(model.named_modules())  # (ScriptModules have no get_submodule)
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"layers: {', '.join(names[:12])}"
    raise CliError(f"--layer {name}: the model has no such layer ({hint})")


# -- inputs ----------------------------------------------------------------------------------
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class LoadedInput:
    """What INPUT became: the tensor(s) to explain and what to show next to them."""

    value: Any
    kind: str  # "tensor", "image", "csv", "text"
    tokens: list[str] | None = None
    feature_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def load_input(spec: str, *, tokenizer: str | None, grayscale: bool, dtype: Any) -> LoadedInput:
    """Load INPUT: a ``.pt`` / ``.npy`` tensor file, an image, a CSV file, a text string
    (with ``--tokenizer``) or an inline CSV row such as ``"0.1,2,3.5"``."""
    import torch

    path = Path(spec)
    if tokenizer is not None and not path.is_file():
        return _load_text(spec, tokenizer)
    if not path.is_file():
        row = _numbers(spec)
        if row is not None:
            return LoadedInput(torch.tensor([row], dtype=dtype), "csv")
        raise CliError(f"input file not found: {spec}")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        try:
            value = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:
            raise CliError(f"cannot read input {spec}: {_one_line(error)}") from error
        if isinstance(value, (list, tuple)) and value and all(torch.is_tensor(v) for v in value):
            return LoadedInput(tuple(value), "tensor")
        if not torch.is_tensor(value):
            raise CliError(
                f"input {spec} must hold a tensor (or a tuple of tensors), got {type(value).__name__}"
            )
        return LoadedInput(value, "tensor")
    if suffix == ".npy":
        import numpy as np

        try:
            return LoadedInput(torch.from_numpy(np.load(str(path))), "tensor")
        except Exception as error:
            raise CliError(f"cannot read input {spec}: {_one_line(error)}") from error
    if suffix in IMAGE_SUFFIXES:
        return _load_image(path, grayscale=grayscale, dtype=dtype)
    if suffix in (".csv", ".tsv", ".txt"):
        return _load_csv(path, dtype=dtype)
    if tokenizer is not None:
        return _load_text(path.read_text(encoding="utf-8"), tokenizer)
    raise CliError(
        f"input {spec}: unknown kind (expected .pt/.npy, an image, .csv, or text with --tokenizer)"
    )


def _numbers(text: str) -> list[float] | None:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        return None
    return values or None


def _load_image(path: Path, *, grayscale: bool, dtype: Any) -> LoadedInput:
    import numpy as np
    import torch

    try:
        from matplotlib.image import imread
    except ImportError as error:
        raise CliError("image inputs need matplotlib: pip install 'whybox[viz]'") from error
    try:
        array = np.asarray(imread(str(path)))
    except Exception as error:
        raise CliError(f"cannot read image {path}: {_one_line(error)}") from error
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0  # JPEG: bytes; PNG: already floats in [0, 1]
    array = array.astype(np.float32)
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1]  # drop the alpha channel
    if array.ndim == 2:
        array = array[:, :, None]
    if grayscale:
        array = array.mean(axis=2, keepdims=True)
    image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(dtype)
    return LoadedInput(image.unsqueeze(0), "image")


def _load_csv(path: Path, *, dtype: Any) -> LoadedInput:
    import csv

    import torch

    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            r for r in csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ",") if r
        ]
    if not rows:
        raise CliError(f"input {path} is empty")
    names = None
    if _numbers(",".join(rows[0])) is None:
        names, rows = [c.strip() for c in rows[0]], rows[1:]
    values = []
    for number, row in enumerate(rows, start=2 if names else 1):
        parsed = _numbers(",".join(row))
        if parsed is None:
            raise CliError(f"input {path}: line {number} is not all numbers")
        values.append(parsed)
    if not values or len({len(v) for v in values}) != 1:
        raise CliError(f"input {path}: rows must be non-empty and of one length")
    return LoadedInput(torch.tensor(values, dtype=dtype), "csv", feature_names=names)


def _load_text(text: str, tokenizer_name: str) -> LoadedInput:
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise CliError("text inputs need transformers: pip install 'whybox[text]'") from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    except Exception as error:
        raise CliError(f"cannot load tokenizer {tokenizer_name}: {_one_line(error)}") from error
    encoded = tokenizer(text, return_tensors="pt", truncation=True)
    ids = encoded["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return LoadedInput(ids, "text", tokens=tokens, extra={"pad_token_id": tokenizer.pad_token_id})


# -- option values ---------------------------------------------------------------------------
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """``"32"`` -> 32, ``"0.5"`` -> 0.5, ``"(1,3,3)"`` -> a tuple, ``"true"`` -> True; a
    list becomes a tuple (shapes and strides are tuples in the Python API); else the text."""
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise CliError(f"--option {item!r} must be key=value, e.g. n_steps=32")
        options[key] = parse_value(value.strip())
    return options


def parse_target(text: str | None, output: Any) -> Any:
    """``None``; an int; ``pred`` (each example's arg-max); ``1,4,2`` (one per example);
    ``(0,3)`` (an index into each example's output)."""
    if text is None:
        return None
    if text.lower() in ("pred", "predicted", "argmax"):
        if output.dim() < 2:
            raise CliError("--target pred needs a model with one output per class")
        return output.flatten(1).argmax(1).tolist()
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, tuple)):
        raise CliError(
            f"--target {text}: expected an int, 'pred', a list like 1,4 or an index like (0,3)"
        )
    classes = output.shape[1] if output.dim() >= 2 else None
    if isinstance(value, int):
        if classes is not None and not -classes <= value < classes:
            raise CliError(f"--target {value} is out of range: the model has {classes} outputs")
        return value
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if output.dim() >= 2 and len(value) == output.dim() - 1 and "(" in text:
            return value  # an index into each example's output, e.g. (0,3)
        if len(value) != output.shape[0]:
            raise CliError(
                f"--target {text}: {len(value)} targets for a batch of {output.shape[0]} examples"
            )
        if classes is not None and any(not -classes <= v < classes for v in value):
            raise CliError(f"--target {text}: out of range for a model with {classes} outputs")
        return list(value)
    raise CliError(f"--target {text}: expected integers")


# -- explain ---------------------------------------------------------------------------------
def _tensor_output(model: Any, inputs: Any) -> tuple[Any, Any]:
    """Run the model once: check the input fits; wrap models whose output is not a tensor."""
    import torch

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with torch.no_grad():
            output = model(*args)
    except Exception as error:
        shapes = ", ".join(str(tuple(a.shape)) for a in args if torch.is_tensor(a))
        raise CliError(
            f"the input of shape {shapes} does not fit the model: {_one_line(error)}"
        ) from error
    if torch.is_tensor(output):
        return model, output
    from whybox.text import logits_of

    wrapped = logits_of(model, index="logits" if hasattr(output, "logits") else 0)
    return wrapped, wrapped(*args).detach()


def _jsonable(value: Any) -> Any:
    import torch

    if torch.is_tensor(value):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a failed run leaves nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        fmt = args.format
    elif args.out and Path(args.out).suffix.lower() in (".html", ".htm"):
        fmt = "html"
    elif args.out and Path(args.out).suffix.lower() == ".png":
        fmt = "png"
    else:
        fmt = "json"
    if fmt in ("html", "png") and not args.out:
        raise CliError(f"--format {fmt} needs --out FILE")
    return fmt


def _check_method(name: str) -> None:
    import whybox

    load_optional_methods()
    names = whybox.available_methods()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'whybox methods'"
        raise CliError(f"unknown method {name!r} ({hint})")


def cmd_explain(args: argparse.Namespace) -> int:
    """``whybox explain``: load, explain through the registry, write JSON / HTML / PNG."""
    fmt = _output_format(args)
    import torch

    import whybox

    _check_method(args.method)
    model = load_model(args.model)
    dtype = _model_dtype(model)
    loaded = load_input(args.input, tokenizer=args.tokenizer, grayscale=args.grayscale, dtype=dtype)
    explained_model, output = _tensor_output(model, loaded.value)
    target = parse_target(args.target, output)
    options = parse_options(args.option or [])
    if args.layer:
        options["layer"] = _named_layer(model, args.layer)
    if args.baselines is not None:
        number = _numbers(args.baselines)
        if number is not None and len(number) == 1:
            options["baselines"] = number[0]
        else:
            base = load_input(args.baselines, tokenizer=None, grayscale=args.grayscale, dtype=dtype)
            options["baselines"] = base.value
    elif loaded.kind == "text" and loaded.extra.get("pad_token_id") is not None:
        # text: pad tokens, keeping the special tokens at both ends (seed 002's baseline)
        ids = loaded.value
        base = torch.full_like(ids, int(loaded.extra["pad_token_id"]))
        base[:, 0], base[:, -1] = ids[:, 0], ids[:, -1]
        options["baselines"] = base
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            result = whybox.explain(
                explained_model, loaded.value, method=args.method, target=target, **options
            )
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as error:
        raise CliError(f"{args.method}: {_one_line(error)}") from error
    except AssertionError as error:
        if "Guard failed" not in str(error):
            raise
        # a torch.export program checks its input shapes; methods batch many rows
        raise CliError(
            f"{args.method}: the exported program refuses the method's batch "
            f"({_one_line(error)}); export with a dynamic batch dimension, or pass "
            "-o chunk_size=N within its range"
        ) from error

    if fmt == "json":
        data = _json_document(args, result, target, options, loaded)
        text = json.dumps(data) + "\n"
        if args.out:
            _write_atomically(Path(args.out), text.encode("utf-8"))
        else:
            sys.stdout.write(text)
    else:
        _write_view(args, fmt, result, loaded)
    # warnings wait until the result is written: an error stays one line on stderr
    for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        if "Deprecat" not in message:
            print(f"whybox: warning: {_one_line(Exception(message))}", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _json_document(
    args: argparse.Namespace, result: Any, target: Any, options: dict[str, Any], loaded: LoadedInput
) -> dict[str, Any]:
    import torch

    import whybox

    given = {k: v for k, v in options.items() if k not in ("layer", "baselines")}
    data: dict[str, Any] = {
        "method": result.method or args.method,
        "target": _jsonable(target),
        "attributions": _jsonable(result.attributions),
        "shape": _jsonable(
            list(result.attributions.shape) if torch.is_tensor(result.attributions) else None
        ),
        # a layer is named as the user named it, not by its repr
        "parameters": _jsonable(
            {**given, **result.parameters, **({"layer": args.layer} if args.layer else {})}
        ),
        "model": args.model,
        "input": args.input,
        "layer": args.layer,
        "baselines": args.baselines,
        "whybox_version": whybox.__version__,
    }
    if result.delta is not None:
        data["delta"] = _jsonable(result.delta)
    if loaded.tokens is not None:
        data["tokens"] = loaded.tokens
    if loaded.feature_names is not None:
        data["feature_names"] = loaded.feature_names
    return data


def _write_view(args: argparse.Namespace, fmt: str, result: Any, loaded: LoadedInput) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError as error:
        raise CliError(f"--format {fmt} needs matplotlib: pip install 'whybox[viz]'") from error
    import torch

    attributions = result.attributions
    view_options: dict[str, Any] = {}
    if loaded.tokens is not None:
        view_options["tokens"] = loaded.tokens
        if torch.is_tensor(attributions) and attributions.dim() == 3:
            # token embeddings: one score per token, as in the seeds' summarize step
            result = type(result)(**{**result.__dict__, "attributions": attributions.sum(-1)})
    if loaded.feature_names is not None:
        view_options["feature_names"] = loaded.feature_names
    title = f"{args.method}, target {args.target}" if args.target is not None else args.method
    try:
        if fmt == "html":
            from whybox.viz.html import page

            sections = [
                result.to_html(
                    index=i, title=f"{title} (example {i})", full_page=False, **view_options
                )
                for i in range(len(result))
            ]
            data = page("\n".join(sections), title=title).encode("utf-8")
        else:
            from whybox.viz.html import figure_to_bytes

            figure = result.plot(index=args.index, title=title, **view_options)
            data = figure_to_bytes(figure, "png")
    except (TypeError, ValueError, IndexError) as error:
        raise CliError(f"cannot draw a {fmt} view of this result: {_one_line(error)}") from error
    _write_atomically(Path(args.out), data)


# -- methods, demo, serve, benchmark ----------------------------------------------------------
def cmd_methods(args: argparse.Namespace) -> int:
    """``whybox methods``: the registry, one line each."""
    rows = method_rows()
    if args.json:
        keys = ("name", "family", "captum", "cost")
        print(json.dumps([dict(zip(keys, row)) for row in rows], indent=1))
        return 0
    width = max(len(r[0]) for r in rows)
    family = max(len(r[1]) for r in rows)
    for name, fam, captum, _ in rows:
        print(f"{name:<{width}}  {fam:<{family}}  {captum}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``whybox demo``: train or load the built-in models, explain, write the report."""
    from whybox.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, text=not args.no_text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``whybox serve --demo``: the local web app (whybox.app), on 127.0.0.1."""
    if not args.demo:
        raise CliError("whybox serve needs --demo (the only app this version serves)")
    serve_demo = _optional("whybox.app", "serve_demo", "the web app", "app")
    # the MiniLM workspace is skipped with a note when transformers / the model are missing
    serve_demo(port=args.port, blocking=True, minilm=not args.no_minilm)
    return 0


_FIGURES = (".png", ".svg", ".pdf")


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``whybox benchmark``: every registered method on the ground-truth tasks
    (whybox.metrics.run_benchmark): faithfulness, agreement and time, printed as a table and
    optionally saved (``--output``) and drawn (``--plot``)."""
    run = _optional("whybox.metrics.benchmark", "run_benchmark", "the benchmark", "dev")
    format_table = _optional("whybox.metrics.benchmark", "format_table", "the benchmark", "dev")
    for given, suffixes in ((args.output, (".csv", ".json", ".md")), (args.plot, _FIGURES)):
        if given and not given.lower().endswith(suffixes):
            flag = "--output" if given is args.output else "--plot"
            raise CliError(f"{flag} must end in {', '.join(suffixes)} (got {given!r})")
    options: dict[str, Any] = {}
    if args.quick:
        options.update(n_samples=8, n_steps=5)
    if args.n_samples is not None:
        options["n_samples"] = args.n_samples
    if args.steps is not None:
        options["n_steps"] = args.steps
    if args.seed is not None:
        options["seed"] = args.seed
    if args.methods:
        options["methods"] = args.methods
    if args.tasks:
        options["tasks"] = args.tasks
    if args.repeats is not None:
        options["repeats"] = args.repeats
    if args.show_progress:
        options["show_progress"] = True
    accepted = inspect.signature(run).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        options = {k: v for k, v in options.items() if k in accepted}
    rows = run(**options)
    print(format_table(rows))
    if args.output:
        save = _optional("whybox.metrics.benchmark_report", "save_benchmark", "saving", "dev")
        print(f"wrote {save(rows, args.output)}")
    if args.plot:
        plot = _optional("whybox.metrics.benchmark_report", "plot_benchmark", "the plot", "viz")
        plot(rows, path=args.plot)
        print(f"wrote {args.plot}")
    return 0


def _optional(module: str, name: str, what: str, extra: str) -> Any:
    """``module.name`` if this install has it, else a one-line error saying what to install."""
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (error.name == module or module.startswith(error.name + ".")):
            raise CliError(
                f"{what} is not part of this whybox install ({module} is missing)"
            ) from error
        raise CliError(
            f"{what} needs the package {error.name!r}: pip install 'whybox[{extra}]'"
        ) from error
    if not hasattr(loaded, name):
        raise CliError(f"{what} is not available: {module} has no {name}()")
    return getattr(loaded, name)


# -- the parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``whybox`` argument parser (subcommands ``methods``, ``explain``, ``demo``,
    ``serve``, ``benchmark``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = _Parser(
        prog="whybox",
        description="Explain PyTorch models from the command line.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"whybox {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    methods = commands.add_parser(
        "methods", parents=[common], help="list the registered methods (name, family, Captum name)"
    )
    methods.add_argument("--json", action="store_true", help="as JSON, with each method's cost")
    methods.set_defaults(run=cmd_methods)

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="explain one input with one method",
        description="Explain MODEL's output on INPUT with any registered method; defaults "
        "are the Python API's (IG: n_steps=50, Gauss-Legendre, zero baseline).",
    )
    explain.add_argument(
        "model", metavar="MODEL", help="TorchScript file, torch.export .pt2, or module:factory"
    )
    explain.add_argument(
        "input",
        metavar="INPUT",
        help="a .pt/.npy tensor (a batch), an image (PNG/JPEG), a CSV file or row, or text",
    )
    explain.add_argument(
        "--method", "-m", default="integrated_gradients", help="see 'whybox methods'"
    )
    explain.add_argument(
        "--target", "-t", help="class index, 'pred', per-example list 1,4,2, or (i,j)"
    )
    explain.add_argument("--baselines", "-b", help="a number or a file like INPUT (default: zeros)")
    explain.add_argument("--layer", "-l", help="explain this layer (its name, e.g. features.3)")
    explain.add_argument(
        "--option", "-o", action="append", metavar="KEY=VALUE", help="any method option, repeatable"
    )
    explain.add_argument("--out", help="output file (default: JSON on stdout)")
    explain.add_argument("--format", choices=("json", "html", "png"), help="default: from --out")
    explain.add_argument("--tokenizer", help="Hugging Face tokenizer name or folder: INPUT is text")
    explain.add_argument("--grayscale", action="store_true", help="images: one channel")
    explain.add_argument("--index", type=int, default=0, help="png: the example to draw")
    explain.set_defaults(run=cmd_explain)

    demo = commands.add_parser(
        "demo", parents=[common], help="train small built-in models, explain, write a report"
    )
    demo.add_argument("--out", default="whybox-demo", help="report folder (default ./whybox-demo)")
    demo.add_argument("--quick", action="store_true", help="fewer examples and samples (CI)")
    demo.add_argument("--no-text", action="store_true", help="skip the MiniLM text part")
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser("serve", parents=[common], help="the local web app (whybox[app])")
    serve.add_argument("--demo", action="store_true", help="serve the demo models")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--no-minilm",
        action="store_true",
        help="leave out the MiniLM text classifier (trained in seconds on first use)",
    )
    serve.set_defaults(run=cmd_serve)

    bench = commands.add_parser(
        "benchmark", parents=[common], help="whybox vs the bare model on small workloads"
    )
    bench.add_argument("--quick", action="store_true", help="8 examples per task, 5-point curves")
    bench.add_argument("--methods", nargs="+", metavar="NAME", help="registered method names")
    bench.add_argument(
        "--tasks", nargs="+", metavar="TASK", help="ground-truth tasks (default: all)"
    )
    bench.add_argument("--n-samples", type=int, help="examples per task (default 16)")
    bench.add_argument("--steps", type=int, help="points of the deletion / insertion curves")
    bench.add_argument("--seed", type=int, help="seeds the tasks and the methods' sampling")
    bench.add_argument("--repeats", type=int, help="timed calls per run; the fastest counts")
    bench.add_argument("--output", metavar="FILE", help="also save the rows (.csv, .json or .md)")
    bench.add_argument("--plot", metavar="FILE", help="also draw them (.png, .svg, .pdf)")
    bench.add_argument("--show-progress", action="store_true", help="a bar over the runs")
    bench.set_defaults(run=cmd_benchmark)
    # listed for --help; main() hands its arguments to whybox.scale.cli
    commands.add_parser(
        "explain-dataset", help="stream a .pt/.npy/CSV dataset through a method into shards"
    )
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("whybox")
    except Exception:  # not installed (a source checkout on sys.path)
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``whybox`` command; returns the exit status (0, or 2 on an error).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if argv[:1] == ["explain-dataset"]:
        # whole-dataset streaming has its own argument set (whybox.scale.cli)
        from whybox.scale.cli import explain_dataset_cli

        return int(explain_dataset_cli(argv[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 0
        return int(args.run(args))
    except CliError as error:
        if debug:
            raise
        print(f"whybox: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `whybox methods | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("whybox: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # anything unforeseen: still one line unless --debug
        if debug:
            raise
        print(
            f"whybox: error: {type(error).__name__}: {_one_line(error)} (rerun with --debug)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
