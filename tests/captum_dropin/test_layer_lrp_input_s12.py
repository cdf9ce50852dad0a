"""LayerLRP with ``attribute_to_layer_input=True`` gives Captum 0.9's numbers also where the
layer's input feeds other computations (residual branches, an activation) or is a view or
the model's input: Captum's input hook multiplies that tensor's WHOLE gradient by its value
and reports the product. The facade hooks the tensor the layer's capture stands for and
reports the hook's own result, whatever ``autograd.grad`` records for the tapped tensor
(before its hooks where the gradient flows on to another tapped tensor, after them where
not)."""

import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.methods.lrp import LRP as NativeLRP

C = pytest.importorskip("captum.attr")

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require")

RTOL = 1e-8  # relative to the largest magnitude of Captum's tensor, float64


class _ResMLP(nn.Module):
    """``out(relu(lin2(relu(lin1(h))) + h))``; ``h`` is the model's input, or ``lin0(x)``."""

    def __init__(self, stem: bool):
        super().__init__()
        if stem:
            self.lin0 = nn.Linear(5, 6)
        self.lin1, self.r1, self.lin2 = nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6)
        self.r2, self.out = nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        h = self.lin0(x) if hasattr(self, "lin0") else x
        return self.out(self.r2(self.lin2(self.r1(self.lin1(h))) + h))


class _ResCNN(nn.Module):
    """A residual conv block, max pool, ``torch.flatten`` and a linear head."""

    def __init__(self):
        super().__init__()
        self.c0, self.r0 = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU()
        self.c1, self.r1 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        h = self.r0(self.c0(x))
        h = self.r2(self.c2(self.r1(self.c1(h))) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


class _ViewCNN(nn.Module):
    """The head's input is a view (``torch.flatten`` or ``Tensor.view``)."""

    def __init__(self, use_view: bool):
        super().__init__()
        self.use_view = use_view
        self.c0, self.r0, self.pool = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.r1, self.fc2 = nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 3)

    def forward(self, x):
        h = self.pool(self.r0(self.c0(x)))
        h = h.view(h.shape[0], -1) if self.use_view else torch.flatten(h, 1)
        return self.fc2(self.r1(self.fc1(h)))


class _ViewResidual(nn.Module):
    """A view that feeds the layer and a residual sum."""

    def __init__(self):
        super().__init__()
        self.c0, self.r0, self.pool = nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.r1, self.fc2 = nn.Linear(36, 36), nn.ReLU(), nn.Linear(36, 3)

    def forward(self, x):
        h = torch.flatten(self.pool(self.r0(self.c0(x))), 1)
        return self.fc2(self.r1(self.fc1(h)) + h)


class _InPlace(nn.Module):
    """An in-place ReLU makes the layer's input, which also feeds a residual sum."""

    def __init__(self):
        super().__init__()
        self.lin1, self.r1 = nn.Linear(5, 6), nn.ReLU(inplace=True)
        self.lin2, self.r2, self.out = nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        h = self.r1(self.lin1(x))
        return self.out(self.r2(self.lin2(h)) + h)


class _ReLUTwice(nn.Module):
    """One ReLU called twice (Captum refuses a ruled layer called twice)."""

    def __init__(self):
        super().__init__()
        self.lin1, self.r, self.lin2, self.out = (
            nn.Linear(5, 6),
            nn.ReLU(),
            nn.Linear(6, 6),
            nn.Linear(6, 3),
        )

    def forward(self, x):
        return self.out(self.r(self.lin2(self.r(self.lin1(x)))))


class _ActivationAndLayer(nn.Module):
    """The layer's input also feeds an activation, run before or after the layer."""

    def __init__(self, activation_first: bool):
        super().__init__()
        self.activation_first = activation_first
        self.lin0, self.lin1, self.r, self.out = (
            nn.Linear(5, 6),
            nn.Linear(6, 6),
            nn.ReLU(),
            nn.Linear(6, 3),
        )

    def forward(self, x):
        h = self.lin0(x)
        if self.activation_first:
            a = self.r(h)
            b = self.lin1(h)
        else:
            b = self.lin1(h)
            a = self.r(h)
        return self.out(a + b)


_IMAGE = (4, 2, 6, 6)
_VECTOR = (4, 5)

