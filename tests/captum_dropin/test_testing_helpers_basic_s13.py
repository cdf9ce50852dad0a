"""whybox.testing (basic helpers, models, attr helpers) against Captum 0.9's captum.testing.

Captum is imported only here, as an oracle: every check runs the same call through both
packages and compares what comes out (values, or which exception with which message).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import random
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("captum")

MODULES = [
    "testing.helpers",
    "testing.helpers.basic",
    "testing.helpers.classification_models",
    "testing.helpers.evaluate_linear_model",
    "testing.attr.helpers.attribution_delta_util",
    "testing.attr.helpers.neuron_layer_testing_util",
    "testing.attr.helpers.get_config_util",
    "testing.attr.helpers.conductance_reference",
    "testing.attr.helpers.gen_test_utils",
]


def _pair(suffix: str):
    """(captum module, whybox module) at ``captum.<suffix>`` / ``whybox.<suffix>``."""
    captum_mod = importlib.import_module(f"captum.{suffix}")
    try:
        whybox_mod = importlib.import_module(f"whybox.{suffix}")
    except ImportError as exc:
        # only get_config_util depends on a file written elsewhere (basic_models)
        if "basic_models" in str(exc):
            pytest.skip(f"whybox.{suffix} needs a module not yet present: {exc}")
        raise
    return captum_mod, whybox_mod


def _top_level_names(module, own_package: str) -> tuple[set[str], set[str]]:
    """(names defined at top level, names imported from ``own_package``) of a module."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    defined: set[str] = set()
    imported: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(own_package):
            imported.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Try):
            # captum.testing.helpers imports BaseTest inside try/except
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith(own_package):
                    if "fb" not in (sub.module or ""):
                        imported.update(alias.asname or alias.name for alias in sub.names)
    return defined, imported


def _imports(module) -> set[str]:
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


@pytest.mark.parametrize("suffix", MODULES)
def test_same_top_level_names(suffix):
    captum_mod, whybox_mod = _pair(suffix)
    c_defined, c_imported = _top_level_names(captum_mod, "captum")
    captum_names = (c_defined | c_imported) - {"__all__"}
    missing = sorted(n for n in captum_names if not hasattr(whybox_mod, n))
    assert not missing, f"whybox.{suffix} lacks {missing}"
    w_defined, w_imported = _top_level_names(whybox_mod, "whybox")
    extra = sorted(n for n in (w_defined | w_imported) - captum_names if not n.startswith("__"))
    assert not extra, f"whybox.{suffix} has names Captum's lacks: {extra}"
    if hasattr(captum_mod, "__all__"):
        assert list(whybox_mod.__all__) == list(captum_mod.__all__)
    # whybox.testing may import whybox, torch, numpy and the standard library only
    allowed = {"whybox", "torch", "numpy", "__future__", "sklearn"}
    stdlib = {"copy", "random", "unittest", "typing", "collections"}
    assert _imports(whybox_mod) <= allowed | stdlib


def test_package_inits_and_basetest_alias():
    import whybox.testing
    import whybox.testing.attr
    import whybox.testing.attr.helpers
    from whybox.testing.helpers import BaseTest
    from whybox.testing.helpers.basic import BaseTest as BasicBaseTest

    assert BaseTest is BasicBaseTest
    assert issubclass(BaseTest, unittest.TestCase)
    for pkg in (whybox.testing, whybox.testing.attr, whybox.testing.attr.helpers):
        assert pkg.__doc__


# --------------------------------------------------------------------------- assertions


def _outcome(func, *args):
    """What calling ``func`` did: ("ok", None) or (exception type name, message)."""
    try:
        result = func(*args)
    except Exception as exc:  # the type and text are what get compared
        return type(exc).__name__, str(exc)
    return "ok", result


class _Case(unittest.TestCase):
    def runTest(self):  # pragma: no cover - only a host for the assert* methods
        pass


