"""Captum-private helpers that Captum's own tests import, at Captum's paths, behaving as
Captum 0.9's do.

``captum._utils.common``: ``safe_div``, ``_select_targets``, ``_sort_key_list``;
``captum._utils.gradient``: ``compute_layer_gradients_and_eval``;
``captum.attr._utils.common``: ``_validate_input``, ``_validate_noise_tunnel_type``
(with ``captum.attr._core.noise_tunnel.SUPPORTED_NOISE_TUNNEL_TYPES``);
``captum.influence._utils.common``: ``_jacobian_loss_wrt_inputs``.

The behaviour is checked against plain autograd and hand-computed values; where Captum is
installed, ``compute_layer_gradients_and_eval`` is also run side by side with Captum's.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox._utils.common import _select_targets, _sort_key_list, safe_div
from whybox._utils.gradient import compute_layer_gradients_and_eval
from whybox.attr._core.noise_tunnel import SUPPORTED_NOISE_TUNNEL_TYPES
from whybox.attr._utils.common import _validate_input, _validate_noise_tunnel_type
from whybox.influence._utils.common import _jacobian_loss_wrt_inputs


class Net(nn.Module):
    """``lin2(relu(lin1(x)))`` with an in-place ReLU right after the recorded layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin1 = nn.Linear(3, 4)
        self.relu = nn.ReLU(inplace=True)
        self.lin2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.lin2(self.relu(self.lin1(x))) * scale


def _inputs() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(5, 3, requires_grad=True)


# -- safe_div ----------------------------------------------------------------------------
def test_safe_div_number_denominators():
    num = torch.tensor([4.0, 6.0])
    assert torch.equal(safe_div(num, 2), torch.tensor([2.0, 3.0]))
    assert torch.equal(safe_div(num, 0), num)  # default denominator 1.0
    assert torch.equal(safe_div(num, 0.0, 2.0), torch.tensor([2.0, 3.0]))
    assert torch.equal(safe_div(num, 0, torch.tensor(4.0)), torch.tensor([1.0, 1.5]))


def test_safe_div_tensor_denominator_replaces_only_zero_entries():
    num = torch.tensor([4.0, 6.0, 8.0])
    denom = torch.tensor([2.0, 0.0, -4.0])
    assert torch.equal(safe_div(num, denom), torch.tensor([2.0, 6.0, -2.0]))
    assert torch.equal(safe_div(num, denom, 3.0), torch.tensor([2.0, 2.0, -2.0]))
    per_entry = torch.tensor([1.0, 4.0, 1.0])
    assert torch.equal(safe_div(num, denom, per_entry), torch.tensor([2.0, 1.5, -2.0]))
    # the result never holds inf / nan for a zero denominator
    assert torch.isfinite(safe_div(num, torch.zeros(3))).all()


# -- _select_targets ---------------------------------------------------------------------
def test_select_targets_every_form():
    out2 = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert _select_targets(out2, None) is out2
    assert torch.equal(_select_targets(out2, 1), torch.tensor([2, 5, 8]))
    assert torch.equal(_select_targets(out2, (2,)), torch.tensor([3, 6, 9]))
    assert torch.equal(_select_targets(out2, torch.tensor(0)), torch.tensor([1, 4, 7]))
    assert torch.equal(_select_targets(out2, torch.tensor([1])), torch.tensor([2, 5, 8]))
    # per example: a 1-D tensor or a list of ints, one column each -> (rows,)
    assert torch.equal(_select_targets(out2, torch.tensor([1, 2, 0])), torch.tensor([2, 6, 7]))
    assert torch.equal(_select_targets(out2, [1, 2, 0]), torch.tensor([2, 6, 7]))

    out3 = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    # an int on a 3-D output keeps the last dimension (Captum's legacy behaviour)
    assert torch.equal(_select_targets(out3, 1), out3[:, 1])
    assert torch.equal(_select_targets(out3, (0, 1)), out3[:, 0, 1])
    assert torch.equal(
        _select_targets(out3, [(0, 1), (2, 3)]), torch.stack([out3[0, 0, 1], out3[1, 2, 3]])
    )


def test_select_targets_keeps_the_graph():
    out = torch.randn(3, 4, requires_grad=True)
    _select_targets(out, [0, 3, 1]).sum().backward()
    expected = torch.zeros(3, 4)
    expected[0, 0] = expected[1, 3] = expected[2, 1] = 1
    assert torch.equal(out.grad, expected)


