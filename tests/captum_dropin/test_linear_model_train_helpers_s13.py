"""``whybox._utils.models.linear_model.train``'s private helpers against Captum's."""

from __future__ import annotations

import pytest
import torch

import whybox._utils.models.linear_model.train as ours
from whybox._utils.models.linear_model import LinearModel as OurLinearModel

theirs = pytest.importorskip("captum._utils.models.linear_model.train")
from captum._utils.models.linear_model import LinearModel as TheirLinearModel  # noqa: E402


def _built(cls, bias: bool):
    model = cls(train_fn=None)
    model._construct_model_params(in_features=5, out_features=3, bias=bias)
    return model


@pytest.mark.parametrize("scheme", [None, "zeros", "xavier"])
@pytest.mark.parametrize("bias", [True, False])
def test_init_linear_model_as_captums(scheme, bias):
    results = []
    for module, cls in ((ours, OurLinearModel), (theirs, TheirLinearModel)):
        torch.manual_seed(3)
        model = _built(cls, bias)
        torch.manual_seed(11)  # the xavier draw comes from the global generator
        module._init_linear_model(model, scheme)
        results.append({k: v.clone() for k, v in model.linear.state_dict().items()})
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), key
    if scheme == "zeros":
        assert not results[0]["weight"].any()
    if scheme is None:  # untouched: the layer's own initialisation stays
        assert results[0]["weight"].abs().sum() > 0


@pytest.mark.parametrize("module", [ours, theirs], ids=["whybox", "captum"])
def test_init_linear_model_refuses_like_captum(module):
    cls = OurLinearModel if module is ours else TheirLinearModel
    with pytest.raises(AssertionError):
        module._init_linear_model(_built(cls, True), "normal")
    with pytest.raises(AssertionError):
        module._init_linear_model(cls(train_fn=None), "zeros")  # no layer built yet


@pytest.mark.parametrize("weighted", [False, True])
def test_get_point_as_captums(weighted):
    x, y, w = torch.randn(4, 2), torch.randn(4, 1), torch.rand(4)
    point = (x, y, w) if weighted else (x, y)
    for device in (None, "cpu"):
        mine, reference = ours._get_point(point, device), theirs._get_point(point, device)
        assert len(mine) == len(reference) == 3
        for a, b in zip(mine, reference):
            assert (a is None and b is None) or torch.equal(a, b)
    assert ours._get_point(point)[0] is x  # no device: the same tensors, not copies
    with pytest.raises(ValueError):
        ours._get_point((x,))
    with pytest.raises(ValueError):
        theirs._get_point((x,))


def test_imports_give_the_modules():
    import numpy
    import sklearn

    assert ours._import_numpy() is numpy is theirs._import_numpy()
    module = ours._import_sklearn()
    assert module is sklearn and hasattr(module, "linear_model") and hasattr(module, "svm")


def test_missing_optional_packages_are_value_errors(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.split(".")[0] in ("sklearn", "numpy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    for module in (ours, theirs):
        with pytest.raises(ValueError, match="sklearn is not available"):
            module._import_sklearn()
        with pytest.raises(ValueError, match="numpy is not available"):
            module._import_numpy()
