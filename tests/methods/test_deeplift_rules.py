"""DeepLift's rules as data: rule sets, mappings and functions given to the native method,
the textbook defaults, and Captum's rule set (what the facade passes)."""

import copy

import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import module_hook_count
from whybox.attr._deeplift_rules import CaptumRules
from whybox.methods.deeplift import DeepLift, DeepLiftShap
from whybox.methods.deeplift_rules import (
    MaxPoolRescale,
    Rescale,
    RuleSet,
    SoftmaxRescale,
    rescale_rules,
)


def _pool_net(dtype=torch.float64):
    """ReLU -> MaxPool (adjacent: Captum loses the pool's rule) and overlapping windows."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(2, 4, 3),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3),
            nn.Softmax(dim=1),
        )
        .to(dtype)
        .eval()
    )


def _data(dtype=torch.float64):
    torch.manual_seed(1)
    return torch.randn(3, 2, 9, 9, dtype=dtype), 0.1 * torch.randn(3, 2, 9, 9, dtype=dtype)


def _completeness_gap(model, result, x, b, target):
    with torch.no_grad():
        index = torch.as_tensor(target).view(-1, 1)
        fx, fb = model(x).gather(1, index), model(b).gather(1, index)
    total = result.attributions.flatten(1).sum(1)
    return (total - (fx - fb).squeeze(1)).abs().max()


def test_facade_is_native_deeplift_with_captums_rule_set():
    """Rules as data: the facade's numbers are the native method's with CaptumRules."""
    model = _pool_net()
    x, b = _data()
    target = [0, 2, 1]
    facade, facade_delta = W.DeepLift(model).attribute(
        x, b, target=target, return_convergence_delta=True
    )
    native = DeepLift(model, rules=CaptumRules()).attribute(x, baselines=b, target=target)
    assert torch.equal(facade, native.attributions)
    assert torch.equal(facade_delta, native.delta)
    refs = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    facade = W.DeepLiftShap(model).attribute(x, refs, target=target)
    native = DeepLiftShap(model, rules=CaptumRules()).attribute(x, baselines=refs, target=target)
    assert torch.equal(facade, native.attributions)
    layer = model[4]
    facade = W.LayerDeepLift(model, layer).attribute(x, b, target=target)
    native = DeepLift(model, rules=CaptumRules(), layer=layer).attribute(
        x, baselines=b, target=target
    )
    assert torch.equal(facade, native.attributions)


def test_textbook_default_is_complete_captums_rules_are_not():
    model = _pool_net()
    x, b = _data()
    target = [0, 2, 1]
    textbook = DeepLift(model).attribute(x, baselines=b, target=target)
    explicit = DeepLift(model, rules=rescale_rules()).attribute(x, baselines=b, target=target)
    assert torch.equal(textbook.attributions, explicit.attributions)
    assert _completeness_gap(model, textbook, x, b, target) < 1e-12
    assert textbook.delta.abs().max() < 1e-12
    captum = DeepLift(model, rules=CaptumRules()).attribute(x, baselines=b, target=target)
    assert _completeness_gap(model, captum, x, b, target) > 1e-4
    assert not torch.allclose(captum.attributions, textbook.attributions, atol=1e-6)


def test_textbook_completeness_float32(conv_net):
    torch.manual_seed(2)
    x = torch.randn(4, 3, 16, 16)
    b = 0.1 * torch.randn(4, 3, 16, 16)
    result = DeepLift(conv_net).attribute(x, baselines=b, target=[0, 3, 5, 9])
    with torch.no_grad():
        scale = conv_net(x).abs().max()
    assert result.attributions.dtype == torch.float32
    assert result.delta.abs().max() / scale < 1e-5


captum_attr = pytest.importorskip("captum.attr")


@pytest.mark.filterwarnings("ignore")
def test_captums_rule_set_reproduces_captum():
    """The three quirks together (adjacent ReLU -> MaxPool, overlapping pool windows,
    batch-wide softmax centring), against Captum itself."""
    model = _pool_net()
    x, b = _data()
    ours = DeepLift(model, rules=CaptumRules()).attribute(x, baselines=b, target=[0, 2, 1])
    theirs = captum_attr.DeepLift(model).attribute(x, b, target=[0, 2, 1])
    torch.testing.assert_close(ours.attributions, theirs.detach(), atol=1e-10, rtol=1e-8)


def test_no_rules_is_the_plain_gradient_times_the_difference():
    model = _pool_net()
    x, b = _data()
    result = DeepLift(model, rules={}).attribute(x, baselines=b, target=1)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[:, 1].sum(), leaf)
    torch.testing.assert_close(result.attributions, (x - b) * grad, atol=1e-12, rtol=1e-10)


def test_rules_by_function_pick_modules():
    """Only the first Tanh gets the Rescale rule; the second keeps its local derivative."""
    torch.manual_seed(3)
    l1, l2, l3 = nn.Linear(3, 5), nn.Linear(5, 4), nn.Linear(4, 2)
    model = nn.Sequential(l1, nn.Tanh(), l2, nn.Tanh(), l3).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    b = torch.randn(4, 3, dtype=torch.float64)
    first = model[1]
    result = DeepLift(model, rules=lambda m: Rescale() if m is first else None).attribute(
        x, baselines=b, target=1
    )
    with torch.no_grad():
        zx, zb = l1(x), l1(b)
        ratio = (torch.tanh(zx) - torch.tanh(zb)) / (zx - zb)
        local = 1 - torch.tanh(l2(torch.tanh(zx))) ** 2
        expected = (x - b) * ((ratio * ((local * l3.weight[1]) @ l2.weight)) @ l1.weight)
    torch.testing.assert_close(result.attributions, expected, atol=1e-12, rtol=1e-10)
    # the default rules differ on this net (the second Tanh is rescaled too)
    default = DeepLift(model).attribute(x, baselines=b, target=1)
    assert not torch.allclose(default.attributions, expected, atol=1e-6)


def test_a_mapping_of_the_rules_used_equals_the_default():
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(4, 6), nn.Tanh(), nn.Sigmoid(), nn.Linear(6, 4), nn.Softmax(dim=1)
    ).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    rules = {nn.Tanh: Rescale(), nn.Sigmoid: Rescale(), nn.Softmax: SoftmaxRescale()}
    mapped = DeepLift(model, rules=rules).attribute(x, target=2)
    default = DeepLift(model).attribute(x, target=2)
    assert torch.equal(mapped.attributions, default.attributions)
    without_softmax = DeepLift(model, rules={nn.Tanh: Rescale(), nn.Sigmoid: Rescale()})
    assert not torch.allclose(
        without_softmax.attribute(x, target=2).attributions, default.attributions, atol=1e-6
    )


def test_max_pool_spread_is_data():
    """MaxPoolRescale's spread decides where carried differences go."""
    model = _pool_net()[:5]  # without the softmax
    x, b = _data()
    calls = []

    def spread(values, indices, module, shape):
        calls.append(tuple(shape))
        return torch.zeros(shape, dtype=values.dtype)

    rules = dict(rescale_rules().rules)
    rules[nn.MaxPool2d] = MaxPoolRescale(spread=spread)
    result = DeepLift(model, rules=rules).attribute(x, baselines=b, target=0)
    assert calls == [(6, 4, 7, 7)]  # one chunk: 3 pairs, rows [inputs; references]
    # nothing is spread through the pool, except where the input did not move
    assert result.attributions.abs().max() < 1e-6