T = torch.tensor
ASSERT_CASES = [
    # (function name, actual, expected, extra positional args)
    ("assertTensorAlmostEqual", T([1.0, 2.0]), T([1.0, 2.0]), ()),
    ("assertTensorAlmostEqual", T([1.0, 2.0]), T([1.0, 2.0]), (0.0001, "max")),
    # each element off by 4e-5: the sum (1.2e-4) is over the default delta, the max is not
    ("assertTensorAlmostEqual", T([1.0, 2.0, 3.0]), T([1.00004, 2.00004, 3.00004]), ()),
    (
        "assertTensorAlmostEqual",
        T([1.0, 2.0, 3.0]),
        T([1.00004, 2.00004, 3.00004]),
        (0.0001, "max"),
    ),
    ("assertTensorAlmostEqual", T([1.0, 2.0, 3.0]), T([1.0, 2.5, 3.0]), (0.1, "max")),
    (
        "assertTensorAlmostEqual",
        T([[1.0, 2.0], [3.0, 4.0]]),
        T([[1.0, 2.0], [3.0, 4.5]]),
        (0.1, "max"),
    ),
    ("assertTensorAlmostEqual", T([[1.0, 2.0], [3.0, 4.0]]), T([[1.0, 2.0], [3.0, 4.5]]), (0.6,)),
    ("assertTensorAlmostEqual", T([1.0, 2.0]), T([1.0, 2.0, 3.0]), ()),
    ("assertTensorAlmostEqual", T([1.0, 2.0]), T([[1.0, 2.0]]), (0.0001, "max")),
    ("assertTensorAlmostEqual", torch.empty(0), torch.empty(0), ()),
    ("assertTensorAlmostEqual", torch.empty(0, 3), torch.empty(0, 3), (0.0001, "max")),
    ("assertTensorAlmostEqual", torch.empty(0), torch.empty(2), (0.0001, "max")),
    ("assertTensorAlmostEqual", T([1.0, 2.0]), [1.0, 2.0], ()),
    ("assertTensorAlmostEqual", T([1.0, 2.0]), [1.0, 2.1], (0.0001, "max")),
    ("assertTensorAlmostEqual", T([[1, 2], [3, 4]]), [[1, 2], [3, 4]], (0.0001, "max")),
    ("assertTensorAlmostEqual", T(3.0), 3.0, (0.0001, "max")),
    ("assertTensorAlmostEqual", T(3.0), 3.5, (0.0001, "max")),
    ("assertTensorAlmostEqual", T(3.0), 3.5, ()),
    ("assertTensorAlmostEqual", [1.0, 2.0], T([1.0, 2.0]), ()),
    ("assertTensorAlmostEqual", T([1.0]), T([1.0]), (0.0001, "mean")),
    ("assertTensorAlmostEqual", T([float("nan")]), T([float("nan")]), ()),
    ("assertTensorAlmostEqual", T([float("nan")]), T([float("nan")]), (0.0001, "max")),
    ("assertTensorAlmostEqual", T([1.0, 2.0], dtype=torch.float64), T([1.0, 2.0]), ()),
    ("assertTensorTuplesAlmostEqual", (T([1.0]), T([2.0])), (T([1.0]), T([2.0])), ()),
    ("assertTensorTuplesAlmostEqual", (T([1.0]), T([2.0])), (T([1.0]), T([2.5])), ()),
    ("assertTensorTuplesAlmostEqual", (T([1.0]),), (T([1.0]), T([2.0])), ()),
    ("assertTensorTuplesAlmostEqual", [T([1.0]), T([2.0])], (T([1.0]), T([2.0])), ()),
    ("assertTensorTuplesAlmostEqual", T([1.0, 2.0]), T([1.0, 2.0]), (0.0001, "max")),
    ("assertTensorTuplesAlmostEqual", T([1.0, 2.0]), [1.0, 2.5], (0.0001, "max")),
    ("assertTupleOfListOfTensorsAlmostEqual", ([T([1.0])],), ([T([1.0])],), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", ([T([1.0])],), ([T([1.5])],), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", [[T([1.0])]], ([T([1.0])],), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", ([T([1.0])],), ([T([1.0])], [T([2.0])]), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", ((T([1.0]),),), ([T([1.0])],), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", ([T([1.0])],), ([T([1.0]), T([2.0])],), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", T([1.0]), T([1.0]), ()),
    ("assertTupleOfListOfTensorsAlmostEqual", T([1.0]), T([2.0]), (0.0001, "max")),
    ("assertAttributionComparision", (T([[1.0, 2.0]]),), (T([[1.04, 2.0]]),), ()),
    ("assertAttributionComparision", (T([[1.0, 2.0]]),), (T([[1.06, 2.0]]),), ()),
    ("assertAttributionComparision", T([[1.0, 2.0], [3.0, 4.0]]), T([[1.0, 2.0], [3.0, 4.2]]), ()),
    ("assertAttributionComparision", (T([[1.0, 2.0]]),), (T([[1.0, 2.0]]), T([[9.0]])), ()),
]


