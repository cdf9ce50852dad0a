"""Private helpers of Captum 0.9's ``influence._utils.common``,
``influence._core.influence_function``, ``influence._core.tracincp_fast_rand_proj``,
``metrics._core.infidelity`` and ``module.binary_concrete_stochastic_gates`` at whybox's
paths, with Captum's values and Captum's kind of error on the same inputs."""

import copy
import importlib
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CU = pytest.importorskip("captum.influence._utils.common")
CF = pytest.importorskip("captum.influence._core.influence_function")
CT = pytest.importorskip("captum.influence._core.tracincp_fast_rand_proj")
CI = pytest.importorskip("captum.metrics._core.infidelity")
CM = pytest.importorskip("captum.module.binary_concrete_stochastic_gates")

import whybox.influence._core.influence_function as WF  # noqa: E402
import whybox.influence._core.tracincp_fast_rand_proj as WT  # noqa: E402
import whybox.influence._utils.common as WU  # noqa: E402
import whybox.metrics._core.infidelity as WI  # noqa: E402
import whybox.module.binary_concrete_stochastic_gates as WM  # noqa: E402

NAMES = {
    "whybox.influence._utils.common": [
        "_tensor_batch_dot",
        "_gradient_dot_product",
        "_get_k_most_influential_helper",
        "_DatasetFromList",
        "_format_inputs_dataset",
        "_self_influence_by_batches_helper",
        "_check_loss_fn",
        "_set_active_parameters",
        "_progress_bar_constructor",
        "_params_to_names",
        "_parameter_dot",
        "_parameter_add",
        "_parameter_multiply",
        "_parameter_to",
        "_parameter_linear_combination",
        "_set_attr",
        "_del_attr",
        "_model_make_functional",
        "_model_reinsert_params",
        "_dataset_fn",
        "_compute_jacobian_sample_wise_grads_per_batch",
        "_compute_batch_loss_influence_function_base",
        "_influence_batch_intermediate_quantities_influence_function",
        "_influence_helper_intermediate_quantities_influence_function",
        "_self_influence_helper_intermediate_quantities_influence_function",
        "_influence_route_to_helpers",
    ],
    "whybox.metrics._core.infidelity": [
        "_generate_perturbations",
        "_validate_inputs_and_perturbations",
        "_make_next_infidelity_tensors_func",
        "_sum_infidelity_tensors",
    ],
    "whybox.influence._core.influence_function": [
        "_flatten_forward_factory",
        "_compute_dataset_func",
        "_get_dataset_embeddings_intermediate_quantities_influence_function",
        "_basic_computation_naive_influence_function",
    ],
    "whybox.influence._core.tracincp_fast_rand_proj": ["_basic_computation_tracincp_fast"],
    "whybox.module.binary_concrete_stochastic_gates": ["_torch_empty"],
}


@pytest.mark.parametrize(
    "module, name", [(m, n) for m, names in NAMES.items() for n in names], ids=str
)
def test_name_imports_from_whybox_path(module, name):
    whybox_obj = getattr(importlib.import_module(module), name)
    captum_obj = getattr(importlib.import_module(module.replace("whybox", "captum", 1)), name)
    assert callable(whybox_obj) and callable(captum_obj)
    assert name in importlib.import_module(module).__all__
    assert whybox_obj.__module__.startswith("whybox.")


