"""Assertions, seeding and the ``BaseTest`` fixture of Captum 0.9's test suite.

Same names, signatures and pass/fail behaviour as ``captum.testing.helpers.basic``, so
that Captum's tests run unchanged against whybox after the rename.
"""

from __future__ import annotations

import copy
import random
import unittest
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from whybox.log import patch_methods

ReturnType = TypeVar("ReturnType")


def deep_copy_args(func: Callable[..., ReturnType]) -> Callable[..., ReturnType]:
    """Wrap ``func`` so that it receives deep copies of all of its arguments.

    Parameters
    ----------
    func : callable
        The function to wrap (typically a test body that mutates its inputs).

    Returns
    -------
    callable
        A function that deep-copies every positional and keyword argument, then
        calls ``func`` with the copies, so the caller's objects are never modified.
    """

    def copy_args(*args: Any, **kwargs: Any) -> ReturnType:
        copied_args = [copy.deepcopy(arg) for arg in args]
        copied_kwargs = {name: copy.deepcopy(value) for name, value in kwargs.items()}
        return func(*copied_args, **copied_kwargs)

    return copy_args


def assertTensorAlmostEqual(
    test: unittest.TestCase,
    actual: Tensor,
    expected: Any,
    delta: float = 0.0001,
    mode: str = "sum",
) -> None:
    """Assert that ``actual`` is within ``delta`` of ``expected``.

    Parameters
    ----------
    test : unittest.TestCase
        The running test; its ``assertAlmostEqual`` reports the failure.
    actual : Tensor
        The computed tensor. Anything else is an ``AssertionError``.
    expected : Tensor or array_like
        The reference. A non-tensor (number, nested list) is converted to a tensor of
        ``actual``'s dtype. Shapes must match exactly.
    delta : float, default 0.0001
        The allowed difference.
    mode : {"sum", "max"}, default "sum"
        ``"sum"``: the sum of absolute differences over all elements must be at most
        ``delta``. ``"max"``: every element must differ by at most ``delta``; the
        failure message names the first index (along dimension 0) that does not.

    Raises
    ------
    AssertionError
        If the tensors differ by more than allowed, or shapes differ.
    ValueError
        If ``mode`` is neither ``"sum"`` nor ``"max"``.
    """
    assert isinstance(actual, torch.Tensor), (
        "Actual parameter given for comparison must be a tensor."
    )
    if not isinstance(expected, torch.Tensor):
        expected = torch.tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected.shape, (
        f"Expected tensor with shape: {expected.shape}. Actual shape {actual.shape}."
    )
    # compare on the CPU so that tensors on different devices can be compared
    actual = actual.cpu()
    expected = expected.cpu()
    if mode == "sum":
        total_difference = torch.sum(torch.abs(actual - expected)).item()
        test.assertAlmostEqual(total_difference, 0.0, delta=delta)
    elif mode == "max":
        # two empty tensors are equal, but have no maximum to compare
        if actual.numel() == expected.numel() == 0:
            return
        if actual.dim() == 0:
            largest_difference = torch.max(torch.abs(actual - expected)).item()
            test.assertAlmostEqual(largest_difference, 0.0, delta=delta)
            return
        # row by row, so that the message points at the first row that differs
        for index, (actual_row, expected_row) in enumerate(zip(actual, expected)):
            row_close = (abs(actual_row - expected_row) <= delta).all()
            assert row_close, (
                f"Values at index {index}, {actual_row} and {expected_row}, "
                f"differ more than by {delta}"
            )
    else:
        raise ValueError("Mode for assertion comparison must be one of `max` or `sum`.")


def assertTensorTuplesAlmostEqual(
    test: unittest.TestCase,
    actual: Any,
    expected: Any,
    delta: float = 0.0001,
    mode: str = "sum",
) -> None:
    """Assert that two tensors, or two equally long tuples of tensors, are close.

    Parameters
    ----------
    test : unittest.TestCase
        The running test.
    actual : Tensor or sequence of Tensor
        The computed value(s).
    expected : Tensor, array_like or tuple
        When a tuple, ``actual`` must have the same length and each pair is compared
        with :func:`assertTensorAlmostEqual`; otherwise the two are compared directly.
    delta : float, default 0.0001
        The allowed difference per pair.
    mode : {"sum", "max"}, default "sum"
        See :func:`assertTensorAlmostEqual`.
    """
    if not isinstance(expected, tuple):
        assertTensorAlmostEqual(test, actual, expected, delta, mode)
        return
    assert len(actual) == len(expected), (
        f"the length of actual {len(actual)} != expected {len(expected)}"
    )
    for actual_item, expected_item in zip(actual, expected):
        assertTensorAlmostEqual(test, actual_item, expected_item, delta, mode)