@pytest.mark.parametrize("name, actual, expected, extra", ASSERT_CASES)
def test_assertions_agree(name, actual, expected, extra):
    captum_basic, whybox_basic = _pair("testing.helpers.basic")
    case = _Case()
    got_captum = _outcome(getattr(captum_basic, name), case, actual, expected, *extra)
    got_whybox = _outcome(getattr(whybox_basic, name), case, actual, expected, *extra)
    assert got_whybox == got_captum


def test_assertion_cases_both_pass_and_fail():
    # the table above must exercise both outcomes, or it would compare nothing useful
    captum_basic, _ = _pair("testing.helpers.basic")
    case = _Case()
    kinds = {_outcome(getattr(captum_basic, n), case, a, e, *x)[0] for n, a, e, x in ASSERT_CASES}
    assert {"ok", "AssertionError", "ValueError"} <= kinds


@pytest.mark.parametrize(
    "delta", [T([0.0, 1e-6, -5e-6]), T([0.0, 2e-5]), T([-1e-3]), torch.zeros(0)]
)
def test_basic_assert_delta_agrees(delta):
    captum_basic, whybox_basic = _pair("testing.helpers.basic")
    case = _Case()
    assert _outcome(whybox_basic.assert_delta, case, delta) == _outcome(
        captum_basic.assert_delta, case, delta
    )


FEATURES = [
    (T([1.0, 2.0]), T([1.0, 2.0])),
    (T([1.0, 2.0]), T([1.0, 2.5])),
    ([T([1.0]), T([2.0])], [T([1.0]), T([2.0])]),
    ([T([1.0])], [T([1.0]), T([2.0])]),
    ((T([1.0]), [T([2.0])]), (T([1.0]), [T([2.0])])),
    ((T([1.0]), [T([2.0])]), (T([1.0]), [T([3.0])])),
    ((T([1.0]),), (T([1.0]), T([1.0]))),
    (T([1.0]), [T([1.0])]),
    (1.0, 1.0),
]


@pytest.mark.parametrize("a, b", FEATURES)
def test_extracted_features_equal_agrees(a, b):
    captum_basic, whybox_basic = _pair("testing.helpers.basic")
    assert whybox_basic.extracted_features_equal(a, b) == captum_basic.extracted_features_equal(
        a, b
    )


def test_lcg_rand_like_and_deep_copy_args():
    captum_basic, whybox_basic = _pair("testing.helpers.basic")
    c_gen, w_gen = captum_basic.lcg(), whybox_basic.lcg()
    assert [next(w_gen) for _ in range(20)] == [next(c_gen) for _ in range(20)]
    c_gen, w_gen = captum_basic.lcg(3, 7, 101), whybox_basic.lcg(3, 7, 101)
    assert [next(w_gen) for _ in range(20)] == [next(c_gen) for _ in range(20)]
    for like in (torch.empty(2, 3), torch.empty(4, dtype=torch.float64), torch.empty(0)):
        c_out, w_out = captum_basic.rand_like(like), whybox_basic.rand_like(like)
        assert w_out.dtype == c_out.dtype and torch.equal(w_out, c_out)

    def mutate(items, *, extra):
        items.append(1)
        extra["k"] = 2
        return len(items), dict(extra)

    for module in (captum_basic, whybox_basic):
        items, extra = [0], {}
        assert module.deep_copy_args(mutate)(items, extra=extra) == (2, {"k": 2})
        assert items == [0] and extra == {}


def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


@pytest.mark.parametrize("seed", [None, 0, 42])
def test_set_all_random_seeds_same_draws(seed):
    captum_basic, whybox_basic = _pair("testing.helpers.basic")
    args = () if seed is None else (seed,)
    captum_basic.set_all_random_seeds(*args)
    expected = _draws()
    torch.backends.cudnn.deterministic = False
    random.seed(999)
    whybox_basic.set_all_random_seeds(*args)
    assert torch.backends.cudnn.deterministic is True
    assert _draws() == expected


def test_base_test_setup_seeds():
    captum_helpers, whybox_helpers = _pair("testing.helpers")

    class CaptumCase(captum_helpers.BaseTest):
        def runTest(self):
            pass

    class WhyboxCase(whybox_helpers.BaseTest):
        def runTest(self):
            pass

    CaptumCase().setUp()
    expected = _draws()
    random.seed(5)
    WhyboxCase().setUp()
    assert _draws() == expected


# --------------------------------------------------------------------------- models