def _same(a, b, atol=1e-6):
    """Recursive equality of tensors / tuples / lists / numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _same(x, y, atol)
    else:
        assert a == b, (a, b)


def _both(fn_name, module_w, module_c, *args, **kwargs):
    """Call whybox's and Captum's function; return both results, or check both raise the
    same exception type (returning ``None``)."""
    results = []
    errors = []
    for mod in (module_w, module_c):
        try:
            results.append(getattr(mod, fn_name)(*args, **kwargs))
            errors.append(None)
        except Exception as e:  # noqa: BLE001
            results.append(None)
            errors.append(type(e))
    if errors[1] is not None or errors[0] is not None:
        assert errors[0] is not None and errors[1] is not None, errors
        assert issubclass(errors[0], errors[1]), errors
        return None
    return results


# -- scores -------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((3, 4), (5, 4)), ((2, 2, 3), (4, 6)), ((1, 5), (1, 5))])
def test_tensor_batch_dot(shapes):
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(*s, generator=g) for s in shapes)
    w, c = _both("_tensor_batch_dot", WU, CU, a, b)
    _same(w, c)


def test_tensor_batch_dot_mismatch_raises():
    assert _both("_tensor_batch_dot", WU, CU, torch.ones(2, 3), torch.ones(2, 4)) is None
    with pytest.raises(AssertionError):
        WU._tensor_batch_dot(torch.ones(2, 3), torch.ones(2, 4))


def test_gradient_dot_product():
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(3, 2, 2, generator=g), torch.randn(3, 5, generator=g))
    b = (torch.randn(4, 2, 2, generator=g), torch.randn(4, 5, generator=g))
    w, c = _both("_gradient_dot_product", WU, CU, a, b)
    _same(w, c)
    assert _both("_gradient_dot_product", WU, CU, a, b[:1]) is None
    with pytest.raises(AssertionError):
        WU._gradient_dot_product(a, b[:1])


@pytest.mark.parametrize("k", [1, 3, 7, 30])
@pytest.mark.parametrize("proponents", [True, False])
@pytest.mark.parametrize("show_progress", [False, True])
def test_get_k_most_influential_helper(k, proponents, show_progress, capsys):
    g = torch.Generator().manual_seed(2)
    train = torch.randn(23, 4, generator=g)
    test = torch.randn(5, 4, generator=g)
    loader = DataLoader(TensorDataset(train), batch_size=4)

    def batch_fn(inputs, batch):
        return inputs @ batch[0].T

    w, c = _both(
        "_get_k_most_influential_helper",
        WU,
        CU,
        loader,
        batch_fn,
        test,
        k,
        proponents,
        show_progress,
        "desc",
    )
    _same(tuple(w), tuple(c))


def test_get_k_most_influential_helper_empty():
    w, c = _both("_get_k_most_influential_helper", WU, CU, [], lambda i, b: None, None, 3)
    _same(tuple(w), tuple(c))


# -- batches --------------------------------------------------------------------------------
def test_dataset_from_list():
    items = [torch.arange(3), "x", (1, 2)]
    w, c = WU._DatasetFromList(items), CU._DatasetFromList(items)
    assert len(w) == len(c) == 3
    for i in range(3):
        _same(w[i], c[i]) if isinstance(w[i], torch.Tensor) else _same(w[i], c[i])
    with pytest.raises(IndexError):
        w[3]


@pytest.mark.parametrize("kind", ["tuple", "loader"])
def test_format_inputs_dataset(kind):
    batch = (torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 1]))
    data = batch if kind == "tuple" else DataLoader(TensorDataset(*batch), batch_size=2)
    w, c = _both("_format_inputs_dataset", WU, CU, data)
    assert isinstance(w, DataLoader)
    if kind == "loader":
        assert w is data
    _same([tuple(b) for b in w], [tuple(b) for b in c])


@pytest.mark.parametrize("kind", ["tuple", "loader"])
@pytest.mark.parametrize("show_progress", [False, True])
def test_self_influence_by_batches_helper(kind, show_progress, capsys):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(7, 3, generator=g), torch.randn(7, generator=g)
    data = (x, y) if kind == "tuple" else DataLoader(TensorDataset(x, y), batch_size=3)
    calls = []

    def fn(batch, show_progress):
        calls.append(show_progress)
        return batch[0].square().sum(1) * batch[1]

    w, c = _both("_self_influence_by_batches_helper", WU, CU, fn, "Name", data, show_progress)
    _same(w, c)
    assert not any(calls)


class _NoLen:
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def _warned(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [type(w.message) for w in caught]


@pytest.mark.parametrize("sized", [True, False])
def test_progress_bar_constructor(sized, capsys):
    inst = SimpleNamespace(get_name=lambda: "Inst")
    items = [torch.tensor([i]) for i in range(4)]
    data = items if sized else _NoLen(items)
    outs = []
    for mod in (WU, CU):
        bar, kinds = _warned(mod._progress_bar_constructor, inst, data, "things", "dset")
        outs.append(([b for b in bar], kinds))
    _same(outs[0][0], outs[1][0])
    assert bool(outs[0][1]) == bool(outs[1][1]) == (not sized)


# -- loss ------------------------------------------------------------------------------------
def _custom_loss(out, y):
    return ((out - y) ** 2).sum()


@pytest.mark.parametrize(
    "loss",
    [None, "sum", "mean", "none", "custom", 3],
    ids=["None", "sum", "mean", "none", "c", "3"],
)
@pytest.mark.parametrize("sample_wise", [True, False])
def test_check_loss_fn(loss, sample_wise):
    if isinstance(loss, str) and loss != "custom":
        loss_fn = nn.MSELoss(reduction=loss)
    else:
        loss_fn = _custom_loss if loss == "custom" else loss
    inst = SimpleNamespace()
    results = []
    for mod in (WU, CU):
        try:
            results.append(_warned(mod._check_loss_fn, inst, loss_fn, "loss_fn", sample_wise))
        except AssertionError:
            results.append("AssertionError")
    if results[1] == "AssertionError":
        assert results[0] == "AssertionError"
        return
    (w, w_warn), (c, c_warn) = results
    assert w == c
    assert bool(w_warn) == bool(c_warn)


def test_compute_batch_loss_influence_function_base():
    g = torch.Generator().manual_seed(4)
    out, y = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    for reduction in ("none", "mean", "sum"):
        loss_fn = nn.MSELoss(reduction=reduction)
        w, c = _both(
            "_compute_batch_loss_influence_function_base", WU, CU, loss_fn, out, y, reduction
        )
        _same(w, c)
    w, c = _both("_compute_batch_loss_influence_function_base", WU, CU, None, out, y, "none")
    _same(w, c)
    # errors: no loss with a reduction, an unknown reduction
    assert _both("_compute_batch_loss_influence_function_base", WU, CU, None, out, y, "sum") is None
    loss_fn = nn.MSELoss()
    assert (
        _both("_compute_batch_loss_influence_function_base", WU, CU, loss_fn, out, y, "max") is None
    )
    with pytest.raises(AssertionError):
        WU._compute_batch_loss_influence_function_base(None, out, y, "mean")
    # a mean loss on a non-tensor output: warned, not scaled
    pair = (out, out)

    def pair_loss(o, t):
        return ((o[0] - t) ** 2).mean()

    outs = [
        _warned(m._compute_batch_loss_influence_function_base, pair_loss, pair, y, "mean")
        for m in (WU, CU)
    ]
    _same(outs[0][0], outs[1][0])
    assert outs[0][1] and outs[1][1]


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


@pytest.mark.parametrize("sample_wise", [True, False])
@pytest.mark.parametrize("layers", [None, ["2"]])
def test_compute_jacobian_sample_wise_grads_per_batch(sample_wise, layers):
    model = _model(5)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)
    modules = None if layers is None else [model.get_submodule(n) for n in layers]
    inst = SimpleNamespace(
        model=model, layer_modules=modules, sample_wise_grads_per_batch=sample_wise
    )
    loss_fn = nn.MSELoss(reduction="sum" if sample_wise else "none")
    reduction = "sum" if sample_wise else "none"
    w, c = _both(
        "_compute_jacobian_sample_wise_grads_per_batch", WU, CU, inst, (x,), y, loss_fn, reduction
    )
    _same(tuple(w), tuple(c), atol=1e-5)


# -- parameters -------------------------------------------------------------------------------
def test_parameter_arithmetic():
    g = torch.Generator().manual_seed(6)
    p1 = (torch.randn(2, 3, generator=g), torch.randn(4, generator=g))
    p2 = (torch.randn(2, 3, generator=g), torch.randn(4, generator=g))
    p3 = (torch.randn(2, 3, generator=g), torch.randn(4, generator=g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w, c = _both("_parameter_dot", WU, CU, p1, p2)
    _same(w, c)
    _same(*_both("_parameter_add", WU, CU, p1, p2))
    _same(*_both("_parameter_multiply", WU, CU, p1, 2.5))
    _same(*_both("_parameter_multiply", WU, CU, p1, torch.tensor(-1.5)))
    _same(*_both("_parameter_to", WU, CU, p1, dtype=torch.float64))
    cs = torch.tensor([0.5, -2.0, 3.0])
    _same(*_both("_parameter_linear_combination", WU, CU, [p1, p2, p3], cs))
    _same(*_both("_parameter_linear_combination", WU, CU, [p1], cs[:1]))
    assert _both("_parameter_linear_combination", WU, CU, [p1, p2], cs.view(3, 1)) is None
    with pytest.raises(AssertionError):
        WU._parameter_linear_combination([p1], torch.ones(1, 1))


def test_parameter_dot_is_detached():
    a = (torch.ones(3, requires_grad=True),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = CU._parameter_dot(a, a)
    w = WU._parameter_dot(a, a)
    assert w.requires_grad == c.requires_grad and w.item() == c.item() == 3.0


def test_params_to_names():
    model = _model()
    params = [model[2].bias, model[0].weight]
    assert WU._params_to_names(params, model) == CU._params_to_names(params, model)
    assert WU._params_to_names(params, model) == ["2.bias", "0.weight"]
    assert _both("_params_to_names", WU, CU, [nn.Parameter(torch.ones(1))], model) is None


def test_set_and_del_attr():
    objs = [SimpleNamespace(a=SimpleNamespace(b=SimpleNamespace(c=1))) for _ in range(2)]
    for obj, mod in zip(objs, (WU, CU)):
        mod._set_attr(obj, ["a", "b", "c"], 5)
        mod._set_attr(obj, ["top"], 7)
        mod._del_attr(obj, ["a", "b", "c"])
    assert vars(objs[0].a.b) == vars(objs[1].a.b) == {}
    assert objs[0].top == objs[1].top == 7
    assert _both("_del_attr", WU, CU, SimpleNamespace(), ["x"]) is None
    assert _both("_set_attr", WU, CU, SimpleNamespace(), ["x", "y"], 1) is None


@pytest.mark.parametrize("register", [False, True])
def test_model_make_functional_and_reinsert(register):
    base = _model(7)
    x = torch.randn(4, 3)
    outs = []
    for mod in (WU, CU):
        model = copy.deepcopy(base)
        names = ["0.weight", "2.bias"]
        params = [model.get_parameter(n) for n in names]
        new = mod._model_make_functional(model, names, params)
        assert all(t.requires_grad and t.grad_fn is None for t in new)
        assert not hasattr(model[0], "weight") and not hasattr(model[2], "bias")
        scaled = tuple(t * 2 for t in new)
        mod._model_reinsert_params(model, names, scaled, register=register)
        out = model(x)
        outs.append(
            (
                out.detach(),
                [n for n, _ in model.named_parameters()],
                isinstance(model[0].weight, nn.Parameter),
            )
        )
    _same(outs[0][0], outs[1][0])
    assert outs[0][1:] == outs[1][1:]


def test_set_active_parameters():
    base = _model(8)
    for p in base[2].parameters():
        p.requires_grad_(False)
    results = []
    for mod in (WU, CU):
        model = copy.deepcopy(base)
        modules, kinds = _warned(mod._set_active_parameters, model, ["0", "2"])
        results.append(
            (
                [m is model.get_submodule(n) for m, n in zip(modules, ["0", "2"])],
                [p.requires_grad for p in model.parameters()],
                len(kinds),
            )
        )
    assert results[0] == results[1]
    assert results[0][0] == [True, True] and results[0][2] == 2
    for bad in ("0", [], [0]):
        assert _both("_set_active_parameters", WU, CU, copy.deepcopy(base), bad) is None
        with pytest.raises(AssertionError):
            WU._set_active_parameters(copy.deepcopy(base), bad)


def test_dataset_fn():
    loader = DataLoader(TensorDataset(torch.arange(10.0).view(5, 2)), batch_size=2)

    def batch_fn(batch, scale, shift=0.0):
        return batch[0].sum() * scale + shift

    w, c = _both("_dataset_fn", WU, CU, loader, batch_fn, lambda a, b: a + b, 3.0, shift=1.0)
    _same(w, c)
    w, c = _both("_dataset_fn", WU, CU, loader, batch_fn, max, 1.0)
    _same(w, c)
    assert _both("_dataset_fn", WU, CU, [], batch_fn, max, 1.0) is None


# -- routing / embeddings ------------------------------------------------------------------------
class _Embedder:
    """A stand-in for IntermediateQuantitiesInfluenceFunction: a batch's embeddings are
    its features times a fixed matrix."""

    def __init__(self, seed=9):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(3, 2, generator=g)
        x = torch.randn(9, 3, generator=g)
        self.train_dataloader = DataLoader(TensorDataset(x, torch.zeros(9)), batch_size=4)
        self.calls = []

    def get_name(self):
        return "Embedder"

    def compute_intermediate_quantities(self, data, show_progress=False, test=False):
        self.calls.append((show_progress, test))
        batches = data if isinstance(data, DataLoader) else [data]
        return torch.cat([b[0] @ self.w for b in batches])

    def _influence(self, inputs, **kwargs):
        return ("influence", inputs, kwargs)

    def _get_k_most_influential(self, inputs, k, proponents, **kwargs):
        return ("top", inputs, k, proponents, kwargs)


def test_influence_route_to_helpers():
    inst = _Embedder()
    assert WU._influence_route_to_helpers(inst, "x", a=1) == CU._influence_route_to_helpers(
        inst, "x", a=1
    )
    assert WU._influence_route_to_helpers(inst, "x", 3, False, a=1) == (
        CU._influence_route_to_helpers(inst, "x", 3, False, a=1)
    )


@pytest.mark.parametrize("show_progress", [False, True])
def test_intermediate_quantities_helpers(show_progress, capsys):
    inst = _Embedder()
    g = torch.Generator().manual_seed(10)
    test_batch = (torch.randn(4, 3, generator=g), torch.zeros(4))
    train_batch = (torch.randn(5, 3, generator=g), torch.zeros(5))
    _same(
        *_both(
            "_influence_batch_intermediate_quantities_influence_function",
            WU,
            CU,
            inst,
            test_batch,
            train_batch,
        )
    )
    for data in (test_batch, DataLoader(TensorDataset(*test_batch), batch_size=3)):
        _same(
            *_both(
                "_influence_helper_intermediate_quantities_influence_function",
                WU,
                CU,
                inst,
                data,
                show_progress,
            )
        )
    for data in (None, test_batch, DataLoader(TensorDataset(*test_batch), batch_size=3)):
        _same(
            *_both(
                "_self_influence_helper_intermediate_quantities_influence_function",
                WU,
                CU,
                inst,
                data,
                show_progress,
            )
        )


# -- influence_function helpers ------------------------------------------------------------------
def _hessian_f(forward, params):
    return torch.autograd.functional.hessian(forward, params)


def _hvp_f(forward, params, v):
    return torch.autograd.functional.hvp(forward, params, v)[1]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("layers", [None, ["2"]])
@pytest.mark.parametrize("show_progress", [False, True])
def test_compute_dataset_func(reduction, layers, show_progress, capsys):
    model = _model(11)
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(7, 3, generator=g), torch.randn(7, 2, generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    modules = None if layers is None else [model.get_submodule(n) for n in layers]
    loss_fn = nn.MSELoss(reduction=reduction)
    w, c = _both(
        "_compute_dataset_func",
        WF,
        CF,
        loader,
        model,
        loss_fn,
        reduction,
        modules,
        _hessian_f,
        show_progress,
    )
    _same(w, c, atol=1e-5)
    n = sum(p.numel() for p in (model.parameters() if modules is None else modules[0].parameters()))
    v = torch.randn(n, generator=g)
    w, c = _both(
        "_compute_dataset_func",
        WF,
        CF,
        loader,
        model,
        loss_fn,
        reduction,
        modules,
        _hvp_f,
        False,
        v=v,
    )
    _same(w, c, atol=1e-5)


def test_flatten_forward_factory():
    model = _model(12)
    names = ["0.weight", "2.bias"]
    params = tuple(model.get_parameter(n) for n in names)
    unflatten = WU._unflatten_params_factory(tuple(p.shape for p in params))
    flat = WU._flatten_params(params).detach() + 0.1
    batch = (torch.randn(4, 3), torch.randn(4, 2))
    for reduction in ("sum", "mean", "none"):
        loss_fn = nn.MSELoss(reduction=reduction)
        w = WF._flatten_forward_factory(model, loss_fn, reduction, unflatten, names)(batch)(flat)
        c = CF._flatten_forward_factory(model, loss_fn, reduction, unflatten, names)(batch)(flat)
        _same(w, c)
    with pytest.raises(AssertionError):
        WF._flatten_forward_factory(model, None, "sum", unflatten, names)(batch)(flat)


@pytest.mark.parametrize("aggregate", [False, True])
def test_get_dataset_embeddings(aggregate):
    inst = _Embedder()
    fn = inst.compute_intermediate_quantities
    w, c = _both(
        "_get_dataset_embeddings_intermediate_quantities_influence_function",
        WF,
        CF,
        fn,
        inst.train_dataloader,
        aggregate,
    )
    _same(w, c)
    assert w.dim() == 2


@pytest.mark.parametrize("sample_wise", [True, False])
@pytest.mark.parametrize("layers", [None, ["0"]])
def test_basic_computation_naive_influence_function(sample_wise, layers):
    model = _model(13)
    g = torch.Generator().manual_seed(13)
    x, y = torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
    modules = None if layers is None else [model.get_submodule(n) for n in layers]
    inst = SimpleNamespace(
        model=model, layer_modules=modules, sample_wise_grads_per_batch=sample_wise
    )
    reduction = "sum" if sample_wise else "none"
    loss_fn = nn.MSELoss(reduction=reduction)
    w, c = _both(
        "_basic_computation_naive_influence_function", WF, CF, inst, (x,), y, loss_fn, reduction
    )
    _same(w, c, atol=1e-5)


# -- tracincp_fast -----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_basic_computation_tracincp_fast(reduction):
    model = _model(14)
    g = torch.Generator().manual_seed(14)
    x, y = torch.randn(6, 3, generator=g), torch.randint(0, 2, (6,), generator=g)
    inst = SimpleNamespace(model=model, final_fc_layer=model[2], vectorize=False)
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    w, c = _both("_basic_computation_tracincp_fast", WT, CT, inst, (x,), y, loss_fn, reduction)
    _same(tuple(w), tuple(c))
    for bad in ((None, reduction), (loss_fn, "none")):
        assert _both("_basic_computation_tracincp_fast", WT, CT, inst, (x,), y, *bad) is None
    # whybox removes its hook even on error (Captum leaves it registered)
    fresh = _model(14)
    inst = SimpleNamespace(model=fresh, final_fc_layer=fresh[2], vectorize=False)
    with pytest.raises(AssertionError):
        WT._basic_computation_tracincp_fast(inst, (x,), y, None, reduction)
    assert not fresh[2]._forward_hooks
    with pytest.raises(AssertionError):
        WT._basic_computation_tracincp_fast(
            SimpleNamespace(model=fresh, final_fc_layer="2", vectorize=False),
            (x,),
            y,
            loss_fn,
            reduction,
        )


def test_torch_empty():
    w = WM._torch_empty(3, 4, torch.device("cpu"))
    c = CM._torch_empty(3, 4, torch.device("cpu"))
    assert w.shape == c.shape == (3, 4) and w.dtype == c.dtype and w.device == c.device


# -- infidelity ------------------------------------------------------------------------------------
def _noise(inputs, baselines=None):
    torch.manual_seed(0)
    if isinstance(inputs, tuple):
        noise = tuple(torch.randn_like(x) * 0.1 for x in inputs)
        return noise, tuple(x - n for x, n in zip(inputs, noise))
    noise = torch.randn_like(inputs) * 0.1
    return noise, inputs - noise


def _noise_to_baseline(inputs, baselines):
    torch.manual_seed(0)
    if isinstance(inputs, tuple):
        noise = tuple(torch.rand_like(x) * (x - b) for x, b in zip(inputs, baselines))
        return noise, tuple(x - n for x, n in zip(inputs, noise))
    noise = torch.rand_like(inputs) * (inputs - baselines)
    return noise, inputs - noise


def _infidelity_case(n_inputs, baselines_kind):
    g = torch.Generator().manual_seed(15)
    inputs = tuple(torch.randn(3, 2, generator=g) for _ in range(n_inputs))
    if baselines_kind is None:
        baselines, perturb = None, _noise
    elif baselines_kind == "scalar":
        baselines, perturb = tuple(0.5 for _ in inputs), _noise_to_baseline
    elif baselines_kind == "row":
        baselines = tuple(torch.randn(1, 2, generator=g) for _ in inputs)
        perturb = _noise_to_baseline
    else:
        baselines = tuple(torch.randn(3, 2, generator=g) for _ in inputs)
        perturb = _noise_to_baseline
    attributions = tuple(torch.randn(3, 2, generator=g) for _ in inputs)
    return inputs, baselines, perturb, attributions


@pytest.mark.parametrize("n_inputs", [1, 2])
@pytest.mark.parametrize("baselines_kind", [None, "scalar", "row", "full"])
@pytest.mark.parametrize("k", [1, 4])
def test_generate_perturbations(n_inputs, baselines_kind, k):
    inputs, baselines, perturb, _ = _infidelity_case(n_inputs, baselines_kind)
    w, c = _both("_generate_perturbations", WI, CI, k, perturb, inputs, baselines)
    _same(w, c)


def test_validate_inputs_and_perturbations():
    x = (torch.ones(4, 2), torch.ones(4, 3))
    assert WI._validate_inputs_and_perturbations(x, x, x) is None
    assert CI._validate_inputs_and_perturbations(x, x, x) is None
    assert _both("_validate_inputs_and_perturbations", WI, CI, x, x, x[:1]) is None
    bad = (torch.ones(4, 2), torch.ones(4, 4))
    assert _both("_validate_inputs_and_perturbations", WI, CI, x, x, bad) is None
    with pytest.raises(AssertionError):
        WI._validate_inputs_and_perturbations(x, x, bad)


class _TwoInputModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(16)
        self.a = nn.Linear(2, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, *xs, scale=1.0):
        out = self.a(xs[0])
        if len(xs) > 1:
            out = out + self.b(xs[1])
        return out * scale


@pytest.mark.parametrize("n_inputs", [1, 2])
@pytest.mark.parametrize("baselines_kind", [None, "full"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("target", [0, [0, 2, 1]])
@pytest.mark.parametrize("k", [1, 3])
def test_make_next_infidelity_tensors_func(n_inputs, baselines_kind, normalize, target, k):
    inputs, baselines, perturb, attributions = _infidelity_case(n_inputs, baselines_kind)
    model = _TwoInputModel()

    def forward(*xs):
        return model(*xs)

    outs = []
    for mod in (WI, CI):
        fn = mod._make_next_infidelity_tensors_func(
            forward, 3, perturb, inputs, baselines, attributions, None, target, normalize
        )
        outs.append(fn(k))
    _same(outs[0], outs[1], atol=1e-5)
    assert len(outs[0]) == (3 if normalize else 1)
    agg = [mod._sum_infidelity_tensors(outs[0], outs[1]) for mod in (WI, CI)]
    _same(agg[0], agg[1])


def test_make_next_infidelity_tensors_func_forward_args_and_errors():
    inputs, baselines, perturb, attributions = _infidelity_case(1, None)
    model = _TwoInputModel()

    def forward(x, scale):
        return model(x, scale=scale)

    outs = [
        mod._make_next_infidelity_tensors_func(
            forward, 3, perturb, inputs, None, attributions, (2.0,), 1, False
        )(2)
        for mod in (WI, CI)
    ]
    _same(outs[0], outs[1], atol=1e-5)

    def wrong(inputs_):
        return inputs_[:, :1], inputs_

    errors = []
    for mod in (WI, CI):
        fn = mod._make_next_infidelity_tensors_func(
            lambda x: model(x), 3, wrong, inputs, None, attributions, None, 0, False
        )
        with pytest.raises(AssertionError):
            fn(2)
        errors.append(True)
    assert errors == [True, True]
