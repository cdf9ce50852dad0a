"""``whybox.testing.helpers.influence.common`` against Captum 0.9's
``captum.testing.helpers.influence.common``: the same names, and under the same seed the same
models, checkpoints, datasets and matrices (and the same RNG state afterwards), the same
constructor calls and the same parameterized test names."""

import inspect
import os
import unittest

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import whybox.influence as whybox_influence
import whybox.testing.helpers.influence.common as ours

theirs = pytest.importorskip("captum.testing.helpers.influence.common")
captum_influence = pytest.importorskip("captum.influence")
parameterized_mod = pytest.importorskip("parameterized")
param = parameterized_mod.param

# imports of Captum's module that are stdlib, typing or torch names, not helpers of its own
_STD_IMPORTS = {
    "Any",
    "Callable",
    "List",
    "Optional",
    "Tuple",
    "Union",
    "inspect",
    "isfunction",
    "os",
    "partial",
    "unittest",
    "torch",
    "nn",
    "F",
    "Tensor",
    "Module",
    "DataLoader",
    "Dataset",
    "annotations",
    "re",
}
_INFLUENCE_CLASSES = (
    "DataInfluence",
    "ArnoldiInfluenceFunction",
    "NaiveInfluenceFunction",
    "TracInCPFast",
    "TracInCPFastRandProj",
)


def _names(module, private):
    return {
        n
        for n in dir(module)
        if not n.startswith("__") and n not in _STD_IMPORTS and n.startswith("_") == private
    }


def test_same_top_level_names():
    assert _names(ours, private=False) == _names(theirs, private=False)
    # our own private helpers may be extra; none of Captum's is missing
    assert _names(theirs, private=True) <= _names(ours, private=True)
    import whybox.testing.helpers.influence as package

    assert "common" in dir(package)


@pytest.mark.parametrize("name", _INFLUENCE_CLASSES)
def test_influence_classes_are_whyboxs(name):
    assert getattr(ours, name) is getattr(whybox_influence, name)
    assert getattr(ours, name).__name__ == getattr(theirs, name).__name__


def test_signatures_match():
    for name in _names(theirs, private=False) | _names(theirs, private=True):
        a, b = getattr(ours, name), getattr(theirs, name)
        if name in _INFLUENCE_CLASSES or not callable(a) or name in ("param", "parameterized"):
            continue
        pa = inspect.signature(a).parameters
        pb = inspect.signature(b).parameters
        assert list(pa) == list(pb), name
        for p in pa:
            da, db = pa[p].default, pb[p].default
            if callable(db):  # the default key of ``_isSorted`` is a lambda
                assert callable(da)
            else:
                assert da == db, (name, p)
            assert pa[p].kind == pb[p].kind, (name, p)


def test_gpu_settings():
    assert ours.GPU_SETTING_LIST == theirs.GPU_SETTING_LIST
    for setting in (None, "", "cuda", "cuda_data_parallel", "cpu", "CUDA"):
        assert ours.is_gpu(setting) is theirs.is_gpu(setting)
    # Captum 0.9 has no ``USE_GPU_LIST`` here; neither do we
    assert hasattr(ours, "USE_GPU_LIST") == hasattr(theirs, "USE_GPU_LIST")


