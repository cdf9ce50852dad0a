"""Issue 16's per-call fast paths give exactly what the general paths give.

* hot-path records (``Target``, ``Call``, ``Inputs``, ``RowBatch``) built without their
  frozen dataclasses' ``__init__`` hold the same fields, in the same order, with fresh
  mutable defaults per call;
* one input sizes an automatic chunk as the general sum does; a lone tensor's structure
  rebuilds as before and still refuses a wrong number of leaves;
* ``Bool`` options that hold a bool skip the constraint call, anything else is checked
  (a ``Bool`` subclass keeps its own rule);
* Integrated Gradients builds its whole-step rows without example indices only where
  nothing reads them: per-example targets, batched forward arguments and evaluator
  subclasses still get them;
* the class-based ``module_rules`` and ``ragged_inputs`` contexts clean up after errors
  as the generator-based ones did.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import fields, replace

import pytest
import torch
from torch import nn

import whybox.core.gradients as gradients
from whybox.core.call import Call, prepare_call
from whybox.core.chunks import resolve_chunk_rows
from whybox.core.forward import Evaluator, RowBatch, _row_batch
from whybox.core.hooks import _PROTECTED, module_rules
from whybox.core.inputs import _RAGGED, TENSOR, Inputs, prepare_inputs, ragged_inputs
from whybox.core.method import Bool
from whybox.core.targets import Target, prepare_target
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods import IntegratedGradients, Saliency


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))


def _same_record(made, expected) -> None:
    assert type(made) is type(expected)
    assert list(vars(made)) == [f.name for f in fields(expected)]  # every field, in order
    for f in fields(expected):
        a, b = getattr(made, f.name), getattr(expected, f.name)
        assert a is b or a == b, f.name
    assert made == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.kind = "x"  # still frozen


# -- records built without __init__ --------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, Target("none", owner="T", raw=None)),
        (0, Target("index", index=(0,), owner="T", raw=0)),
        (-2, Target("index", index=(-2,), owner="T", raw=-2)),
    ],
)
def test_simple_targets_equal_the_dataclass_and_own_their_mutable_fields(target, expected):
    made = prepare_target(target, 3, owner="T")
    _same_record(made, expected)
    again = prepare_target(target, 3, owner="T")
    # a fresh set / dict / list per target: one call's checks never leak into another's
    assert made.checked is not again.checked
    assert made.on_device is not again.on_device
    assert made.bounds is not again.bounds
    made.checked.add((4,))
    assert again.checked == set()


def test_bools_and_int_subclasses_keep_the_general_path():
    with pytest.raises(ParameterTypeError):
        prepare_target(True, 3, owner="T")  # a bool is not an index

    class Index(int):
        pass

    made = prepare_target(Index(1), 3, owner="T")
    assert made.kind == "index" and made.index == (1,) and type(made.raw) is Index


def test_prepared_call_equals_the_dataclass():
    model = _model()
    x = torch.randn(2, 3)
    call = prepare_call("T", model, x, target=1)
    expected = Call(
        "T",
        Inputs(call.inputs.tensors, TENSOR),
        call.target,
        call.extra,
        call.evaluator,
        call.chunk_rows,
        False,
        True,
    )
    _same_record(call, expected)
    _same_record(call.inputs, Inputs(call.inputs.tensors, TENSOR))
    assert call.inputs.tensors[0] is not x and torch.equal(call.inputs.tensors[0], x)
    assert not call.inputs.tensors[0].requires_grad
    # ``replace`` (used by methods to re-chunk a call) still works on it
    assert replace(call, chunk_rows=5).chunk_rows == 5


def test_row_batch_fast_constructor_equals_the_dataclass():
    rows = (torch.randn(2, 3),)
    index = torch.arange(2)
    _same_record(_row_batch(rows, index), RowBatch(rows, index))
    _same_record(_row_batch(rows, None), RowBatch(rows))


# -- chunk sizes and structures ------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 12), (0, 12), (3, 3, 32, 32), (5,), (2, 0, 3), (1, 1 << 19)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.float16])
def test_one_input_sizes_the_chunk_like_the_general_sum(shape, dtype):
    x = torch.zeros(shape, dtype=dtype)
    one = resolve_chunk_rows("auto", (x,), owner="T")
    # the same input twice halves the bytes-per-row budget: the sum is the general path
    half = torch.zeros((shape[0],), dtype=torch.uint8)  # 0 bytes per row beside x
    assert one == resolve_chunk_rows(None, [x], owner="T")
    assert one == resolve_chunk_rows("auto", (x, half), owner="T")


def test_a_lone_tensor_rebuilds_as_before():
    x = torch.randn(2, 3)
    assert TENSOR.rebuild((x,)) is x
    assert TENSOR.rebuild([x]) is x
    assert TENSOR.rebuild(t for t in (x,)) is x  # any iterable, as before
    with pytest.raises(ValueError, match="expected 1 leaves to rebuild, got 2"):
        TENSOR.rebuild((x, x))
    with pytest.raises(ValueError, match="expected 1 leaves to rebuild, got 0"):
        TENSOR.rebuild(())
    tup = prepare_inputs((x, x), owner="T")
    rebuilt = tup.restore(tup.tensors)
    assert isinstance(rebuilt, tuple) and len(rebuilt) == 2


# -- declared bool options ------------------------------------------------------------------
@pytest.mark.parametrize("value", [1, 0, None, "yes", torch.tensor(True)])
def test_non_bool_values_of_bool_options_are_still_refused(value):
    model = _model()
    x = torch.randn(2, 3)
    with pytest.raises(ParameterTypeError, match="'abs' parameter of Saliency must be a bool"):
        Saliency(model).attribute(x, target=0, abs=value)
    with pytest.raises(
        ParameterTypeError, match="'multiply_by_inputs' parameter of IntegratedGradients"
    ):
        IntegratedGradients(model, multiply_by_inputs=value).attribute(x, target=0)


class _Strict(Bool):
    """A ``Bool`` with its own rule (one bool is refused): the fast path must not skip it."""

    calls: list = []

    def __init__(self, forbidden: bool) -> None:
        object.__setattr__(self, "forbidden", forbidden)

    def __call__(self, owner, name, value):
        type(self).calls.append((name, value))
        if value is self.forbidden:
            raise ParameterError(f"{owner}: {name} may not be {value}", parameter=name)


class _StrictSaliency(Saliency):
    parameters = {"abs": _Strict(False), "attribute_to_layer_input": _Strict(True)}


def test_a_bool_subclass_constraint_is_still_called():
    model = _model()
    x = torch.randn(2, 3)
    _Strict.calls.clear()
    _StrictSaliency(model).attribute(x, target=0)
    assert _Strict.calls == [("attribute_to_layer_input", False)]  # the constructor option
    with pytest.raises(ParameterError, match="abs may not be False"):
        _StrictSaliency(model).attribute(x, target=0, abs=False)  # a call option
    with pytest.raises(ParameterError, match="attribute_to_layer_input may not be True"):
        _StrictSaliency(model, attribute_to_layer_input=True).attribute(x, target=0)


# -- example indices of path rows ------------------------------------------------------------
class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(3, 4)

    def forward(self, x, scale):
        return torch.tanh(self.linear(x)) * scale


@pytest.fixture
def seen_indices(monkeypatch) -> list:
    """The example index of every row batch Integrated Gradients evaluates."""
    seen: list = []
    original = Evaluator.gradients

    def spy(self, rows, **options):
        seen.append(rows.example_index)
        return original(self, rows, **options)

    monkeypatch.setattr(Evaluator, "gradients", spy)
    return seen


def _one_by_one(model, x, target, scale, n_steps):
    rows = []
    for i in range(x.shape[0]):
        t = target if isinstance(target, int) else int(target[i])
        rows.append(
            IntegratedGradients(model)
            .attribute(x[i : i + 1], target=t, forward_args=(scale[i : i + 1],), n_steps=n_steps)
            .attributions
        )
    return torch.cat(rows)


@pytest.mark.parametrize("chunk_size", ["auto", 3, 5])
def test_path_rows_keep_example_indices_where_they_are_read(seen_indices, chunk_size):
    model = _TwoInputs()
    x = torch.randn(3, 3)
    scale = torch.randn(3, 1)
    per_example = torch.tensor([0, 3, 1])
    result = IntegratedGradients(model).attribute(
        x, target=per_example, forward_args=(scale,), n_steps=4, chunk_size=chunk_size
    )
    assert seen_indices and all(index is not None for index in seen_indices)
    # each example's rows met its own target and forward argument
    expected = _one_by_one(model, x, per_example, scale, 4)
    torch.testing.assert_close(result.attributions, expected, rtol=1e-5, atol=1e-6)
    # a shared target, batched forward args: still indexed (the args are split by example)
    seen_indices.clear()
    shared = IntegratedGradients(model).attribute(
        x, target=2, forward_args=(scale,), n_steps=4, chunk_size=chunk_size
    )
    assert all(index is not None for index in seen_indices)
    torch.testing.assert_close(
        shared.attributions, _one_by_one(model, x, 2, scale, 4), rtol=1e-5, atol=1e-6
    )


def test_index_free_whole_steps_skip_the_index_and_give_the_same_numbers(seen_indices):
    model = _model()
    x = torch.randn(3, 3)
    fast = IntegratedGradients(model).attribute(x, target=1, n_steps=6).attributions
    assert seen_indices == [None]  # one whole-step chunk, nothing reads an index
    # the same rows with an index (a per-example target naming the same class everywhere)
    seen_indices.clear()
    indexed = (
        IntegratedGradients(model)
        .attribute(x, target=torch.tensor([1, 1, 1]), n_steps=6)
        .attributions
    )
    assert all(index is not None for index in seen_indices)
    assert torch.equal(fast, indexed)


def test_an_evaluator_subclass_still_gets_example_indices():
    model = _model()
    x = torch.randn(3, 3)
    call = prepare_call("T", model, x, target=1)
    seen: list = []

    class Watching(Evaluator):
        def gradients(self, rows, **options):
            seen.append(rows.example_index)
            return super().gradients(rows, **options)

    base = call.evaluator
    watching = Watching(base.forward_func, base.structure, base.extra, base.target, owner="T")
    assert not gradients._ignores_example_index(watching)
    assert gradients._ignores_example_index(base)
    alphas = torch.linspace(0, 1, 4)
    weights = torch.full((4,), 0.25)
    zeros = (torch.zeros_like(x),)
    plain = gradients.path_gradients(call, zeros, call.tensors, alphas, weights)
    watched = gradients.path_gradients(
        replace(call, evaluator=watching), zeros, call.tensors, alphas, weights
    )
    assert seen and all(
        index is not None and torch.equal(index, torch.arange(3).repeat(4)) for index in seen
    )
    assert torch.equal(plain[0], watched[0])


# -- class-based contexts ----------------------------------------------------------------------
def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_module_rules_walk_at_entry_and_clean_up_after_errors():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2), nn.ReLU())
    seen: list = []

    def rule(module, x, out):
        seen.append(module)
        return None

    context = module_rules(model, {nn.ReLU: rule})
    model.append(nn.ReLU())  # added before entry: the walk at entry sees it
    with context as matched:
        assert matched == [model[1], model[3], model[4]]
        assert _hook_count(model) == 4  # in-place: pre-hook + hook; the others: one each
        model(torch.randn(2, 3))
    assert seen == matched and _hook_count(model) == 0

    class Boom(Exception):
        pass

    before = dict(_PROTECTED)
    with pytest.raises(Boom):
        with module_rules(model, {nn.ReLU: rule}):
            # the in-place ReLU's pre-hook ran and left a clone, its forward hook never did
            model[1]._forward_hooks.clear()
            model(torch.randn(2, 3))
            assert len(_PROTECTED) > len(before)
            raise Boom
    assert _hook_count(model) == 0
    assert _PROTECTED == before  # the call's clones are dropped on the way out


def test_module_rules_remove_what_was_registered_when_registration_fails():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU())
    calls = {"n": 0}
    original = nn.Module.register_forward_hook

    def failing(self, hook, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("no more hooks")
        return original(self, hook, **kwargs)

    nn.Module.register_forward_hook = failing
    try:
        with pytest.raises(RuntimeError, match="no more hooks"):
            with module_rules(model, {nn.ReLU: lambda m, x, out: None}):
                pass  # pragma: no cover - never entered
    finally:
        nn.Module.register_forward_hook = original
    assert _hook_count(model) == 0


def test_ragged_inputs_reset_after_errors_and_nest():
    assert _RAGGED.get() is False
    with ragged_inputs():
        assert _RAGGED.get() is True
        with ragged_inputs(False):
            assert _RAGGED.get() is False
        assert _RAGGED.get() is True
    with pytest.raises(KeyError):
        with ragged_inputs(1):
            assert _RAGGED.get() is True  # ``bool(allowed)``
            raise KeyError
    assert _RAGGED.get() is False


# -- one method object, two threads ----------------------------------------------------------
def test_one_method_on_one_model_from_two_threads():
    model = _model()
    method = IntegratedGradients(model)
    xs = [torch.randn(4, 3) for _ in range(2)]
    expected = [method.attribute(x, target=i, n_steps=8).attributions for i, x in enumerate(xs)]
    results: dict = {}
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        results[i] = [method.attribute(xs[i], target=i, n_steps=8).attributions for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert all(torch.equal(r, expected[i]) for r in results[i])


# -- one walk for the module-rules check -------------------------------------------------------
def _reference_walk(model: nn.Module) -> list[nn.Module]:
    return list(model.modules())


def _models() -> list[nn.Module]:
    shared = nn.ReLU()
    inner = nn.Sequential(nn.Linear(2, 2), shared)
    with_shared = nn.Sequential(inner, shared, nn.Sequential(inner, nn.Tanh()), shared)
    with_none = nn.Sequential(nn.Linear(2, 2))
    with_none.register_module("empty", None)
    with_none.add_module("after", nn.Sequential(nn.ReLU(), nn.Sequential(nn.ReLU())))
    deep = nn.Sequential(nn.ReLU())
    for _ in range(30):
        deep = nn.Sequential(deep, nn.Identity())
    return [nn.Linear(2, 2), with_shared, with_none, deep, _TwoInputs()]


@pytest.mark.parametrize("index", range(5))
def test_walks_equal_modules_and_the_fingerprint(index):
    from whybox.core.hooks import submodules, walk_with_marks
    from whybox.core.model_checks import _fingerprint

    model = _models()[index]
    walk = submodules(model)
    assert walk == _reference_walk(model)
    assert [id(m) for m in walk] == [id(m) for m in _reference_walk(model)]
    marked, fingerprint = walk_with_marks(model)
    assert marked == walk and fingerprint == _fingerprint(walk)
    # a module compiled in place is marked (its id negated), in the walk's one pass
    walk[-1].__dict__["_compiled_call_impl"] = lambda *a: None
    try:
        _, again = walk_with_marks(model)
        assert again == _fingerprint(walk) and again[-1] == -id(walk[-1])
    finally:
        del walk[-1].__dict__["_compiled_call_impl"]


# -- one tensor baseline ----------------------------------------------------------------------
def _general_baselines(baselines, inputs, **options):
    """The general path: the same baselines given as a one-element list."""
    from whybox.core.inputs import prepare_baselines

    return prepare_baselines([baselines], inputs, owner="T", **options)


@pytest.mark.parametrize("distribution", [False, True])
@pytest.mark.parametrize(
    ("x_dtype", "b_dtype", "b_shape"),
    [
        (torch.float32, torch.float32, (4, 3)),
        (torch.float32, torch.float64, (4, 3)),
        (torch.float64, torch.float32, (3,)),
        (torch.int64, torch.int64, (1, 3)),
        (torch.int64, torch.float32, (4, 3)),
        (torch.float32, torch.int64, ()),
    ],
)
def test_one_tensor_baseline_is_the_general_result(distribution, x_dtype, b_dtype, b_shape):
    from whybox.core.inputs import prepare_baselines

    inputs = prepare_inputs(torch.ones(4, 3, dtype=x_dtype), owner="T")
    baseline = torch.full(b_shape, 2, dtype=b_dtype)
    fast = prepare_baselines(baseline, inputs, owner="T", distribution=distribution)
    general = _general_baselines(baseline, inputs, distribution=distribution)
    assert all(
        a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        for a, b in zip(fast.tensors, general.tensors, strict=True)
    )
    assert fast.distribution is distribution and len(fast.tensors) == 1
    if b_dtype == x_dtype or not x_dtype.is_floating_point:
        # nothing to convert: the caller's tensor itself (a view at most), as ``to`` gave
        assert fast.tensors[0].untyped_storage().data_ptr() == baseline.untyped_storage().data_ptr()
    else:
        assert fast.tensors[0].dtype == x_dtype


def test_one_tensor_baseline_errors_are_the_general_ones():
    from whybox.core.inputs import prepare_baselines

    inputs = prepare_inputs(torch.ones(4, 3), owner="T")
    with pytest.raises(ParameterError) as fast:
        prepare_baselines(torch.ones(5, 3), inputs, owner="T")
    with pytest.raises(ParameterError) as general:
        _general_baselines(torch.ones(5, 3), inputs)
    assert str(fast.value) == str(general.value)
    two = prepare_inputs((torch.ones(4, 3), torch.ones(4, 2)), owner="T")
    with pytest.raises(ParameterError, match="a tuple with one baseline per input"):
        prepare_baselines(torch.ones(4, 3), two, owner="T")
