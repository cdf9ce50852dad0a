"""NeuronConductance in one forward per chunk (issue 16): same maths as the two-walk form.

The reference here is written out with plain autograd, per path point: ``dF/dy`` from the
full model, ``dy/dx`` from the neuron alone, multiplied and summed with the rule's weights.
"""

import pytest
import torch
from torch import nn

import whybox.attr as W
from whybox.core.paths import path_plan_tensors
from whybox.methods import NeuronConductance


class SkipNet(nn.Module):
    """A conv block with a skip connection around ``block``: the skip path bypasses it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Tanh())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.stem(x))
        return self.head(h + self.block(h) * h)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(3, 6)
        self.mid = nn.Linear(6, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.mid(torch.tanh(self.a(x) + self.b(z))))
        return self.out(hidden) + x[:, :2] ** 2


def _reference(model, layer, inputs, baselines, neuron, target, n_steps, rule, to_input=False):
    """Conductance from its definition, one path point at a time (no engine)."""
    alphas, weights = path_plan_tensors(
        rule, n_steps, dtype=inputs[0].dtype, device=inputs[0].device, owner="test"
    )
    totals = [torch.zeros_like(x) for x in inputs]
    for alpha, weight in zip(alphas, weights):
        points = [(b + alpha * (x - b)).requires_grad_(True) for x, b in zip(inputs, baselines)]
        seen = {}

        def grab(module, args, output=None, seen=seen):
            seen["y"] = args[0] if to_input else output

        handle = (
            layer.register_forward_pre_hook(grab) if to_input else layer.register_forward_hook(grab)
        )
        try:
            output = model(*points)
        finally:
            handle.remove()
        y = seen["y"]
        f = output[torch.arange(output.shape[0]), target].sum()
        (dfdy,) = torch.autograd.grad(f, y, retain_graph=True)
        through = dfdy[(slice(None),) + neuron]
        neuron_value = y[(slice(None),) + neuron].sum()
        dydx = torch.autograd.grad(neuron_value, points, allow_unused=True, materialize_grads=True)
        for total, grad in zip(totals, dydx):
            total += weight * through.view((-1,) + (1,) * (grad.dim() - 1)) * grad
    return tuple((x - b) * t for x, b, t in zip(inputs, baselines, totals))


def _count_forwards(model):
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    return rows, handle


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_matches_definition_with_a_skip_connection(rule):
    torch.manual_seed(0)
    model = SkipNet().eval()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    model = model.double()
    baseline = torch.full_like(x, 0.1)
    target = torch.tensor([0, 2, 1])
    got = NeuronConductance(model, model.block).attribute(
        x, neuron=(1, 2, 3), baselines=baseline, target=target, n_steps=7, rule=rule
    )
    (expected,) = _reference(model, model.block, (x,), (baseline,), (1, 2, 3), target, 7, rule)
    torch.testing.assert_close(got.attributions, expected, rtol=1e-10, atol=1e-12)


def test_one_forward_per_chunk_and_no_neuron_model_run():
    torch.manual_seed(1)
    model = SkipNet().eval()
    x = torch.randn(4, 3, 6, 6)
    rows, handle = _count_forwards(model)
    try:
        NeuronConductance(model, model.block).attribute(
            x, neuron=(0, 1, 1), target=0, n_steps=5, chunk_size=20
        )
        assert rows == [20]  # all 5 steps x 4 examples, once: no second walk
        rows.clear()
        NeuronConductance(model, model.block).attribute(
            x, neuron=(0, 1, 1), target=0, n_steps=5, chunk_size=8
        )
        assert rows == [8, 8, 4]  # whole steps per chunk, each row run once
    finally:
        handle.remove()


def test_facade_runs_the_model_once_like_captum():
    C = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    model = SkipNet().eval()
    x = torch.randn(2, 3, 6, 6)
    counts = {}
    for name, module in (("whybox", W), ("captum", C)):
        rows, handle = _count_forwards(model)
        try:
            module.NeuronConductance(model, model.block).attribute(
                x, neuron_selector=(2, 0, 5), target=1, n_steps=6
            )
        finally:
            handle.remove()
        counts[name] = rows
    assert counts["whybox"] == counts["captum"] == [12]


@pytest.mark.parametrize("to_input", [False, True])
def test_two_inputs_and_layer_input(to_input):
    torch.manual_seed(3)
    model = TwoInputs().double()
    x = torch.randn(3, 5, dtype=torch.float64)
    z = torch.randn(3, 3, dtype=torch.float64)
    baselines = (torch.zeros_like(x), torch.full_like(z, -0.2))
    target = torch.tensor([1, 0, 1])
    got = NeuronConductance(model, model.mid, attribute_to_layer_input=to_input).attribute(
        (x, z), neuron=(2,), baselines=baselines, target=target, n_steps=9
    )
    expected = _reference(
        model, model.mid, (x, z), baselines, (2,), target, 9, "gausslegendre", to_input
    )
    assert len(got.attributions) == 2
    for ours, theirs in zip(got.attributions, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_block_and_callable_selectors_keep_captum_semantics():
    # a block is summed in both factors (Captum's convention), a callable is differentiated
    torch.manual_seed(4)
    model = TwoInputs().double()
    x = torch.randn(2, 5, dtype=torch.float64)
    z = torch.randn(2, 3, dtype=torch.float64)
    method = NeuronConductance(model, model.mid)
    block = method.attribute((x, z), neuron=(slice(1, 3),), target=0, n_steps=4)
    same = method.attribute((x, z), neuron=lambda y: y[:, 1:3].sum(dim=1), target=0, n_steps=4)
    for a, b in zip(block.attributions, same.attributions):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    one = method.attribute((x, z), neuron=(1,), target=0, n_steps=4)
    assert not torch.allclose(block.attributions[0], one.attributions[0])
