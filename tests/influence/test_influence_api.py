"""whybox.influence is Captum 0.9's captum.influence: same names at the same module paths,
same signatures (whybox adds only keyword-only options), and it never imports Captum."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

from _captum_surface import assert_same_signature, captum_public_names, check_class

pytest.importorskip("captum.influence")

NAMES = captum_public_names("captum.influence")


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
    if isinstance(theirs, type) and issubclass(theirs, tuple) and hasattr(theirs, "_fields"):
        assert ours._fields == theirs._fields  # KMostInfluentialResults
    elif inspect.isclass(theirs):
        check_class(ours, theirs)
    else:
        assert_same_signature(ours, theirs, name)


def test_whybox_influence_does_not_import_captum():
    code = "import sys, whybox.influence, whybox.influence._core.tracincp; print('captum' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code]).decode().strip() == "False"
