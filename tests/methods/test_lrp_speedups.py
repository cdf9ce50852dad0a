"""LRP's input-scope fast path: epsilon-type rules on stock modules scale the gradient at
the output's own autograd node (no relay node, no copy of the output), with the product
written into the ratio. Same numbers as the relay path, bit for bit."""

import pytest
import torch
from torch import nn

from _support import run_together
from whybox.methods import lrp as lrp_module
from whybox.methods.lrp import (
    LRP,
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    _leaves,
    _scaling,
)


def _cnn(dtype=torch.float32):
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3),
            nn.ReLU(inplace=True),  # overwrites the conv's output in place
            nn.MaxPool2d(2),
            nn.Conv2d(6, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        .to(dtype)
        .eval()
    )


def _ruled(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]


class _RelayCount:
    """Counts the relay nodes built (the path that is not the node path)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        apply = lrp_module._Relay.apply

        def counted(*args):
            self.calls += 1
            return apply(*args)

        monkeypatch.setattr(lrp_module._Relay, "apply", counted)


def _on_relay_path(model, x, **options):
    """LRP with an extra (no-op) forward hook on every module: the relay path."""
    handles = [m.register_forward_hook(lambda *a: None) for m in model.modules()]
    try:
        return LRP(model, **options.pop("init", {})).attribute(x, **options)
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("epsilon", [None, 0.25])
def test_node_path_is_taken_and_equals_the_relay_path(monkeypatch, dtype, train, epsilon):
    model = _cnn(dtype).train(train)
    x = torch.randn(3, 3, 12, 12, dtype=dtype)
    # a large epsilon: ratios well below 1 (the default's are mostly exactly 1)
    init = {} if epsilon is None else {"rules": {nn.Conv2d: EpsilonRule(epsilon)}}
    count = _RelayCount(monkeypatch)
    fast = LRP(model, **init).attribute(x, target=1, return_delta=True)
    assert count.calls == 0  # every ruled module of this model takes the node path
    slow = _on_relay_path(model, x, init=init, target=1, return_delta=True)
    assert count.calls == len(_ruled(model)) + 2  # + the pools
    assert torch.equal(fast.attributions, slow.attributions)
    assert torch.equal(fast.delta, slow.delta)
    assert fast.parameters == slow.parameters


def test_parameter_changing_rules_keep_the_relay_and_mix_with_the_node_path(monkeypatch):
    model = _cnn(torch.float64)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    rules = {
        model[0]: GammaRule(0.5),
        model[3]: Alpha1_Beta0_Rule(set_bias_to_zero=True),
        model[8]: EpsilonRule(0.3),
    }
    count = _RelayCount(monkeypatch)
    fast = LRP(model, rules=rules).attribute(x, target=2, return_delta=True)
    assert count.calls == 2  # the two rules with changed parameters
    slow = _on_relay_path(model, x, init={"rules": rules}, target=2, return_delta=True)
    assert torch.equal(fast.attributions, slow.attributions)
    assert torch.equal(fast.delta, slow.delta)


def test_node_path_equals_the_plain_formula_with_an_in_place_relu():
    torch.manual_seed(3)
    first, second = nn.Linear(5, 7).double(), nn.Linear(7, 3).double()
    model = nn.Sequential(first, nn.ReLU(inplace=True), second)
    x = torch.randn(4, 5, dtype=torch.float64)
    eps = 1e-9
    got = LRP(model).attribute(x, target=2).attributions

    def stabilised(z):
        return z + eps * torch.where(z >= 0, 1.0, -1.0).double()

    with torch.no_grad():
        z1 = first(x)
        a1 = torch.relu(z1)
        z2 = second(a1)
        relevance = torch.zeros_like(z2)
        relevance[:, 2] = z2[:, 2]
        relevance = a1 * ((relevance / stabilised(z2)) @ second.weight)  # R at a1 = R at z1
        expected = x * ((relevance / stabilised(z1)) @ first.weight)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_subclassed_or_patched_modules_and_layer_scope_take_the_relay(monkeypatch):
    class MyConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 1.0

    torch.manual_seed(0)
    model = nn.Sequential(MyConv(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.randn(2, 3, 6, 6)
    count = _RelayCount(monkeypatch)
    LRP(model, rules={MyConv: EpsilonRule()}).attribute(x, target=0)
    assert count.calls == 1  # the subclass; the Linear takes the node path
    count.calls = 0
    model[3].forward = lambda t: nn.functional.linear(t, model[3].weight, model[3].bias)
    LRP(model, rules={MyConv: EpsilonRule()}).attribute(x, target=0)
    assert count.calls == 2  # a patched forward too
    del model[3].forward
    count.calls = 0
    LRP(model, rules={MyConv: EpsilonRule()}, layer=model[1]).attribute(x, target=0)
    assert count.calls == 2  # a tapped layer: every rule on the relay


def test_scaling_hook_writes_into_the_ratio_once_and_only_off_the_graph():
    ratio = torch.rand(2, 3)
    grad = torch.randn(2, 3)
    expected = grad * ratio
    hook = _scaling(ratio.clone(), 0)
    (scaled,) = hook((grad,))
    assert torch.equal(scaled, expected)
    with pytest.raises(RuntimeError, match="one backward"):
        hook((grad,))
    # a gradient on the graph (create_graph) or of another layout: a new product
    kept = ratio.clone()
    (scaled,) = _scaling(kept, 0)((grad.clone().requires_grad_(True),))
    assert torch.equal(kept, ratio) and torch.equal(scaled.detach(), expected)
    (scaled,) = _scaling(kept, 0)((grad.t().contiguous().t(),))
    assert torch.equal(kept, ratio) and torch.equal(scaled, expected)
    # several outputs: only output ``index`` is scaled; no gradient: nothing to do
    other = torch.randn(5)
    result = _scaling(ratio.clone(), 1)((other, grad, None))
    assert result[0] is other and result[2] is None and torch.equal(result[1], expected)
    assert _scaling(ratio.clone(), 0)((None,)) is None


def test_rule_attribute_changes_between_calls_are_seen():
    model = _cnn()
    x = torch.randn(2, 3, 12, 12)
    method = LRP(model)
    before = method.attribute(x, target=0)
    assert before.parameters["rules"]["0"] == repr(EpsilonRule())
    rule = EpsilonRule(0.5)
    model[0].rule = rule
    try:
        after = method.attribute(x, target=0)
        assert after.parameters["rules"]["0"] == "EpsilonRule(epsilon=0.5)"
        assert not torch.equal(after.attributions, before.attributions)
        rule.epsilon = 2.0  # a user's rule is read at each call, its repr too
        again = method.attribute(x, target=0)
        assert again.parameters["rules"]["0"] == "EpsilonRule(epsilon=2.0)"
        assert not torch.equal(again.attributions, after.attributions)
        rule.set_bias_to_zero = True  # parameters change: the relay path, a new z
        zeroed = method.attribute(x, target=0)
        assert not torch.equal(zeroed.attributions, again.attributions)
    finally:
        del model[0].rule
    assert torch.equal(method.attribute(x, target=0).attributions, before.attributions)


def test_two_threads_on_one_model_get_the_single_thread_result():
    model = _cnn()
    x = torch.randn(2, 3, 12, 12)
    expected = LRP(model).attribute(x, target=1, return_delta=True)

    def run():
        method = LRP(model)
        return [method.attribute(x, target=1, return_delta=True) for _ in range(5)]

    results = [r for rounds in run_together(run, run) for r in rounds]
    assert len(results) == 10
    for result in results:
        assert torch.equal(result.attributions, expected.attributions)
        assert torch.equal(result.delta, expected.delta)


def test_leaves_walk_matches_named_modules():
    shared = nn.Linear(3, 3)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(shared, nn.ReLU())
            self.b = shared
            self.register_module("c", None)
            self.d = nn.Sequential()
            self.e = nn.Sequential(nn.Sequential(nn.Tanh()), self.a, nn.Identity())

    for model in (Odd(), _cnn(), nn.Linear(2, 2), nn.Sequential()):
        expected = [
            (name, module)
            for name, module in model.named_modules()
            if not any(True for _ in module.children())
        ]
        got = _leaves(model)
        assert [n for n, _ in got] == [n for n, _ in expected]
        assert all(a is b for (_, a), (_, b) in zip(got, expected))


def test_a_global_module_hook_sends_every_rule_to_the_relay(monkeypatch):
    model = _cnn()
    x = torch.randn(2, 3, 12, 12)
    fast = LRP(model).attribute(x, target=0, return_delta=True)
    count = _RelayCount(monkeypatch)
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        slow = LRP(model).attribute(x, target=0, return_delta=True)
    finally:
        handle.remove()
    assert count.calls == len(_ruled(model)) + 2
    assert torch.equal(fast.attributions, slow.attributions)
    assert torch.equal(fast.delta, slow.delta)


def test_default_rules_by_type_are_shared_and_errors_are_not_remembered():
    class Custom(nn.Module):
        def forward(self, x):
            return x * 2.0

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), Custom(), nn.Linear(3, 2))
    x = torch.randn(2, 3)
    for _ in range(2):  # the missing default is an error at every call
        with pytest.raises(TypeError, match="no default rule"):
            LRP(model).attribute(x, target=0)
    model[1].rule = lrp_module.IdentityRule()
    try:
        result = LRP(model).attribute(x, target=0)
    finally:
        del model[1].rule
    assert result.parameters["rules"]["0"] == repr(EpsilonRule())
    assert result.parameters["rules"]["1"] == repr(lrp_module.IdentityRule())
    first = lrp_module._shared_default(model[0])
    assert first is lrp_module._shared_default(model[2])
    assert first == EpsilonRule() and lrp_module._shared_default(nn.ReLU()) is None


def test_create_graph_keeps_the_ratios_and_the_numbers():
    from whybox.core.forward import autograd_options

    model = _cnn(torch.float64)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    plain = LRP(model).attribute(x, target=1, return_delta=True)
    with autograd_options({"create_graph": True, "retain_graph": True}):
        graphed = LRP(model).attribute(x, target=1, return_delta=True)
    assert torch.equal(graphed.attributions.detach(), plain.attributions)
    assert torch.equal(graphed.delta.detach(), plain.delta)
