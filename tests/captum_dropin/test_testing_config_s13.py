"""``whybox.testing.attr.helpers.test_config`` against Captum 0.9's ``test_config``.

Captum's generated tests (``test_jit``, ``test_data_parallel``, ``test_hook_removal``, ...)
iterate over ``config``; after renaming ``captum`` to ``whybox`` they must see the same cases:
the same names in the same order, the same attribution and model classes (whybox's, at
Captum's module paths), models with the same weights, and equal arguments and tolerances.
"""

import importlib
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

C = pytest.importorskip("captum.testing.attr.helpers.test_config")
pytest.importorskip("whybox.testing.helpers.basic_models")
W = importlib.import_module("whybox.testing.attr.helpers.test_config")

CASES = list(range(len(C.config)))
IDS = [case["name"] for case in C.config]


def _whybox_path(module: str) -> str:
    assert module.startswith("captum."), module
    return "whybox." + module[len("captum.") :]


def _assert_same_class(ours: type, theirs: type, where: str) -> None:
    """``ours`` has ``theirs``' name and is what whybox has at ``theirs``' module path."""
    assert isinstance(ours, type), where
    assert ours.__name__ == theirs.__name__, where
    assert not ours.__module__.startswith("captum"), where
    at_path = getattr(importlib.import_module(_whybox_path(theirs.__module__)), theirs.__name__)
    assert at_path is ours, f"{where}: {ours} is not {_whybox_path(theirs.__module__)}"


def _assert_same_model(ours: nn.Module, theirs: nn.Module, where: str) -> None:
    ours_modules = list(ours.named_modules())
    theirs_modules = list(theirs.named_modules())
    assert [n for n, _ in ours_modules] == [n for n, _ in theirs_modules], where
    for (name, a), (_, b) in zip(ours_modules, theirs_modules):
        if type(b).__module__.startswith("captum."):
            _assert_same_class(type(a), type(b), f"{where}.{name}")
        else:  # a torch module
            assert type(a) is type(b), f"{where}.{name}"
        assert a.training == b.training, f"{where}.{name}"
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state), where
    for key, value in theirs_state.items():
        _assert_same_value(ours_state[key], value, f"{where}.state_dict[{key!r}]")


def _assert_same_value(ours: Any, theirs: Any, where: str) -> None:
    """Equal values: tensors element for element (same dtype and shape), containers item
    for item (same type), functions on a probe tensor, anything else by ``==``."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), where
        assert ours.dtype == theirs.dtype, where
        assert ours.shape == theirs.shape, where
        assert ours.requires_grad == theirs.requires_grad, where
        assert torch.equal(ours, theirs), where
    elif isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs), where
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same_value(a, b, f"{where}[{i}]")
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), where
        for key in theirs:
            _assert_same_value(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, type):
        _assert_same_class(ours, theirs, where)
    elif isinstance(theirs, nn.Module):
        _assert_same_model(ours, theirs, where)
    elif callable(theirs):  # the functional neuron selector
        assert callable(ours), where
        probe = torch.arange(24.0).view(4, 6) - 7.0
        _assert_same_value(ours(probe), theirs(probe), f"{where}(probe)")
    else:
        assert type(ours) is type(theirs), f"{where}: {type(ours)} vs {type(theirs)}"
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def test_same_cases_in_the_same_order() -> None:
    assert [case["name"] for case in W.config] == IDS
    assert len(W.config) == len(C.config)


def test_same_top_level_names() -> None:
    theirs = {n for n in dir(C) if not n.startswith("_")} - {"Dict", "List"}  # typing aliases
    missing = theirs - set(dir(W))
    assert not missing, missing
    for name in theirs:
        value = getattr(C, name)
        if isinstance(value, type) and value.__module__.startswith("captum."):
            _assert_same_class(getattr(W, name), value, name)


@pytest.mark.parametrize("index", CASES, ids=IDS)
def test_case_equals_captums(index: int) -> None:
    ours, theirs = W.config[index], C.config[index]
    name = theirs["name"]
    assert list(ours) == list(theirs), name
    assert len(ours["algorithms"]) == len(theirs["algorithms"]), name
    for i, (a, b) in enumerate(zip(ours["algorithms"], theirs["algorithms"])):
        _assert_same_class(a, b, f"{name}.algorithms[{i}]")
    _assert_same_model(ours["model"], theirs["model"], f"{name}.model")
    for key in theirs:
        if key not in ("algorithms", "model"):
            _assert_same_value(ours[key], theirs[key], f"{name}.{key}")


def test_cases_do_not_share_mutable_lists() -> None:
    lists = [id(case["algorithms"]) for case in W.config]
    assert len(set(lists)) == len(lists)
    models = [id(case["model"]) for case in W.config]
    assert len(set(models)) == len(models)


_RNG_AFTER_IMPORT = """
import hashlib, random, sys
import numpy as np
import torch
import {module}
print(hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
print(random.random(), float(np.random.rand()))
"""


def test_import_draws_the_same_random_numbers_as_captums() -> None:
    """Importing either module leaves torch's, Python's and NumPy's generators in the same
    state: the same draws, in the same number, after the same seeding."""
    states = []
    for module in (C.__name__, W.__name__):
        run = subprocess.run(
            [sys.executable, "-c", _RNG_AFTER_IMPORT.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
        )
        states.append(run.stdout.split())
    assert states[0] == states[1]
