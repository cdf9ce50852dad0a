"""``whybox.testing.helpers.basic_models`` against Captum 0.9's
``captum.testing.helpers.basic_models``: the same names and, for every model and the
constructor variants Captum's tests use, the same structure, parameters, RNG use, module
call order, outputs and gradients under the same seed."""

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.futures import Future

from whybox.testing.helpers import basic_models as W

C = pytest.importorskip("captum.testing.helpers.basic_models")


def _defined_names(module: Any) -> set[str]:
    """Public top-level classes and functions defined in ``module`` (not imported into it)."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }


CAPTUM_NAMES = sorted(_defined_names(C))


# --------------------------------------------------------------------------------------
# forward inputs: builders taking a generator, returning (args, kwargs)
# --------------------------------------------------------------------------------------


def _randn(*shape: int) -> Callable[[torch.Generator], Tensor]:
    return lambda g: torch.randn(*shape, generator=g)


def _call(*args: Any, **kwargs: Any) -> Callable[[torch.Generator], tuple[tuple, dict]]:
    """Builds a forward call; callables among the arguments are drawn from the generator."""

    def build(g: torch.Generator) -> tuple[tuple, dict]:
        def draw(v: Any) -> Any:
            if callable(v):
                return v(g)
            if isinstance(v, (list, tuple)):
                return type(v)(draw(x) for x in v)
            return v

        return tuple(draw(a) for a in args), {k: draw(v) for k, v in kwargs.items()}

    return build


X3 = _randn(4, 3)


def _ids(n: int, high: int) -> Callable[[torch.Generator], Tensor]:
    return lambda g: torch.randint(0, high, (n, 6), generator=g)


def _bools(g: torch.Generator) -> Tensor:
    return torch.rand(4, 3, generator=g) > 0.5


MULTILAYER_CTORS = [
    {},
    {"inplace": True},
    {"multi_input_module": True},
    {"inplace": True, "multi_input_module": True},
]
MULTILAYER_CALLS = [
    _call(X3),
    _call(lambda g: 3 * torch.randn(4, 3, generator=g), add_input=X3),
    _call(lambda g: 3 * torch.randn(4, 3, generator=g), X3, True),
    _call(X3, multidim_output=True),
]

# name -> (constructor kwargs variants, forward calls)
CASES: dict[str, tuple[list[dict], list[Callable]]] = {
    "BasicLinearReLULinear": (
        [{"in_features": 3}, {"in_features": 3, "out_features": 4, "bias": True}],
        [_call(X3)],
    ),
    "MixedKwargsAndArgsModule": ([{}], [_call(X3), _call(X3, y=X3), _call(X3, X3)]),
    "BasicModel": ([{}], [_call(lambda g: 2 * torch.randn(4, 3, generator=g))]),
    "BasicModel2": ([{}], [_call(lambda g: 2 * torch.randn(4, 3, generator=g), X3)]),
    "BasicModel3": ([{}], [_call(lambda g: 2 * torch.randn(4, 3, generator=g), X3)]),
    "BasicModel4_MultiArgs": (
        [{}],
        [
            _call(lambda g: 3 * torch.randn(4, 3, generator=g), X3, 2.0),
            _call(lambda g: 3 * torch.randn(4, 3, generator=g), X3, _randn(4, 3), 1),
            _call(X3, X3, 3, additional_input2=2),
        ],
    ),
    "BasicModel5_MultiArgs": (
        [{}],
        [
            _call(lambda g: 3 * torch.randn(4, 3, generator=g), X3, [2, 3]),
            _call(X3, X3, [-1, 4], additional_input2=2),
        ],
    ),
    "BasicModel6_MultiTensor": ([{}], [_call(X3, X3)]),
    "BasicLinearModel": ([{}], [_call(X3, _randn(4, 4))]),
    "BasicLinearModel2": (
        [{"in_features": 5, "out_features": 2}],
        [_call(_randn(4, 5))],
    ),
    "BasicLinearModel_Multilayer": (
        [{"in_features": 5, "hidden_nodes": 3, "out_features": 2}],
        [_call(_randn(4, 5))],
    ),
    "ReLUDeepLiftModel": ([{}], [_call(X3, _randn(4, 3)), _call(X3, X3, 3), _call(X3, X3, x3=0)]),
    "LinearMaxPoolLinearModel": ([{}], [_call(_randn(4, 4))]),
    "BasicModelWithReusedModules": ([{}], [_call(X3)]),
    "BasicModelWithReusedLinear": ([{}], [_call(X3)]),
    "BasicModelWithSparseInputs": (
        [{}],
        [
            _call(X3, lambda g: torch.tensor([5.0])),
            _call(X3, lambda g: torch.tensor([])),
            _call(X3, lambda g: torch.tensor([1.0, 7.0, 2.0])),
        ],
    ),
    "BasicModel_MaxPool_ReLU": ([{}, {"inplace": True}], [_call(_randn(4, 3, 6))]),
    "TanhDeepLiftModel": ([{}], [_call(X3, X3)]),
    "ReLULinearModel": (
        [{}, {"inplace": True}],
        [_call(X3, X3), _call(X3, X3, 2), _call(X3, X3, x3=-1)],
    ),
    "SimpleLRPModel": ([{"inplace": False}, {"inplace": True}], [_call(X3)]),
    "Conv1dSeqModel": ([{}], [_call(_randn(2, 4, 1000))]),
    "TextModule": (
        [
            {"num_embeddings": 10, "embedding_dim": 5},
            {"num_embeddings": 10, "embedding_dim": 5, "second_embedding": True},
        ],
        [_call(_ids(4, 10)), _call(_ids(4, 10), _ids(4, 10)), _call(input=_ids(3, 10))],
    ),
    "BasicEmbeddingModel": (
        [
            {},
            {"nested_second_embedding": True},
            {
                "num_embeddings": 12,
                "embedding_dim": 6,
                "hidden_dim": 7,
                "output_dim": 3,
                "nested_second_embedding": True,
            },
        ],
        [_call(_ids(4, 12), _ids(4, 12)), _call(_ids(4, 12), _ids(4, 12), _ids(4, 12))],
    ),
    "PassThroughLayerOutput": (
        [{}],
        [_call(X3), _call([X3, X3]), _call(lambda g: torch.arange(4))],
    ),
    "BasicModel_GradientLayerAttribution": (
        [
            {},
            {"inplace": True},
            {"dict_output": False},
            {"inplace": True, "dict_output": False},
            {"unsupported_layer_output": (torch.ones(2),)},
            {"unsupported_layer_output": 3, "dict_output": False},
        ],
        [
            _call(lambda g: 4 * torch.randn(4, 3, generator=g)),
            _call(lambda g: 4 * torch.randn(4, 3, generator=g), add_input=X3),
        ],
    ),
    "MultiRelu": ([{}, {"inplace": True}], [_call(X3, X3)]),
    "BasicModel_MultiLayer": (MULTILAYER_CTORS, MULTILAYER_CALLS),
    "BasicModel_MultiLayer_with_Future": (MULTILAYER_CTORS, MULTILAYER_CALLS),
    "BasicModelBoolInput": (
        [{}],
        [_call(_bools), _call(_bools, X3), _call(_bools, mult=0.3), _call(_bools, X3, -2.0)],
    ),
    "BasicModelBoolInput_with_Future": (
        [{}],
        [_call(_bools), _call(_bools, X3), _call(_bools, mult=0.3)],
    ),
    "BasicModel_MultiLayer_MultiInput": (
        [{}],
        [_call(X3, X3, X3, 2), _call(X3, X3, X3, scale=-3)],
    ),
    "BasicModel_MultiLayer_TupleInput": ([{}], [_call((X3, X3, X3))]),
    "BasicModel_MultiLayer_MultiInput_with_Future": (
        [{}],
        [_call(X3, X3, X3, 2), _call(X3, X3, X3, scale=-3)],
    ),
    "BasicModel_MultiLayer_TrueMultiInput": (
        [{}],
        [
            _call(lambda g: 3 * torch.randn(4, 3, generator=g), X3, X3),
            _call(X3, X3, X3, lambda g: 3 * torch.randn(4, 3, generator=g)),
        ],
    ),
    "BasicModel_ConvNet_One_Conv": (
        [{}, {"inplace": True}],
        [
            _call(lambda g: 8 * torch.rand(2, 1, 4, 4, generator=g)),
            _call(
                lambda g: 8 * torch.rand(2, 1, 4, 4, generator=g),
                lambda g: 2 * torch.rand(2, 1, 4, 4, generator=g),
            ),
        ],
    ),
    "BasicModel_ConvNetWithPaddingDilation": (
        [{}, {"inplace": True}],
        [_call(_randn(2, 1, 5, 5)), _call(_randn(3, 1, 6, 6))],
    ),
    "BasicModel_ConvNet": ([{}], [_call(_randn(2, 1, 10, 10))]),
    "BasicModel_ConvNet_MaxPool1d": ([{}], [_call(_randn(2, 1, 10))]),
    "BasicModel_ConvNet_MaxPool3d": ([{}], [_call(_randn(2, 1, 10, 10, 10))]),
}

# (name, constructor variant, forward call) of CASES where both forwards raise: the extra
# input of a second embedding that the model was built without
FORWARD_ERRORS = {("TextModule", 0, 1), ("BasicEmbeddingModel", 0, 1)}

# (name, constructor kwargs, forward call) that must raise the same error in both
ERROR_CASES = [
    ("TextModule", {"num_embeddings": 10, "embedding_dim": 5}, _call(_ids(4, 10), _ids(4, 10))),
    ("TextModule", {"num_embeddings": 10, "embedding_dim": 5}, _call()),
    ("BasicModelBoolInput", {}, _call(X3)),
    ("BasicModelBoolInput_with_Future", {}, _call(X3)),
]


# --------------------------------------------------------------------------------------
# comparison helpers
# --------------------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _resolve(value: Any) -> Any:
    return value.wait() if isinstance(value, Future) else value


def _assert_same(ours: Any, theirs: Any, what: str) -> None:
    assert type(ours) is type(theirs), f"{what}: {type(ours)} != {type(theirs)}"
    if isinstance(theirs, Tensor):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, what
        assert ours.requires_grad == theirs.requires_grad, what
        assert torch.equal(ours, theirs), f"{what}: {ours} != {theirs}"
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), what
        for i, (o, t) in enumerate(zip(ours, theirs)):
            _assert_same(o, t, f"{what}[{i}]")
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), what
        for k in theirs:
            _assert_same(ours[k], theirs[k], f"{what}[{k!r}]")
    else:
        assert ours == theirs, f"{what}: {ours!r} != {theirs!r}"


def _build(module: Any, name: str, kwargs: dict, seed: int = 0) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(seed)
    model = getattr(module, name)(**_clone(kwargs))
    return model, torch.get_rng_state()


def _plain_attributes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Non-module, non-parameter attributes (flags like ``multi_input_module``) per submodule."""
    return {
        name: {k: v for k, v in vars(m).items() if not k.startswith("_")}
        for name, m in model.named_modules()
    }


