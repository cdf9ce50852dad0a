"""Comparing a whybox namespace with a Captum namespace: same public names at the same
module paths, same signatures (whybox adds only keyword-only options with defaults)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib

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
