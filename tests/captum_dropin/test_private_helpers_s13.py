"""Private helpers of Captum 0.9's ``_utils.common``, ``_utils.gradient``,
``attr._utils.common`` / ``batching`` (and more) at whybox's paths, with Captum's values
and Captum's kind of error (``AssertionError``) on the same inputs."""

import importlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

C = pytest.importorskip("captum._utils.common")
CG = pytest.importorskip("captum._utils.gradient")
CA = pytest.importorskip("captum.attr._utils.common")
CB = pytest.importorskip("captum.attr._utils.batching")

import whybox._utils.common as W  # noqa: E402
import whybox._utils.gradient as WG  # noqa: E402
import whybox.attr._utils.batching as WB  # noqa: E402
import whybox.attr._utils.common as WA  # noqa: E402

NAMES = {
    "whybox._utils.common": [
        "_validate_target",
        "_validate_input",
        "_format_float_or_tensor_into_tuples",
        "_expand_feature_mask",
        "_expand_and_update_baselines",
        "_expand_and_update_additional_forward_args",
        "_expand_and_update_target",
        "_expand_and_update_feature_mask",
        "_format_outputs",
        "_contains_slice",
        "_verify_select_column",
        "_verify_select_neuron",
        "_maybe_expand_parameters",
        "_register_backward_hook",
        "_construct_future_forward",
    ],
    "whybox._utils.gradient": [
        "_neuron_gradients",
        "construct_neuron_grad_fn",
        "_forward_layer_eval_with_neuron_grads",
        "_extract_device_ids",
        "_gather_distributed_tensors",
        "_forward_layer_distributed_eval",
    ],
    "whybox.attr._utils.common": [
        "SUPPORTED_METHODS",
        "_sum_rows",
        "_validate_target",
        "_format_callable_baseline",
        "_format_and_verify_strides",
        "_format_and_verify_sliding_window_shapes",
        "_compute_conv_delta_and_format_attrs",
        "_reshape_and_sum",
        "_call_custom_attribution_func",
        "_find_output_mode_and_verify",
    ],
    "whybox.attr._utils.batching": ["_batch_attribution"],
}


@pytest.mark.parametrize("module", sorted(NAMES))
def test_every_name_imports_from_the_whybox_path(module):
    loaded = importlib.import_module(module)
    for name in NAMES[module]:
        assert hasattr(loaded, name), f"{module}.{name}"
        exec(f"from {module} import {name}", {})


