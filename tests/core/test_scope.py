"""Scopes (whybox.core.scope): input / layer / neuron scope as one polymorphic object.

Each property is checked against values computed directly (forward hooks, autograd on the
model's own pieces), never against another whybox code path.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _support import module_hook_count
from whybox.core.forward import RowBatch
from whybox.core.gradients import row_gradients
from whybox.core.scope import InputScope, LayerScope, NeuronScope, scope_of
from whybox.core.validation import ParameterError
from whybox.methods import LRP, DeepLift, FeatureAblation, Occlusion, Saliency
from whybox.methods.lrp import IdentityRule

OWNER = "ScopeTest"


class TupleLayer(nn.Module):
    """A layer returning two tensors (like an LSTM's ``(output, state)``)."""

    def forward(self, x):
        return x[:, :2] * 2.0, torch.tanh(x[:, 2:])


class Net(nn.Module):
    """Linear -> ReLU -> a tuple-returning layer -> Linear head; one module never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.split = TupleLayer()
        self.head = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 4)
        self.calls = 0

    def after_lin(self, h):
        """The model from the output of ``lin`` on (the part a layer scope differentiates)."""
        a, b = self.split(self.act(h))
        return self.head(torch.cat([a, b], dim=1))

    def forward(self, x):
        self.calls += 1
        return self.after_lin(self.lin(x))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(5, 4)


def direct(model: nn.Module, layer: nn.Module, rows: torch.Tensor, *, to_input: bool = False):
    """The layer's output (or input) tensors on ``rows``, recorded by a plain forward hook."""
    seen: list = []

    def keep(value):
        values = value if isinstance(value, tuple) else (value,)
        seen[:] = [v.detach().clone() for v in values]

    if to_input:
        handle = layer.register_forward_pre_hook(lambda m, args: keep(args))
    else:
        handle = layer.register_forward_hook(lambda m, args, out: keep(out))
    try:
        with torch.no_grad():
            model(rows)
    finally:
        handle.remove()
    return seen


# -- scope_of ---------------------------------------------------------------------------------
def test_scope_of_picks_the_scope_for_the_layer_and_neuron_settings(net):
    assert isinstance(scope_of(net, None, owner=OWNER), InputScope)
    layer = scope_of(net, net.lin, owner=OWNER)
    assert isinstance(layer, LayerScope) and layer.site.layers == (net.lin,)
    assert not layer.several
    several = scope_of(net, [net.lin, net.split], to_input=True, owner=OWNER)
    assert isinstance(several, LayerScope) and several.several and several.site.to_input
    assert isinstance(scope_of(net, net.lin, neuron=(1,), owner=OWNER), NeuronScope)


@pytest.mark.parametrize("layer", [None, "list"], ids=["no layer", "several layers"])
def test_scope_of_rejects_a_neuron_without_exactly_one_layer(net, layer):
    layer = [net.lin, net.head] if layer == "list" else layer
    with pytest.raises(
        ParameterError, match="'layer' parameter of ScopeTest must be one nn.Module"
    ):
        scope_of(net, layer, neuron=(0,), owner=OWNER)


def test_scope_of_rejects_a_layer_that_is_not_a_module(net):
    with pytest.raises(ParameterError, match="'layer' parameter of ScopeTest must be an nn.Module"):
        scope_of(net, "lin", owner=OWNER)


# -- endpoints ---------------------------------------------------------------------------------
def test_input_scope_endpoints_are_baselines_and_inputs(net, x):
    scope = scope_of(net, None, owner=OWNER)
    call = scope.prepare(x, target=0)
    baselines = (torch.full_like(x, 0.5),)
    starts, ends = scope.endpoints(call, baselines)
    assert starts[0] is baselines[0]
    assert torch.equal(ends[0], x)
    assert scope.tap is None and scope.substitution is None and scope.output_layers == ()


@pytest.mark.parametrize(
    "name, to_input", [("lin", False), ("split", False), ("head", True)], ids=str
)
def test_layer_scope_endpoints_are_the_layer_values_on_baselines_and_inputs(net, x, name, to_input):
    layer = getattr(net, name)
    scope = scope_of(net, layer, to_input=to_input, owner=OWNER)
    call = scope.prepare(x, target=0)
    baseline = torch.randn(1, 4)
    starts, ends = scope.endpoints(call, (baseline,))
    expected_starts = direct(net, layer, baseline.expand_as(x), to_input=to_input)
    expected_ends = direct(net, layer, x, to_input=to_input)
    assert len(starts) == len(ends) == len(expected_ends)
    for got, want in zip(starts + ends, expected_starts + expected_ends):
        torch.testing.assert_close(got, want)
    assert scope.layout == [len(expected_ends)]
    assert scope.substitution is scope.site
    assert module_hook_count(net) == 0


def test_layer_scope_output_layers_are_the_layers_only_for_their_outputs(net):
    assert scope_of(net, [net.lin, net.head], owner=OWNER).output_layers == (net.lin, net.head)
    assert scope_of(net, net.lin, to_input=True, owner=OWNER).output_layers == ()


# -- results in Captum's conventions ------------------------------------------------------------
@pytest.mark.parametrize(
    "layers, shape",
    [
        ("lin", "tensor"),
        ("split", ("tensor", "tensor")),
        (["lin"], ["tensor"]),
        (["lin", "split"], ["tensor", ("tensor", "tensor")]),
    ],
    ids=["one layer", "tuple layer", "list of one", "several layers"],
)
def test_layer_scope_result_follows_captums_convention(net, x, layers, shape):
    names = layers if isinstance(layers, list) else [layers]
    layer = [getattr(net, n) for n in layers] if isinstance(layers, list) else getattr(net, layers)
    scope = scope_of(net, layer, owner=OWNER)
    call = scope.prepare(x, target=0)
    # the layers' values, flattened over layers, as a method's leaves would be
    leaves = tuple(t for n in names for t in direct(net, getattr(net, n), x))
    delta = torch.zeros(len(x))
    result = scope.result(Saliency(net, layer=layer), call, leaves, delta=delta)

    def form(value):
        if isinstance(value, torch.Tensor):
            return "tensor"
        return type(value)(form(v) for v in value)

    assert form(result.attributions) == shape
    flat = []
    for part in result.attributions if isinstance(layers, list) else [result.attributions]:
        flat.extend(part if isinstance(part, tuple) else (part,))
    assert len(flat) == len(leaves) and all(f is leaf for f, leaf in zip(flat, leaves))
    assert result.delta is delta and result.parameters["layer"] == str(layer)


def test_groups_without_a_recorded_layout_count_the_layer_tensors(net, x):
    # a fresh scope has seen no forward: one single-row forward counts a tuple layer's tensors
    scope = scope_of(net, [net.split, net.lin], owner=OWNER)
    call = scope.prepare(x, target=0)
    leaves = tuple(torch.zeros(5, k) for k in (2, 2, 4))
    assert [len(g) for g in scope.groups(call, leaves)] == [2, 1]
    assert scope.arrange(["a", "b"]) == ["a", "b"]
    assert scope_of(net, net.lin, owner=OWNER).arrange(["a"]) == "a"
    assert scope_of(net, None, owner=OWNER).arrange(["a"]) == "a"


def test_input_scope_result_is_shaped_like_the_inputs(net, x):
    scope = scope_of(net, None, owner=OWNER)
    call = scope.prepare((x,), target=0)
    result = scope.result(Saliency(net), call, (x * 2,), extras={"note": 1})
    assert isinstance(result.attributions, tuple) and torch.equal(result.attributions[0], x * 2)
    assert result.extras == {"note": 1}
    assert scope.groups(call, (x,)) == [(x,)]


def test_zeros_have_the_scopes_shapes_for_an_empty_batch(net):
    empty = torch.zeros(0, 4)
    layer = scope_of(net, net.split, owner=OWNER)
    zeros = layer.zeros(layer.prepare(empty))
    assert [tuple(z.shape) for z in zeros] == [(0, 2), (0, 2)] and layer.layout == [2]
    inputs = scope_of(net, None, owner=OWNER)
    assert [tuple(z.shape) for z in inputs.zeros(inputs.prepare(empty))] == [(0, 4)]


# -- neuron scope ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, selector, to_input, pick",
    [
        ("lin", (2,), False, lambda v: v[:, 2]),
        ("lin", (slice(1, 3),), False, lambda v: v[:, 1:3].sum(1)),
        ("lin", lambda v: v.pow(2).sum(1), False, lambda v: v.pow(2).sum(1)),
        ("head", (3,), True, lambda v: v[:, 3]),
    ],
    ids=["index", "slice sum", "callable", "layer input"],
)
def test_neuron_scope_model_outputs_the_selected_neuron(net, x, layer, selector, to_input, pick):
    module = getattr(net, layer)
    scope = scope_of(net, module, neuron=selector, to_input=to_input, owner=OWNER)
    with torch.no_grad():
        got = scope.model(x)
    want = pick(direct(net, module, x, to_input=to_input)[0])
    torch.testing.assert_close(got, want)
    assert got.shape == (len(x),)
    # the maths is the input scope's: gradients are the neuron's, w.r.t. the inputs
    call = scope.prepare(x)
    grads, _ = row_gradients(call)
    leaf = x.clone().requires_grad_(True)
    values = torch.cat(net.split(net.act(net.lin(leaf))), 1) if to_input else net.lin(leaf)
    (want_grad,) = torch.autograd.grad(pick(values).sum(), leaf)
    torch.testing.assert_close(grads[0], want_grad)
    assert module_hook_count(net) == 0


