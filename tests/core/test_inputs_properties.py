"""Property-based tests of input / baseline / target handling: exact round trips or clear errors."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whybox.core.inputs import flatten, prepare_baselines, prepare_inputs
from whybox.core.targets import prepare_target
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods import IntegratedGradients

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
dtypes = st.sampled_from([torch.float32, torch.float64])
feature_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def nested(draw, depth=0):
    if depth >= 2 or draw(st.booleans()):
        shape = (draw(st.integers(1, 3)),) + draw(feature_shapes)
        return torch.randn(shape)
    kind = draw(st.sampled_from(["tuple", "list", "dict"]))
    children = draw(st.lists(nested(depth + 1), min_size=1, max_size=3))
    if kind == "dict":
        return {f"k{i}": child for i, child in enumerate(children)}
    return tuple(children) if kind == "tuple" else list(children)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a is b
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


@SETTINGS
@given(nested())
def test_flatten_rebuild_round_trip(value):
    leaves, structure = flatten(value, owner="test")
    assert structure.n_leaves == len(leaves)
    assert _same(structure.rebuild(leaves), value)


class SumLinear(torch.nn.Module):
    """f(x_1, ..., x_k) = sum_i <w_i, x_i>; IG is exactly (x - b) * w for every rule."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def forward(self, *xs):
        return sum((x * w).reshape(x.shape[0], -1).sum(1) for x, w in zip(xs, self.weights))


@SETTINGS
@given(
    batch=st.integers(1, 5),
    shapes=st.lists(feature_shapes, min_size=1, max_size=3),
    dtype=dtypes,
    chunk=st.one_of(st.integers(1, 40), st.just("auto")),
    as_tuple=st.booleans(),
    baseline_kind=st.sampled_from(["none", "scalar", "example", "full"]),
    n_steps=st.integers(1, 6),
)
def test_ig_structure_and_values_for_random_shapes(
    batch, shapes, dtype, chunk, as_tuple, baseline_kind, n_steps
):
    if not as_tuple:
        shapes = shapes[:1]
    xs = tuple(torch.randn((batch,) + s, dtype=dtype) for s in shapes)
    weights = tuple(torch.randn(s, dtype=dtype) for s in shapes)
    if baseline_kind == "none":
        baselines, base_values = None, tuple(torch.zeros_like(x) for x in xs)
    elif baseline_kind == "scalar":
        baselines, base_values = 0.5, tuple(torch.full_like(x, 0.5) for x in xs)
    elif baseline_kind == "example":
        per = tuple(torch.randn(s, dtype=dtype) for s in shapes)
        baselines, base_values = per, tuple(p.expand_as(x) for p, x in zip(per, xs))
    else:
        full = tuple(torch.randn_like(x) for x in xs)
        baselines, base_values = full, full
    inputs = xs if as_tuple else xs[0]
    if not as_tuple and baselines is not None and not isinstance(baselines, float):
        baselines = baselines[0]
    originals = tuple(x.clone() for x in xs)
    result = IntegratedGradients(SumLinear(weights)).attribute(
        inputs, baselines=baselines, n_steps=n_steps, chunk_size=chunk
    )
    got = result.attributions if as_tuple else (result.attributions,)
    assert isinstance(result.attributions, tuple) == as_tuple
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for g, x, b, w, original in zip(got, xs, base_values, weights, originals):
        assert g.shape == x.shape and g.dtype == dtype
        torch.testing.assert_close(g, (x - b) * w, atol=tol, rtol=tol)
        assert torch.equal(x, original) and not x.requires_grad
    assert result.delta.shape == (batch,)


@SETTINGS
@given(
    batch=st.integers(1, 4),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    baseline_shape=st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple),
)
def test_baselines_broadcast_or_clear_error(batch, shape, baseline_shape):
    x = torch.randn((batch,) + shape)
    inputs = prepare_inputs(x, owner="Test")
    baseline = torch.randn(baseline_shape)
    try:
        expected = torch.broadcast_to(
            baseline if baseline_shape != shape else baseline.unsqueeze(0), x.shape
        )
    except RuntimeError:
        expected = None
    if expected is None:
        with pytest.raises(ParameterError, match="'baselines' parameter of Test must be"):
            prepare_baselines(baseline, inputs, owner="Test")
    else:
        (got,) = prepare_baselines(baseline, inputs, owner="Test").expanded(inputs)
        assert torch.equal(got, expected)


@SETTINGS
@given(
    batch=st.integers(1, 4),
    classes=st.integers(1, 6),
    target=st.one_of(
        st.integers(-8, 8),
        st.lists(st.integers(-8, 8), min_size=1, max_size=5),
        st.tuples(st.integers(0, 7)),
    ),
)
def test_targets_select_or_clear_error(batch, classes, target):
    output = torch.randn(batch, classes)
    try:
        if isinstance(target, list):
            expected = output[torch.arange(batch), torch.tensor(target)]
            if len(target) != batch:
                expected = None
        else:
            index = target if isinstance(target, int) else target[0]
            expected = output[:, index]
    except IndexError:
        expected = None
    if expected is None:
        with pytest.raises(ParameterError, match="'target' parameter of Test must be"):
            prepare_target(target, batch, owner="Test").select(output)
    else:
        torch.testing.assert_close(
            prepare_target(target, batch, owner="Test").select(output), expected
        )


@SETTINGS
@given(n_inputs=st.integers(1, 3), n_baselines=st.integers(1, 4))
def test_mismatched_tuple_lengths_raise(n_inputs, n_baselines):
    xs = tuple(torch.randn(2, 3) for _ in range(n_inputs))
    baselines = tuple(torch.zeros(3) for _ in range(n_baselines))
    inputs = prepare_inputs(xs, owner="Test")
    if n_inputs == n_baselines:
        assert len(prepare_baselines(baselines, inputs, owner="Test").tensors) == n_inputs
    else:
        with pytest.raises(ParameterError, match="one baseline per input"):
            prepare_baselines(baselines, inputs, owner="Test")


def test_bad_types_raise_type_errors():
    with pytest.raises(ParameterTypeError, match=r"'inputs\[1\]' parameter of Test"):
        prepare_inputs([torch.zeros(2, 3), "text"], owner="Test")
    with pytest.raises(ParameterTypeError, match="'target' parameter of Test"):
        prepare_target(1.5, 2, owner="Test")
    with pytest.raises(ParameterError, match="one shared batch size|sharing one batch size"):
        prepare_inputs((torch.zeros(2, 3), torch.zeros(3, 3)), owner="Test")