class CountingRules(RuleSet):
    """A stateful rule set: counts resets and the rows each forward shows its rule."""

    def __init__(self, couples_rows=False):
        self.resets = 0
        self.rows = []
        outer = self

        class Recording:
            def __init__(self):
                self.couples_rows = couples_rows

            def __call__(self, module, x, out):
                outer.rows.append(x.shape[0])
                return Rescale()(module, x, out)

        super().__init__({nn.ReLU: Recording()})

    def reset(self):
        self.resets += 1


@pytest.mark.parametrize("couples_rows", [False, True])
def test_reset_before_every_forward_and_rows_coupling(couples_rows):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    rules = CountingRules(couples_rows)
    result = DeepLift(model, rules=rules).attribute(x, target=0, chunk_size=4)
    if couples_rows:  # every pair in one forward, whatever chunk_size
        assert rules.rows == [10] and rules.resets == 2
    else:  # 2 pairs (4 rows) per forward
        assert rules.rows == [4, 4, 2] and rules.resets == 4
    assert result.delta.abs().max() < 1e-12


def test_captum_rule_state_is_cleared_and_hooks_removed_after_an_error():
    model = _pool_net()
    x, b = _data()
    rules = CaptumRules()

    def boom(module, inputs, output):
        raise RuntimeError("boom")

    handle = model[4].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            DeepLift(model, rules=rules).attribute(x, baselines=b, target=0)
    finally:
        handle.remove()
    assert rules._kept() == {}
    assert module_hook_count(model) == 0
    # a rule that raises: hooks gone too
    with pytest.raises(RuntimeError, match="rule failed"):

        def failing(module, inputs, output):
            raise RuntimeError("rule failed")

        DeepLift(model, rules={nn.ReLU: failing}).attribute(x, baselines=b, target=0)
    assert module_hook_count(model) == 0


def test_captum_rules_per_thread_state():
    """One CaptumRules shared by two threads: each thread's forward keeps its own record."""
    import threading

    model = _pool_net()
    x, b = _data()
    rules = CaptumRules()
    expected = DeepLift(model, rules=CaptumRules()).attribute(x, baselines=b, target=0)
    results, errors = [], []

    def run():
        try:
            method = DeepLift(copy.deepcopy(model), rules=rules)
            for _ in range(3):
                results.append(method.attribute(x, baselines=b, target=0).attributions)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 6
    for attributions in results:
        assert torch.equal(attributions, expected.attributions)
