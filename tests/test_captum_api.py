"""The facade is a drop-in: same names, constructor and attribute signatures and defaults as
Captum 0.9, and whybox itself never imports Captum."""

import inspect
import pathlib
import subprocess
import sys

import pytest

import whybox.attr as W

C = pytest.importorskip("captum.attr")

SHARED = sorted(
    name for name in W.__all__ if hasattr(C, name) and inspect.isclass(getattr(C, name))
)


def _parameters(function):
    out = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        default = p.default
        if callable(default) and not isinstance(default, type):
            default = (
                "<callable>"  # e.g. FeaturePermutation's perm_func: same role, our own function
            )
        out.append((p.name, p.kind, default))
    return out


def test_every_captum_class_in_the_facade_exists():
    assert len(SHARED) >= 30


@pytest.mark.parametrize("name", SHARED)
def test_signatures_match(name):
    ours, theirs = getattr(W, name), getattr(C, name)
    assert _parameters(ours.__init__) == _parameters(theirs.__init__), "constructor"
    for method in ("attribute", "interpolate", "generate_reference"):
        if hasattr(theirs, method) and not getattr(theirs, method).__qualname__.startswith(
            "Attribution."
        ):
            assert hasattr(ours, method), method
            assert _parameters(getattr(ours, method)) == _parameters(getattr(theirs, method)), (
                method
            )


def test_whybox_never_imports_captum():
    source = pathlib.Path(W.__file__).resolve().parents[1]
    offenders = [
        str(path)
        for path in source.rglob("*.py")
        if any(
            line.strip().startswith(("import captum", "from captum"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
    code = "import sys, whybox, whybox.attr, whybox.methods; print('captum' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code]).decode().strip() == "False"
