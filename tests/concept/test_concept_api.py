"""whybox.concept is Captum 0.9's captum.concept: same names at the same module paths, same
signatures (whybox adds only keyword-only options), and it imports neither Captum nor
scikit-learn."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest

# -- comparing surfaces ---------------------------------------------------------------------

KW = inspect.Parameter.KEYWORD_ONLY


def parameters(function) -> list[tuple]:
    out = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        default = p.default
        if callable(default) and not isinstance(default, type):
            default = "<callable>"  # same role, whybox's own function
        out.append((p.name, p.kind, default))
    return out


def assert_same_signature(ours, theirs, what: str) -> None:
    """Captum's parameters, in order, with names, kinds and defaults; whybox may add only
    keyword-only options with defaults (its native knobs)."""
    mine, captum = parameters(ours), parameters(theirs)
    names = {name for name, _, _ in captum}
    extra = [p for p in mine if p[0] not in names]
    assert all(
        kind is KW and default is not inspect.Parameter.empty for _, kind, default in extra
    ), (
        what,
        extra,
    )
    assert [p for p in mine if p[0] in names] == captum, what


def public_members(cls) -> list[str]:
    """Public methods and properties a class defines itself or inherits from Captum code."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in ("__init__", "__getitem__", "__len__"):
            continue
        if (
            isinstance(value, (staticmethod, classmethod))
            or inspect.isfunction(value)
            or isinstance(value, property)
        ):
            out.append(name)
    return out


def check_class(ours, theirs) -> None:
    for name in public_members(theirs):
        value = inspect.getattr_static(theirs, name)
        assert hasattr(ours, name), f"{ours.__name__}.{name} missing"
        if isinstance(value, property):
            assert isinstance(inspect.getattr_static(ours, name), property), name
            continue
        assert_same_signature(getattr(ours, name), getattr(theirs, name), f"{ours.__name__}.{name}")


def captum_public_names(package: str) -> dict[str, list[str]]:
    """``{module: [public names it defines]}`` for every module of a Captum package."""
    root = pathlib.Path(importlib.import_module(package).__file__).parent
    out = {}
    for path in sorted(root.rglob("*.py")):
        module = ".".join([package, *path.relative_to(root).with_suffix("").parts])
        module = module.removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        names = []
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.append(node.name)
            elif isinstance(node, ast.Assign):
                names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                names = list(ast.literal_eval(node.value))
        out[module] = [n for n in dict.fromkeys(names) if not n.startswith("_")]
    return out


pytest.importorskip("captum.concept")

NAMES = captum_public_names("captum.concept")


def _whybox(module: str) -> str:
    return "whybox" + module[len("captum") :]


@pytest.mark.parametrize("module", sorted(NAMES))
def test_every_public_name_imports_from_the_same_path(module):
    alias = importlib.import_module(_whybox(module))
    missing = [name for name in NAMES[module] if not hasattr(alias, name)]
    assert missing == []


PAIRS = sorted({(m, n) for m, names in NAMES.items() for n in names})


@pytest.mark.parametrize(("module", "name"), PAIRS)
def test_signatures_match(module, name):
    theirs = getattr(importlib.import_module(module), name)
    ours = getattr(importlib.import_module(_whybox(module)), name)
    if inspect.isclass(theirs):
        check_class(ours, theirs)
    else:
        assert_same_signature(ours, theirs, name)


def test_the_tutorial_imports_work():
    from whybox.concept import TCAV, Concept  # noqa: F401
    from whybox.concept._utils.common import concepts_to_str
    from whybox.concept._utils.data_iterator import (  # noqa: F401
        CustomIterableDataset,
        dataset_to_dataloader,
    )

    assert concepts_to_str([Concept(0, "a", None), Concept(3, "b", None)]) == "0-3"
    assert Concept(2, "striped", None).identifier == "striped-2"
    assert repr(Concept(2, "striped", None)) == "Concept(2, 'striped')"


def test_whybox_concept_imports_neither_captum_nor_sklearn():
    code = (
        "import sys, whybox.concept, whybox.concept._core.tcav; "
        "print('captum' in sys.modules, 'sklearn' in sys.modules, 'scipy' in sys.modules)"
    )
    assert subprocess.check_output([sys.executable, "-c", code]).decode().split() == ["False"] * 3
