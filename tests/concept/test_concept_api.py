"""whybox.concept is Captum 0.9's captum.concept: same names at the same module paths, same
signatures (whybox adds only keyword-only options), and it imports neither Captum nor
scikit-learn."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

from _captum_surface import assert_same_signature, captum_public_names, check_class

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