#: name -> (make the model, input shape, names of the layers to explain: one or a list)
CASES = {
    "residual_mlp_on_the_model_input": (
        lambda: _ResMLP(stem=False),
        (4, 6),
        ["lin1", "lin2", ["lin1", "out"]],
    ),
    "residual_mlp": (
        lambda: _ResMLP(stem=True),
        _VECTOR,
        ["lin0", "lin1", "lin2", ["lin0", "lin1"], ["lin1", "lin2"], ["lin2", "lin0"]],
    ),
    "residual_cnn": (_ResCNN, _IMAGE, ["c0", "c1", "c2", "fc", ["c0", "c1"], ["c1", "fc"]]),
    "flatten_cnn": (lambda: _ViewCNN(False), _IMAGE, ["fc1", ["c0", "fc1"], ["fc1", "fc2"]]),
    "view_cnn": (lambda: _ViewCNN(True), _IMAGE, ["fc1", ["c0", "fc1"], ["fc1", "fc2"]]),
    "view_residual": (_ViewResidual, _IMAGE, ["fc1", ["c0", "fc1"], ["fc1", "fc2"]]),
    "in_place_relu_before": (_InPlace, _VECTOR, ["lin1", "lin2", ["lin1", "lin2"]]),
    "relu_called_twice": (_ReLUTwice, _VECTOR, ["lin1", "lin2", ["lin1", "lin2", "out"]]),
    "activation_first": (lambda: _ActivationAndLayer(True), _VECTOR, ["lin1", ["lin0", "lin1"]]),
    "activation_after": (
        lambda: _ActivationAndLayer(False),
        _VECTOR,
        ["lin1", ["lin0", "lin1"]],
    ),
}


def _build(name):
    make, shape, layers = CASES[name]
    torch.manual_seed(sorted(CASES).index(name))
    model = make().double().eval()
    x = torch.randn(*shape, dtype=torch.float64)
    return model, x, layers


def _modules(model, names):
    if isinstance(names, list):
        return [getattr(model, n) for n in names]
    return getattr(model, names)


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flat(item)]
    return [value]


def _assert_captums(mine, captums):
    mine, captums = _flat(mine), _flat(captums)
    assert len(mine) == len(captums)
    for got, want in zip(mine, captums):
        assert got.shape == want.shape and got.dtype == want.dtype == torch.float64
        scale = want.detach().abs().max().item()
        gap = (got.detach() - want.detach()).abs().max().item()
        assert gap <= RTOL * max(scale, 1e-300), (gap, scale)


def _params():
    for name, (_, _, layers) in CASES.items():
        for index in range(len(layers)):
            yield pytest.param(name, index, id=f"{name}-{index}")


@pytest.mark.parametrize("to_input", [True, False])
@pytest.mark.parametrize("name, index", list(_params()))
def test_layer_lrp_equals_captum(name, index, to_input):
    model, x, layers = _build(name)
    names = layers[index]
    state = model_state(model)
    options = dict(target=1, attribute_to_layer_input=to_input)
    mine = W.LayerLRP(model, _modules(model, names)).attribute(x.clone(), **options)
    mine_with, delta = W.LayerLRP(model, _modules(model, names)).attribute(
        x.clone(), return_convergence_delta=True, **options
    )
    # nothing left behind: no module hooks, no rule attributes, parameters untouched
    assert module_hook_count(model) == 0
    assert_same_state(model, state)
    assert not any("rule" in vars(m) for m in model.modules())
    assert all(p._backward_hooks is None for p in model.parameters())
    captums = C.LayerLRP(model, _modules(model, names)).attribute(x.clone(), **options)
    captums_with, captums_delta = C.LayerLRP(model, _modules(model, names)).attribute(
        x.clone(), return_convergence_delta=True, **options
    )
    _assert_captums(mine, captums)
    _assert_captums(mine_with, captums_with)
    _assert_captums(delta, captums_delta)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_layers_input_relevance_does_not_depend_on_the_other_layers(name):
    """The layer's relevance alone equals its entry among several layers (the tapped
    gradient is recorded before a tensor's hooks exactly when another tapped tensor lies
    below it: the result must not depend on that)."""
    model, x, layers = _build(name)
    singles = [n for n in layers if not isinstance(n, list)]
    together = W.LayerLRP(model, _modules(model, singles)).attribute(
        x, target=0, attribute_to_layer_input=True
    )
    for names, got in zip(singles, together):
        alone = W.LayerLRP(model, _modules(model, names)).attribute(
            x, target=0, attribute_to_layer_input=True
        )
        torch.testing.assert_close(got, alone, rtol=1e-12, atol=1e-12)


def test_input_tensor_untouched_and_hook_free():
    model, x, _ = _build("residual_mlp_on_the_model_input")
    before = x.clone()
    W.LayerLRP(model, [model.lin1, model.out]).attribute(x, target=2, attribute_to_layer_input=True)
    assert torch.equal(x, before)
    assert not x.requires_grad and x.grad is None and x._backward_hooks is None
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("name", ["residual_mlp", "view_residual", "in_place_relu_before"])
def test_native_captum_flow_chunks_give_captums_layer_input_relevance(name):
    model, x, layers = _build(name)
    x = torch.cat([x, x.flip(0)[:3] * 0.5])  # 7 rows: uneven chunks of 2
    names = [n for n in layers if not isinstance(n, list)]
    captums = C.LayerLRP(model, _modules(model, names)).attribute(
        x, target=0, attribute_to_layer_input=True
    )
    for chunk_size in (2, 7):
        native = NativeLRP(
            model,
            layer=_modules(model, names),
            attribute_to_layer_input=True,
            relevance_flow="captum",
        ).attribute(x, target=0, chunk_size=chunk_size)
        _assert_captums(native.attributions, captums)
    assert module_hook_count(model) == 0
