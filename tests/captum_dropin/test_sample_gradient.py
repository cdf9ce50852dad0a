"""Per-example parameter gradients at Captum 0.9's paths (``captum._utils.sample_gradient``,
the Jacobian helpers of ``captum._utils.gradient``, ``captum._utils.exceptions``).

The reference is plain autograd, one example at a time: each example's loss alone,
backpropagated alone. The one-backward results must equal it on every supported module
layout (strides, dilation, groups, string paddings, padding modes, sequences into Linear,
a module called twice, an in-place op after a module), for sum and mean losses.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox._utils.exceptions import FeatureAblationFutureError, ShapleyValueFutureError
from whybox._utils.gradient import (
    _compute_jacobian_wrt_params,
    _compute_jacobian_wrt_params_with_sample_wise_trick,
)
from whybox._utils.sample_gradient import SUPPORTED_MODULES, SampleGradientWrapper


def _per_example(model: nn.Module, inputs: tuple, loss) -> list[tuple[torch.Tensor, ...]]:
    """Each example's parameter gradients of ``loss(model(example))``, one by one."""
    params = [p for p in model.parameters()]
    rows = []
    for i in range(inputs[0].shape[0]):
        out = model(*(x[i : i + 1] for x in inputs))
        rows.append(torch.autograd.grad(loss(out), params, allow_unused=True))
    return [
        torch.stack([r[k] if r[k] is not None else torch.zeros_like(p) for r in rows])
        for k, p in enumerate(params)
    ]


class Convs(nn.Module):
    def __init__(self, padding, padding_mode="zeros", groups=2, kernel=3, dilation=2):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(4, 8, kernel, stride=1, padding=padding, dilation=dilation, groups=groups,
                           padding_mode=padding_mode)  # fmt: skip
        self.relu = nn.ReLU(inplace=True)  # in place, right after the module
        self.b = nn.Conv2d(8, 3, 2, stride=2, bias=False)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.b(self.relu(self.a(x)))
        return self.fc(h.mean(dim=(2, 3)))


class Sequence(nn.Module):
    """A Linear over a sequence (3-D input), and a Linear module called twice."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Linear(5, 8)
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.embed(x))  # (N, T, 8)
        h = self.shared(torch.relu(self.shared(h)))
        return self.head(h.sum(dim=1))


CASES = [
    ("conv padding 1", lambda: Convs(2), (4, 9, 9)),
    ("conv 'same' odd kernel", lambda: Convs("same"), (4, 8, 7)),
    ("conv 'same' even kernel", lambda: Convs("same", kernel=2, groups=1, dilation=1), (4, 8, 7)),
    ("conv 'valid'", lambda: Convs("valid", groups=4), (4, 9, 9)),
    ("conv reflect padding", lambda: Convs(2, "reflect"), (4, 9, 9)),
    ("conv circular padding", lambda: Convs(1, "circular", groups=1), (4, 9, 9)),
    ("sequence, shared module", Sequence, (6, 5)),
]


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("name, build, shape", CASES, ids=[c[0] for c in CASES])
def test_one_backward_equals_per_example_autograd(name, build, shape, mode):
    model = build().double()
    torch.manual_seed(2)
    x = torch.randn((5,) + shape, dtype=torch.float64)
    y = torch.randint(0, model.fc.out_features if hasattr(model, "fc") else 3, (5,))

    def loss(out, labels):
        return nn.functional.cross_entropy(out, labels, reduction=mode)

    expected = []
    for i in range(5):  # each example's own loss (a batch of one: sum and mean agree)
        out = model(x[i : i + 1])
        expected.append(torch.autograd.grad(loss(out, y[i : i + 1]), list(model.parameters())))
    expected = [torch.stack(per) for per in zip(*expected)]
    wrapper = SampleGradientWrapper(model)
    wrapper.add_hooks()
    try:
        wrapper.compute_param_sample_gradients(loss(model(x), y), loss_mode=mode)
    finally:
        wrapper.remove_hooks()
    for param, want in zip(model.parameters(), expected):
        assert param.sample_grad.shape == (5,) + tuple(param.shape)
        torch.testing.assert_close(param.sample_grad, want, rtol=1e-9, atol=1e-11)
    assert not any(m._forward_hooks for m in model.modules())


def test_jacobians_with_and_without_the_trick_agree_with_autograd():
    model = Sequence().double()
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1])
    per_loss = nn.CrossEntropyLoss(reduction="none")
    loop = _compute_jacobian_wrt_params(model, (x,), labels, per_loss)
    expected = _per_example(model, (x,), lambda out: out.sum())  # scores, no loss
    scores = _compute_jacobian_wrt_params(model, (x,))
    for got, want in zip(scores, expected):
        torch.testing.assert_close(got, want)
    for reduction in ("sum", "mean"):
        trick = _compute_jacobian_wrt_params_with_sample_wise_trick(
            model, (x,), labels, nn.CrossEntropyLoss(reduction=reduction), reduction
        )
        assert len(trick) == len(loop) == len(list(model.parameters()))
        for got, want in zip(trick, loop):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # only the chosen layers' parameters, in their order
    chosen = _compute_jacobian_wrt_params_with_sample_wise_trick(
        model, (x,), layer_modules=[model.head]
    )
    torch.testing.assert_close(chosen[0], scores[-2])
    torch.testing.assert_close(chosen[1], scores[-1])
    assert len(chosen) == 2
    assert not any(m._forward_hooks for m in model.modules())


def test_captum_s_wrapper_gives_the_same_on_what_it_supports():
    sample_gradient = pytest.importorskip("captum._utils.sample_gradient")
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 4))  # fmt: skip
    x = torch.randn(7, 2, 6, 6, requires_grad=True)  # Captum's module hooks need it
    got = {}
    for name, cls in (
        ("whybox", SampleGradientWrapper),
        ("captum", sample_gradient.SampleGradientWrapper),
    ):
        wrapper = cls(model)
        wrapper.add_hooks()
        wrapper.compute_param_sample_gradients(model(x).pow(2).mean(), loss_mode="mean")
        wrapper.remove_hooks()
        got[name] = [p.sample_grad.clone() for p in model.parameters()]
    for ours, theirs in zip(got["whybox"], got["captum"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_errors_name_the_problem_and_leave_no_hooks():
    model = Sequence()
    x = torch.randn(3, 4, 5)
    labels = torch.tensor([0, 1, 2])
    with pytest.raises(AssertionError, match="reduction"):
        _compute_jacobian_wrt_params(model, (x,), labels, nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="does not match"):
        _compute_jacobian_wrt_params_with_sample_wise_trick(
            model, (x,), labels, nn.CrossEntropyLoss(reduction="mean"), "sum"
        )
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    wrapper = SampleGradientWrapper(model)
    with pytest.raises(ValueError, match="loss_mode"):
        wrapper.compute_param_sample_gradients(model(x).sum(), loss_mode="median")
    with pytest.raises(ValueError, match="No parameters"):
        _compute_jacobian_wrt_params_with_sample_wise_trick(model, (x,), layer_modules=[nn.ReLU()])
    assert set(SUPPORTED_MODULES) == {nn.Conv2d, nn.Linear}
    assert issubclass(FeatureAblationFutureError, Exception)
    assert issubclass(ShapleyValueFutureError, Exception)
