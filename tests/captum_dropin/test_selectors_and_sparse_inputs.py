"""Captum behaviours the facade reproduces, side by side with the installed Captum:
neuron selectors on layers with several outputs, batch-aggregate and short selectors,
GuidedGradCam with an unknown ``interpolate_mode``, and sparse inputs (first dimensions that
differ from the batch) in FeatureAblation / FeaturePermutation."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import whybox.attr as W
from whybox import methods
from whybox.core.validation import ParameterError

C = pytest.importorskip("captum.attr")


class PairRelu(nn.Module):
    """A layer returning two tensors."""

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return torch.relu(a), torch.relu(b)


class TwoOutputLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 4)
        self.pair = PairRelu()
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        left, right = self.pair(self.a(x), self.b(x))
        return self.head(left + 2 * right)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.out = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.relu(self.lin(x)))


class PoolNet(nn.Module):
    """A layer of shape ``(N, 1, 1)``: a max pool over four features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.lin1 = nn.Linear(4, 4, bias=False)
        self.pool = nn.MaxPool1d(4)
        self.lin2 = nn.Linear(1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.pool(self.lin1(x.unsqueeze(1)))[:, 0, :])


class SparseNet(nn.Module):
    """A batch ``(N, 3)`` and a sparse list ``(L,)``; one value for the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[3.0, 1.0, 2.0]]))
            self.lin.bias.zero_()

    def forward(self, dense: Tensor, sparse: Tensor) -> Tensor:
        return (self.lin(dense) + (sparse[0] if sparse.numel() else 0)).sum()


def _x() -> Tensor:
    return torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.2], [-0.4, 0.8, 1.1]])


def _both(make, call):
    """``call(instance)`` for Captum's class and whybox's, warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(make(C)), call(make(W))


def _close(expected, actual, atol=1e-5):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for e, a in zip(expected, actual):
            _close(e, a, atol)
        return
    assert actual.shape == expected.shape
    assert torch.allclose(actual.detach().double(), expected.detach().double(), atol=atol)


# -- neuron selectors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["NeuronGradient", "NeuronIntegratedGradients", "NeuronConductance"]
)
@pytest.mark.parametrize("part", [0, 1])
def test_a_callable_selector_gets_every_tensor_of_a_layer_with_several(name, part):
    model, x = TwoOutputLayerNet(), _x()

    def select(values):
        assert isinstance(values, tuple) and len(values) == 2  # Captum passes the tuple
        return values[part][:, 1]

    kwargs = {"target": 0} if name == "NeuronConductance" else {}
    kwargs.update({"method": "gausslegendre"} if name != "NeuronGradient" else {})
    expected, actual = _both(
        lambda lib: getattr(lib, name)(model, model.pair),
        lambda m: m.attribute(x, select, **kwargs),
    )
    _close(expected, actual)


def test_an_index_selector_on_a_layer_with_several_tensors_is_a_clear_error():
    model = TwoOutputLayerNet()
    with pytest.raises(AssertionError, match="neuron_selector.*callable"):
        W.NeuronGradient(model, model.pair).attribute(_x(), (1,))


@pytest.mark.parametrize(
    "name",
    ["NeuronGradient", "NeuronIntegratedGradients", "NeuronDeepLift", "NeuronFeatureAblation"],
)
def test_a_selector_returning_one_value_for_the_batch_is_a_batch_aggregate(name):
    # Captum accepts torch.sum(x[:, 2:]): gradients of the aggregate; ablation of the batch
    model, x = Mlp(), _x()
    expected, actual = _both(
        lambda lib: getattr(lib, name)(model, model.relu),
        lambda m: m.attribute(x, lambda values: torch.sum(values[:, 2:])),
    )
    _close(expected, actual)
    if name == "NeuronFeatureAblation":
        assert actual.shape == (1, 3)  # one attribution for the batch, as in Captum


def test_a_short_index_tuple_names_one_neuron_when_the_rest_has_size_one():
    model, x = PoolNet(), torch.randn(2, 4)
    baselines = torch.randn(2, 4)
    expected, actual = _both(
        lambda lib: lib.NeuronDeepLift(model, model.pool),
        lambda m: m.attribute(x, neuron_selector=0, baselines=baselines),
    )
    _close(expected, actual)
    # the same neuron as the layer's input of lin2, selected in full
    full = W.NeuronDeepLift(model, model.lin2).attribute(
        x, neuron_selector=0, baselines=baselines, attribute_to_neuron_input=True
    )
    _close(full, actual)


def test_a_short_index_tuple_over_several_neurons_stays_an_error():
    model = Mlp()
    conv = nn.Sequential(nn.Conv1d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6, 1))
    with pytest.raises(AssertionError, match="one index per non-batch dimension"):
        W.NeuronGradient(conv, conv[0]).attribute(torch.randn(2, 1, 3), (1,))
    with pytest.raises(AssertionError, match="one index per non-batch dimension"):
        W.NeuronGradient(model, model.lin).attribute(_x(), ())