def _assert_same(a, b, path="value"):
    """Recursive equality of helper outputs: tensors bitwise, modules by type and state,
    datasets by type, attributes and items."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.device == b.device, path
        assert torch.equal(a, b), path
    elif isinstance(a, nn.Module):
        assert type(a).__name__ == type(b).__name__, path
        assert a.training == b.training, path
        _assert_same(dict(a.state_dict()), dict(b.state_dict()), path + ".state_dict")
        assert [n for n, _ in a.named_children()] == [n for n, _ in b.named_children()], path
    elif isinstance(a, torch.utils.data.Dataset):
        assert type(a).__name__ == type(b).__name__, path
        assert type(a).__mro__[1].__name__ == type(b).__mro__[1].__name__, path
        assert len(a) == len(b), path
        _assert_same(a.samples, b.samples, path + ".samples")
        _assert_same(a.labels, b.labels, path + ".labels")
        for i in range(len(a)):
            _assert_same(a[i], b[i], f"{path}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _seeded(fn, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    out = fn(*args, **kwargs)
    return out, torch.get_rng_state()


def _checkpoints(directory):
    names = sorted(os.listdir(directory))
    return names, [torch.load(os.path.join(directory, n)) for n in names]


@pytest.mark.parametrize("model_type", ["random", "trained_linear", "trained_NN"])
@pytest.mark.parametrize("unpack_inputs", [False, True])
@pytest.mark.parametrize("return_test_data", [True, False])
@pytest.mark.parametrize("return_hessian_data", [False, True])
@pytest.mark.parametrize("gpu_setting", [None, ""])
def test_get_random_model_and_data_equals_captums(
    tmp_path, model_type, unpack_inputs, return_test_data, return_hessian_data, gpu_setting
):
    results = []
    for module in (ours, theirs):
        directory = tmp_path / module.__name__.split(".")[0]
        directory.mkdir()
        kwargs = dict(
            return_test_data=return_test_data,
            gpu_setting=gpu_setting,
            return_hessian_data=return_hessian_data,
            model_type=model_type,
        )
        out, rng = _seeded(
            module.get_random_model_and_data, str(directory), unpack_inputs, **kwargs
        )
        results.append((out, rng, _checkpoints(directory)))
    (a, rng_a, ckpt_a), (b, rng_b, ckpt_b) = results
    expected_len = 2 + 2 * return_test_data + 2 * return_hessian_data
    assert isinstance(a, tuple) and len(a) == expected_len
    _assert_same(a, b)
    assert torch.equal(rng_a, rng_b)  # the same draws, in the same number
    _assert_same(ckpt_a, ckpt_b, "checkpoints")
    # the data loaders tests build from the training dataset collate the same batches
    for x, y in zip(DataLoader(a[1], batch_size=7), DataLoader(b[1], batch_size=7)):
        _assert_same(x, y, "batch")


def test_get_random_model_and_data_positional_defaults(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = _seeded(ours.get_random_model_and_data, str(tmp_path / "a"), False, seed=3)
    b, _ = _seeded(theirs.get_random_model_and_data, str(tmp_path / "b"), False, seed=3)
    assert len(a) == 4
    _assert_same(a, b)


def test_unknown_model_type_fails_alike(tmp_path):
    errors = []
    for module in (ours, theirs):
        with pytest.raises(Exception) as info:  # noqa: B017 - compare whatever is raised
            module.get_random_model_and_data(str(tmp_path), False, model_type="nope")
        errors.append(type(info.value))
    assert errors[0] is errors[1]


@pytest.mark.parametrize("unpack_inputs", [False, True])
@pytest.mark.parametrize("sizes", [(5, 3, 50), (2, 1, 40), (3, 2, 33)])
def test_get_random_data_equals_captums(unpack_inputs, sizes):
    a, rng_a = _seeded(ours.get_random_data, *sizes, False, unpack_inputs, seed=11)
    b, rng_b = _seeded(theirs.get_random_data, *sizes, False, unpack_inputs, seed=11)
    _assert_same(a, b)
    assert torch.equal(rng_a, rng_b)


@pytest.mark.parametrize(
    "name, args, inputs",
    [
        ("CoefficientNet", (), [(6, 1)]),
        ("CoefficientNet", (4,), [(6, 4)]),
        ("BasicLinearNet", (5, 4, 3), [(7, 5)]),
        ("MultLinearNet", (5, 4, 3, 2), [(7, 5), (7, 5)]),
        ("MultLinearNet", (3, 2, 1, 3), [(2, 3), (2, 3), (2, 3)]),
        ("Linear", (5,), [(7, 5)]),
        ("UnpackLinear", (5, 2), [(7, 5), (7, 5)]),
    ],
)
def test_models_equal_captums(name, args, inputs):
    a, rng_a = _seeded(getattr(ours, name), *args, seed=5)
    b, rng_b = _seeded(getattr(theirs, name), *args, seed=5)
    _assert_same(a, b)
    assert torch.equal(rng_a, rng_b)
    xs = [torch.randn(s) for s in inputs]
    _assert_same(a(*xs), b(*xs))


@pytest.mark.parametrize(
    "name, args",
    [
        ("IdentityDataset", (4,)),
        ("IdentityDataset", (1,)),
        ("RangeDataset", (0, 10, 3)),
        ("RangeDataset", (-4, 5, 1)),
        ("BinaryDataset", ()),
    ],
)
def test_fixed_datasets_equal_captums(name, args):
    _assert_same(getattr(ours, name)(*args), getattr(theirs, name)(*args))


def test_explicit_and_unpack_datasets_equal_captums():
    torch.manual_seed(2)
    samples, labels = torch.randn(6, 3), torch.randn(6, 1)
    _assert_same(ours.ExplicitDataset(samples, labels), theirs.ExplicitDataset(samples, labels))
    lists = [torch.randn(6, 3), torch.randn(6, 2)]
    a, b = ours.UnpackDataset(lists, labels), theirs.UnpackDataset(lists, labels)
    _assert_same(a, b)
    assert isinstance(a[0], list) and len(a[0]) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_placement_equals_captums(tmp_path):
    lists = [torch.randn(6, 3), torch.randn(6, 2)]
    _assert_same(ours._move_sample_list_to_cuda(lists), theirs._move_sample_list_to_cuda(lists))
    _assert_same(ours.BinaryDataset(use_gpu=True), theirs.BinaryDataset(use_gpu=True))
    _assert_same(ours.RangeDataset(0, 4, 2, True), theirs.RangeDataset(0, 4, 2, True))
    a = ours._wrap_model_in_dataparallel(nn.Linear(2, 2))
    b = theirs._wrap_model_in_dataparallel(nn.Linear(2, 2))
    assert type(a) is type(b) and a.device_ids == b.device_ids
    for setting in ("cuda", "cuda_data_parallel"):
        for model_type in ("random", "trained_linear", "trained_NN"):
            outs = []
            for module in (ours, theirs):
                directory = tmp_path / f"{module.__name__.split('.')[0]}-{setting}-{model_type}"
                directory.mkdir()
                out, rng = _seeded(
                    module.get_random_model_and_data,
                    str(directory),
                    True,
                    gpu_setting=setting,
                    return_hessian_data=True,
                    model_type=model_type,
                )
                outs.append((out, rng, _checkpoints(directory)))
            (a, rng_a, ck_a), (b, rng_b, ck_b) = outs
            assert type(a[0]) is type(b[0])
            _assert_same(a[0].state_dict(), b[0].state_dict())
            _assert_same(a[1:], b[1:])
            assert torch.equal(rng_a, rng_b)
            _assert_same(ck_a, ck_b)


@pytest.mark.parametrize(
    "eigenvalues",
    [[5.0, 3.0, 1.0], [10.0, 4.0, 2.0, 0.5, 0.1], torch.tensor([3.0, 2.0]), [1.0]],
)
@pytest.mark.parametrize(
    "name",
    ["generate_symmetric_matrix_given_eigenvalues", "generate_assymetric_matrix_given_eigenvalues"],
)
def test_matrices_equal_captums(name, eigenvalues):
    a, rng_a = _seeded(getattr(ours, name), eigenvalues, seed=7)
    b, rng_b = _seeded(getattr(theirs, name), eigenvalues, seed=7)
    _assert_same(a, b)
    assert torch.equal(rng_a, rng_b)
    values = torch.as_tensor(eigenvalues, dtype=a.dtype)
    assert torch.allclose(
        torch.linalg.eigvals(a).real.sort().values, values.sort().values, atol=1e-3
    )


@pytest.mark.parametrize("unpack_inputs", [False, True])
def test_format_batch_into_tuple_equals_captums(unpack_inputs):
    targets = torch.arange(3.0)
    for inputs in ((torch.ones(3, 2), torch.zeros(3, 1)), (torch.ones(3, 2),)):
        args = (inputs, targets, unpack_inputs)
        _assert_same(ours._format_batch_into_tuple(*args), theirs._format_batch_into_tuple(*args))
    if not unpack_inputs:
        tensor = torch.ones(3, 2)
        a = ours._format_batch_into_tuple(tensor, targets, False)
        assert a[0] is tensor and a[1] is targets


@pytest.mark.parametrize(
    "x, kwargs",
    [
        ([3, 2, 2, 1], {}),
        ([3, 2, 4], {}),
        ([1, 2, 2, 5], {"descending": False}),
        ([1, 3, 2], {"descending": False}),
        ([], {}),
        ([7], {"descending": False}),
        ([(0, 9), (1, 5), (2, 1)], {"key": lambda p: p[1]}),
        ([(0, 9), (1, 5), (2, 1)], {"key": lambda p: p[1], "descending": False}),
        (torch.tensor([3.0, 1.0, -2.0]), {}),
    ],
)
def test_is_sorted_equals_captums(x, kwargs):
    assert ours._isSorted(x, **kwargs) == theirs._isSorted(x, **kwargs)


# --- DataInfluenceConstructor ----------------------------------------------------------


def _record_init(monkeypatch, cls):
    """Make ``cls(...)`` record its arguments instead of building an influence object."""

    def init(self, *args, **kwargs):
        self.recorded = (args, kwargs)

    monkeypatch.setattr(cls, "__init__", init)


def _normalise(value, net, dataset, tmpdir):
    """Stand-ins for the objects both constructors receive, to compare recordings."""
    if value is net:
        return "<net>"
    if value is dataset:
        return "<dataset>"
    if isinstance(value, nn.Module):
        children = list(net.children())
        return f"<child {children.index(value)}>" if value in children else repr(value)
    if isinstance(value, str) and value.startswith(tmpdir):
        return "<tmpdir>" + value[len(tmpdir) :]
    return value


@pytest.mark.parametrize(
    "class_name",
    [
        "TracInCP",
        "TracInCPFast",
        "NaiveInfluenceFunction",
        "ArnoldiInfluenceFunction",
        "SimilarityInfluence",
    ],
)
@pytest.mark.parametrize("duplicate_loss_fn", [False, True])
@pytest.mark.parametrize("with_name", [False, True])
def test_constructor_builds_the_same_call(
    monkeypatch, tmp_path, class_name, duplicate_loss_fn, with_name
):
    net, dataset = (
        nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)),
        ours.IdentityDataset(2),
    )
    for checkpoint in ("checkpoint-1.pt", "checkpoint-3.pt", "checkpoint-2.pt"):
        (tmp_path / checkpoint).write_bytes(b"")
    loss_fn = nn.MSELoss(reduction="sum")
    recordings = []
    for module, library in ((ours, whybox_influence), (theirs, captum_influence)):
        # Captum's package does not export ``ArnoldiInfluenceFunction``; its helper module does
        cls = getattr(module, class_name, None) or getattr(library, class_name)
        _record_init(monkeypatch, cls)
        constructor = module.DataInfluenceConstructor(
            cls,
            name="custom" if with_name else None,
            duplicate_loss_fn=duplicate_loss_fn,
            layers=["0"],
            seed=4,
        )
        assert constructor.data_influence_class is cls
        obj = constructor(net, dataset, str(tmp_path), 5, loss_fn, seed=9, extra=True)
        assert type(obj) is cls
        args, kwargs = obj.recorded
        recordings.append(
            (
                constructor.name,
                repr(constructor),
                constructor.__name__(),
                constructor.duplicate_loss_fn,
                constructor.kwargs,
                [_normalise(v, net, dataset, str(tmp_path)) for v in args],
                {k: _normalise(v, net, dataset, str(tmp_path)) for k, v in kwargs.items()},
                list(kwargs),
            )
        )
        assert constructor.kwargs == {"layers": ["0"], "seed": 4}  # the call did not leak in
    assert recordings[0] == recordings[1]
    assert recordings[0][0] == ("custom" if with_name else class_name)


def test_constructor_fast_rand_proj_needs_annoy_alike(monkeypatch, tmp_path):
    net, dataset = nn.Sequential(nn.Linear(2, 1)), ours.IdentityDataset(2)
    outcomes = []
    for module, library in ((ours, whybox_influence), (theirs, captum_influence)):
        cls = library.TracInCPFastRandProj
        _record_init(monkeypatch, cls)
        constructor = module.DataInfluenceConstructor(cls, projection_dim=2)
        try:
            import annoy  # noqa: F401
        except ImportError:
            with pytest.raises(unittest.SkipTest) as info:
                constructor(net, dataset, str(tmp_path), 1, None)
            outcomes.append(str(info.value))
            with pytest.raises(unittest.SkipTest):
                constructor.check_annoy()
        else:
            args, kwargs = constructor(net, dataset, str(tmp_path), 1, None).recorded
            outcomes.append(([_normalise(v, net, dataset, str(tmp_path)) for v in args], kwargs))
    assert outcomes[0] == outcomes[1]


def test_constructor_builds_working_whybox_objects(tmp_path):
    torch.manual_seed(0)
    net, train_dataset, test_samples, test_labels = ours.get_random_model_and_data(
        str(tmp_path), False, model_type="trained_linear"
    )
    loss_fn = nn.MSELoss(reduction="none")
    for cls in (whybox_influence.TracInCP, whybox_influence.NaiveInfluenceFunction):
        obj = ours.DataInfluenceConstructor(cls)(net, train_dataset, str(tmp_path), 4, loss_fn)
        assert isinstance(obj, whybox_influence.DataInfluence)
        scores = obj.influence((test_samples, test_labels))
        assert scores.shape == (len(test_labels), len(train_dataset))


# --- test names ---------------------------------------------------------------------------


def _case(self, reduction, constructor, unpack_inputs, k, fn, scale):
    pass


def _free_case(constructor, flag, size):
    pass


def _sample_fn():
    pass


def _cases():
    tracin = ours.DataInfluenceConstructor(whybox_influence.TracInCP)
    named = ours.DataInfluenceConstructor(whybox_influence.TracInCPFast, name="fast-v2 (sum)")
    tracin_c = theirs.DataInfluenceConstructor(captum_influence.TracInCP)
    named_c = theirs.DataInfluenceConstructor(captum_influence.TracInCPFast, name="fast-v2 (sum)")
    return [
        (
            param("sum", tracin, True, 5, _sample_fn, 0.5),
            param("sum", tracin_c, True, 5, _sample_fn, 0.5),
        ),
        (param("mean", named, False, 0, len, -1), param("mean", named_c, False, 0, len, -1)),
        (
            param("none", named, False, "12", None, "a.b"),
            param("none", named_c, False, "12", None, "a.b"),
        ),
        (param("sum", tracin, True), param("sum", tracin_c, True)),
    ]


@pytest.mark.parametrize(
    "args_to_skip", [None, [], ["reduction"], ["constructor", "unpack_inputs", "k"]]
)
def test_build_test_name_func_equals_captums(args_to_skip):
    ours_fn = ours.build_test_name_func(args_to_skip=args_to_skip)
    theirs_fn = theirs.build_test_name_func(args_to_skip=args_to_skip)
    assert ours_fn.func is ours.generate_test_name and ours_fn.keywords == theirs_fn.keywords
    for num, (a, b) in enumerate(_cases()):
        name = ours_fn(_case, str(num), a)
        assert name == theirs_fn(_case, str(num), b)
        assert name.startswith(f"_case_{num}_")
        assert ours.generate_test_name(_case, str(num), a, args_to_skip) == name
    free = param(ours.DataInfluenceConstructor(whybox_influence.TracInCP, name="x y"), False, 3)
    free_c = param(theirs.DataInfluenceConstructor(captum_influence.TracInCP, name="x y"), False, 3)
    assert ours_fn(_free_case, "7", free) == theirs_fn(_free_case, "7", free_c)


def test_test_names_known_value_and_overflow():
    fn = ours.build_test_name_func()
    tracin = ours.DataInfluenceConstructor(whybox_influence.TracInCP)
    assert fn(_case, "3", param("sum", tracin, True, 5, _sample_fn)) == (
        "_case_3_sum_TracInCP_unpack_inputs_k_5__sample_fn"
    )
    too_many = param(1, 2, 3, 4)
    for module in (ours, theirs):
        with pytest.raises(IndexError):
            module.build_test_name_func()(_free_case, "0", too_many)


def test_names_with_parameterized_expand():
    """The name function plugs into ``parameterized.expand`` as Captum's tests use it."""
    created = {}
    for module in (ours, theirs):

        class Case(unittest.TestCase):
            @parameterized_mod.parameterized.expand(
                [("sum", True, 3), ("mean", False, 10)],
                name_func=module.build_test_name_func(args_to_skip=["flag"]),
            )
            def test_it(self, reduction, flag, k):
                pass

        created[module] = sorted(n for n in vars(Case) if n.startswith("test_it_"))
    assert created[ours] == created[theirs] == ["test_it_0_sum_k_3", "test_it_1_mean_k_10"]