def test_neuron_scope_stops_the_model_after_the_layer(net, x):
    ran = []
    handle = net.head.register_forward_hook(lambda *args: ran.append(1))
    try:
        scope_of(net, net.lin, neuron=(0,), owner=OWNER).model(x)
    finally:
        handle.remove()
    assert ran == []


# -- taps, recorded values, one forward -------------------------------------------------------
def test_layer_tap_gives_the_layers_gradient_and_values_from_one_forward(net, x):
    scope = scope_of(net, net.lin, owner=OWNER)
    call = scope.prepare(x, target=1)
    recorded: list = []
    before = net.calls
    grads, outputs = row_gradients(call, tap=scope.tap, record=recorded)
    assert net.calls == before + 1
    values = scope.values(call.tensors, recorded)
    h = net.lin(x).detach().requires_grad_(True)
    out = net.after_lin(h)[:, 1]
    (want,) = torch.autograd.grad(out.sum(), h)
    torch.testing.assert_close(grads[0], want)
    torch.testing.assert_close(values[0], h.detach())
    torch.testing.assert_close(outputs, out.detach())
    assert scope.layout == [1] and module_hook_count(net) == 0


def test_recording_tap_keeps_the_layer_values_of_the_forward(net, x):
    scope = scope_of(net, net.split, owner=OWNER)
    store: list = []
    with scope.recording_tap(store)():
        net(x)
    for got, want in zip(store, direct(net, net.split, x)):
        torch.testing.assert_close(got, want)
    assert len(store) == 2 and not any(t.requires_grad for t in store)
    inputs = scope_of(net, None, owner=OWNER)
    assert inputs.recording_tap(store) is None
    assert inputs.values((x,), store)[0] is x