MODEL_ARGS = [
    ("SigmoidModel", (3, 5, 2), {}),
    ("SoftmaxModel", (3, 5, 2), {}),
    ("SoftmaxModel", (3, 5, 2), {"inplace": True}),
    ("SigmoidDeepLiftModel", (3, 5, 2), {}),
    ("SoftmaxDeepLiftModel", (4, 6, 3), {}),
]


@pytest.mark.parametrize("name, args, kwargs", MODEL_ARGS)
def test_classification_models_match(name, args, kwargs):
    captum_mod, whybox_mod = _pair("testing.helpers.classification_models")
    torch.manual_seed(11)
    c_model = getattr(captum_mod, name)(*args, **kwargs)
    torch.manual_seed(11)
    w_model = getattr(whybox_mod, name)(*args, **kwargs)
    c_state, w_state = c_model.state_dict(), w_model.state_dict()
    assert list(w_state) == list(c_state)
    for key in c_state:
        assert torch.equal(w_state[key], c_state[key]), key
    assert [(n, repr(m)) for n, m in w_model.named_modules()][1:] == [
        (n, repr(m)) for n, m in c_model.named_modules()
    ][1:]
    assert (w_model.num_in, w_model.num_hidden, w_model.num_out) == args
    torch.manual_seed(3)
    x = torch.randn(4, args[0])
    assert torch.equal(w_model(x.clone()), c_model(x.clone()))
    # the RNG is left in the same state, so later draws in a test match too
    torch.manual_seed(11)
    getattr(captum_mod, name)(*args, **kwargs)
    after_captum = torch.rand(2)
    torch.manual_seed(11)
    getattr(whybox_mod, name)(*args, **kwargs)
    assert torch.equal(torch.rand(2), after_captum)


# --------------------------------------------------------------------------- attr helpers


def _copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    dst.load_state_dict(src.state_dict())
    return dst


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize(
    "layer, target, baselines, n_steps, method",
    [
        ("lin1", 1, None, 20, "riemann_trapezoid"),
        ("relu1", 0, "tensor", 15, "gausslegendre"),
        ("lin2", 1, 0, 10, "riemann_right"),
        ("lin1", 0, "tensor", 12, "riemann_middle"),
    ],
)
def test_conductance_reference_matches(layer, target, baselines, n_steps, method):
    c_mod, w_mod = _pair("testing.attr.helpers.conductance_reference")
    c_models, w_models = _pair("testing.helpers.classification_models")
    torch.manual_seed(0)
    c_model = c_models.SigmoidModel(3, 4, 2)
    w_model = _copy_weights(c_model, w_models.SigmoidModel(3, 4, 2))
    inputs = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.8, -1.2]])
    base = torch.tensor([[0.1, 0.0, -0.2]]) if baselines == "tensor" else baselines
    kwargs = {"baselines": base, "target": target, "n_steps": n_steps, "method": method}
    expected = c_mod.ConductanceReference(c_model, c_model.get_submodule(layer)).attribute(
        inputs.clone(), **kwargs
    )
    got = w_mod.ConductanceReference(w_model, w_model.get_submodule(layer)).attribute(
        inputs.clone(), **kwargs
    )
    assert got.shape == expected.shape == (2, 4 if layer != "lin2" else 2)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert got.abs().sum() > 0


def test_conductance_reference_conv_and_against_layer_conductance():
    c_mod, w_mod = _pair("testing.attr.helpers.conductance_reference")
    from whybox.attr import LayerConductance

    torch.manual_seed(1)
    c_model = _ConvNet()
    w_model = _copy_weights(c_model, _ConvNet())
    inputs = torch.randn(2, 1, 3, 3)
    expected = c_mod.ConductanceReference(c_model, c_model.conv).attribute(
        inputs.clone(), target=2, n_steps=30
    )
    got = w_mod.ConductanceReference(w_model, w_model.conv).attribute(
        inputs.clone(), target=2, n_steps=30
    )
    assert got.shape == (2, 2, 2, 2)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    # the reference agrees with whybox's own LayerConductance (its purpose as an
    # oracle) up to the two integrals' discretisation error
    main = LayerConductance(w_model, w_model.conv).attribute(
        inputs.clone(), target=2, n_steps=200, method="riemann_trapezoid"
    )
    fine = w_mod.ConductanceReference(w_model, w_model.conv).attribute(
        inputs.clone(), target=2, n_steps=200
    )
    assert torch.allclose(fine, main, atol=2e-3)
    # inputs' requires_grad is restored
    assert not inputs.requires_grad


