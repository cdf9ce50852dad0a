"""DeepLift's per-call costs cut without changing a number (issue 16, session 10).

* :func:`whybox.core.hooks.module_rules` (and :func:`~whybox.core.hooks.hooks`, the layer
  captures) put their hooks straight into each module's own hook table (no
  ``RemovableHandle``), the rules' thread check inside the hook itself;
* the facade's DeepLift classes share one :class:`~whybox.attr._deeplift_rules.CaptumRules`
  per ``eps`` between calls (a new one for a call made inside a forward that uses it), and
  its adjacency wrapper applies its rule without a closure per forward.

Each fast path is compared here, bit for bit (``torch.equal``), with its general route
(torch's ``register_forward_hook``; a new rule set per call; the wrapper's general
``applied``) across native and facade
DeepLift / DeepLiftShap / LayerDeepLift / NeuronDeepLift, float32 and float64, in-place ReLUs,
a module used twice, overlapping max pools, softmax, per-example and broadcast baselines and
both reference layouts; and the hooks are checked gone after errors, and two threads sharing
a model get their own numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import whybox.attr as attr
from _support import module_hook_count, run_together
from whybox.attr import _deeplift
from whybox.attr._deeplift_rules import CaptumRules, _Adjacent
from whybox.core import hooks
from whybox.methods.deeplift import DeepLift, DeepLiftShap


class _Net(nn.Module):
    """In-place ReLU, a ReLU used twice (two instances with ``reuse=False``: the facade,
    as Captum, refuses reused modules), ReLU -> overlapping max pool, softmax."""

    def __init__(self, reuse: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.relu_inplace = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)  # overlapping windows
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.shared = nn.ReLU()  # used twice
        self.fc = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 5)
        self.softmax = nn.Softmax(dim=1)
        self.second = self.shared if reuse else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.relu_inplace(self.conv(x)))
        h = self.shared(self.conv2(h))
        h = self.second(self.fc(h.flatten(1)))
        return self.softmax(self.fc2(h))


def _inputs(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    torch.manual_seed(1)
    x = torch.randn(3, 2, 8, 8, dtype=dtype)
    per_example = 0.3 * torch.randn(3, 2, 8, 8, dtype=dtype)
    per_example[0] = x[0]  # a pair whose input did not move: local gradients
    distribution = 0.3 * torch.randn(4, 2, 8, 8, dtype=dtype)
    return x, per_example, distribution


def _cases(dtype: torch.dtype) -> dict[str, Callable[[], tuple[Tensor, ...]]]:
    model = _Net().to(dtype).eval()
    separate = _Net(reuse=False).to(dtype).eval()
    x, per_example, distribution = _inputs(dtype)
    broadcast = per_example[1:2]

    def native(cls, baselines, on=model, **options):
        def call() -> tuple[Tensor, ...]:
            result = cls(on, **options).attribute(x, baselines=baselines, target=2)
            return (result.attributions, result.delta)

        return call

    def facade(make, *args, **kwargs):
        def call() -> tuple[Tensor, ...]:
            out = make().attribute(*args, **kwargs)
            return out if isinstance(out, tuple) else (out,)

        return call

    cases = {
        f"native_{layout}_{name}": native(DeepLift, b, reference_pass=layout)
        for layout in ("paired", "apart")
        for name, b in (("per_example", per_example), ("broadcast", broadcast))
    }
    cases["native_shap_paired"] = native(DeepLiftShap, distribution, reference_pass="paired")
    cases["native_shap_apart"] = native(DeepLiftShap, distribution, reference_pass="apart")
    cases["native_layer"] = native(DeepLift, per_example, layer=model.conv2)
    cases["native_custom_rules"] = native(  # Captum's rules refuse reused modules
        DeepLift, per_example, on=separate, rules=lambda m: CaptumRules().rule_for(m)
    )
    cases["facade"] = facade(
        lambda: attr.DeepLift(separate), x, per_example, target=2, return_convergence_delta=True
    )
    cases["facade_eps"] = facade(lambda: attr.DeepLift(separate, eps=1e-3), x, broadcast, target=2)
    cases["facade_shap"] = facade(
        lambda: attr.DeepLiftShap(separate),
        x,
        distribution,
        target=1,
        return_convergence_delta=True,
    )
    cases["facade_layer"] = facade(
        lambda: attr.LayerDeepLift(separate, separate.conv2), x, per_example, target=2
    )
    cases["facade_layer_shap"] = facade(
        lambda: attr.LayerDeepLiftShap(separate, separate.fc), x, distribution, target=2
    )
    cases["facade_neuron"] = facade(
        lambda: attr.NeuronDeepLift(separate, separate.fc), x, 3, per_example
    )
    cases["facade_neuron_shap"] = facade(
        lambda: attr.NeuronDeepLiftShap(separate, separate.conv2), x, (1, 2, 2), distribution
    )
    return cases


def _general_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fast path of this file off: torch's hook API, a new rule set per call, and
    Captum's adjacency wrapper through :meth:`_Adjacent.applied` (HEAD's route)."""
    monkeypatch.setattr(hooks, "_hook_table", lambda module, kind: None)
    monkeypatch.setattr(
        _Adjacent,
        "__call__",
        lambda self, module, x, out: self.applied(
            module, x, out, lambda rule: rule(module, x, out)
        ),
    )
    monkeypatch.setattr(_deeplift, "_SHARED_RULES", {})
    monkeypatch.setattr(_deeplift, "_MAX_SHARED", 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_paths_give_the_general_routes_numbers(dtype, monkeypatch):
    cases = _cases(dtype)
    fast = {name: call() for name, call in cases.items()}
    again = {name: call() for name, call in cases.items()}  # the shared rule set reused
    with monkeypatch.context() as patch:
        _general_routes(patch)
        general = {name: call() for name, call in _cases(dtype).items()}
    for name in cases:
        for got, repeat, want in zip(fast[name], again[name], general[name], strict=True):
            assert torch.equal(got, want), name
            assert torch.equal(repeat, want), name


def test_hooks_go_straight_into_the_tables_and_leave_them():
    model = _Net()
    seen: list[int] = []

    def rule(module, x, out):
        seen.append(len(module._forward_hooks) + len(module._forward_pre_hooks))
        return None

    with hooks.module_rules(model, {nn.ReLU: rule}) as matched:
        assert matched == [model.relu_inplace, model.shared]
        # the in-place ReLU gets a pre-hook and a hook, both under keys torch never uses
        assert list(model.relu_inplace._forward_pre_hooks)[0] < 0
        assert all(key < 0 for key in model.relu_inplace._forward_hooks)
        model(torch.randn(2, 2, 8, 8))
    assert seen == [2, 1, 1]
    assert module_hook_count(model) == 0


def test_the_rules_hooks_follow_the_models_own_hooks():
    model = _Net()
    order: list[str] = []
    handle = model.shared.register_forward_hook(lambda *a: order.append("user"))
    try:
        with hooks.module_rules(model, {nn.ReLU: lambda m, x, out: order.append("rule")}):
            model(torch.randn(1, 2, 8, 8))
    finally:
        handle.remove()
    # the in-place ReLU's rule, then the shared ReLU's two calls: its user hook first
    assert order == ["rule"] + ["user", "rule"] * 2
    assert module_hook_count(model) == 0


def test_hooks_removed_after_errors():
    model = _Net()
    calls = []

    def choose(module):  # fails at the second ruled module, after one registered
        if isinstance(module, nn.ReLU):
            calls.append(module)
            if len(calls) == 2:
                raise RuntimeError("no rule")
            return lambda m, x, out: None
        return None

    with pytest.raises(RuntimeError, match="no rule"):
        with hooks.module_rules(model, choose):
            pass
    assert module_hook_count(model) == 0

    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _Net()

        def forward(self, x):
            self.net(x)
            raise ValueError("model failed")

    failing = Failing()
    with pytest.raises(ValueError, match="model failed"):
        DeepLift(failing).attribute(torch.randn(2, 2, 8, 8), target=0)
    with pytest.raises(ValueError, match="model failed"):
        attr.DeepLift(failing).attribute(torch.randn(2, 2, 8, 8), target=0)
    with pytest.raises(ValueError, match="model failed"):  # a capture hook too
        attr.LayerDeepLift(failing, failing.net.conv2).attribute(torch.randn(2, 2, 8, 8), target=0)
    assert module_hook_count(failing) == 0
    assert not any(rules.in_forward() for rules in _deeplift._SHARED_RULES.values())


class _Meeting(nn.Module):
    """Waits for the other thread in every forward, so the two forwards overlap."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def forward(self, x: Tensor) -> Tensor:
        self.barrier.wait(timeout=30)
        return x


def test_two_threads_on_one_model_get_their_own_numbers():
    barrier = threading.Barrier(3)
    model = _Net(reuse=False).double().eval()
    model.conv = nn.Sequential(model.conv, _Meeting(barrier))
    x, per_example, distribution = _inputs(torch.float64)
    calls = [
        lambda: attr.DeepLift(model).attribute(x, per_example, target=2),
        lambda: (
            DeepLiftShap(model, reference_pass="paired")
            .attribute(x[:2], baselines=distribution, target=1)
            .attributions
        ),
        # a layer capture's hooks as well as the rules'
        lambda: attr.LayerDeepLift(model, model.fc).attribute(x, per_example, target=3),
    ]
    model.conv[1].barrier = threading.Barrier(1)
    expected = [call() for call in calls]
    model.conv[1].barrier = barrier
    results = run_together(*(lambda call=call: [call() for _ in range(4)] for call in calls))
    for got, want in zip(results, expected, strict=True):
        assert all(torch.equal(g, want) for g in got)
    assert module_hook_count(model) == 0


class _Nested(nn.Module):
    """ReLU -> (a facade DeepLift of another model, run in this forward) -> max pool: the
    pool's rule is skipped after the ReLU's (Captum's quirk), which the inner call's end
    must not forget."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.other = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        self.inner: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv(x))
        self.inner.append(attr.DeepLift(self.other).attribute(torch.ones(1, 4), target=0))
        return self.fc(self.pool(h).flatten(1))


def test_a_call_inside_a_forward_gets_its_own_rule_set(monkeypatch):
    torch.manual_seed(5)
    x, b = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    model = _Nested().eval()
    fast = attr.DeepLift(model).attribute(x, b, target=1)
    with monkeypatch.context() as patch:
        _general_routes(patch)
        general = attr.DeepLift(model).attribute(x, b, target=1)
    assert torch.equal(fast, general)
    assert torch.equal(model.inner[0], model.inner[-1])


def test_a_module_with_its_own_registration_registers_through_it():
    registered: list[str] = []

    class Registering(nn.ReLU):
        def register_forward_hook(self, hook, **kwargs):
            registered.append("forward")
            return super().register_forward_hook(hook, **kwargs)

        def register_forward_pre_hook(self, hook, **kwargs):
            registered.append("forward_pre")
            return super().register_forward_pre_hook(hook, **kwargs)

    model = nn.Sequential(nn.Linear(3, 4), Registering(), nn.Linear(4, 4), Registering(True))
    seen = []
    rules = {Registering: lambda m, x, out: seen.append(m)}
    with hooks.module_rules(model, rules):
        model(torch.randn(2, 3))
    assert registered == ["forward", "forward_pre", "forward"]
    assert seen == [model[1], model[3]]
    assert module_hook_count(model) == 0
