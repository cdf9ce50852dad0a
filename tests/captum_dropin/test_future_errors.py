"""A model whose ``Future`` fails: ``attribute_future`` returns a ``Future`` that raises the
model's error at ``wait()`` (Captum's callback chains fail there too); a model raising
before it returns a ``Future`` raises at once, as does ``attribute``."""

from __future__ import annotations

import pytest
import torch

import whybox.attr as W

CLASSES = [
    (W.FeatureAblation, {}),
    (W.FeaturePermutation, {}),
    (W.ShapleyValueSampling, {"n_samples": 2}),
    (W.ShapleyValues, {}),
]


def _failing_future(x: torch.Tensor) -> torch.futures.Future:
    future: torch.futures.Future = torch.futures.Future()
    future.set_exception(RuntimeError("the model's future broke"))
    return future


def _raising(x: torch.Tensor) -> torch.futures.Future:
    raise RuntimeError("the model broke before returning a future")


def _working(x: torch.Tensor) -> torch.futures.Future:
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(x.sum(dim=1) * 2)
    return future


@pytest.mark.parametrize("cls, options", CLASSES, ids=[c[0].__name__ for c in CLASSES])
def test_a_failed_model_future_fails_the_returned_future(cls, options):
    x = torch.rand(3, 4)
    returned = cls(_failing_future).attribute_future(x, **options)
    assert isinstance(returned, torch.futures.Future)
    with pytest.raises(RuntimeError, match="the model's future broke"):
        returned.wait()
    with pytest.raises(RuntimeError, match="before returning"):
        cls(_raising).attribute_future(x, **options)
    # a working future still works: on 2 * sum(x) (zero baselines) every feature's
    # attribution is 2 x
    result = cls(_working).attribute_future(x, **options).wait()
    if cls is W.FeaturePermutation:
        # f(x) - f(x with feature i shuffled across the batch) = 2 (x_i - x_shuffled_i):
        # each example's value is 2 x_i minus 2 times some batch member's x_i, and the
        # shuffle keeps the column, so every column of attributions sums to 0
        torch.testing.assert_close(result.sum(dim=0), torch.zeros(4), atol=1e-5, rtol=0)
        gaps = (2 * x[:, None, :] - result[:, None, :]) / 2  # the shuffled partner's x_i
        assert torch.isclose(gaps, x[None, :, :], atol=1e-5).any(dim=1).all()
    else:
        torch.testing.assert_close(result, 2 * x)


def test_futures_only_through_attribute_future():
    """``attribute`` refuses a model returning futures (Captum asserts), and Occlusion has
    no ``attribute_future`` (Captum's raises NotImplementedError)."""
    x = torch.rand(2, 4)
    with pytest.raises(AssertionError, match="Future"):
        W.FeatureAblation(_working).attribute(x)
    with pytest.raises(NotImplementedError):
        W.Occlusion(_working).attribute_future()
