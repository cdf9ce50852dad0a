"""FGSM and PGD: closed forms on linear models, the ball and box PGD never leaves, parity
with Captum 0.9 (same seeds, bit-identical where the maths is), and whybox's contracts."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from whybox.robust import FGSM, PGD

CR = pytest.importorskip("captum.robust")


def softmax_mlp(seed: int = 0, n_in: int = 5, n_out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_out), nn.Softmax(dim=1)
    ).eval()


def linear_softmax(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return nn.Sequential(linear, nn.Softmax(dim=1)).eval()


def captum_quiet(fn, *args, **kwargs):
    # Captum warns that inputs did not require gradients on every step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- closed forms -------------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_on_a_linear_model_moves_each_input_by_epsilon_sign_w(targeted):
    """Two classes, default loss -log p_t: d(-log p_t)/dx = -(1 - p_t)(w_t - w_o), so the
    untargeted step is -eps * sign(w_t - w_o) and the targeted one +eps * sign(w_t - w_o)."""
    torch.manual_seed(0)
    weight = torch.randn(2, 6, dtype=torch.float64)
    model = linear_softmax(weight, torch.zeros(2, dtype=torch.float64))
    x = torch.randn(5, 6, dtype=torch.float64) * 0.1
    target = torch.tensor([0, 1, 0, 1, 1])
    out = FGSM(model).perturb(x, 0.25, target, targeted=targeted)
    direction = torch.sign(weight[target] - weight[1 - target])  # sign(w_t - w_other)
    expected = x + (0.25 if targeted else -0.25) * direction
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert out.dtype == torch.float64


def test_fgsm_with_a_loss_moves_along_sign_of_its_gradient_and_clamps():
    """Loss = x . v summed (linear in x): the step is +eps * sign(v), then clamped."""
    v = torch.tensor([1.0, -2.0, 0.0, 3.0])

    def forward(x):
        return x @ v

    def loss(out, target):
        return out

    x = torch.full((3, 4), 0.5)
    out = FGSM(forward, loss, lower_bound=0.0, upper_bound=0.7).perturb(x, 0.3, None)
    expected = torch.tensor([0.7, 0.2, 0.5, 0.7]).expand(3, 4)  # 0.8 clamped, 0 grad unchanged
    torch.testing.assert_close(out, expected)


def test_fgsm_mask_moves_only_masked_elements():
    model = softmax_mlp()
    x = torch.rand(4, 5)
    mask = torch.tensor([[1, 0, 1, 0, 0]])
    out = FGSM(model).perturb(x, 0.1, 1, mask=mask)
    assert torch.equal(out[:, [1, 3, 4]], x[:, [1, 3, 4]])
    assert torch.allclose((out - x)[:, [0, 2]].abs(), torch.tensor(0.1))


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_never_leaves_its_ball_and_box(norm, random_start):
    model = softmax_mlp(1, n_in=6, n_out=4)
    torch.manual_seed(2)
    x = torch.rand(16, 6)
    radius = 0.15
    pgd = PGD(model, lower_bound=0.05, upper_bound=0.9)
    out = pgd.perturb(
        x.clamp(0.05, 0.9), radius, 0.07, 12, torch.arange(16) % 4, random_start=random_start,
        norm=norm, seed=3,
    )  # fmt: skip
    diff = (out - x.clamp(0.05, 0.9)).reshape(16, -1)
    if norm == "Linf":
        assert diff.abs().max() <= radius + 1e-6
    else:
        assert diff.norm(dim=1).max() <= radius + 1e-6
        # a step of 0.07 per coordinate over 12 steps reaches the sphere for most examples
        assert (diff.norm(dim=1) > radius * 0.99).float().mean() > 0.5
    assert out.min() >= 0.05 and out.max() <= 0.9


def test_pgd_on_a_linear_model_goes_to_the_corner_of_the_linf_ball():
    """Enough signed steps on a linear two-class model end at x - r * sign(w_t - w_o)."""
    torch.manual_seed(4)
    weight = torch.randn(2, 5, dtype=torch.float64)
    model = linear_softmax(weight, torch.zeros(2, dtype=torch.float64))
    x = torch.randn(3, 5, dtype=torch.float64) * 0.1
    out = PGD(model).perturb(x, 0.2, 0.05, 10, 0)
    expected = x - 0.2 * torch.sign(weight[0] - weight[1])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_targeted_pgd_reaches_the_target_class_untargeted_leaves_the_true_one():
    model = softmax_mlp(5, n_in=6, n_out=4)
    torch.manual_seed(6)
    x = torch.rand(32, 6)
    labels = model(x).argmax(1)
    attacked = PGD(model).perturb(x, 3.0, 0.1, 60, labels)
    assert (model(attacked).argmax(1) != labels).float().mean() > 0.9
    goal = (labels + 1) % 4
    reached = PGD(model).perturb(x, 3.0, 0.1, 60, goal, targeted=True)
    assert (model(reached).argmax(1) == goal).float().mean() > 0.9


# -- parity with Captum -------------------------------------------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_matches_captum(targeted):
    model = softmax_mlp()
    torch.manual_seed(7)
    x = torch.rand(6, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mask = torch.tensor([[1, 1, 0, 1, 1]])
    for kwargs in ({}, {"mask": mask}):
        ours = FGSM(model, lower_bound=0, upper_bound=1).perturb(
            x, 0.1, y, targeted=targeted, **kwargs
        )
        theirs = captum_quiet(
            CR.FGSM(model, lower_bound=0, upper_bound=1).perturb,
            x.clone(),
            0.1,
            y,
            targeted=targeted,
            **kwargs,
        )
        assert torch.equal(ours, theirs.detach())


def test_fgsm_matches_captum_with_a_loss_tuple_inputs_and_extra_args():
    torch.manual_seed(8)
    a, b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(x1, x2, scale):
        return a(x1) + scale * b(x2)

    loss = nn.CrossEntropyLoss(reduction="none")
    inputs = (torch.randn(5, 4), torch.randn(5, 2))
    y = torch.tensor([0, 2, 1, 1, 0])
    ours = FGSM(forward, loss).perturb(inputs, 0.05, y, additional_forward_args=(2.0,))
    theirs = captum_quiet(
        CR.FGSM(forward, loss).perturb, tuple(t.clone() for t in inputs), 0.05, y, (2.0,)
    )
    assert isinstance(ours, tuple) and len(ours) == 2
    for o, t in zip(ours, theirs):
        assert torch.equal(o, t.detach())


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_matches_captum_with_the_same_global_seed(norm, random_start, targeted):
    """Same torch seed -> Captum's random start (drawn from the global generator in its
    order) and the same steps, and the generator left where Captum leaves it. Captum's
    L2 random start only works for one example (see PGD.perturb's notes)."""
    model = softmax_mlp(9)
    torch.manual_seed(10)
    n = 1 if (norm == "L2" and random_start) else 6
    x = torch.rand(n, 5)
    y = torch.arange(n) % 3
    args = (0.2, 0.05, 7, y)
    options = {"targeted": targeted, "random_start": random_start, "norm": norm}
    torch.manual_seed(11)
    ours = PGD(model, lower_bound=0, upper_bound=1).perturb(x, *args, **options)
    after_ours = torch.rand(3)
    torch.manual_seed(11)
    theirs = captum_quiet(
        CR.PGD(model, lower_bound=0, upper_bound=1).perturb, x.clone(), *args, **options
    )
    after_theirs = torch.rand(3)
    assert torch.equal(ours, theirs)
    assert torch.equal(after_ours, after_theirs)


def test_pgd_matches_captum_on_float64_with_mask_and_a_loss():
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    loss = nn.CrossEntropyLoss(reduction="none")
    x = torch.rand(4, 5, dtype=torch.float64)
    y = torch.tensor([2, 1, 0, 1])
    mask = torch.tensor([1, 0, 1, 1, 0], dtype=torch.float64)
    torch.manual_seed(13)
    ours = PGD(model, loss).perturb(x, 0.3, 0.04, 9, y, random_start=True, mask=mask)
    torch.manual_seed(13)
    theirs = captum_quiet(
        CR.PGD(model, loss).perturb, x.clone(), 0.3, 0.04, 9, y, random_start=True, mask=mask
    )
    assert ours.dtype == torch.float64
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[:, [1, 4]], x[:, [1, 4]])


