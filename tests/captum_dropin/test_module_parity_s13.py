"""Every module Captum 0.9 installs has a whybox module at the same path, and every name a
Captum module defines (its own classes, functions, constants) is there too.

A plain rename of ``captum`` to ``whybox`` in a file that imports a private helper or a
test helper must not end in an ImportError: a missing name in one ``from ... import`` line
stops a whole test module (a collection error). Names whybox deliberately lacks are listed
with the reason, so the list can only shrink.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path

import pytest

captum = pytest.importorskip("captum")

#: (whybox module, name) whybox does not provide, each with why
KNOWN_MISSING: dict[tuple[str, str], str] = {}

#: typing-only names (``TYPE_CHECKING``, TypeVars) are not API
_TYPING_ONLY = {"TYPE_CHECKING", "T", "_S", "IterableType"}


def _captum_modules() -> list[str]:
    # a walk of the files, not pkgutil: captum.testing and captum.testing.attr are namespace
    # packages (no __init__.py), which pkgutil.walk_packages does not enter
    root = Path(captum.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "fb" in parts or "__pycache__" in parts or "frontend" in parts:
            continue  # Meta-internal modules absent from the open-source build; web assets
        names.append(".".join(parts))
    return sorted(set(names))


def _defined_names(module) -> list[str]:
    """The names ``module`` defines itself (not the ones it imports)."""
    own = []
    for name, value in vars(module).items():
        if name.startswith("__") or inspect.ismodule(value) or name in _TYPING_ONLY:
            continue
        origin = getattr(value, "__module__", None)
        if origin == module.__name__ or (origin is None and name.isupper()):
            own.append(name)
    return sorted(own)


CAPTUM_MODULES = _captum_modules()


def _import_captum(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except ImportError as error:  # optional dependency of Captum's (e.g. annoy)
            pytest.skip(f"{name} does not import here: {error}")


def test_the_walk_sees_captums_test_helpers_and_logging():
    assert {"captum.testing.helpers.basic_models", "captum.log.dummy_log"} <= set(CAPTUM_MODULES)
    assert len(CAPTUM_MODULES) > 100


@pytest.mark.parametrize("name", CAPTUM_MODULES)
def test_whybox_has_the_module_and_its_names(name):
    original = _import_captum(name)
    ours = "whybox" + name[len("captum") :]
    module = importlib.import_module(ours)
    missing = [
        attribute
        for attribute in _defined_names(original)
        if not hasattr(module, attribute) and (ours, attribute) not in KNOWN_MISSING
    ]
    assert not missing, f"{ours} lacks Captum's {missing}"


def test_whybox_testing_and_log_never_import_captum():
    import subprocess
    import sys

    code = (
        "import sys, whybox.log, whybox.testing.helpers.basic_models, "
        "whybox.testing.attr.helpers.test_config, whybox.testing.helpers.influence.common;"
        "print(sorted(m for m in sys.modules if m == 'captum' or m.startswith('captum.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
