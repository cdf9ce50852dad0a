"""The Method template's fast call binding: the same arguments, checks and errors as
``inspect.Signature.bind``, and the defaults it skips checking are all valid."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

import whybox.methods  # noqa: F401  (registers every method)
from whybox.core.method import Int, Method, _Binder
from whybox.core.registry import available_methods, get_method
from whybox.core.validation import ParameterError


def _all_method_classes() -> list[type]:
    found: list[type] = []
    pending = [Method]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


@pytest.mark.parametrize("cls", _all_method_classes(), ids=lambda c: c.__qualname__)
def test_every_declared_call_option_default_satisfies_its_constraint(cls):
    # the template skips checking an option left at its default: that is only right
    # because every default is valid
    if getattr(cls, "attribute", None) is None:
        return  # an abstract base
    signature = inspect.signature(inspect.unwrap(cls.attribute))
    for name, parameter in signature.parameters.items():
        constraint = cls.parameters.get(name)
        if constraint is not None and parameter.default is not inspect.Parameter.empty:
            constraint(cls.__name__, name, parameter.default)


def _reference(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _attribute(self, inputs, *, n: int = 3, flag: bool = True, required: Any) -> None:
    raise AssertionError("not called")


def test_binder_gives_inspects_arguments_in_signature_order():
    signature = inspect.signature(_attribute)
    binder = _Binder(signature)
    runner = object()
    x = torch.zeros(2, 3)
    for args, kwargs in [
        ((x,), {"required": 1}),
        ((), {"inputs": x, "required": 1, "n": 7}),
        ((x,), {"flag": False, "required": None, "n": 0}),
    ]:
        got = binder.bind(runner, args, kwargs)
        expected = _reference(signature, (runner, *args), kwargs)
        assert got is not None
        assert list(got) == list(expected)
        assert all(got[k] is expected[k] for k in expected)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1,), {}),  # a required option missing
        ((1,), {"required": 0, "unknown": 2}),  # an unknown option
        ((1, 2), {"required": 0}),  # a positional option
        ((), {"required": 0}),  # no inputs
        ((1,), {"inputs": 1, "required": 0}),  # inputs twice
    ],
)
def test_binder_leaves_every_other_call_to_inspect(args, kwargs):
    signature = inspect.signature(_attribute)
    runner = object()
    assert _Binder(signature).bind(runner, args, kwargs) is None
    with pytest.raises(TypeError):
        signature.bind(runner, *args, **kwargs)


def test_binder_refuses_signatures_it_does_not_know():
    def positional_option(self, inputs, n=1): ...

    def var_positional(self, inputs, *args, n=1): ...

    for func in (positional_option, var_positional):
        assert _Binder(inspect.signature(func)).bind(object(), (1,), {}) is None


def _var_keyword(self, inputs, *, n: int = 3, flag: bool = True, **options: Any) -> None:
    raise AssertionError("not called")


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1,), {}),
        ((1,), {"n": 5}),
        ((1,), {"abs": False, "n": 5, "target": 0}),  # the method's options and others
        ((), {"inputs": 1, "options": 2}),  # a keyword named like ``**options`` itself
    ],
)
def test_binder_binds_var_keyword_signatures_as_inspect_does(args, kwargs):
    # NoiseTunnel passes its inner method's options through ``**method_options``
    signature = inspect.signature(_var_keyword)
    binder = _Binder(signature)
    runner = object()
    got = binder.bind(runner, args, kwargs)
    expected = _reference(signature, (runner, *args), kwargs)
    assert got is not None
    assert list(got) == list(expected)
    assert got == expected
    # calling with the keywords binds to the same arguments again
    again = _reference(signature, (), binder.call_kwargs(got))
    assert again == expected


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1,), {"self": 2}),  # the first argument twice
        ((1,), {"inputs": 2}),  # inputs twice
        ((1, 2), {}),  # a positional option
    ],
)
def test_binder_leaves_bad_var_keyword_calls_to_inspect(args, kwargs):
    signature = inspect.signature(_var_keyword)
    runner = object()
    assert _Binder(signature).bind(runner, args, kwargs) is None
    with pytest.raises(TypeError):
        signature.bind(runner, *args, **kwargs)


class _Doubler(Method):
    parameters = {"factor": Int(minimum=1)}

    def attribute(self, inputs, *, factor: int = 2, offset: float = 0.0) -> Any:
        return inputs * factor + offset


def test_template_calls_check_explicit_options_and_report_bad_calls():
    method = _Doubler(nn.Identity())
    x = torch.ones(2, 2)
    assert torch.equal(method.attribute(x), x * 2)
    assert torch.equal(method.attribute(inputs=x, factor=3, offset=1.0), x * 3 + 1)
    with pytest.raises(ParameterError, match="'factor' parameter of _Doubler"):
        method.attribute(x, factor=0)
    with pytest.raises(TypeError, match=r"_Doubler.attribute\(\).*unexpected"):
        method.attribute(x, scale=2)
    with pytest.raises(TypeError, match=r"_Doubler.attribute\(\)"):
        method.attribute(x, 3)


def test_registered_methods_are_all_plain_keyword_only_signatures():
    # the fast binding covers every registered method (a new one with positional options
    # would silently fall back to the slow path: keep them keyword-only)
    for name in available_methods():
        cls = get_method(name)
        signature = inspect.signature(inspect.unwrap(cls.attribute))
        has_var_keyword = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        assert _Binder(signature).plain or has_var_keyword, name