def test_neuron_layer_testing_util_matches():
    c_mod, w_mod = _pair("testing.attr.helpers.neuron_layer_testing_util")
    for fn_name in (
        "create_inps_and_base_for_deeplift_neuron_layer_testing",
        "create_inps_and_base_for_deepliftshap_neuron_layer_testing",
    ):
        c_out, w_out = getattr(c_mod, fn_name)(), getattr(w_mod, fn_name)()
        assert len(w_out) == len(c_out) == 2
        for c_group, w_group in zip(c_out, w_out):
            assert isinstance(w_group, tuple) and len(w_group) == len(c_group)
            for c_t, w_t in zip(c_group, w_group):
                assert w_t.dtype == c_t.dtype and torch.equal(w_t, c_t)
                assert w_t.requires_grad and w_t.is_leaf
        # fresh tensors on every call
        assert getattr(w_mod, fn_name)()[0][0] is not w_out[0][0]


DELTA_CASES = [
    # inputs, attributions, n_samples, delta, extra args
    (T([[1.0, 2.0], [3.0, 4.0]]), T([[0.1, 0.2], [0.3, 0.4]]), 2, T([1e-4, -1e-4, 2e-4, 0.0]), ()),
    (T([[1.0, 2.0], [3.0, 4.0]]), T([[0.1, 0.2], [0.3, 0.4]]), 2, T([1e-2, 0.0, 0.0, 0.0]), ()),
    (T([[1.0, 2.0], [3.0, 4.0]]), T([[0.1, 0.2], [0.3, 0.4]]), 2, T([1e-2, 0.0, 0.0, 0.0]), (0.1,)),
    (T([[1.0, 2.0], [3.0, 4.0]]), T([[0.1, 0.2], [0.3, 0.4]]), 3, T([0.0, 0.0, 0.0, 0.0]), ()),
    (T([[1.0, 2.0], [3.0, 4.0]]), T([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]), 1, T([0.0, 0.0]), ()),
    (
        T([[1.0, 2.0], [3.0, 4.0]]),
        T([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]),
        1,
        T([0.0, 0.0]),
        (0.0006, True),
    ),
    (
        (T([[1.0], [2.0]]), T([[1.0, 1.0], [2.0, 2.0]])),
        (T([[0.5], [0.5]]), T([[0.5, 0.5], [0.5, 0.5]])),
        1,
        T([0.0, 5e-4]),
        (),
    ),
    ((T([[1.0], [2.0]]),), (T([[0.5, 0.5], [0.5, 0.5]]),), 1, T([0.0, 0.0]), ()),
]


@pytest.mark.parametrize("inputs, attributions, n_samples, delta, extra", DELTA_CASES)
def test_attribution_delta_util_agrees(inputs, attributions, n_samples, delta, extra):
    c_mod, w_mod = _pair("testing.attr.helpers.attribution_delta_util")
    case = _Case()
    args = (case, inputs, attributions, n_samples, delta, *extra)
    assert _outcome(w_mod.assert_attribution_delta, *args) == _outcome(
        c_mod.assert_attribution_delta, *args
    )


@pytest.mark.parametrize(
    "delta, extra",
    [(T([1e-4, -5e-4]), ()), (T([7e-4]), ()), (T([7e-4]), (1e-3,)), (T([0.1]), (T(0.05),))],
)
def test_attribution_delta_util_assert_delta_agrees(delta, extra):
    c_mod, w_mod = _pair("testing.attr.helpers.attribution_delta_util")
    case = _Case()
    assert _outcome(w_mod.assert_delta, case, delta, *extra) == _outcome(
        c_mod.assert_delta, case, delta, *extra
    )


