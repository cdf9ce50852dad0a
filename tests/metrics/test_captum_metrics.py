"""whybox.metrics' Captum door: Captum 0.9's signatures, shapes and numbers."""

import inspect

import pytest
import torch
from torch import nn

import whybox.attr as WA
import whybox.metrics as WM

CM = pytest.importorskip("captum.metrics")
CA = pytest.importorskip("captum.attr")


def _parameters(function):
    out = []
    for p in inspect.signature(function).parameters.values():
        default = p.default
        if callable(default) and not isinstance(default, type):
            default = "<callable>"  # sensitivity_max's perturb_func: same role, our own function
        out.append((p.name, p.kind, default))
    return out


@pytest.mark.parametrize(
    "name", ["infidelity", "infidelity_perturb_func_decorator", "sensitivity_max"]
)
def test_signatures_match_captum(name):
    assert _parameters(getattr(WM, name)) == _parameters(getattr(CM, name))


def test_every_captum_metric_is_covered():
    assert set(CM.__all__) <= set(WM.__all__)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()


def _fixed_noise(inputs):
    # deterministic in the rows: the same numbers whatever the chunking
    rows = torch.arange(inputs.shape[0], dtype=inputs.dtype).view(-1, 1)
    noise = 0.05 * torch.sin(rows * 1.7 + torch.arange(inputs.shape[1], dtype=inputs.dtype))
    return noise, inputs - noise


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("chunk", [None, 4, 9, 13])
def test_infidelity_matches_captum_under_a_fixed_perturbation(net, normalize, chunk):
    x, attr = torch.randn(4, 5), torch.randn(4, 5)
    kwargs = dict(target=[0, 1, 2, 0], n_perturb_samples=10, normalize=normalize)
    ours = WM.infidelity(net, _fixed_noise, x, attr, max_examples_per_batch=chunk, **kwargs)
    theirs = CM.infidelity(net, _fixed_noise, x, attr, max_examples_per_batch=chunk, **kwargs)
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-8)


def test_infidelity_chunking_never_changes_a_deterministic_result(net):
    # perturbations depending on the example only (Captum repeats each example k times)
    def per_example(inputs):
        noise = 0.1 * torch.tanh(inputs)
        return noise, inputs - noise

    x, attr = torch.randn(3, 5), torch.randn(3, 5)
    values = [
        WM.infidelity(net, per_example, x, attr, target=1, max_examples_per_batch=m)
        for m in (None, 3, 7, 30)
    ]
    for v in values[1:]:
        torch.testing.assert_close(v, values[0])


@pytest.mark.parametrize("chunk", [None, 6])
def test_infidelity_seeded_random_perturbations_match_captum(net, chunk):
    x, attr = torch.randn(3, 5), torch.randn(3, 5)

    def noisy(inputs):
        noise = 0.1 * torch.randn(inputs.shape)
        return noise, inputs - noise

    torch.manual_seed(7)
    theirs = CM.infidelity(net, noisy, x, attr, target=2, max_examples_per_batch=chunk)
    torch.manual_seed(7)
    ours = WM.infidelity(net, noisy, x, attr, target=2, max_examples_per_batch=chunk)
    torch.testing.assert_close(ours, theirs)


def test_infidelity_decorator_baselines_extra_args_and_two_inputs_match_captum():
    torch.manual_seed(1)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

        def forward(self, x1, x2, scale):
            return torch.tanh(self.a(x1)) + self.b(x2) * scale

    model = Two().eval()
    x = (torch.randn(3, 4), torch.randn(3, 2))
    attr = (torch.randn(3, 4), torch.randn(3, 2))
    baselines = (torch.randn(3, 4), 0.5)
    scale = torch.rand(3, 1)

    def make(decorator):
        @decorator(True)
        def perturb(inputs, baselines):
            return tuple(i - 0.1 * torch.randn(i.shape) for i in inputs)

        return perturb

    results = []
    for metrics in (CM, WM):
        torch.manual_seed(3)
        results.append(
            metrics.infidelity(
                model,
                make(metrics.infidelity_perturb_func_decorator),
                x,
                attr,
                baselines=baselines,
                additional_forward_args=(scale,),
                target=torch.tensor([0, 2, 1]),
                n_perturb_samples=5,
                max_examples_per_batch=7,
                normalize=True,
            )
        )
    torch.testing.assert_close(results[1], results[0])


@pytest.mark.parametrize("chunk", [None, 4, 9])
def test_sensitivity_max_default_draws_match_captum(net, chunk):
    x = torch.randn(4, 5)
    torch.manual_seed(11)
    theirs = CM.sensitivity_max(
        CA.Saliency(net).attribute, x, target=[0, 1, 2, 1], max_examples_per_batch=chunk
    )
    torch.manual_seed(11)
    ours = WM.sensitivity_max(
        WA.Saliency(net).attribute, x, target=[0, 1, 2, 1], max_examples_per_batch=chunk
    )
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, theirs)


def test_sensitivity_max_with_baselines_radius_and_norm_matches_captum(net):
    x = torch.randn(3, 5)
    kwargs = dict(target=1, baselines=torch.zeros(3, 5), n_steps=8, perturb_radius=0.1, norm_ord=1)
    torch.manual_seed(5)
    theirs = CM.sensitivity_max(CA.IntegratedGradients(net).attribute, x, **kwargs)
    torch.manual_seed(5)
    ours = WM.sensitivity_max(WA.IntegratedGradients(net).attribute, x, **kwargs)
    torch.testing.assert_close(ours, theirs)


def test_sensitivity_max_calls_the_explanation_as_captum_does(net):
    seen = []

    def explanation(inputs, target):
        seen.append((type(inputs).__name__, target))
        tensor = inputs[0] if isinstance(inputs, tuple) else inputs
        return tensor * 2.0

    x = torch.randn(2, 5)
    WM.sensitivity_max(explanation, x, target=[0, 1], n_perturb_samples=3)
    # the original once as a tuple (Captum formats inputs), then the perturbed rows
    assert seen[0] == ("tuple", [0, 1])
    assert seen[1] == ("tuple", [0, 0, 0, 1, 1, 1])


def test_closed_forms_on_a_linear_model():
    torch.manual_seed(2)
    model = nn.Linear(6, 1)
    x = torch.randn(5, 6)
    w = model.weight.detach()

    def noise_pair(inputs):
        noise = 0.1 * torch.randn(inputs.shape)
        return noise, inputs - noise

    saliency = w.expand_as(x)
    assert WM.infidelity(model, noise_pair, x, saliency).abs().max() < 1e-10

    @WM.infidelity_perturb_func_decorator(True)
    def minus_noise(inputs):
        return inputs - 0.1 * torch.randn(inputs.shape)

    assert WM.infidelity(model, minus_noise, x, w * x).abs().max() < 1e-10
    sens = WM.sensitivity_max(WA.Saliency(model).attribute, x, perturb_radius=0.3)
    assert sens.shape == (5,) and sens.abs().max() == 0


def test_errors_name_the_parameter(net):
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="'attributions'"):
        WM.infidelity(net, _fixed_noise, x, torch.randn(2, 4), target=0)
    with pytest.raises(ValueError, match="'n_perturb_samples'"):
        WM.infidelity(net, _fixed_noise, x, x, target=0, n_perturb_samples=0)
    with pytest.raises(ValueError, match="'perturb_func'"):
        WM.infidelity(net, lambda inputs: inputs, x, x, target=0)
    with pytest.raises(TypeError, match="'explanation_func'"):
        WM.sensitivity_max(None, x)
