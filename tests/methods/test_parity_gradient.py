"""Parity with Captum 0.9 (test oracle only) for the gradient family, same arguments."""

import numpy as np
import pytest
import torch

import whybox.attr as W

captum_attr = pytest.importorskip("captum.attr")

RTOL = 1e-5


def _close(ours, theirs, rtol=RTOL):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b, rtol)
        return
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().clamp_min(1e-12)
    assert ((ours - theirs).abs().max() / scale) <= rtol, float((ours - theirs).abs().max() / scale)


def _seeded(fn):
    torch.manual_seed(123)
    np.random.seed(123)
    return fn()


def _both(make_call):
    ours = _seeded(lambda: make_call(W))
    theirs = _seeded(lambda: make_call(captum_attr))
    return ours, theirs


def _cases(conv_net, multi_input_net, embedding_net):
    torch.manual_seed(0)
    image = torch.randn(3, 3, 16, 16)
    x1, x2 = torch.randn(4, 5), torch.randn(4, 3)
    scale = torch.rand(4, 1) + 0.5
    tokens = embedding_net.embedding(torch.randint(0, 30, (2, 7))).detach()
    return {
        "conv": dict(model=conv_net, inputs=image, target=[1, 4, 9], args=None),
        "multi": dict(model=multi_input_net, inputs=(x1, x2), target=2, args=(scale, 0.25)),
        "embedding": dict(
            model=embedding_net, inputs=tokens, target=torch.tensor([0, 2]), args=None
        ),
    }


CASES = ["conv", "multi", "embedding"]


@pytest.fixture
def cases(conv_net, multi_input_net, embedding_net):
    return _cases(conv_net, multi_input_net, embedding_net)


@pytest.mark.parametrize("case", CASES)
def test_saliency_and_input_x_gradient(cases, case):
    c = cases[case]
    for abs_ in (True, False):
        ours, theirs = _both(
            lambda L, abs_=abs_: L.Saliency(c["model"]).attribute(
                c["inputs"], target=c["target"], abs=abs_, additional_forward_args=c["args"]
            )
        )
        _close(ours, theirs)
    ours, theirs = _both(
        lambda L: L.InputXGradient(c["model"]).attribute(
            c["inputs"], target=c["target"], additional_forward_args=c["args"]
        )
    )
    _close(ours, theirs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "method",
    ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"],
)
def test_integrated_gradients(cases, case, method):
    c = cases[case]
    baselines = tuple(0.1 * torch.ones_like(t) for t in c["inputs"]) if case == "multi" else None
    for multiply in (True, False):
        (ours, d_ours), (theirs, d_theirs) = _both(
            lambda L, multiply=multiply: L.IntegratedGradients(
                c["model"], multiply_by_inputs=multiply
            ).attribute(
                c["inputs"],
                baselines=baselines,
                target=c["target"],
                additional_forward_args=c["args"],
                n_steps=12,
                method=method,
                internal_batch_size=5,
                return_convergence_delta=True,
            )
        )
        # riemann_trapezoid included: the facade integrates with Captum's weights
        _close(ours, theirs)
        if multiply:
            torch.testing.assert_close(d_ours, d_theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel(cases, case, nt_type):
    c = cases[case]
    stdevs = (0.1, 0.3) if case == "multi" else 0.2
    ours, theirs = _both(
        lambda L: L.NoiseTunnel(L.Saliency(c["model"])).attribute(
            c["inputs"],
            nt_type=nt_type,
            nt_samples=5,
            nt_samples_batch_size=2,
            stdevs=stdevs,
            target=c["target"],
            additional_forward_args=c["args"],
        )
    )
    _close(ours, theirs)


@pytest.mark.parametrize("case", CASES)
def test_noise_tunnel_over_ig_with_delta_and_drawn_baselines(cases, case):
    c = cases[case]
    inputs = c["inputs"] if isinstance(c["inputs"], tuple) else (c["inputs"],)
    refs = tuple(torch.randn((6,) + tuple(t.shape[1:])) for t in inputs)
    refs = refs if case == "multi" else refs[0]
    (ours, d_ours), (theirs, d_theirs) = _both(
        lambda L: L.NoiseTunnel(L.IntegratedGradients(c["model"])).attribute(
            c["inputs"],
            nt_samples=3,
            stdevs=0.1,
            draw_baseline_from_distrib=True,
            baselines=refs,
            target=c["target"],
            additional_forward_args=c["args"],
            n_steps=8,
            return_convergence_delta=True,
        )
    )
    _close(ours, theirs)
    torch.testing.assert_close(d_ours, d_theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_gradient_shap(cases, case):
    c = cases[case]
    inputs = c["inputs"] if isinstance(c["inputs"], tuple) else (c["inputs"],)
    refs = tuple(torch.randn((5,) + tuple(t.shape[1:])) for t in inputs)
    refs = refs if case == "multi" else refs[0]
    stdevs = (0.05, 0.1) if case == "multi" else 0.1
    (ours, d_ours), (theirs, d_theirs) = _both(
        lambda L: L.GradientShap(c["model"]).attribute(
            c["inputs"],
            refs,
            n_samples=6,
            stdevs=stdevs,
            target=c["target"],
            additional_forward_args=c["args"],
            return_convergence_delta=True,
        )
    )
    _close(ours, theirs)
    torch.testing.assert_close(d_ours, d_theirs, atol=1e-5, rtol=1e-4)


def test_float64_inputs_parity(conv_net):
    model = conv_net.double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    ours, theirs = _both(lambda L: L.IntegratedGradients(model).attribute(x, target=3, n_steps=10))
    assert ours.dtype == torch.float64
    _close(ours, theirs, rtol=1e-6)


def test_compute_convergence_delta_matches(conv_net):
    x = torch.randn(2, 3, 16, 16)
    attributions = torch.randn(2, 3, 16, 16)
    ours = W.IntegratedGradients(conv_net).compute_convergence_delta(
        attributions, start_point=0.5, end_point=x, target=[1, 2]
    )
    theirs = captum_attr.IntegratedGradients(conv_net).compute_convergence_delta(
        attributions, start_point=0.5, end_point=x, target=[1, 2]
    )
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)