# -- native options and contracts ---------------------------------------------------------


def test_pgd_seed_is_reproducible_and_leaves_global_state_alone():
    model = softmax_mlp(14)
    x = torch.rand(8, 5)
    pgd = PGD(model)
    for norm in ("Linf", "L2"):
        torch.manual_seed(0)
        first = pgd.perturb(x, 0.2, 0.05, 0, 0, random_start=True, norm=norm, seed=5)
        after = torch.rand(2)
        torch.manual_seed(0)
        again = pgd.perturb(x, 0.2, 0.05, 0, 0, random_start=True, norm=norm, seed=5)
        assert torch.equal(first, again)
        assert torch.equal(after, torch.rand(2))  # no global draw with seed=
        other = pgd.perturb(x, 0.2, 0.05, 0, 0, random_start=True, norm=norm, seed=6)
        assert not torch.equal(first, other)
        # per-example random starts lie in each example's ball
        diff = (first - x).reshape(8, -1)
        size = diff.abs().amax(1) if norm == "Linf" else diff.norm(dim=1)
        assert size.max() <= 0.2 + 1e-6 and size.min() > 0


def test_l2_random_start_is_uniform_in_the_ball():
    """Statistical: for a uniform point of the d-ball of radius r, P(|x| <= r/2) = 2^-d;
    with d = 2 that is 1/4 (4000 draws: 6 standard errors is 0.04)."""
    x = torch.zeros(4000, 2)
    pgd = PGD(lambda t: t.sum(1))
    start = pgd.perturb(x, 1.0, 0.0, 0, None, random_start=True, norm="L2", seed=0)
    radii = start.norm(dim=1)
    assert radii.max() <= 1.0 + 1e-6
    assert abs((radii <= 0.5).float().mean().item() - 0.25) < 0.04
    angles = torch.atan2(start[:, 1], start[:, 0])
    assert abs((angles > 0).float().mean().item() - 0.5) < 0.05