# -- helpers ----------------------------------------------------------------------------
def same(a, b):
    """Equal results: tensors by value and shape, containers element by element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def both(ours, theirs, *args, **kwargs):
    """Call both; the same result, or an AssertionError from both."""
    results = []
    for f in (ours, theirs):
        try:
            results.append(("ok", f(*args, **kwargs)))
        except AssertionError:
            results.append(("assert", None))
    assert results[0][0] == results[1][0], results
    assert same(results[0][1], results[1][1]), results
    return results[0]


def test_validate_target_as_captums():
    for mod in (W, WA):
        for n, target in [
            (3, None),
            (3, 1),
            (3, (0, 1)),
            (3, [0, 1, 2]),
            (3, [0, 1]),
            (2, torch.tensor([1, 0])),
            (3, torch.tensor([1, 0])),
            (3, torch.tensor([1])),
        ]:
            both(mod._validate_target, C._validate_target, n, target)
    with pytest.raises(AssertionError):
        W._validate_target(3, [0, 1])


def test_validate_input_as_captums():
    x = (torch.zeros(4, 3), torch.zeros(4, 2))
    cases = [
        (x, (0, 0.5)),
        (x, (torch.zeros(4, 3), torch.zeros(1, 2))),
        (x, (torch.zeros(2, 3), 0)),
        (x, (0,)),
        (x, (torch.zeros(7, 3), torch.zeros(9, 2))),
    ]
    for inputs, baselines in cases:
        for draw in (False, True):
            both(W._validate_input, C._validate_input, inputs, baselines, draw)
    with pytest.raises(AssertionError):
        W._validate_input(x, (torch.zeros(2, 3), 0))


def test_format_float_or_tensor_into_tuples_as_captums():
    t = torch.ones(2)
    for value in (1.5, t, (t, 2.0)):
        both(W._format_float_or_tensor_into_tuples, C._format_float_or_tensor_into_tuples, value)
    for bad in (1, "a", [t]):
        both(W._format_float_or_tensor_into_tuples, C._format_float_or_tensor_into_tuples, bad)
        with pytest.raises(AssertionError):
            W._format_float_or_tensor_into_tuples(bad)


def test_expand_feature_mask_as_captums():
    masks = [
        torch.tensor([[0, 1, 1], [2, 2, 3]]),
        torch.tensor([[0, 1, 1]]),
        (torch.tensor([[0, 1], [1, 0]]), torch.tensor([[5]])),
    ]
    for mask in masks:
        for n in (1, 3):
            both(W._expand_feature_mask, C._expand_feature_mask, mask, n)


@pytest.mark.parametrize("draw", [False, True])
def test_expand_and_update_baselines_as_captums(draw):
    inputs = (torch.arange(6.0).reshape(3, 2), torch.ones(3, 1))
    cases = [
        {},
        {"baselines": None},
        {"baselines": (torch.arange(6.0).reshape(3, 2) + 10, 0.5)},
        {"baselines": (torch.arange(10.0).reshape(5, 2), torch.zeros(1, 1))},
        {"baselines": (torch.zeros(2, 7), 0)},
    ]
    for kwargs in cases:
        results = []
        for f in (W._expand_and_update_baselines, C._expand_and_update_baselines):
            given = dict(kwargs)
            np.random.seed(3)
            try:
                f(inputs, 2, given, draw_baseline_from_distrib=draw)
                results.append(given)
            except AssertionError:
                results.append("assert")
        assert same(results[0], results[1]), (kwargs, results)


def test_expand_and_update_args_target_mask_as_captums():
    cases = [
        {},
        {"additional_forward_args": None, "target": None, "feature_mask": None},
        {
            "additional_forward_args": (torch.arange(3), 2.0, torch.tensor(1.0)),
            "target": [0, 1, 2],
            "feature_mask": (torch.tensor([[0, 1], [1, 1], [0, 0]]), torch.tensor([[2]])),
        },
        {
            "additional_forward_args": torch.arange(6).reshape(3, 2),
            "target": torch.tensor([2, 0, 1]),
            "feature_mask": torch.tensor([[0, 1]]),
        },
        {"target": 1, "additional_forward_args": "text"},
    ]
    for kwargs in cases:
        for ours, theirs in [
            (
                W._expand_and_update_additional_forward_args,
                C._expand_and_update_additional_forward_args,
            ),
            (W._expand_and_update_target, C._expand_and_update_target),
            (W._expand_and_update_feature_mask, C._expand_and_update_feature_mask),
        ]:
            a, b = dict(kwargs), dict(kwargs)
            ours(3, a)
            theirs(3, b)
            assert same(a, b), (ours.__name__, kwargs, a, b)


def test_format_outputs_as_captums():
    t, u = torch.ones(2), torch.zeros(3)
    for multiple, outputs in [
        (False, [(t,)]),
        (False, [(t, u)]),
        (True, [(t,), (t, u)]),
        (False, [(t,), (u,)]),
        (False, (t,)),
        (True, []),
    ]:
        both(W._format_outputs, C._format_outputs, multiple, outputs)
    with pytest.raises(AssertionError):
        W._format_outputs(False, [(t,), (u,)])


def test_construct_future_forward_as_captums():
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    ours, theirs = C._construct_future_forward(model), W._construct_future_forward(model)
    a, b = ours(x), theirs(x)
    assert isinstance(b, torch.futures.Future) and b.done()
    assert torch.equal(a.value(), b.value())
    # whybox's _run_forward selects the target of the future's value
    selected = W._run_forward(W._construct_future_forward(model), x, 1).wait()
    assert torch.equal(selected, model(x)[:, 1])


def test_contains_slice_and_select_column_neuron_as_captums():
    out = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    for target in (1, slice(0, 2), (1, slice(None)), (0, 2), (), (slice(1, 3),)):
        assert W._contains_slice(target) == C._contains_slice(target)
    for target in (1, (1, 2), (slice(0, 2), 1), (0, 1, 2), (0, 1, 2, 3)):
        both(W._verify_select_column, C._verify_select_column, out, target)
    for layer_output in ((out,), (out, out + 1)):
        for selector in (1, (1, 2), (slice(0, 2),), (1, slice(1, 3)), lambda v: v, (0, 1, 2, 3)):
            both(W._verify_select_neuron, C._verify_select_neuron, layer_output, selector)
    with pytest.raises(AssertionError):
        W._verify_select_neuron((out, out), 1)


def test_maybe_expand_parameters_as_captums():
    inputs = (torch.arange(6.0).reshape(3, 2), torch.ones(3, 1))
    extra, target = (torch.arange(3),), torch.tensor([1, 0, 1])
    for per_eval in (0, 1):  # nothing to repeat: the arguments themselves come back
        result = W._maybe_expand_parameters(per_eval, inputs, extra, target)
        assert all(a is b for a, b in zip(result, (inputs, extra, target)))
        result = C._maybe_expand_parameters(per_eval, inputs, extra, target)
        assert all(a is b for a, b in zip(result, (inputs, extra, target)))
    for per_eval in (0, 1, 3):
        for extra in (None, (torch.arange(3), 5)):
            for target in (None, 1, [0, 1, 1], torch.tensor([1, 0, 1])):
                both(
                    W._maybe_expand_parameters,
                    C._maybe_expand_parameters,
                    per_eval,
                    inputs,
                    extra,
                    target,
                )


def test_register_backward_hook_as_captums():
    def run(register, hook):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        x = torch.randn(5, 3, requires_grad=True)
        handles = register(model[1], hook, None)
        (grad,) = torch.autograd.grad(model(x).sum(), x)
        for handle in handles:
            handle.remove()
        (plain,) = torch.autograd.grad(model(x).sum(), x)
        return grad, plain

    seen = []

    def doubling(module, grad_input, grad_output):
        seen.append((type(module), grad_input.shape, grad_output.shape))
        return (grad_input * 2,)

    for hook in (doubling, lambda m, gi, go: None, lambda m, gi, go: gi.clamp(min=0) * 0):
        ours, theirs = run(W._register_backward_hook, hook), run(C._register_backward_hook, hook)
        assert torch.allclose(ours[0], theirs[0]) and torch.allclose(ours[1], theirs[1])
    assert seen[0] == seen[1] == (nn.ReLU, torch.Size([5, 4]), torch.Size([5, 4]))
    assert not torch.allclose(run(W._register_backward_hook, doubling)[0], ours[1])

    class Two(nn.Module):
        def forward(self, a, b):
            return a + b

    for register in (W._register_backward_hook, C._register_backward_hook):
        module = Two()
        handles = register(module, doubling, None)
        with pytest.raises(AssertionError):
            module(torch.ones(1), torch.ones(1))
        for handle in handles:
            handle.remove()


# -- _utils.gradient --------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 4)
        self.relu = nn.ReLU()
        self.out = nn.Linear(4, 2)

    def forward(self, x, scale=1.0):
        return self.out(self.relu(self.lin(x) * scale))


def test_forward_layer_distributed_eval_as_captums():
    net = Net()
    x = torch.randn(5, 3, requires_grad=True)
    for kwargs in [
        {},
        {"attribute_to_layer_input": True},
        {"target_ind": 1, "additional_forward_args": (2.0,)},
        {"require_layer_grads": True, "attribute_to_layer_input": True},
    ]:
        for layer in (net.relu, [net.lin, net.out]):
            ours = WG._forward_layer_distributed_eval(net, x, layer, **kwargs)
            theirs = CG._forward_layer_distributed_eval(net, x, layer, **kwargs)
            assert same(dict(ours), dict(theirs))
            a, out_a = WG._forward_layer_distributed_eval(
                net, x, layer, forward_hook_with_return=True, **kwargs
            )
            b, out_b = CG._forward_layer_distributed_eval(
                net, x, layer, forward_hook_with_return=True, **kwargs
            )
            assert same(dict(a), dict(b)) and torch.equal(out_a, out_b)
    # with forward_hook_with_return the recorded tensors are on the output's graph
    saved, out = WG._forward_layer_distributed_eval(
        net, x, net.lin, target_ind=0, forward_hook_with_return=True
    )
    (layer_values,) = saved[net.lin][x.device]
    (grad,) = torch.autograd.grad(out.sum(), layer_values)
    assert grad.shape == (5, 4)
    other = nn.Linear(3, 3)
    for f in (WG._forward_layer_distributed_eval, CG._forward_layer_distributed_eval):
        with pytest.raises(AssertionError):
            f(net, x, other)


def test_gather_and_extract_device_ids_as_captums():
    cpu = torch.device("cpu")
    saved = {cpu: (torch.ones(2, 3), torch.zeros(2))}
    assert same(WG._gather_distributed_tensors(saved), CG._gather_distributed_tensors(saved))
    assert same(
        WG._gather_distributed_tensors(saved, key_list=[cpu, cpu]),
        CG._gather_distributed_tensors(saved, key_list=[cpu, cpu]),
    )
    net = Net()
    one = {net.lin: {cpu: (torch.ones(1),)}}
    several = {net.lin: {torch.device("cpu", 0): (), torch.device("cpu", 1): ()}}
    dp = nn.Module()
    dp.device_ids = [1, 0]
    for saved_layer, fn, ids in [
        (one, net, None),
        (one, net, [0]),
        (several, net, [0, 1]),
        (several, dp, None),
        (several, net, None),
    ]:
        both(WG._extract_device_ids, CG._extract_device_ids, fn, saved_layer, ids)
    with pytest.raises(AssertionError):
        WG._extract_device_ids(net, several, None)


@pytest.mark.parametrize("selector", [1, (2,), (slice(0, 3),), lambda v: v[:, 0] * 2])
@pytest.mark.parametrize("to_input", [False, True])
def test_neuron_grads_as_captums(selector, to_input):
    net = Net()
    x = torch.randn(5, 3, requires_grad=True)
    layer = net.out if to_input else net.lin
    ours = WG._forward_layer_eval_with_neuron_grads(
        net, x, layer, gradient_neuron_selector=selector, attribute_to_layer_input=to_input
    )
    theirs = CG._forward_layer_eval_with_neuron_grads(
        net, x, layer, gradient_neuron_selector=selector, attribute_to_layer_input=to_input
    )
    assert len(ours) == 2
    assert all(torch.allclose(a, b) for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]))
    fn_ours = WG.construct_neuron_grad_fn(layer, selector, attribute_to_neuron_input=to_input)
    fn_theirs = CG.construct_neuron_grad_fn(layer, selector, attribute_to_neuron_input=to_input)
    (ga,), (gb,) = fn_ours(net, x, 0), fn_theirs(net, x, 0)
    assert torch.allclose(ga, gb) and torch.allclose(ga, ours[1][0])
    cpu = [x.device]
    saved = CG._forward_layer_distributed_eval(
        net, x, layer, attribute_to_layer_input=to_input, forward_hook_with_return=True
    )[0][layer]
    (na,) = WG._neuron_gradients(x, saved, cpu, selector)
    saved = CG._forward_layer_distributed_eval(
        net, x, layer, attribute_to_layer_input=to_input, forward_hook_with_return=True
    )[0][layer]
    (nb,) = CG._neuron_gradients(x, saved, cpu, selector)
    assert torch.allclose(na, nb)


def test_forward_layer_eval_with_neuron_grads_without_selector_as_captums():
    net = Net()
    x = torch.randn(5, 3)
    for layer in (net.relu, [net.lin, net.relu]):
        for grad_enabled in (False, True):
            ours = WG._forward_layer_eval_with_neuron_grads(
                net, x, layer, (0.5,), grad_enabled=grad_enabled
            )
            theirs = CG._forward_layer_eval_with_neuron_grads(
                net, x, layer, (0.5,), grad_enabled=grad_enabled
            )
            assert same(ours, theirs)
    for f in (WG._forward_layer_eval_with_neuron_grads, CG._forward_layer_eval_with_neuron_grads):
        with pytest.raises(AssertionError):
            f(net, x, [net.lin, net.relu], gradient_neuron_selector=0)


# -- attr._utils.common -----------------------------------------------------------------
def test_sum_rows_and_reshape_and_sum_as_captums():
    t = torch.arange(24.0).reshape(4, 3, 2)
    assert same(WA._sum_rows(t), CA._sum_rows(t))
    for args in [(t, 2, 2, (3, 2)), (t, 4, 1, (6,)), (t, 1, 4, (3, 2)), (t, 5, 1, (3,))]:
        try:
            expected = CA._reshape_and_sum(*args)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                WA._reshape_and_sum(*args)
            continue
        assert same(WA._reshape_and_sum(*args), expected)


def test_format_callable_baseline_as_captums():
    x = torch.ones(2, 3)
    for baselines in (
        None,
        0.5,
        torch.zeros(1, 3),
        lambda: torch.zeros(2, 3),
        lambda inputs: inputs * 2,
        lambda: (torch.zeros(2, 3), 1),
    ):
        for inputs in (x, (x,)):
            both(WA._format_callable_baseline, CA._format_callable_baseline, baselines, inputs)


def test_format_and_verify_strides_and_windows_as_captums():
    one = (torch.zeros(2, 3, 4),)
    two = (torch.zeros(2, 3, 4), torch.zeros(2, 5))
    for strides, inputs in [
        (None, one),
        (2, one),
        ((1, 2), one),
        (((1, 2),), one),
        ((1, 2, 3), one),
        (None, two),
        ((1, (2,)), two),
        ((1,), two),
        (((1,), 2), two),
        ("x", one),
    ]:
        both(WA._format_and_verify_strides, CA._format_and_verify_strides, strides, inputs)
    with pytest.raises(AssertionError):
        WA._format_and_verify_strides((1,), two)
    for shapes, inputs in [
        ((1, 2), one),
        (((1, 2),), one),
        ((1,), one),
        (((1, 2), (3,)), two),
        (((1, 2),), two),
        (((1, 2), 3), two),
    ]:
        both(
            WA._format_and_verify_sliding_window_shapes,
            CA._format_and_verify_sliding_window_shapes,
            shapes,
            inputs,
        )
    with pytest.raises(AssertionError):
        WA._format_and_verify_sliding_window_shapes(((1, 2),), two)


def test_compute_conv_delta_and_format_attrs_as_captums():
    class Algo:
        def compute_convergence_delta(self, attributions, start, end, **kwargs):
            return (attributions[0].sum() + end.sum() - start, kwargs)

    attrs = (torch.ones(2, 3),)
    for delta in (False, True):
        for is_tuple in (False, True):
            args = (Algo(), delta, attrs, 1.0, torch.ones(2, 3), (4,), 1, is_tuple)
            both(
                WA._compute_conv_delta_and_format_attrs,
                CA._compute_conv_delta_and_format_attrs,
                *args,
            )
    # several attributions for a single input: whybox's _format_output raises ValueError
    # where Captum's asserts
    with pytest.raises((AssertionError, ValueError)):
        WA._compute_conv_delta_and_format_attrs(
            Algo(), False, (torch.ones(1), torch.ones(1)), 0, torch.ones(1), None, None
        )


def test_call_custom_attribution_func_as_captums():
    m, i, b = (torch.ones(2),), (torch.full((2,), 2.0),), (torch.full((2,), 3.0),)
    for func in (
        lambda m: m,
        lambda m, i: (m[0] * i[0],),
        lambda m, i, b: (m[0] * (i[0] - b[0]),),
        lambda m, i, b, x: m,
        lambda: m,
        "not callable",
    ):
        both(WA._call_custom_attribution_func, CA._call_custom_attribution_func, func, m, i, b)
    with pytest.raises(AssertionError):
        WA._call_custom_attribution_func(lambda: m, m, i, b)


def test_find_output_mode_and_verify_as_captums():
    masks = (torch.zeros(1, 3), torch.zeros(1, 2))
    row_masks = (torch.zeros(4, 3),)
    for initial in (
        3,
        2.5,
        torch.tensor(1.0),
        torch.tensor([1.0]),
        torch.ones(4),
        torch.ones(4, 1),
        torch.ones(4, 2),
    ):
        for n in (1, 4):
            for per_eval in (1, 2):
                for mask in (None, masks, row_masks):
                    for multi in (False, True):
                        both(
                            WA._find_output_mode_and_verify,
                            CA._find_output_mode_and_verify,
                            initial,
                            n,
                            per_eval,
                            mask,
                            multi,
                        )
    with pytest.raises(AssertionError):
        WA._find_output_mode_and_verify(torch.ones(4, 2), 4, 1, None)


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre"])
@pytest.mark.parametrize("endpoint", [False, True])
@pytest.mark.parametrize("batch", [1, 3, 7, 40])
def test_batch_attribution_as_captums(endpoint, batch, method):
    class Recorder:
        def __init__(self):
            self.calls = []

        def _attribute(self, inputs, method, n_steps, step_sizes_and_alphas):
            sizes, alphas = step_sizes_and_alphas
            self.calls.append((n_steps, list(sizes), list(alphas)))
            return (inputs * sum(a * s for a, s in zip(alphas, sizes)), inputs * len(alphas))

    results = []
    for f in (WB._batch_attribution, CB._batch_attribution):
        recorder = Recorder()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total = f(
                recorder,
                2,
                batch,
                9,
                include_endpoint=endpoint,
                inputs=torch.ones(2, 1),
                method=method,
            )
        results.append((recorder.calls, total, len(caught)))
    (ours, ours_total, ours_warned), (theirs, theirs_total, theirs_warned) = results
    # whybox's Gauss-Legendre weights differ from Captum's by rounding (1e-16)
    assert [c[0] for c in ours] == [c[0] for c in theirs]
    assert np.allclose([c[1:] for c in ours], [c[1:] for c in theirs], rtol=0, atol=1e-12)
    assert all(torch.allclose(a, b) for a, b in zip(ours_total, theirs_total))
    assert ours_warned == theirs_warned


# -- attr._utils.visualization ----------------------------------------------------------
VIS_NAMES = [
    "HAS_IPYTHON",
    "_prepare_image",
    "_normalize_scale",
    "_cumulative_sum_threshold",
    "_normalize_attr",
    "_get_color",
    "_create_default_plot",
    "_initialize_cmap_and_vmin_vmax",
    "_visualize_original_image",
    "_visualize_heat_map",
    "_visualize_blended_heat_map",
    "_visualize_masked_image",
    "_visualize_alpha_scaling",
]
METHOD_NAMES = {
    "whybox.attr._core.shapley_value": ["_all_perm_generator", "_perm_generator"],
    "whybox.attr._core.lime": ["construct_feature_mask"],
    "whybox.attr._core.gradient_shap": ["_scale_input"],
    "whybox.attr._core.deep_lift": ["_compute_diffs"],
    "whybox.attr._core.feature_ablation": [
        "_parse_forward_out",
        "process_initial_eval",
        "format_result",
        "check_output_shape_valid",
        "_should_skip_inputs_and_warn",
        "logger",
    ],
    "whybox.attr._core.dataloader_attr": [
        "_concat_tensors",
        "_create_perturbation_mask",
        "_perturb_inputs",
        "_convert_output_shape",
    ],
    "whybox.attr._utils.interpretable_input": ["_scatter_itp_attr_by_mask"],
    "whybox.attr._utils.summarizer": ["_reorder_stats"],
    "whybox.concept._utils.classifier": ["_train_test_split"],
    "whybox.attr._utils.visualization": VIS_NAMES,
}


@pytest.mark.parametrize("module", sorted(METHOD_NAMES))
def test_every_method_helper_imports_from_the_whybox_path(module):
    loaded = importlib.import_module(module)
    for name in METHOD_NAMES[module]:
        assert hasattr(loaded, name), f"{module}.{name}"
        exec(f"from {module} import {name}", {})


def _vis():
    pytest.importorskip("matplotlib")
    ours = importlib.import_module("whybox.attr._utils.visualization")
    theirs = importlib.import_module("captum.attr._utils.visualization")
    return ours, theirs


def both_raise(ours, theirs, *args):
    """Call both: the same result (arrays compared), or the same kind of error."""
    outcomes = []
    for f in (ours, theirs):
        try:
            outcomes.append(("ok", f(*args)))
        except AssertionError:
            outcomes.append(("assert", None))
        except KeyError:
            outcomes.append(("key", None))
    assert outcomes[0][0] == outcomes[1][0], outcomes
    if outcomes[0][0] == "ok":
        a, b = outcomes[0][1], outcomes[1][1]
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    return outcomes[0]


def test_visualization_value_helpers_as_captums():
    W_, C_ = _vis()
    assert W_.HAS_IPYTHON == C_.HAS_IPYTHON
    rng = np.random.default_rng(0)
    image = rng.uniform(-20, 300, size=(4, 5, 3))
    both_raise(W_._prepare_image, C_._prepare_image, image)
    attr = rng.normal(size=(6, 7))
    for factor in (0.5, -2.0, 1e-7, 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            both_raise(W_._normalize_scale, C_._normalize_scale, attr, factor)
    for percentile in (0, 50, 98, 100, -1, 101):
        both_raise(
            W_._cumulative_sum_threshold, C_._cumulative_sum_threshold, np.abs(attr), percentile
        )
    for sign in ("all", "positive", "negative", "absolute_value", "bogus"):
        for outlier in (0, 2, 50, 120):
            both_raise(W_._normalize_attr, C_._normalize_attr, attr, sign, outlier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both_raise(W_._normalize_attr, C_._normalize_attr, np.zeros((2, 2)), "all", 2)
    for value in (-3, -1, -0.55, -0.3, 0, 0.1, 0.3, 0.9, 1, 2.5):
        assert W_._get_color(value) == C_._get_color(value)
    for sign in ("all", "positive", "negative", "absolute_value"):
        a, b = W_._initialize_cmap_and_vmin_vmax(sign), C_._initialize_cmap_and_vmin_vmax(sign)
        assert a[1:] == b[1:] and (
            a[0] == b[0] if isinstance(b[0], str) else a[0].name == b[0].name
        )
    with pytest.raises(KeyError):
        W_._initialize_cmap_and_vmin_vmax("bogus")


def test_visualization_drawing_helpers_as_captums():
    W_, C_ = _vis()
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, size=(4, 5, 3))
    grey = rng.uniform(0, 1, size=(4, 5, 1))
    norm = rng.uniform(0, 1, size=(4, 5))
    drawn = []
    for mod in (W_, C_):
        fig, axes = mod._create_default_plot(None, False, (3, 2), nrows=1, ncols=6)
        mod._visualize_original_image(axes[0], grey)
        mod._visualize_heat_map(axes[1], norm, "Greens", 0, 1)
        mod._visualize_blended_heat_map(axes[2], image, norm, "Reds", 0, 1, 0.4)
        mod._visualize_masked_image(axes[3], "positive", image * 255, norm)
        # integer pixels: matplotlib clips a float RGBA image to [0, 1]
        mod._visualize_alpha_scaling(axes[4], "absolute_value", (image * 255).astype(int), norm)
        mod._visualize_original_image(axes[5], image)
        drawn.append(
            (
                tuple(fig.get_size_inches()),
                [[np.asarray(im.get_array()).tolist() for im in ax.images] for ax in axes],
                [[im.get_alpha() for im in ax.images] for ax in axes],
            )
        )
        given = (fig, axes)
        assert mod._create_default_plot(given, False, (1, 1)) == given
        for f, args in [
            (mod._visualize_original_image, (axes[0], None)),
            (mod._visualize_blended_heat_map, (axes[0], None, norm, "Reds", 0, 1, 0.4)),
            (mod._visualize_masked_image, (axes[0], "all", image, norm)),
            (mod._visualize_alpha_scaling, (axes[0], "all", image, norm)),
        ]:
            with pytest.raises(AssertionError):
                f(*args)
    assert drawn[0] == drawn[1]


# -- method modules -----------------------------------------------------------------------
def test_permutation_generators_as_captums():
    from captum.attr._core import shapley_value as CS

    from whybox.attr._core import shapley_value as WS

    for n in (1, 3, 4):
        assert list(WS._all_perm_generator(n, 5)) == list(CS._all_perm_generator(n, 5))
        draws = []
        for f in (WS._perm_generator, CS._perm_generator):
            torch.manual_seed(4)
            draws.append(list(f(n, 6)))
        assert draws[0] == draws[1] and len(draws[0]) == 6


def test_construct_feature_mask_as_captums():
    from captum.attr._core.lime import construct_feature_mask as theirs

    from whybox.attr._core.lime import construct_feature_mask as ours

    inputs = (torch.zeros(2, 3), torch.zeros(2, 2, 2))
    for mask in (
        None,
        (torch.tensor([[0, 1, 1]]), torch.tensor([[[2, 2], [3, 0]]])),
        torch.tensor([[3, 4, 4]]),
        (torch.tensor([[2, 5, 5]]), torch.zeros(0, dtype=torch.long)),
    ):
        with warnings.catch_warnings(record=True) as ours_warned:
            warnings.simplefilter("always")
            a = ours(mask, inputs)
        with warnings.catch_warnings(record=True) as theirs_warned:
            warnings.simplefilter("always")
            b = theirs(mask, inputs)
        assert same(a, b) and len(ours_warned) == len(theirs_warned)


def test_scale_input_and_compute_diffs_as_captums():
    from captum.attr._core.deep_lift import _compute_diffs as diffs_c
    from captum.attr._core.gradient_shap import _scale_input as scale_c

    from whybox.attr._core.deep_lift import _compute_diffs as diffs_w
    from whybox.attr._core.gradient_shap import _scale_input as scale_w

    torch.manual_seed(0)
    x, coef = torch.randn(3, 2, 4), torch.rand(3)
    for baseline in (0.5, torch.randn(3, 2, 4), torch.randn(1, 2, 4)):
        a, b = scale_w(x, baseline, coef), scale_c(x, baseline, coef)
        assert a.requires_grad and torch.equal(a, b)
    inputs, outputs = torch.randn(6, 3), torch.randn(6, 2)
    assert same(diffs_w(inputs, outputs), diffs_c(inputs, outputs))


def test_feature_ablation_helpers_as_captums():
    from captum.attr._core import feature_ablation as CF

    from whybox.attr._core import feature_ablation as WF

    for out in (torch.ones(2), 3, 2.5, "x", None, [1.0]):
        both(WF._parse_forward_out, CF._parse_forward_out, out)
    for out in (3, 2.5):
        assert WF._parse_forward_out(out).dtype == CF._parse_forward_out(out).dtype
    inputs = (torch.zeros(2, 3), torch.zeros(2, 4, 1))
    for initial in (torch.ones(2), torch.ones(2, 3, dtype=torch.float64), torch.tensor(2)):
        for weights in (False, True):
            a = WF.process_initial_eval(initial, inputs, weights)
            b = CF.process_initial_eval(initial, inputs, weights)
            assert same(list(a), list(b)) and all(
                x.dtype == y.dtype for x, y in zip(a[0] + a[1], b[0] + b[1])
            )
    totals, weights = (
        [torch.ones(2, 3), torch.full((2, 4), 3.0)],
        [torch.full((2, 3), 2.0), torch.full((2, 4), 4.0)],
    )
    for is_tuple in (False, True):
        for use in (False, True):
            args = (totals[:1] if not is_tuple else totals, weights, is_tuple, use)
            assert same(WF.format_result(*args), CF.format_result(*args))
    x = (torch.zeros(6, 2),)
    for n, initial, modified, per_eval in [
        (2, torch.ones(2), torch.ones(6), 3),
        (2, torch.ones(2), torch.ones(1), 3),
        (2, torch.ones(2), torch.ones(6), 1),
        (4, torch.ones(4), torch.ones(6), 2),
        (2, torch.tensor(1.0), torch.ones(6), 3),
        (2, torch.ones(2, 3), torch.ones(6, 3), 3),
    ]:
        both(
            WF.check_output_shape_valid,
            CF.check_output_shape_valid,
            x,
            n,
            initial,
            modified,
            per_eval,
        )
    inputs = (torch.zeros(3, 2), torch.zeros(1, 0), torch.zeros(0, 2), torch.zeros(2, 2))
    mapping = {0: [0], 1: [1], 2: [1, 2], 3: [0, 2], 4: [3]}
    for features in ([0], [1], [2], [1, 2], [3], [4], [0, 4], []):
        for minimum in (None, 1, 2, 4):
            assert WF._should_skip_inputs_and_warn(
                features, mapping, inputs, minimum
            ) == CF._should_skip_inputs_and_warn(features, mapping, inputs, minimum)


def test_dataloader_helpers_as_captums():
    from captum.attr._core import dataloader_attr as CD

    from whybox.attr._core import dataloader_attr as WD

    a, b = torch.ones(2, 3), torch.zeros(1, 3)
    assert same(WD._concat_tensors(None, a, None), CD._concat_tensors(None, a, None))
    assert same(WD._concat_tensors(a, b, ()), CD._concat_tensors(a, b, ()))
    masks = (torch.tensor([[0, 1, 1]]), torch.tensor([[2, 2]]), torch.tensor([[3]]))
    mapping = {0: [0], 1: [0], 2: [1], 3: [2]}
    for keep in ([1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]):
        keep = torch.tensor(keep)
        ours = WD._create_perturbation_mask(keep, masks, mapping)
        theirs = CD._create_perturbation_mask(keep, masks, mapping)
        assert same(ours, theirs)
        batch = (torch.full((2, 3), 5.0), "extra", torch.full((2, 2), 7.0), torch.ones(2, 1))
        roles = (0, 1, 0, 0)
        baselines = (0.5, torch.zeros(1, 2), -1)
        assert same(
            WD._perturb_inputs(batch, roles, baselines, ours),
            CD._perturb_inputs(batch, roles, baselines, theirs),
        )
    unique = torch.arange(2 * 4.0).reshape(2, 4)
    attr_inputs = (torch.zeros(5, 3), torch.zeros(5, 2, 2))
    shaped = (torch.tensor([[0, 1, 1]]), torch.tensor([[[2, 3], [3, 2]]]))
    assert same(
        WD._convert_output_shape(unique, attr_inputs, shaped),
        CD._convert_output_shape(unique, attr_inputs, shaped),
    )


def test_scatter_itp_attr_by_mask_as_captums():
    from captum.attr._utils.interpretable_input import _scatter_itp_attr_by_mask as theirs

    from whybox.attr._utils.interpretable_input import _scatter_itp_attr_by_mask as ours

    attr = torch.arange(3 * 5.0).reshape(3, 5)
    for shape, mask in [
        ((1, 4), torch.tensor([[0, 4, 4, 1]])),
        ((1, 2, 3), torch.tensor([[[0, 1, 2], [3, 4, 0]]])),
        ((1, 2, 2, 2), torch.randint(0, 5, (1, 2, 2, 2))),
    ]:
        assert same(ours(attr, shape, mask), theirs(attr, shape, mask))
    assert same(
        ours(attr[0], (1, 4), torch.tensor([0, 1, 1, 2])),
        theirs(attr[0], (1, 4), torch.tensor([0, 1, 1, 2])),
    )


def test_reorder_stats_as_captums():
    from captum.attr._utils import stat as CS
    from captum.attr._utils.summarizer import _reorder_stats as theirs

    from whybox.attr import _stat as WS
    from whybox.attr._utils.summarizer import _reorder_stats as ours

    def describe(stat):
        return type(stat).__name__, getattr(stat, "order", None)

    def build(mod, spec):
        return [getattr(mod, name)(**kwargs) for name, kwargs in spec]

    for spec in [
        [("Mean", {})],
        [("StdDev", {"order": 1}), ("Min", {})],
        [("Var", {}), ("Mean", {}), ("Count", {}), ("Max", {})],
        [("StdDev", {}), ("StdDev", {"order": 1}), ("Sum", {}), ("MSE", {})],
        [("Count", {}), ("Count", {})],
    ]:
        (a_stats, a_index), (b_stats, b_index) = ours(build(WS, spec)), theirs(build(CS, spec))
        # Captum orders statistics of one kind as a set iterates them: compare kinds in
        # order, and per kind the same statistics; the requested ones at the same places
        assert [type(s).__name__ for s in a_stats] == [type(s).__name__ for s in b_stats]
        assert sorted(map(describe, a_stats)) == sorted(map(describe, b_stats))
        assert a_index == b_index
        assert sorted(describe(a_stats[i]) for i in a_index) == sorted(
            describe(b_stats[i]) for i in b_index
        )


def test_train_test_split_as_captums():
    import random

    from captum.concept._utils.classifier import _train_test_split as theirs

    from whybox.concept._utils.classifier import _train_test_split as ours

    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    for split in (0.33, 0.5, 0.1):
        results = []
        for f in (ours, theirs):
            random.seed(7)
            results.append(f(x, y, split))
        assert same(results[0], results[1])
    for f in (ours, theirs):
        with pytest.raises(ValueError):
            f(x, y, 0.05)


# -- the inner classes of (Layer)GradientShap ---------------------------------------------
@pytest.mark.parametrize("multiply", [True, False])
def test_input_baseline_x_gradient_as_captums(multiply):
    from captum.attr._core.gradient_shap import InputBaselineXGradient as Theirs
    from captum.attr._core.layer.layer_gradient_shap import (
        LayerInputBaselineXGradient as LayerTheirs,
    )

    from whybox.attr._core.gradient_shap import InputBaselineXGradient as Ours
    from whybox.attr._core.layer.layer_gradient_shap import (
        LayerInputBaselineXGradient as LayerOurs,
    )

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, b = torch.randn(5, 3), torch.randn(5, 3)

    def run(make, *args, **kwargs):
        np.random.seed(1)
        return make().attribute(*args, **kwargs)

    def close(a, c):
        if isinstance(a, torch.Tensor):
            return a.shape == c.shape and torch.allclose(a, c, atol=1e-6)
        return len(a) == len(c) and all(close(p, q) for p, q in zip(a, c))

    for kwargs in [
        {},
        {"baselines": b},
        {"baselines": 0.5, "return_convergence_delta": True},
        {"baselines": (b,), "additional_forward_args": None},
    ]:
        for inputs in (x, (x,)):
            ours = run(lambda: Ours(model, multiply), inputs, target=1, **kwargs)
            theirs = run(lambda: Theirs(model, multiply), inputs, target=1, **kwargs)
            assert type(ours) is type(theirs) and close(ours, theirs)
    for kwargs in [{}, {"return_convergence_delta": True}, {"attribute_to_layer_input": True}]:
        ours = run(
            lambda: LayerOurs(model, model[1], multiply_by_inputs=multiply), x, b, 0, **kwargs
        )
        theirs = run(
            lambda: LayerTheirs(model, model[1], multiply_by_inputs=multiply), x, b, 0, **kwargs
        )
        assert type(ours) is type(theirs) and close(ours, theirs)
    for ours, theirs in [(Ours(model, multiply), Theirs(model, multiply))]:
        assert ours.has_convergence_delta() == theirs.has_convergence_delta()
        assert ours.multiplies_by_inputs == theirs.multiplies_by_inputs == multiply
        with pytest.raises(NotImplementedError):
            ours.attribute_future()
    layer = LayerOurs(model, model[1], multiply_by_inputs=multiply)
    assert layer.has_convergence_delta() and layer.multiplies_by_inputs == multiply


@pytest.mark.parametrize("use_output", [False, True])
def test_modified_relu_gradient_attribution_as_captums(use_output):
    from captum.attr._core.guided_backprop_deconvnet import (
        ModifiedReluGradientAttribution as Theirs,
    )

    from whybox.attr._core.guided_backprop_deconvnet import (
        Deconvolution,
        GuidedBackprop,
    )
    from whybox.attr._core.guided_backprop_deconvnet import (
        ModifiedReluGradientAttribution as Ours,
    )

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for inputs in (x, (x,)):
            ours = Ours(model, use_output).attribute(inputs, target=1)
            theirs = Theirs(model, use_output).attribute(inputs, target=1)
            assert type(ours) is type(theirs)
            assert all(torch.allclose(a, b) for a, b in zip(ours, theirs))
        plain = GuidedBackprop if not use_output else Deconvolution
        assert torch.allclose(Ours(model, use_output).attribute(x, 0), plain(model).attribute(x, 0))
    assert isinstance(plain(model), Ours) and plain(model).use_relu_grad_output == use_output
    assert Ours(model, use_output).use_relu_grad_output == use_output
    with pytest.raises(AssertionError):
        Ours(lambda t: t)
    with pytest.raises(NotImplementedError):
        Ours(model).attribute_future()