@pytest.mark.parametrize(
    ("shape", "target"),
    [
        ((3, 3), (1, 2)),  # index longer than the output's dimensions
        ((2, 3, 3), (1, 2, 3)),
        ((2, 3, 3), [(0, 1), (2, 0), (1, 1)]),  # list longer than the batch
        ((3, 3), [0, 1]),
        ((3, 3), torch.tensor([0, 1])),  # tensor of neither one nor rows entries
        ((2, 3, 3), torch.tensor([0, 1])),  # per-example columns need a 2-D output
        ((3, 3), [0.5, 1.0, 2.0]),  # list of neither ints nor tuples
        ((3, 3), "0"),
    ],
)
def test_select_targets_errors_are_assertions(shape, target):
    with pytest.raises(AssertionError):
        _select_targets(torch.zeros(shape), target)


# -- _sort_key_list ----------------------------------------------------------------------
def test_sort_key_list_orders_by_device_ids():
    keys = [torch.device("cuda:13"), torch.device("cuda:0"), torch.device("cuda:10")]
    ordered = _sort_key_list(keys, [0, 10, 13, 17])
    assert [k.index for k in ordered] == [0, 10, 13]
    assert [k.index for k in _sort_key_list(keys, [13, 10, 0])] == [13, 10, 0]
    single = [torch.device("cuda:3")]
    assert _sort_key_list(single) is single  # one device: no ids needed


@pytest.mark.parametrize(
    ("keys", "ids"),
    [
        (["cuda:0", "cuda:1"], None),  # several devices need ids
        (["cuda:0", "cuda:0"], [0]),  # duplicate device
        (["cuda:0", "cuda:1"], [0, 2]),  # an id list missing a device
    ],
)
def test_sort_key_list_errors_are_assertions(keys, ids):
    with pytest.raises(AssertionError):
        _sort_key_list([torch.device(k) for k in keys], ids)


# -- compute_layer_gradients_and_eval ----------------------------------------------------
def _reference(net: Net, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's values and d(output[:, target]) / d(lin1 output), by plain autograd."""
    hidden = net.lin1(x)
    selected = net.lin2(torch.relu(hidden))[:, target]
    (grad,) = torch.autograd.grad(selected.sum(), hidden)
    return grad, hidden.detach()


def test_layer_gradients_and_eval_equal_autograd():
    net, x = Net(), _inputs()
    grads, evals = compute_layer_gradients_and_eval(net, net.lin1, x, target_ind=1)
    expected_grad, expected_eval = _reference(net, x, 1)
    assert isinstance(grads, tuple) and isinstance(evals, tuple)
    assert len(grads) == len(evals) == 1
    torch.testing.assert_close(grads[0], expected_grad)
    # the in-place ReLU after lin1 does not change the recorded values (negatives kept)
    torch.testing.assert_close(evals[0], expected_eval)
    assert (evals[0] < 0).any()


def test_layer_gradients_to_layer_input_and_per_example_targets():
    net, x = Net(), _inputs()
    targets = [0, 1, 1, 0, 1]
    grads, evals = compute_layer_gradients_and_eval(
        net, net.relu, x, target_ind=targets, attribute_to_layer_input=True
    )
    hidden = net.lin1(x)
    out = net.lin2(torch.relu(hidden))
    selected = out[torch.arange(5), torch.tensor(targets)]
    (expected,) = torch.autograd.grad(selected.sum(), hidden)
    torch.testing.assert_close(grads[0], expected)
    torch.testing.assert_close(evals[0], hidden.detach())


def test_layer_gradients_several_layers_extra_args_output_fn_and_offload():
    net, x = Net(), _inputs()
    grads, evals = compute_layer_gradients_and_eval(
        net,
        [net.lin1, net.lin2],
        x,
        target_ind=0,
        additional_forward_args=(2.0,),
        output_fn=lambda values: tuple(3 * v for v in values),
        offload_to_cpu=True,
    )
    assert isinstance(grads, list) and isinstance(evals, list) and len(grads) == 2
    hidden = net.lin1(x)
    last = net.lin2(torch.relu(hidden))
    g_hidden, g_last = torch.autograd.grad((last * 2.0)[:, 0].sum(), (hidden, last))
    torch.testing.assert_close(grads[0][0], 3 * g_hidden)
    torch.testing.assert_close(grads[1][0], 3 * g_last)
    torch.testing.assert_close(evals[1][0], 3 * last.detach())
    assert not evals[0][0].requires_grad and evals[0][0].device.type == "cpu"


def test_layer_gradients_with_neuron_selector_give_input_gradients():
    net, x = Net(), _inputs()
    grads, evals, input_grads = compute_layer_gradients_and_eval(
        net, net.lin1, x, target_ind=1, gradient_neuron_selector=2
    )
    torch.testing.assert_close(grads[0], _reference(net, x, 1)[0])
    (expected,) = torch.autograd.grad(net.lin1(x)[:, 2].sum(), x)
    assert isinstance(input_grads, tuple)
    torch.testing.assert_close(input_grads[0], expected)
    with pytest.raises(AssertionError):
        compute_layer_gradients_and_eval(
            net, [net.lin1], x, target_ind=1, gradient_neuron_selector=2
        )


def test_layer_gradients_errors_are_assertions():
    net, x = Net(), _inputs()
    with pytest.raises(AssertionError):  # two outputs per example, no target
        compute_layer_gradients_and_eval(net, net.lin1, x)
    with pytest.raises(AssertionError):  # a layer that does not run in the forward
        compute_layer_gradients_and_eval(net, nn.Linear(3, 4), x, target_ind=0)


def test_layer_gradients_match_captum():
    captum_gradient = pytest.importorskip("captum._utils.gradient")
    net, x = Net(), _inputs()
    for kwargs in (
        {"target_ind": 1},
        {"target_ind": [0, 1, 1, 0, 1], "attribute_to_layer_input": True},
        {"target_ind": torch.tensor(0), "gradient_neuron_selector": (1,)},
    ):
        layer = net.relu if kwargs.get("attribute_to_layer_input") else net.lin1
        ours = compute_layer_gradients_and_eval(net, layer, x, **kwargs)
        theirs = captum_gradient.compute_layer_gradients_and_eval(net, layer, x, **kwargs)
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs):
            for a, b in zip(mine, reference):
                torch.testing.assert_close(a, b)