def test_chunk_size_does_not_change_results():
    model = softmax_mlp(15)
    x = torch.rand(10, 5)
    y = torch.arange(10) % 3
    whole = PGD(model).perturb(x, 0.2, 0.03, 5, y, random_start=True, seed=1)
    chunked = PGD(model).perturb(x, 0.2, 0.03, 5, y, random_start=True, seed=1, chunk_size=3)
    torch.testing.assert_close(whole, chunked, rtol=0, atol=1e-6)
    one = FGSM(model).perturb(x, 0.1, y, chunk_size=1)
    torch.testing.assert_close(one, FGSM(model).perturb(x, 0.1, y), rtol=0, atol=1e-6)


def test_inputs_parameters_and_modes_are_left_unchanged():
    model = softmax_mlp(16)
    x = torch.rand(4, 5)
    before = x.clone()
    params = [p.clone() for p in model.parameters()]
    out = PGD(model).perturb(x, 0.2, 0.05, 3, 1, random_start=True, seed=0)
    assert torch.equal(x, before) and not x.requires_grad and x.grad is None
    assert not out.requires_grad
    assert all(torch.equal(p, q) for p, q in zip(params, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_empty_batch_and_zero_steps():
    model = softmax_mlp(17)
    empty = torch.zeros(0, 5)
    assert PGD(model).perturb(empty, 0.1, 0.01, 3, 0).shape == (0, 5)
    x = torch.rand(3, 5)
    assert torch.equal(PGD(model).perturb(x, 0.1, 0.01, 0, 0), x)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda m, x: PGD(m).perturb(x, 0.1, 0.01, 2, 0, norm="L1"), "norm"),
        (lambda m, x: PGD(m).perturb(x, -0.1, 0.01, 2, 0), "radius"),
        (lambda m, x: PGD(m).perturb(x, 0.1, 0.01, 2.5, 0), "step_num"),
        (lambda m, x: PGD(m).perturb(x, 0.1, 0.01, 2, 0, seed="a"), "seed"),
        (lambda m, x: FGSM(m).perturb(x, 0.1, 0, mask=torch.ones(2, 7)), "mask"),
        (lambda m, x: FGSM(m).perturb(x, 0.1, 7), "target"),
        (lambda m, x: FGSM(m).perturb(x.long(), 0.1, 0), "inputs"),
        (lambda m, x: FGSM(m, lower_bound=1.0, upper_bound=0.0), "upper_bound"),
        (lambda m, x: FGSM(m, loss_func=lambda o, t: o).perturb(x, 0.1, 0), "loss_func"),
        (lambda m, x: FGSM("model"), "forward_func"),
    ],
)
def test_bad_arguments_get_errors_naming_the_parameter(call, name):
    with pytest.raises((ValueError, TypeError)) as error:
        call(softmax_mlp(), torch.rand(3, 5))
    assert f"'{name}'" in str(error.value)


def test_bad_norm_is_also_an_assertion_error_as_in_captum():
    with pytest.raises(AssertionError):
        PGD(softmax_mlp()).perturb(torch.rand(2, 5), 0.1, 0.01, 1, 0, norm="L1")


def test_attacks_are_callable_perturbations():
    model = softmax_mlp()
    x = torch.rand(3, 5)
    assert torch.equal(FGSM(model)(x, 0.1, 0), FGSM(model).perturb(x, 0.1, 0))
    custom = FGSM(model)
    custom.bound = lambda t: t.clamp(0.2, 0.3)  # Captum's documented override
    assert custom.perturb(x, 0.1, 0).max() <= 0.3
