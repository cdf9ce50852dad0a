"""Captum 0.9's DeepLift backward-hook functions at ``whybox.attr._core.deep_lift`` (imported
by Captum's newer ``test_deeplift_classification.py``): the same values as Captum's."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from whybox.attr._core import deep_lift as W

C = pytest.importorskip("captum.attr._core.deep_lift")


def _pair_batch(shape, generator, ties=True):
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    if ties:  # some positions where the input equals its reference (|dx| < eps)
        half = shape[0] // 2
        x[half:].view(-1)[::5] = x[:half].reshape(-1)[::5]
    return x


@pytest.mark.parametrize("activation", [torch.tanh, torch.sigmoid, torch.relu])
def test_nonlinear_and_softmax_equal_captums(activation):
    g = torch.Generator().manual_seed(0)
    inputs = _pair_batch((6, 5), g)
    outputs = activation(inputs)
    grad_input = torch.randn(inputs.shape, generator=g, dtype=torch.float64)
    grad_output = torch.randn(inputs.shape, generator=g, dtype=torch.float64)
    args = (nn.Tanh(), inputs, outputs, grad_input, grad_output)
    for name in ("nonlinear", "softmax"):
        ours, theirs = getattr(W, name)(*args), getattr(C, name)(*args)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
        ours, theirs = getattr(W, name)(*args, eps=0.5), getattr(C, name)(*args, eps=0.5)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    # where input and reference agree the ordinary gradient is kept
    tied = (inputs[:3] - inputs[3:]).abs() < 1e-10
    assert bool(tied.any())
    kept = W.nonlinear(*args)[:3][tied]
    assert torch.equal(kept, grad_input[:3][tied])


@pytest.mark.parametrize(
    "module, shape, name",
    [
        (nn.MaxPool1d(2), (4, 3, 8), "maxpool1d"),
        (nn.MaxPool2d(2, stride=1), (4, 2, 5, 5), "maxpool2d"),
        (nn.MaxPool2d(3, stride=2, padding=1), (6, 2, 7, 7), "maxpool2d"),
        (nn.MaxPool3d(2), (2, 1, 4, 4, 4), "maxpool3d"),
    ],
)
def test_maxpool_equals_captums(module, shape, name):
    g = torch.Generator().manual_seed(1)
    inputs = _pair_batch(shape, g, ties=False)
    outputs = module(inputs)
    module.input = inputs  # what Captum's forward pre-hook leaves on the module
    grad_input = torch.randn(inputs.shape, generator=g, dtype=torch.float64)
    grad_output = torch.randn(outputs.shape, generator=g, dtype=torch.float64)
    args = (module, inputs, outputs, grad_input, grad_output)
    ours, theirs = getattr(W, name)(*args), getattr(C, name)(*args)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    assert ours.shape == inputs.shape
    pool, unpool = {1: (F.max_pool1d, F.max_unpool1d), 2: (F.max_pool2d, F.max_unpool2d)}.get(
        inputs.dim() - 2, (F.max_pool3d, F.max_unpool3d)
    )
    torch.testing.assert_close(W.maxpool(module, pool, unpool, *args[1:]), ours, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="part of the input"):
        W.maxpool(module, pool, unpool, inputs, outputs, grad_input[:1], grad_output)


def test_the_table_is_captums():
    assert set(W.SUPPORTED_NON_LINEAR) == set(C.SUPPORTED_NON_LINEAR)
    for kind, fn in C.SUPPORTED_NON_LINEAR.items():
        assert W.SUPPORTED_NON_LINEAR[kind].__name__ == fn.__name__
