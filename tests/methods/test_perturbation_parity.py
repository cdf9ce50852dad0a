"""Captum 0.9 parity for the perturbation family, batch-size invariance, batching and errors.

Captum is only the oracle here; whybox never imports it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import whybox.attr._perturbation as wa
from _support import ConvNet, MultiInputNet
from whybox.core.validation import ParameterError
from whybox.methods.ablation import FeatureAblation, FeaturePermutation, Occlusion

captum_attr = pytest.importorskip("captum.attr")

RTOL = 1e-5


def _close(actual, expected, atol=1e-6):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _close(a, e, atol)
        return
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=atol)


def _cells(h, w, cell):
    rows = torch.arange(h) // cell
    cols = torch.arange(w) // cell
    return (rows[:, None] * ((w + cell - 1) // cell) + cols[None, :]).view(1, 1, h, w)


@pytest.fixture
def image_case(conv_net):
    torch.manual_seed(3)
    return conv_net, torch.randn(3, 3, 16, 16)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"feature_mask": _cells(16, 16, 4)},
        {"feature_mask": _cells(16, 16, 4), "baselines": 0.25},
        {"baselines": torch.randn(1, 3, 16, 16)},
        {"feature_mask": torch.randint(0, 5, (3, 1, 16, 16))},  # one mask per example
        {"feature_mask": _cells(16, 16, 8), "perturbations_per_eval": 3},
    ],
)
def test_feature_ablation_parity(image_case, options):
    model, x = image_case
    target = [0, 4, 9]
    expected = captum_attr.FeatureAblation(model).attribute(x, target=target, **options)
    actual = wa.FeatureAblation(model).attribute(x, target=target, **options)
    _close(actual, expected)


def test_feature_ablation_parity_tuple_inputs_extra_args_and_cross_input_ids(multi_input_net):
    torch.manual_seed(4)
    x1, x2 = torch.randn(4, 5), torch.randn(4, 3)
    masks = (torch.tensor([[0, 0, 1, 2, 3]]), torch.tensor([[3, 4, 4]]))  # id 3 spans inputs
    for options in [{}, {"feature_mask": masks, "baselines": (0.5, torch.zeros(1, 3))}]:
        kwargs = dict(target=1, additional_forward_args=(torch.tensor(2.0), 0.1), **options)
        expected = captum_attr.FeatureAblation(multi_input_net).attribute((x1, x2), **kwargs)
        actual = wa.FeatureAblation(multi_input_net).attribute((x1, x2), **kwargs)
        _close(actual, expected)


def test_feature_ablation_scalar_per_batch_output():
    torch.manual_seed(5)
    weights = torch.randn(6)

    def total(x):  # e.g. a loss over the batch
        return (torch.tanh(x) * weights).sum()

    x = torch.randn(4, 6)
    mask = torch.tensor([[0, 0, 1, 1, 2, 2]])
    for options in [{}, {"feature_mask": mask}]:
        expected = captum_attr.FeatureAblation(total).attribute(x, **options)
        actual = wa.FeatureAblation(total).attribute(x, **options)
        assert actual.shape == (1, 6)
        _close(actual, expected)
    with pytest.raises(ParameterError, match="'feature_mask' parameter of FeatureAblation"):
        FeatureAblation(total).attribute(x, feature_mask=torch.randint(0, 3, (4, 6)))
    # a (1,)-shaped batch total on one example: batched forwards would mix perturbations,
    # so whybox notices (on its first forward) and then evaluates one perturbation per forward
    calls = []

    def total_1(x):
        calls.append(x.shape[0])
        return total(x).reshape(1)

    expected = captum_attr.ShapleyValues(total_1).attribute(x[:1], feature_mask=mask)
    calls.clear()
    _close(wa.ShapleyValues(total_1).attribute(x[:1], feature_mask=mask), expected)
    assert calls[0] > 1 and max(calls[1:]) == 1


@pytest.mark.parametrize(
    "windows, strides",
    [((3, 4, 4), None), ((3, 5, 5), (1, 3, 3)), ((3, 3, 3), 2), ((1, 16, 5), (1, 1, 4))],
)
def test_occlusion_parity(image_case, windows, strides):
    model, x = image_case
    expected = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=windows, strides=strides, target=2, baselines=0.1
    )
    actual = wa.Occlusion(model).attribute(
        x, sliding_window_shapes=windows, strides=strides, target=2, baselines=0.1
    )
    _close(actual, expected)


def test_occlusion_parity_tuple_inputs(multi_input_net):
    torch.manual_seed(6)
    inputs = (torch.randn(3, 5), torch.randn(3, 3))
    kwargs = dict(
        sliding_window_shapes=((2,), (2,)),
        strides=(1, 2),
        target=0,
        additional_forward_args=(1.5,),
        perturbations_per_eval=2,
    )
    expected = captum_attr.Occlusion(multi_input_net).attribute(inputs, **kwargs)
    _close(wa.Occlusion(multi_input_net).attribute(inputs, **kwargs), expected)


def test_shapley_values_parity(image_case):
    model, x = image_case
    mask = _cells(16, 16, 8)  # 4 features
    kwargs = dict(target=[1, 2, 3], feature_mask=mask, baselines=-0.2)
    expected = captum_attr.ShapleyValues(model).attribute(x, **kwargs)
    _close(wa.ShapleyValues(model).attribute(x, **kwargs), expected)


def test_shapley_value_sampling_reproduces_captum_draws(image_case):
    model, x = image_case
    mask = _cells(16, 16, 4)
    torch.manual_seed(7)
    expected = captum_attr.ShapleyValueSampling(model).attribute(
        x, target=3, feature_mask=mask, n_samples=3
    )
    torch.manual_seed(7)
    actual = wa.ShapleyValueSampling(model).attribute(x, target=3, feature_mask=mask, n_samples=3)
    _close(actual, expected)


def test_feature_permutation_reproduces_captum_draws(image_case, multi_input_net):
    model, x = image_case
    mask = _cells(16, 16, 4)
    torch.manual_seed(8)
    expected = captum_attr.FeaturePermutation(model).attribute(x, target=1, feature_mask=mask)
    torch.manual_seed(8)
    _close(wa.FeaturePermutation(model).attribute(x, target=1, feature_mask=mask), expected)
    inputs = (torch.randn(4, 5), torch.randn(4, 3))
    torch.manual_seed(9)
    expected = captum_attr.FeaturePermutation(multi_input_net).attribute(
        inputs, target=1, additional_forward_args=(1.0,)
    )
    torch.manual_seed(9)
    actual = wa.FeaturePermutation(multi_input_net).attribute(
        inputs, target=1, additional_forward_args=(1.0,)
    )
    _close(actual, expected)


def test_layer_and_neuron_feature_ablation_parity(image_case):
    model, x = image_case
    layer_mask = torch.arange(8).view(1, 8, 1, 1).expand(1, 8, 6, 6)
    for options in [{}, {"layer_mask": layer_mask, "layer_baselines": 0.1}]:
        expected = captum_attr.LayerFeatureAblation(model, model.conv2).attribute(
            x, target=1, **options
        )
        actual = wa.LayerFeatureAblation(model, model.conv2).attribute(x, target=1, **options)
        _close(actual, expected)
    expected = captum_attr.LayerFeatureAblation(model, model.conv2).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    actual = wa.LayerFeatureAblation(model, model.conv2).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    _close(actual, expected)
    mask = _cells(16, 16, 4)
    expected = captum_attr.NeuronFeatureAblation(model, model.conv2).attribute(
        x, (1, 2, 3), feature_mask=mask
    )
    actual = wa.NeuronFeatureAblation(model, model.conv2).attribute(x, (1, 2, 3), feature_mask=mask)
    _close(actual, expected)


class _Recorder(nn.Module):
    """Records the number of rows of every forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.inner(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: (wa.FeatureAblation(m), {"feature_mask": _cells(16, 16, 4)}),
        lambda m: (wa.Occlusion(m), {"sliding_window_shapes": (3, 6, 6), "strides": 4}),
        lambda m: (wa.ShapleyValues(m), {"feature_mask": _cells(16, 16, 8)}),
    ],
)
def test_batch_size_invariance_and_default_batching(image_case, make):
    model, x = image_case
    recorder = _Recorder(model)
    method, options = make(recorder)
    results = []
    for per_eval in (1, 2, 5, 1000):
        recorder.rows.clear()
        results.append(
            method.attribute(x, target=[0, 1, 2], perturbations_per_eval=per_eval, **options)
        )
        if per_eval > 1:
            assert max(recorder.rows) <= per_eval * x.shape[0]
        else:  # the default batches perturbations ("auto"), unlike Captum's 1
            assert max(recorder.rows) > x.shape[0]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0], rtol=1e-6, atol=1e-7)