def _signature(func: Any) -> list[tuple[str, Any, Any]]:
    params = inspect.signature(func).parameters.values()
    return [(p.name, p.kind, p.default) for p in params]


def _recorded_forward(model: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, list[str]]:
    """The output (futures resolved) and the names of the modules called, in call order."""
    calls: list[str] = []
    names = {id(m): n for n, m in model.named_modules()}
    handles = [
        m.register_forward_hook(lambda mod, i, o: calls.append(names[id(mod)]))
        for m in model.modules()
    ]
    try:
        out = _resolve(model(*args, **kwargs))
    except Exception as e:  # noqa: BLE001 - the error type is what is compared
        out = type(e)
    finally:
        for h in handles:
            h.remove()
    return out, calls


def _float_leaves(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _float_leaves(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _float_leaves(v)]
    return []


def _grads(model: nn.Module, args: tuple, kwargs: dict, seed: int) -> Any:
    """Gradients of the summed float outputs w.r.t. float inputs and parameters, or the type
    of the error raised on the way."""
    args, kwargs = _clone(args), _clone(kwargs)
    inputs = _float_leaves((args, kwargs))
    for t in inputs:
        t.requires_grad_()
    model.zero_grad(set_to_none=True)
    try:
        torch.manual_seed(seed)
        outs = [o for o in _float_leaves(_resolve(model(*args, **kwargs))) if o.requires_grad]
        if not outs:
            return "no differentiable output"
        sum(o.sum() for o in outs).backward()
    except Exception as e:  # noqa: BLE001 - the error type is what is compared
        return type(e)
    return [t.grad for t in inputs], {n: p.grad for n, p in model.named_parameters()}


def _all_cases() -> list[Any]:
    cases = []
    for name in CAPTUM_NAMES:
        ctors = CASES.get(name, ([{}], []))[0]
        for i, kwargs in enumerate(ctors):
            cases.append(pytest.param(name, kwargs, id=f"{name}-{i}"))
    return cases


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------


def test_same_top_level_names():
    assert _defined_names(W) == set(CAPTUM_NAMES)
    assert inspect.isclass(C.BasicModel_MultiLayer)  # the discovery found the models
    assert len(CAPTUM_NAMES) >= 39


@pytest.mark.parametrize("name", CAPTUM_NAMES)
def test_every_model_has_cases_and_the_same_signatures(name):
    assert name in CASES, f"no constructor/forward cases for Captum's {name}"
    assert CASES[name][1], f"no forward calls for {name}"
    ours, theirs = getattr(W, name), getattr(C, name)
    assert issubclass(ours, nn.Module) and issubclass(theirs, nn.Module)
    assert _signature(ours.__init__) == _signature(theirs.__init__)
    assert _signature(ours.forward) == _signature(theirs.forward)
    assert ours.__doc__ and ours.__doc__.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name, kwargs", _all_cases())
def test_same_structure_parameters_and_rng_use(name, kwargs):
    ours, rng_ours = _build(W, name, kwargs)
    theirs, rng_theirs = _build(C, name, kwargs)
    assert torch.equal(rng_ours, rng_theirs), "construction consumed the RNG differently"
    assert repr(ours) == repr(theirs)
    assert [(n, type(m).__name__) for n, m in ours.named_modules()] == [
        (n, type(m).__name__) for n, m in theirs.named_modules()
    ]
    sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
    assert list(sd_ours) == list(sd_theirs)
    for key in sd_theirs:
        _assert_same(sd_ours[key], sd_theirs[key], key)
    assert [(n, p.requires_grad) for n, p in ours.named_parameters()] == [
        (n, p.requires_grad) for n, p in theirs.named_parameters()
    ]
    _assert_same(_plain_attributes(ours), _plain_attributes(theirs), "attributes")
    # a different seed changes the random parameters the same way
    ours2, _ = _build(W, name, kwargs, seed=123)
    theirs2, _ = _build(C, name, kwargs, seed=123)
    for key, value in theirs2.state_dict().items():
        _assert_same(ours2.state_dict()[key], value, key)


@pytest.mark.parametrize("name, kwargs", _all_cases())
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_same_outputs_call_order_and_gradients(name, kwargs, train):
    ours, _ = _build(W, name, kwargs)
    theirs, _ = _build(C, name, kwargs)
    ours.train(train)
    theirs.train(train)
    for i, build in enumerate(CASES[name][1]):
        args, kw = build(torch.Generator().manual_seed(10 + i))
        seed = 1000 + i
        torch.manual_seed(seed)
        with torch.no_grad():
            out_ours, calls_ours = _recorded_forward(ours, _clone(args), _clone(kw))
        rng_ours = torch.get_rng_state()
        torch.manual_seed(seed)
        with torch.no_grad():
            out_theirs, calls_theirs = _recorded_forward(theirs, _clone(args), _clone(kw))
        assert torch.equal(rng_ours, torch.get_rng_state()), f"call {i}: forward RNG use"
        _assert_same(out_ours, out_theirs, f"call {i} output")
        if isinstance(out_theirs, type):  # both raised
            assert (name, CASES[name][0].index(kwargs), i) in FORWARD_ERRORS, out_theirs
        assert calls_ours == calls_theirs, f"call {i}: module call order"
        _assert_same(_grads(ours, args, kw, seed), _grads(theirs, args, kw, seed), f"grads {i}")


@pytest.mark.parametrize("name, kwargs, build", ERROR_CASES)
def test_same_errors(name, kwargs, build):
    args, kw = build(torch.Generator().manual_seed(0))
    errors = []
    for module in (W, C):
        model, _ = _build(module, name, kwargs)
        with pytest.raises(Exception) as info:
            model(*_clone(args), **_clone(kw))
        errors.append(type(info.value))
    assert errors[0] is errors[1]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name, kwargs", _all_cases())
def test_scriptable_where_captums_is(name, kwargs):
    theirs, _ = _build(C, name, kwargs)
    try:
        scripted_theirs = torch.jit.script(theirs)
    except Exception:  # noqa: BLE001 - Captum's model does not script: nothing to match
        pytest.skip(f"Captum's {name} is not scriptable")
    ours, _ = _build(W, name, kwargs)
    scripted_ours = torch.jit.script(ours)
    for i, build in enumerate(CASES[name][1]):
        args, kw = build(torch.Generator().manual_seed(10 + i))
        results = []
        for scripted in (scripted_ours, scripted_theirs):
            torch.manual_seed(i)
            try:
                results.append(_resolve(scripted(*_clone(args), **_clone(kw))))
            except Exception as e:  # noqa: BLE001 - compared below
                results.append(type(e))
        if isinstance(results[1], type) and not isinstance(results[0], type):
            # Captum's forward is annotated `-> int` (ReLU/TanhDeepLiftModel): its scripted
            # call fails, ours must give the eager output
            torch.manual_seed(i)
            results[1] = _resolve(theirs(*_clone(args), **_clone(kw)))
        _assert_same(results[0], results[1], f"scripted call {i}")