# -- GuidedGradCam: an interpolate_mode F.interpolate does not know --------------------------
def test_guided_grad_cam_unknown_mode_gives_empty_tensors_and_names_the_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    x = torch.rand(1, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = C.GuidedGradCam(model, model[0]).attribute(
            x, target=0, interpolate_mode="made_up"
        )
    with pytest.warns(UserWarning, match="interpolate_mode='made_up'"):
        actual = W.GuidedGradCam(model, model[0]).attribute(x, target=0, interpolate_mode="made_up")
    assert expected.shape == actual.shape == (0,)
    # a known mode is unaffected; the native method still refuses the unknown one
    _close(
        C.GuidedGradCam(model, model[0]).attribute(x, target=0, interpolate_mode="bilinear"),
        W.GuidedGradCam(model, model[0]).attribute(x, target=0, interpolate_mode="bilinear"),
    )
    with pytest.raises(ParameterError, match="interpolate_mode"):
        methods.GuidedGradCam(model, model[0]).attribute(x, target=0, interpolate_mode="made_up")


# -- sparse inputs: first dimensions that differ ---------------------------------------------
DENSE = torch.tensor([[1.0, -2.0, 3.0], [2.0, -1.0, 3.0]])
SPARSE_LISTS = {
    "list": torch.tensor([1, 7, 2, 4, 5, 3, 6]),
    "empty": torch.tensor([]),
}


@pytest.mark.parametrize("sparse", list(SPARSE_LISTS))
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"baselines": (1.0, 2)},
        {"feature_mask": (torch.tensor([[0, 0, 1]]), torch.tensor([2]))},
    ],
    ids=["default", "baselines", "mask"],
)
def test_feature_ablation_with_a_sparse_list_matches_captum(sparse, options):
    inputs = (DENSE, SPARSE_LISTS[sparse])
    expected, actual = _both(
        lambda lib: lib.FeatureAblation(SparseNet()), lambda m: m.attribute(inputs, **options)
    )
    _close(expected, actual)
    assert actual[1].shape == (1,)  # one value per batch: (1, *sparse.shape[1:])


def test_feature_ablation_closed_form_for_a_sparse_list():
    # f = sum_rows(w . dense) + N * sparse[0]: the list's drop is N * sparse[0]
    attributions = W.FeatureAblation(SparseNet()).attribute((DENSE, torch.tensor([5, 1, 9])))
    assert torch.equal(attributions[0], torch.tensor([[9.0, -3.0, 12.0]]))
    assert torch.equal(attributions[1], torch.tensor([10.0]))


def test_a_sparse_list_is_fed_whole_with_one_perturbation_per_forward():
    seen = []

    def per_example(dense: Tensor, sparse: Tensor) -> Tensor:
        seen.append(sparse.shape[0])
        return dense @ torch.tensor([3.0, 1.0, 2.0]) + sparse.sum()

    sparse = torch.tensor([1.0, 7.0, 2.0])
    one = C.FeatureAblation(per_example).attribute((DENSE, sparse))
    seen.clear()
    for chunk in (1, 3):  # the chunk size never changes the result here
        _close(
            one,
            W.FeatureAblation(per_example).attribute((DENSE, sparse), perturbations_per_eval=chunk),
        )
    assert set(seen) == {3}
    assert one[1].shape == (2,)  # one value per example: (N, *sparse.shape[1:])


@pytest.mark.parametrize("sparse", list(SPARSE_LISTS))
def test_feature_permutation_with_a_sparse_list_draws_as_captum(sparse):
    inputs = (DENSE, SPARSE_LISTS[sparse])
    results = []
    for lib in (C, W):
        torch.manual_seed(11)
        results.append([lib.FeaturePermutation(SparseNet()).attribute(inputs) for _ in range(5)])
    for expected, actual in zip(*results):
        _close(expected, actual)
        assert actual[1].shape == (1,)


def test_native_ablation_accepts_sparse_lists_only_in_input_space():
    model = SparseNet()
    native = methods.FeatureAblation(model).attribute((DENSE, torch.tensor([4, 2])))
    assert torch.equal(native.attributions[1], torch.tensor([8.0]))
    with pytest.raises(ParameterError, match="first dimension 1"):
        methods.FeatureAblation(model).attribute(
            (DENSE, torch.tensor([4, 2, 1])),
            feature_mask=(torch.tensor([[0, 1, 2]]), torch.arange(3)),
        )
    with pytest.raises(ParameterError, match="sharing one batch size"):
        methods.FeatureAblation(model, layer=model.lin).attribute((DENSE, torch.tensor([4, 2, 1])))
    with pytest.raises(ParameterError, match="sharing one batch size"):
        methods.IntegratedGradients(model).attribute((DENSE, torch.tensor([4.0, 2.0, 1.0])))


# -- a deliberate difference (README): LRP through a function combining inputs -------------
class SumOfInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.lin = nn.Linear(3, 2, bias=False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.lin(a + b)


def test_lrp_facade_duplicates_the_relevance_of_a_sum_as_captum_native_splits_it():
    from whybox.methods.lrp import LRP as NativeLRP

    model = SumOfInputs()
    inputs = (torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 6.0, 9.0]]))
    expected, actual = _both(lambda lib: lib.LRP(model), lambda m: m.attribute(inputs, target=0))
    _close(expected[0], expected[1])  # Captum: each input gets the relevance of a + b
    _close(expected, actual)  # the facade: Captum's flow
    native = NativeLRP(model).attribute(inputs, target=0).attributions
    _close(expected[0], native[0] + native[1])  # natively the shares add up to it
    _close(native[0] * 3, native[1])  # in proportion to each input's part of the sum
    assert torch.allclose(native[0].sum() + native[1].sum(), model(*inputs)[0, 0].detach())
