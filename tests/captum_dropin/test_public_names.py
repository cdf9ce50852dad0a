"""A mechanical ``captum`` -> ``whybox`` rename of import lines works: every public name that
a Captum 0.9 module of ``captum.attr`` / ``captum._utils.models`` defines imports from the
module at the same path under ``whybox``, except the names listed as expected missing with
the issue that owns them."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pathlib
import re

import pytest

import whybox.attr

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMES = json.loads((pathlib.Path(__file__).parent / "captum_public_names.json").read_text())
MODULES: dict[str, list[str]] = NAMES["modules"]
MISSING: dict[str, dict[str, str]] = NAMES["expected_missing"]


def _whybox(module: str) -> str:
    return "whybox" + module[len("captum") :]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "gen_captum_aliases", ROOT / "tools" / "gen_captum_aliases.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_list_covers_the_documented_paths():
    assert len(MODULES) > 50
    for module in (
        "captum.attr",
        "captum.attr._core.lime",
        "captum.attr._utils.lrp_rules",
        "captum.attr._utils.visualization",
        "captum.attr._utils.input_layer_wrapper",
        "captum._utils.models.linear_model",
    ):
        assert MODULES[module], module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_public_name_imports_from_the_same_path(module):
    missing = MISSING.get(module, {})
    provided = [name for name in MODULES[module] if name not in missing]
    if not provided and module in MISSING:
        # nothing here yet: the module may not exist, but none of its names may be there
        try:
            alias = importlib.import_module(_whybox(module))
        except ModuleNotFoundError:
            return
    else:
        alias = importlib.import_module(_whybox(module))
    absent = [name for name in provided if not hasattr(alias, name)]
    assert absent == [], f"{_whybox(module)} lacks {absent}"
    # the expected-missing list shrinks when a name arrives
    arrived = [name for name in missing if hasattr(alias, name)]
    assert arrived == [], f"implemented now, remove from expected_missing: {arrived}"
    if provided and module != "captum.attr":
        assert set(provided) <= set(alias.__all__)


def test_expected_missing_names_name_their_issue():
    for module, names in MISSING.items():
        assert set(names) <= set(MODULES[module]), module
        for name, reason in names.items():
            assert re.match(r"issue \d+", reason), (module, name, reason)
    # every public name of captum.attr itself is provided by whybox.attr
    assert "captum.attr" not in MISSING or not MISSING["captum.attr"]


def test_aliases_are_whybox_objects_not_copies():
    checked = 0
    for module, names in MODULES.items():
        missing = MISSING.get(module, {})
        shared = [n for n in names if n not in missing and n in whybox.attr.__all__]
        if module == "captum.attr" or not shared:
            continue
        alias = importlib.import_module(_whybox(module))
        for name in shared:
            assert getattr(alias, name) is getattr(whybox.attr, name), (module, name)
            checked += 1
    assert checked > 80


def test_captum_attr_visualization_names_import_from_whybox_attr_visualization():
    from whybox.attr import visualization

    for name in MODULES["captum.attr._utils.visualization"]:
        assert hasattr(visualization, name), name
    import whybox.attr._utils.visualization as alias

    assert alias.visualize_image_attr is visualization.visualize_image_attr


def test_seed_and_tutorial_import_lines_work_after_the_rename():
    lines = [
        "from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnLasso",
        "from captum.attr._core.lime import get_exp_kernel_similarity_function",
        "from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule",
        "from captum.attr._utils.visualization import visualize_image_attr",
        "from captum.attr._utils.input_layer_wrapper import ModelInputWrapper",
        "from captum.attr._core.layer.layer_integrated_gradients import LayerIntegratedGradients",
        "from captum.attr._utils.summarizer import Summarizer",
        "from captum._utils.models.model import Model",
        "from captum.attr._models.base import configure_interpretable_embedding_layer",
        "import captum.attr.visualization as viz",
    ]
    for line in lines:
        exec(line.replace("captum", "whybox"), {})


def _alias_files() -> list[pathlib.Path]:
    src = ROOT / "src" / "whybox"
    roots = [
        src / "_utils",
        src / "attr" / "_core",
        src / "attr" / "_utils",
        src / "attr" / "_models",
    ]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_alias_modules_hold_no_logic():
    files = _alias_files()
    assert len(files) >= 50
    for path in files:
        tree = ast.parse(path.read_text())
        body = tree.body
        assert isinstance(body[0], ast.Expr) and "Generated by" in body[0].value.value, path
        for node in body[1:]:
            is_all = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
            is_import = isinstance(node, ast.ImportFrom) and node.module.startswith("whybox")
            assert is_all or is_import, f"{path}:{node.lineno}"


def test_alias_modules_are_up_to_date_with_the_generator():
    pytest.importorskip("ruff")
    assert _tool().generate(check=True) == 0


def test_the_checked_in_list_matches_installed_captum():
    pytest.importorskip("captum")
    fresh = _tool().captum_public_names()
    assert fresh["modules"] == MODULES
    assert fresh["packages"] == NAMES["packages"]


def test_private_helpers_captum_tests_import_work():
    # Captum's own tests import these; they must behave, not just exist
    import torch
    from torch import nn

    from whybox._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
    from whybox._utils.gradient import (
        apply_gradient_requirements,
        compute_gradients,
        undo_gradient_requirements,
    )
    from whybox._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
    from whybox.attr._core.feature_permutation import _permute_feature
    from whybox.attr._models.base import _set_deep_layer_value
    from whybox.attr._utils.batching import _batch_example_iterator

    assert BaselineType is not None and TargetType is not None
    assert TensorOrTupleOfTensorsGeneric.__constraints__
    x = torch.randn(3, 4)
    assert _format_tensor_into_tuples(x)[0] is x and _format_additional_forward_args(1) == (1,)
    net = nn.Linear(4, 2)
    (grad,) = compute_gradients(net, x, target_ind=1)
    torch.testing.assert_close(grad, net.weight[1].expand(3, 4))
    flags = apply_gradient_requirements((x,), warn=False)
    assert flags == [False] and x.requires_grad
    undo_gradient_requirements((x,), flags)
    assert not x.requires_grad
    model = nn.Sequential(nn.Linear(4, 4))
    replacement = nn.Identity()
    _set_deep_layer_value(model, "0", replacement)
    assert model[0] is replacement
    examples = list(_batch_example_iterator(3, x, 7))
    assert len(examples) == 3 and torch.equal(examples[1][0], x[1:2]) and examples[1][1] == 7
    torch.manual_seed(0)
    mask = torch.ones(3, 4, dtype=torch.bool)
    permuted = _permute_feature(x, mask)
    assert sorted(permuted[:, 0].tolist()) == sorted(x[:, 0].tolist())
