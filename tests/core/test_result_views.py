"""The Explanation result: views through whybox.viz, slicing by example, length."""

import ast
import inspect

import matplotlib
import pytest
import torch

import whybox.core.result
import whybox.viz
from whybox.core.result import Explanation
from whybox.methods import IntegratedGradients

matplotlib.use("Agg")


def _image_result():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(2, 3, 6, 6)
    return IntegratedGradients(model).attribute(x, target=1, n_steps=4)


def test_plot_returns_figure_of_the_chosen_example():
    result = _image_result()
    figure = result.plot(index=1)
    assert figure.axes, "a figure with at least one axis"
    with pytest.raises(ValueError, match="'index' parameter of whybox.viz.plot"):
        result.plot(index=5)


def test_tabular_html_is_self_contained_and_names_features():
    model = torch.nn.Linear(3, 2)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    result = IntegratedGradients(model).attribute(x, target=0, n_steps=4)
    html = result.to_html(feature_names=["age", "<income>", "height"])
    assert "http://" not in html and "https://" not in html
    assert "&lt;income&gt;" in html and "<income>" not in html
    assert "integrated_gradients" in html
    # the notebook view is the same view as a fragment (no second <html> page in a cell)
    fragment = result._repr_html_()
    assert fragment == result.to_html(full_page=False)
    assert "<html" not in fragment.lower() and "integrated_gradients" in fragment


def test_views_are_functions_of_the_explanation():
    result = _image_result()
    assert whybox.viz.plot(result, 1).axes
    assert whybox.viz.to_html(result, 1) == result.to_html(1)
    # one example keeps a batch dimension of 1, so it draws like the whole result
    assert whybox.viz.to_html(result[1], 0, title="t") == result.to_html(1, title="t")


def test_result_module_has_no_static_import_of_viz():
    tree = ast.parse(inspect.getsource(whybox.core.result))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        assert not any(n == "whybox.viz" or n.startswith("whybox.viz.") for n in names), (
            ast.unparse(node)
        )


# ---------------------------------------------------------------------------
# Slicing by example
# ---------------------------------------------------------------------------


def _batch(n=5):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    ids = torch.randint(0, 9, (n, 4), generator=g)
    return Explanation(
        attributions=(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g)),
        inputs=(x, ids),
        target=[int(t) for t in torch.randint(0, 2, (n,), generator=g)],
        method="m",
        parameters={"n_steps": 4},
        delta=torch.randn(n, generator=g),
        extras={"aggregate_output": False},
    )


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


INDICES = [
    0,
    3,
    -1,
    slice(1, 4),
    slice(None, None, 2),
    slice(None, None, -1),
    slice(7, 9),  # past the end: empty, like Python
    torch.tensor([4, 0, 0]),
    torch.tensor([True, False, True, False, True]),
    [2, -5],
]


@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_slicing_equals_slicing_each_field(index):
    e = _batch()
    part = e[index]
    if isinstance(index, slice):  # Python semantics, negative steps included
        positions = torch.tensor(list(range(len(e))[index]), dtype=torch.long)
    else:
        positions = torch.arange(len(e))[index].reshape(-1)
    expected_rows = lambda t: t[positions]  # noqa: E731
    _assert_same(part.attributions, tuple(expected_rows(t) for t in e.attributions))
    _assert_same(part.inputs, tuple(expected_rows(t) for t in e.inputs))
    _assert_same(part.delta, expected_rows(e.delta))
    assert part.target == [e.target[i] for i in positions.tolist()]
    assert part.method == e.method and part.parameters == e.parameters
    assert part.extras == e.extras and part.extras is not e.extras
    assert len(part) == positions.numel()
    assert repr(part).startswith("Explanation(method='m'")


def test_int_index_keeps_a_batch_of_one_and_len_counts_examples():
    e = _batch()
    assert len(e) == 5
    one = e[2]
    assert len(one) == 1 and one.attributions[0].shape == (1, 3) and one.delta.shape == (1,)
    assert e[torch.tensor(2)].target == one.target == [e.target[2]]


def test_nested_dict_and_per_layer_results_and_targets():
    g = torch.Generator().manual_seed(1)
    n = 4
    inputs = {"a": torch.randn(n, 2, generator=g), "b": torch.randn(n, 3, generator=g)}
    layers = [torch.randn(n, 6, generator=g), (torch.randn(n, 2, generator=g),) * 2]
    tensor_target = torch.tensor([1, 0, 1, 1])
    e = Explanation(attributions=layers, inputs=inputs, target=tensor_target)
    part = e[1:3]
    _assert_same(part.attributions, [layers[0][1:3], (layers[1][0][1:3],) * 2])
    _assert_same(part.inputs, {k: v[1:3] for k, v in inputs.items()})
    _assert_same(part.target, tensor_target[1:3])
    assert part.delta is None
    # shared targets are kept
    for shared in (1, (0, 2), torch.tensor(3), None):
        assert Explanation(layers, inputs, target=shared)[1:3].target is shared


def test_tensors_shared_by_the_batch_are_kept_and_others_refused():
    # a model returning one scalar per batch: attributions and delta have one row
    shared = Explanation(torch.ones(1, 3), torch.zeros(4, 3), delta=torch.zeros(1))
    part = shared[2]
    assert torch.equal(part.attributions, torch.ones(1, 3)) and part.delta.shape == (1,)
    odd = Explanation(torch.ones(3, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"shape \(3, 3\) has neither one row per example"):
        odd[0]


def test_out_of_range_and_bad_indices():
    e = _batch()
    for bad in (5, -6, 100):
        with pytest.raises(IndexError, match="out of range for an explanation of 5 examples"):
            e[bad]
    with pytest.raises(IndexError, match="out of range"):
        e[torch.tensor([0, 5])]
    with pytest.raises(IndexError, match="out of range"):
        e[[-6]]
    with pytest.raises(IndexError, match=r"boolean index .* shape \(5,\)"):
        e[torch.tensor([True, False])]
    with pytest.raises(TypeError, match="indexed by example only"):
        e[0, 1]
    with pytest.raises(TypeError, match="integers"):
        e[torch.tensor([0.5])]
    with pytest.raises(TypeError):
        e["a"]


def test_slice_of_a_method_result_equals_explaining_the_slice():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(6, 4, dtype=torch.float64)
    model = model.double()
    target = [0, 2, 1, 1, 0, 2]
    full = IntegratedGradients(model).attribute(x, target=target, n_steps=16)
    part = IntegratedGradients(model).attribute(x[2:5], target=target[2:5], n_steps=16)
    sliced = full[2:5]
    torch.testing.assert_close(sliced.attributions, part.attributions)
    torch.testing.assert_close(sliced.delta, part.delta)
    assert sliced.target == part.target and torch.equal(sliced.inputs, part.inputs)
    # unpacking keeps Captum's convention even though len() counts examples
    attributions, delta = sliced
    assert attributions is sliced.attributions and delta is sliced.delta
