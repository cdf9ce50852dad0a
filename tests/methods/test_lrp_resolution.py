"""LRP's rule resolution walks the model like ``named_modules`` and reads ``rule`` like
``getattr`` (its faster forms must not change which rule a module gets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox.methods.lrp import (
    EpsilonRule,
    GammaRule,
    IdentityRule,
    _leaves,
    _resolve_named,
    _rule_attribute,
    default_rule,
    resolve_rules,
)


def _nested() -> nn.Module:
    shared = nn.Linear(4, 4)
    inner = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), shared)
    model = nn.Sequential(inner, nn.Sequential(shared, nn.Tanh()), nn.Identity())
    model.add_module("empty", None)  # a None child is not a child
    model.block = nn.ModuleDict({"b": nn.Linear(4, 2), "a": nn.Sequential(nn.Sigmoid())})
    return model


def test_leaves_follow_named_modules():
    model = _nested()
    expected = [
        (name, module)
        for name, module in model.named_modules()
        if next(module.children(), None) is None
    ]
    assert _leaves(model) == expected
    single = nn.Linear(2, 2)
    assert _leaves(single) == [("", single)]


class _WithClassRule(nn.Linear):
    rule = GammaRule(gamma=0.5)


class _WithProperty(nn.Linear):
    @property
    def rule(self):
        return IdentityRule(epsilon=0.25)


def test_rule_attribute_is_getattr():
    plain = nn.Linear(2, 2)
    assigned = nn.Linear(2, 2)
    assigned.rule = EpsilonRule(0.5)
    as_none = nn.Linear(2, 2)
    as_none.rule = None
    buffered = nn.Linear(2, 2)
    buffered.register_buffer("rule", torch.zeros(1))
    for module in (plain, assigned, as_none, buffered, _WithClassRule(2, 2)):
        assert _rule_attribute(module) is getattr(module, "rule", None)
    # a property builds a new rule per read: the same rule, by value
    assert _rule_attribute(_WithProperty(2, 2)) == IdentityRule(epsilon=0.25)
    assert _rule_attribute(assigned) is assigned.rule
    assert _rule_attribute(_WithClassRule(2, 2)) is _WithClassRule.rule


def test_shared_defaults_resolve_the_same_rules():
    model = _nested()
    model[0][0].rule = GammaRule()
    rules = {nn.Tanh: EpsilonRule(0.1)}
    fresh = _resolve_named(model, rules, owner="LRP")
    shared = _resolve_named(model, rules, owner="LRP", shared_defaults=True)
    assert [(n, m, r) for n, m, r in fresh] == [(n, m, r) for n, m, r in shared]
    assert [type(r) for _, _, r in fresh] == [type(r) for _, _, r in shared]
    # the public functions still hand out new default instances
    first, second = resolve_rules(model, None), resolve_rules(model, None)
    linear_rules = [r for (m, r) in first if isinstance(m, nn.Linear) and r is not None]
    assert all(
        a is not b for (_, a), (_, b) in zip(first, second) if a is not None and a == EpsilonRule()
    )
    assert linear_rules and default_rule(nn.Linear(1, 1)) is not default_rule(nn.Linear(1, 1))


def test_missing_default_still_fails_with_shared_defaults():
    model = nn.Sequential(nn.Linear(2, 2), nn.LSTMCell(2, 2))
    with pytest.raises(TypeError, match="LRP: LRP has no default rule"):
        _resolve_named(model, None, owner="LRP", shared_defaults=True)