# -- argument checks ---------------------------------------------------------------------
def test_validate_input():
    one = (torch.tensor([[-1.0, 1.0]]),)
    _validate_input(one, (torch.zeros(1, 2),))
    _validate_input(one, (0.5,), n_steps=0, method="gausslegendre")
    _validate_input((torch.zeros(4, 2),), (torch.zeros(1, 2),))  # one row broadcasts
    _validate_input((torch.zeros(4, 2),), (torch.zeros(7, 2),), draw_baseline_from_distrib=True)
    for bad in (
        {"baselines": (torch.zeros(1, 2), 0.0)},  # one baseline per input
        {"baselines": (torch.zeros(2, 2),)},  # neither the input's shape nor one row
        {"baselines": (torch.zeros(1, 2),), "n_steps": -1},
        {"baselines": (torch.zeros(1, 2),), "method": "abcde"},
    ):
        baselines = bad.pop("baselines")
        with pytest.raises(AssertionError):
            _validate_input(one, baselines, **bad)
    with pytest.raises(AssertionError):
        _validate_input((torch.zeros(4, 2),), (torch.zeros(7, 3),), draw_baseline_from_distrib=True)


def test_validate_noise_tunnel_type():
    assert SUPPORTED_NOISE_TUNNEL_TYPES == ["smoothgrad", "smoothgrad_sq", "vargrad"]
    for nt_type in SUPPORTED_NOISE_TUNNEL_TYPES:
        _validate_noise_tunnel_type(nt_type, SUPPORTED_NOISE_TUNNEL_TYPES)
    with pytest.raises(AssertionError):
        _validate_noise_tunnel_type("abc", SUPPORTED_NOISE_TUNNEL_TYPES)


# -- _jacobian_loss_wrt_inputs -----------------------------------------------------------
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_jacobian_loss_is_each_examples_own_gradient(reduction):
    torch.manual_seed(2)
    out, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    jacobian = _jacobian_loss_wrt_inputs(
        nn.CrossEntropyLoss(reduction=reduction), out, labels, True, reduction
    )
    # example i's loss gradient: softmax(out_i) - onehot(label_i), whatever the reduction
    expected = torch.softmax(out, dim=1) - nn.functional.one_hot(labels, 3).float()
    torch.testing.assert_close(jacobian, expected)


def test_jacobian_loss_errors():
    out, labels = torch.tensor([0.5, 1.0]), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="is not a valid value for reduction_type"):
        _jacobian_loss_wrt_inputs(nn.BCELoss(reduction="sum"), out, labels, True, "none")
    with pytest.raises(AssertionError, match="does not match"):
        _jacobian_loss_wrt_inputs(nn.BCELoss(reduction="sum"), out, labels, True, "mean")
    # a plain callable is trusted to reduce as reduction_type says
    result = _jacobian_loss_wrt_inputs(lambda o, t: ((o - t) ** 2).sum(), out, labels, False, "sum")
    torch.testing.assert_close(result, 2 * (out - labels))
