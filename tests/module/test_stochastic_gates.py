"""Stochastic gates: parity with Captum 0.9 (same seeds: same parameters, samples, gated
inputs, L0 terms and gradients), the L0 term's closed forms (and a Monte Carlo check that
it is the probability of an open gate), masks over groups, eval-mode determinism."""

from __future__ import annotations

import math

import pytest
import torch

from whybox.module import BinaryConcreteStochasticGates, GaussianStochasticGates

CM = pytest.importorskip("captum.module")

CLASSES = ["BinaryConcreteStochasticGates", "GaussianStochasticGates"]
OURS = {
    "BinaryConcreteStochasticGates": BinaryConcreteStochasticGates,
    "GaussianStochasticGates": GaussianStochasticGates,
}
GROUPS = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3], [0, 4, 4, 3]])  # 5 gates over a 3x4 input


def pair(name, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    ours = OURS[name](*args, **kwargs)
    torch.manual_seed(seed)
    theirs = getattr(CM, name)(*args, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("mask", [None, "groups", "per_example"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_gates_match_captum(name, mask, reduction):
    """Same global seed: same initial parameters; in training mode the same sampled gates
    (same draws in the same order); in eval mode the same means; same L0 terms and
    parameter gradients, and the generator left where Captum leaves it."""
    if mask is None:
        n_gates, mask_tensor, x = 12, None, torch.randn(6, 3, 4)
    elif mask == "groups":
        n_gates, mask_tensor, x = 5, GROUPS, torch.randn(6, 3, 4)
    else:  # a mask with its own batch dimension: each example its own grouping
        n_gates, mask_tensor, x = 5, torch.stack([GROUPS, GROUPS.flip(1)]), torch.randn(2, 3, 4)
    ours, theirs = pair(name, n_gates, mask=mask_tensor, reg_weight=0.3, reg_reduction=reduction)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        torch.manual_seed(1)
        gated, l0 = ours(x)
        after = torch.rand(2)
        torch.manual_seed(1)
        gated_c, l0_c = theirs(x)
        assert torch.equal(after, torch.rand(2))
        torch.testing.assert_close(gated, gated_c, rtol=0, atol=1e-7)
        torch.testing.assert_close(l0, l0_c, rtol=0, atol=1e-7)
        if reduction == "none" and name == "BinaryConcreteStochasticGates":
            continue  # Captum's in-place reg_weight product breaks this backward
        (grad,) = torch.autograd.grad((gated.sum() + l0.sum()), list(ours.parameters()))
        (grad_c,) = torch.autograd.grad((gated_c.sum() + l0_c.sum()), list(theirs.parameters()))
        torch.testing.assert_close(grad, grad_c, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.get_gate_values(), theirs.get_gate_values())
    torch.testing.assert_close(ours.get_gate_values(clamp=False), theirs.get_gate_values(False))
    torch.testing.assert_close(ours.get_gate_active_probs(), theirs.get_gate_active_probs())


@pytest.mark.parametrize("name", CLASSES)
def test_from_pretrained_matches_captum(name):
    trained = torch.tensor([-2.0, 0.1, 0.6, 3.0])
    ours = OURS[name]._from_pretrained(trained, reg_weight=0.5).eval()
    theirs = getattr(CM, name)._from_pretrained(trained, reg_weight=0.5).eval()
    x = torch.randn(3, 4)
    for a, b in zip(ours(x), theirs(x)):
        torch.testing.assert_close(a, b)


def test_binary_concrete_l0_is_its_closed_form_and_the_open_probability():
    """P(gate > 0) for the stretched concrete: s * (u - l) + l > 0 iff
    (logit(U) + log_alpha) / T > logit(-l / (u - l)) = log(-l / u), so
    P = sigmoid(log_alpha - T log(-l / u)). Statistical check: the fraction of sampled
    gates above 0 over 20000 samples is within 5 standard errors of it."""
    gates = BinaryConcreteStochasticGates._from_pretrained(
        torch.tensor([-1.5, -0.2, 0.0, 0.7, 2.5]),
        temperature=0.5,
        lower_bound=-0.2,
        upper_bound=1.3,
        reg_weight=2.0,
    )
    log_alpha = gates.log_alpha_param.detach()
    closed = torch.sigmoid(log_alpha - 0.5 * math.log(0.2 / 1.3))
    torch.testing.assert_close(gates.get_gate_active_probs(), closed)
    _, l0 = gates(torch.ones(1, 5))
    torch.testing.assert_close(l0, 2.0 * closed.sum())
    torch.manual_seed(0)
    gated, _ = gates.train()(torch.ones(20000, 5))
    open_fraction = (gated > 0).double().mean(0)
    stderr = (closed * (1 - closed) / 20000).sqrt()
    assert ((open_fraction - closed).abs() <= 5 * stderr + 1e-3).all(), (open_fraction, closed)


def test_gaussian_l0_is_its_closed_form_and_the_open_probability():
    """P(mu + N(0, std^2) > 0) = Phi(mu / std); the L0 'mean' term is its mean. Statistical
    check as for the concrete gates."""
    mu = torch.tensor([-0.4, 0.0, 0.3, 1.2])
    gates = GaussianStochasticGates._from_pretrained(mu, std=0.4, reg_reduction="mean")
    phi = torch.tensor([0.5 * (1 + math.erf(m / 0.4 / math.sqrt(2))) for m in mu.tolist()])
    torch.testing.assert_close(gates.get_gate_active_probs(), phi)
    _, l0 = gates(torch.ones(2, 4))
    torch.testing.assert_close(l0, phi.mean())
    torch.manual_seed(0)
    gated, _ = gates.train()(torch.ones(20000, 4))
    open_fraction = (gated > 0).double().mean(0)
    stderr = (phi * (1 - phi) / 20000).sqrt().double()
    assert ((open_fraction - phi.double()).abs() <= 5 * stderr + 1e-3).all()


@pytest.mark.parametrize("cls", [BinaryConcreteStochasticGates, GaussianStochasticGates])
def test_masked_groups_share_a_gate(cls):
    """Every element of a group is multiplied by the same sampled value (per example);
    different examples draw different values in training mode."""
    torch.manual_seed(3)
    gates = cls(5, mask=GROUPS).train()
    x = torch.ones(64, 3, 4)
    gated, _ = gates(x)
    for g in range(5):
        members = gated[:, GROUPS == g]  # (64, group size)
        assert torch.equal(members, members[:, :1].expand_as(members))
    assert not torch.equal(gated[0], gated[1])


@pytest.mark.parametrize("cls", [BinaryConcreteStochasticGates, GaussianStochasticGates])
def test_eval_mode_gates_are_deterministic_and_the_clamped_means(cls):
    torch.manual_seed(4)
    gates = cls(5, mask=GROUPS).eval()
    x = torch.randn(7, 3, 4)
    first, l0 = gates(x)
    torch.manual_seed(99)
    second, l0_again = gates(x)
    assert torch.equal(first, second) and torch.equal(l0, l0_again)
    expected = x * gates.get_gate_values()[GROUPS]
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    assert not gates.get_gate_values().requires_grad


def test_gates_trace_with_torch_fx_as_captums_do():
    """Captum's gates with a mask are torch.fx-traceable (sampling is a wrapped leaf); a
    trace records the mode it was traced in."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(BinaryConcreteStochasticGates(5, mask=GROUPS))
    x = torch.randn(4, 3, 4)
    for training in (True, False):
        model.train(training)
        traced = torch.fx.symbolic_trace(model)
        torch.manual_seed(6)
        a = model(x)
        torch.manual_seed(6)
        b = traced(x)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


def test_float64_inputs_and_the_l0_gradient_flows_to_the_parameters():
    gates = GaussianStochasticGates(3, reg_reduction="none").double()
    x = torch.randn(2, 3, dtype=torch.float64)
    gated, l0 = gates(x)
    assert gated.dtype == torch.float64 and l0.shape == (3,)
    l0.sum().backward()
    assert gates.mu.grad is not None and (gates.mu.grad > 0).all()  # more open -> more L0


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: BinaryConcreteStochasticGates(3, temperature=1.5), "temperature"),
        (lambda: BinaryConcreteStochasticGates(3, lower_bound=0.1), "lower_bound"),
        (lambda: BinaryConcreteStochasticGates(3, upper_bound=0.9), "upper_bound"),
        (lambda: GaussianStochasticGates(3, std=0.0), "std"),
        (lambda: GaussianStochasticGates(3, reg_reduction="max"), "reg_reduction"),
        (lambda: GaussianStochasticGates(3, mask=torch.tensor([0, 1, 1])), "mask"),
        (lambda: GaussianStochasticGates(2, mask=torch.tensor([0.0, 1.0])), "mask"),
        (lambda: GaussianStochasticGates(0), "n_gates"),
        (lambda: GaussianStochasticGates(3)(torch.randn(2, 4)), "input_tensor"),
        (lambda: GaussianStochasticGates(2, mask=torch.tensor([0, 1]))(torch.randn(2, 3)), "input_tensor"),
    ],
)  # fmt: skip
def test_bad_arguments_get_errors_naming_the_parameter(make, name):
    with pytest.raises((ValueError, TypeError)) as error:
        make()
    assert f"'{name}'" in str(error.value)


def test_captums_asserted_checks_are_assertion_errors_too():
    with pytest.raises(AssertionError):
        BinaryConcreteStochasticGates(3, temperature=1.5)
    with pytest.raises(AssertionError):
        GaussianStochasticGates(3, mask=torch.tensor([0, 1, 1]))
    with pytest.raises(AssertionError):
        GaussianStochasticGates(3)(torch.randn(2, 4))