def assertTupleOfListOfTensorsAlmostEqual(
    test: unittest.TestCase,
    actual: Any,
    expected: Any,
    delta: float = 0.0001,
    mode: str = "sum",
) -> None:
    """Assert that two tuples of lists of tensors match element by element.

    Parameters
    ----------
    test : unittest.TestCase
        The running test.
    actual : tuple of list of Tensor, or Tensor
        The computed value.
    expected : tuple of list of Tensor, or Tensor
        When a tuple, ``actual`` must also be a tuple of the same length, and each
        position must hold two lists of the same length, compared tensor by tensor.
        Otherwise the two are compared with :func:`assertTensorAlmostEqual`.
    delta : float, default 0.0001
        The allowed difference per tensor pair.
    mode : {"sum", "max"}, default "sum"
        See :func:`assertTensorAlmostEqual`.
    """
    if not isinstance(expected, tuple):
        assertTensorAlmostEqual(test, actual, expected, delta, mode)
        return
    assert isinstance(actual, tuple), (
        f"Both actual and expected must be tuples, got {type(actual)} and {type(expected)}"
    )
    assert len(actual) == len(expected), f"Tuple lengths differ: {len(actual)} != {len(expected)}"
    for i, (actual_list, expected_list) in enumerate(zip(actual, expected)):
        assert isinstance(actual_list, list) and isinstance(expected_list, list), (
            f"Elements at index {i} must be lists, got "
            f"{type(actual_list)} and {type(expected_list)}"
        )
        assert len(actual_list) == len(expected_list), (
            f"List lengths at tuple index {i} differ: {len(actual_list)} != {len(expected_list)}"
        )
        for actual_tensor, expected_tensor in zip(actual_list, expected_list):
            assertTensorAlmostEqual(test, actual_tensor, expected_tensor, delta, mode)


def assertAttributionComparision(
    test: unittest.TestCase,
    attributions1: Tensor | tuple[Tensor, ...],
    attributions2: Tensor | tuple[Tensor, ...],
) -> None:
    """Assert that two attributions agree row by row to within 0.05 (``"max"`` mode).

    The name keeps Captum's spelling. Both arguments are iterated in step (a tensor
    over its first dimension, a tuple over its members), then each of those over its
    rows; ``zip`` stops at the shorter of each pair, as in Captum.

    Parameters
    ----------
    test : unittest.TestCase
        The running test.
    attributions1, attributions2 : Tensor or tuple of Tensor
        The attributions to compare.
    """
    for attribution1, attribution2 in zip(attributions1, attributions2):
        for row1, row2 in zip(attribution1, attribution2):
            assertTensorAlmostEqual(test, row1, row2, 0.05, "max")


def assert_delta(test: unittest.TestCase, delta: Tensor) -> None:
    """Assert that every convergence delta is below ``1e-5`` in absolute value.

    Parameters
    ----------
    test : unittest.TestCase
        The running test.
    delta : Tensor
        Per-example convergence deltas (sum of attributions minus the difference of
        the outputs at the input and at the baseline).
    """
    all_small = (delta.abs() < 0.00001).all()
    test.assertTrue(
        all_small,
        f"The sum of attribution values {delta} for relu layer is not "
        "nearly equal to the difference between the endpoint for "
        "some samples",
    )


def set_all_random_seeds(seed: int = 1234) -> None:
    """Seed Python's, NumPy's and torch's (CPU and all CUDA) generators with ``seed``.

    Also makes cuDNN pick deterministic algorithms, so repeated runs give the same
    numbers.

    Parameters
    ----------
    seed : int, default 1234
        The seed for every generator.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True


def lcg(a: int = 16843009, b: int = 3014898611, m: int = 1 << 32) -> Generator[int, None, None]:
    """Linear congruential generator.

    Parameters
    ----------
    a : int, default 16843009
        The multiplier.
    b : int, default 3014898611
        The increment.
    m : int, default ``2**32``
        The modulus.

    Yields
    ------
    int
        ``x = (a * x + b) % m``, starting from ``x = 1`` (which is not yielded).
    """
    state = 1
    while True:
        state = (a * state + b) % m
        yield state


def rand_like(a: Tensor) -> Tensor:
    """Deterministic pseudo-random numbers in ``[0, 1)`` with ``a``'s shape.

    torch does not promise the same random draws across releases, commits or
    platforms (https://pytorch.org/docs/stable/notes/randomness.html); this draws
    from :func:`lcg` instead, so the numbers never change.

    Parameters
    ----------
    a : Tensor
        Gives the shape, dtype and device of the result.

    Returns
    -------
    Tensor
        The first ``a.numel()`` values of a fresh :func:`lcg`, divided by ``2**32``.
    """
    generator = lcg()
    values = [next(generator) / (1 << 32) for _ in range(a.numel())]
    return torch.tensor(values, dtype=a.dtype, device=a.device).reshape(a.shape)


class BaseTest(unittest.TestCase):
    """Base class for the tests: every test starts from the same random state.

    Many torch initialisations are random; seeding all generators with 1234 before
    each test makes the tests deterministic. ``setUp`` also applies
    :func:`whybox.log.patch_methods` (a no-op hook kept for Captum compatibility).
    """

    def setUp(self) -> None:
        set_all_random_seeds(1234)
        patch_methods(self)


def extracted_features_equal(a: Any, b: Any) -> bool:
    """Whether two extracted-feature structures are exactly equal.

    Parameters
    ----------
    a, b : Tensor, list of Tensor, or tuple of (Tensor or list of Tensor)
        The structures to compare. Tensors are compared with :func:`torch.equal`;
        lists must have the same length and hold tensors; tuples are compared
        member by member, recursively.

    Returns
    -------
    bool
        True if both have the same structure and all tensors are equal; False
        otherwise, including when the two are of different kinds.
    """
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(extracted_features_equal(x, y) for x, y in zip(a, b))
    return False