def test_native_chunk_sizes_and_single_examples_agree(image_case):
    model, x = image_case
    mask = _cells(16, 16, 4)
    whole = FeatureAblation(model).attribute(x, target=[0, 1, 2], feature_mask=mask, chunk_size=1)
    for chunk in (7, "auto", 10_000):
        other = FeatureAblation(model).attribute(
            x, target=[0, 1, 2], feature_mask=mask, chunk_size=chunk
        )
        torch.testing.assert_close(other.attributions, whole.attributions)
    for i in range(3):
        single = FeatureAblation(model).attribute(x[i : i + 1], target=i, feature_mask=mask)
        torch.testing.assert_close(single.attributions[0], whole.attributions[i])


def test_integer_inputs_ablate_to_a_baseline_token():
    torch.manual_seed(10)
    embedding = nn.Embedding(20, 4)
    head = nn.Linear(4, 2)

    def model(tokens):
        return head(embedding(tokens).mean(dim=1))

    tokens = torch.randint(1, 20, (2, 6))
    expected = captum_attr.FeatureAblation(model).attribute(tokens, baselines=0, target=1)
    _close(wa.FeatureAblation(model).attribute(tokens, baselines=0, target=1), expected)


def test_clear_errors(image_case):
    model, x = image_case
    with pytest.raises(ParameterError, match="'perturbations_per_eval' parameter"):
        wa.FeatureAblation(model).attribute(x, target=0, perturbations_per_eval=0)
    with pytest.raises(ParameterError, match="'inputs' parameter of FeaturePermutation"):
        FeaturePermutation(model).attribute(x[:1], target=0)
    with pytest.raises(ParameterError, match="'sliding_window_shapes' parameter of Occlusion"):
        Occlusion(model).attribute(x, target=0, sliding_window_shapes=(3, 20, 2))
    with pytest.raises(ParameterError, match="'sliding_window_shapes' parameter of Occlusion"):
        Occlusion(model).attribute(x, target=0, sliding_window_shapes=(3, 2))
    with pytest.raises(ParameterError, match="'feature_mask' parameter of FeatureAblation"):
        FeatureAblation(model).attribute(x, target=0, feature_mask=torch.zeros(1, 5))
    with pytest.raises(ParameterError, match="'forward_func' parameter"):
        FeatureAblation(lambda t: torch.zeros(5)).attribute(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FeatureAblation(model).attribute(x, target=0, feature_mask=_cells(16, 16, 8))


def test_multi_input_native_results_keep_structure():
    torch.manual_seed(11)
    model = MultiInputNet().eval()
    inputs = {"x1": torch.randn(2, 5), "x2": torch.randn(2, 3)}
    result = FeatureAblation(model).attribute(inputs, target=0, forward_args={"scale": 1.0})
    assert set(result.attributions) == {"x1", "x2"}
    assert result.attributions["x1"].shape == (2, 5)


def test_conv_net_fixture_is_deterministic():
    # guards the parity tests above against a fixture drawing different weights
    torch.manual_seed(0)
    a = ConvNet()
    torch.manual_seed(0)
    b = ConvNet()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
