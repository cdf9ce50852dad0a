"""whybox.robust and whybox.module are drop-ins for captum.robust and captum.module: every
public name at every Captum module path, with Captum's signatures and defaults (whybox may
add keyword-only options after them)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

import pytest

captum = pytest.importorskip("captum")

CAPTUM_ROOT = pathlib.Path(captum.__file__).resolve().parent
PACKAGES = ("robust", "module")


def _captum_modules() -> list[tuple[str, pathlib.Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((CAPTUM_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(CAPTUM_ROOT.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join(parts), path))
    return found


def _public_names(path: pathlib.Path) -> list[str]:
    """Names a Captum module defines (classes, functions, assignments), or for a package
    ``__init__`` the names it exports; private names are left out."""
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    if target.id == "__all__":
                        return list(ast.literal_eval(node.value))
                    names.append(target.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


MODULES = _captum_modules()


def test_the_walk_sees_captums_modules():
    names = {name for name, _ in MODULES}
    assert {
        "captum.robust",
        "captum.robust._core.fgsm",
        "captum.robust._core.metrics.attack_comparator",
        "captum.module.gaussian_stochastic_gates",
    } <= names
    assert "AttackInfo" in _public_names(
        CAPTUM_ROOT / "robust" / "_core" / "metrics" / "attack_comparator.py"
    )


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_every_captum_module_path_exists_with_its_public_names(module, path):
    ours = importlib.import_module("whybox" + module[len("captum") :])
    theirs = importlib.import_module(module)
    for name in _public_names(path):
        assert hasattr(ours, name), f"{ours.__name__} lacks {name}"
        mine, captums = getattr(ours, name), getattr(theirs, name)
        if inspect.isclass(captums):
            assert inspect.isclass(mine) and mine.__name__ == captums.__name__
            assert mine.__module__.startswith("whybox."), name
        elif callable(captums):
            assert callable(mine)
        else:
            assert mine == captums or name == "MetricResultType", name
    if hasattr(theirs, "__all__"):
        assert sorted(ours.__all__) == sorted(theirs.__all__)


def _classes() -> list[str]:
    out = []
    for package in PACKAGES:
        theirs = importlib.import_module(f"captum.{package}")
        out += [f"{package}.{name}" for name in theirs.__all__]
    out += ["robust._core.metrics.min_param_perturbation.MinParamPerturbationMode"]
    out += ["robust._core.metrics.attack_comparator.AttackInfo"]
    return out


def _resolve(root: str, dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(f"{root}.{module}"), name)


def _methods(cls) -> list[str]:
    """Captum's public methods of ``cls`` (its own and its Captum bases'), constructor,
    ``__call__`` and the ``_from_pretrained`` factories included."""
    names = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("captum"):
            continue
        for name, value in vars(klass).items():
            wanted = not name.startswith("_") or name in (
                "__init__",
                "__call__",
                "_from_pretrained",
            )
            if wanted and (inspect.isfunction(value) or isinstance(value, classmethod)):
                names.add(name)
    return sorted(names)


def _parameters(function) -> list[tuple]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", "cls")
    ]


def assert_signature_extends(ours, theirs, label: str) -> None:
    """Captum's parameters, in order, kinds and defaults; then only keyword-only extras."""
    mine, captums = _parameters(ours), _parameters(theirs)
    assert mine[: len(captums)] == captums, label
    extras = mine[len(captums) :]
    assert all(kind is inspect.Parameter.KEYWORD_ONLY for _, kind, _ in extras), (label, extras)


@pytest.mark.parametrize("dotted", _classes())
def test_signatures_match_captum(dotted):
    theirs = _resolve("captum", dotted)
    ours = _resolve("whybox", dotted)
    if issubclass(theirs, tuple):  # a NamedTuple: same fields
        assert ours._fields == theirs._fields
        return
    if issubclass(theirs, __import__("enum").Enum):
        assert [m.name for m in ours] == [m.name for m in theirs]
        assert [m.value for m in ours] == [m.value for m in theirs]
        return
    methods = _methods(theirs)
    assert methods, dotted
    for name in methods:
        assert hasattr(ours, name), f"{dotted}.{name}"
        assert_signature_extends(getattr(ours, name), getattr(theirs, name), f"{dotted}.{name}")


@pytest.mark.parametrize(
    "dotted",
    [
        "robust._core.metrics.attack_comparator.agg_metric",
        "robust._core.metrics.min_param_perturbation.drange",
        "robust._core.metrics.min_param_perturbation.default_correct_fn",
    ],
)
def test_function_signatures_match_captum(dotted):
    assert _parameters(_resolve("whybox", dotted)) == _parameters(_resolve("captum", dotted))


def test_base_classes_and_keyword_only_extras():
    import torch

    import whybox.module as WM
    import whybox.robust as WR

    assert issubclass(WR.FGSM, WR.Perturbation) and issubclass(WR.PGD, WR.Perturbation)
    assert issubclass(WM.GaussianStochasticGates, WM.StochasticGatesBase)
    assert issubclass(WM.StochasticGatesBase, torch.nn.Module)
    extras = list(inspect.signature(WR.PGD.perturb).parameters)[-2:]
    assert extras == ["seed", "chunk_size"]
    from whybox.robust._core.metrics.attack_comparator import ORIGINAL_KEY

    assert ORIGINAL_KEY == "Original"