def _linear_model(module):
    model = module.LinearModel(train_fn=lambda *a, **k: None)
    model._construct_model_params(
        in_features=3,
        out_features=2,
        weight_values=torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]),
        bias_value=torch.tensor([0.1, -0.2]),
    )
    return model


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_evaluate_linear_model_matches(weighted, batch_size):
    c_eval, w_eval = _pair("testing.helpers.evaluate_linear_model")
    c_lm = importlib.import_module("captum._utils.models.linear_model.model")
    w_lm = importlib.import_module("whybox._utils.models.linear_model.model")
    torch.manual_seed(7)
    x = torch.randn(10, 3)
    y = torch.randn(10, 2)
    tensors = (x, y, torch.rand(10)) if weighted else (x, y)
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size)

    expected = c_eval.evaluate(loader, _linear_model(c_lm))
    w_model = _linear_model(w_lm)
    got = w_eval.evaluate(loader, w_model)
    assert set(got) == set(expected) == {"l1", "l2"}
    for key in expected:
        assert got[key].dtype == expected[key].dtype == torch.float64
        assert torch.allclose(got[key], expected[key], atol=1e-12, rtol=0)
    assert w_model.training
    # the same function evaluates a plain nn.Linear identically
    torch.manual_seed(2)
    lin = nn.Linear(3, 2)
    c_plain, w_plain = c_eval.evaluate(loader, lin), w_eval.evaluate(loader, lin)
    assert all(torch.equal(w_plain[k], c_plain[k]) for k in c_plain)


def test_evaluate_linear_model_shape_and_empty_errors():
    c_eval, w_eval = _pair("testing.helpers.evaluate_linear_model")
    lin = nn.Linear(3, 2)
    bad = DataLoader(TensorDataset(torch.randn(4, 3), torch.randn(4, 3)), batch_size=2)
    empty = DataLoader(TensorDataset(torch.randn(0, 3), torch.randn(0, 2)), batch_size=2)
    for loader in (bad, empty):
        assert (
            _outcome(w_eval.evaluate, loader, lin)[0] == _outcome(c_eval.evaluate, loader, lin)[0]
        )
        assert _outcome(w_eval.evaluate, loader, lin)[0] != "ok"


def test_gen_test_utils_match():
    c_mod, w_mod = _pair("testing.attr.helpers.gen_test_utils")
    import captum.attr as cattr

    import whybox.attr as wattr

    for name in ("IntegratedGradients", "Lime", "KernelShap", "Saliency", "LayerConductance"):
        c_cls, w_cls = getattr(cattr, name), getattr(wattr, name)
        for prefix, test_name, tunnel in (("test_jit", "basic", False), ("test_dp", "x_y", True)):
            assert w_mod.gen_test_name(prefix, test_name, w_cls, tunnel) == c_mod.gen_test_name(
                prefix, test_name, c_cls, tunnel
            )
        assert w_mod.should_create_generated_test(w_cls) == c_mod.should_create_generated_test(
            c_cls
        )

    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    for config in (
        {"algorithms": [1], "model": model, "attribute_args": {"a": 1}},
        {
            "algorithms": [1, 2],
            "model": model,
            "attribute_args": {},
            "layer": "0",
            "noise_tunnel": True,
            "baseline_distr": True,
        },
    ):
        assert w_mod.parse_test_config(config) == c_mod.parse_test_config(config)
    assert _outcome(w_mod.parse_test_config, {"model": 1})[0] == "KeyError"

    assert w_mod.get_target_layer(model, "1.1") is c_mod.get_target_layer(model, "1.1")
    assert w_mod.get_target_layer(model, ["0", "1.0"]) == c_mod.get_target_layer(
        model, ["0", "1.0"]
    )
    assert w_mod.get_target_layer(model, ["0", "1.0"]) == [model[0], model[1][0]]


def test_get_config_util_matches():
    c_mod, w_mod = _pair("testing.attr.helpers.get_config_util")
    c_model, c_input, c_grads, c_args = c_mod.get_basic_config()
    w_model, w_input, w_grads, w_args = w_mod.get_basic_config()
    assert type(w_model).__name__ == type(c_model).__name__
    assert torch.equal(w_input, c_input) and w_input.requires_grad
    assert torch.equal(w_grads, c_grads) and w_args is c_args is None
    # the hand-computed gradients are right for whybox's BasicModel
    (grad,) = torch.autograd.grad(w_model(w_input).sum(), w_input)
    assert torch.equal(grad, w_grads)
    for fn_name in ("get_multiargs_basic_config", "get_multiargs_basic_config_large"):
        c_model, c_inputs, c_grads, c_args = getattr(c_mod, fn_name)()
        w_model, w_inputs, w_grads, w_args = getattr(w_mod, fn_name)()
        assert type(w_model).__name__ == type(c_model).__name__
        assert w_args == c_args == ([2, 3], 1)
        assert len(w_inputs) == len(c_inputs) == len(w_grads) == len(c_grads) == 2
        for w_t, c_t in zip(w_inputs + w_grads, c_inputs + c_grads):
            assert torch.equal(w_t, c_t)
        assert all(t.requires_grad for t in w_inputs)