def test_tap_fails_clearly_when_the_layer_did_not_run_and_removes_its_hooks(net, x):
    scope = scope_of(net, net.unused, owner=OWNER)
    with pytest.raises(ParameterError, match=r"'layer' parameter.*Linear.*was not called"):
        with scope.tap():
            net(x)
    assert module_hook_count(net) == 0
    call = scope.prepare(x, target=0)
    with pytest.raises(ParameterError, match="was not called"):
        row_gradients(call, tap=scope.tap)
    with pytest.raises(ParameterError, match="was not called"):
        scope.endpoints(call, (torch.zeros(1, 4),))
    with pytest.raises(ParameterError, match="was not called"):
        scope.perturbation(call)
    assert module_hook_count(net) == 0


def test_an_error_inside_the_tap_propagates_and_removes_the_hooks(net, x):
    scope = scope_of(net, net.lin, owner=OWNER)
    with pytest.raises(RuntimeError, match="inside"):
        with scope.tap():
            raise RuntimeError("inside")  # the layer never ran: the error is the user's
    assert module_hook_count(net) == 0


# -- perturbation of a layer -------------------------------------------------------------------
def test_layer_perturbation_feeds_layer_values_in_place_of_the_layers_own(net, x):
    scope = scope_of(net, net.lin, owner=OWNER)
    call = scope.prepare(x, target=2, float_inputs=False)
    space = scope.perturbation(call)
    torch.testing.assert_close(space.tensors[0], direct(net, net.lin, x)[0])
    assert space.values.batch_size == len(x)
    changed = space.tensors[0] * -1.5 + 0.25
    index = torch.tensor([3, 0, 4])  # rows of examples 3, 0, 4
    rows = space.rows(RowBatch((changed[index],), index))
    assert torch.equal(rows.inputs[0], x[index])  # the model runs on the real inputs
    got = space.call.evaluator.outputs(rows)
    with torch.no_grad():
        want = net.after_lin(changed[index])[:, 2]
    torch.testing.assert_close(got, want)
    assert module_hook_count(net) == 0
    inputs = scope_of(net, None, owner=OWNER)
    plain = inputs.prepare(x)
    same = inputs.perturbation(plain)
    assert same.call is plain and same.tensors == plain.tensors
    batch = RowBatch((x,))
    assert same.rows(batch) is batch


# -- methods on the scope: no extra forward ------------------------------------------------------
def test_layer_methods_take_values_and_gradients_from_the_same_forward(net, x):
    before = net.calls
    result = DeepLift(net, layer=net.split).attribute(x, target=0, chunk_size=1000)
    assert net.calls == before + 1  # inputs and references paired in one forward
    assert isinstance(result.attributions, tuple) and len(result.attributions) == 2
    before = net.calls
    lrp = LRP(net, layer=net.split, rules={TupleLayer: IdentityRule()})
    lrp.attribute(x, target=0, chunk_size=1000)
    assert net.calls == before + 1  # the tuple layer's layout comes from that forward too
    before = net.calls
    FeatureAblation(net, layer=net.lin).attribute(x, target=0, chunk_size=1000)
    assert net.calls == before + 2  # the layer's values, then all ablations in one chunk
    assert module_hook_count(net) == 0


def test_every_perturbation_method_perturbs_the_layer_through_the_scope(net, x):
    # one-element windows over the layer's values are single-feature ablations of them
    occluded = Occlusion(net, layer=net.lin).attribute(x, sliding_window_shapes=(1,), target=0)
    ablated = FeatureAblation(net, layer=net.lin).attribute(x, target=0)
    assert occluded.attributions.shape == (len(x), 4)
    torch.testing.assert_close(occluded.attributions, ablated.attributions)
    # and the drop of one ablated unit is the model's, computed directly from the layer on
    with torch.no_grad():
        h = net.lin(x)
        off = h.clone()
        off[:, 1] = 0.0
        want = net.after_lin(h)[:, 0] - net.after_lin(off)[:, 0]
    torch.testing.assert_close(ablated.attributions[:, 1], want)
