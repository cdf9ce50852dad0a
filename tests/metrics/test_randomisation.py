"""Adebayo et al.'s sanity checks: an edge detector is flagged, gradients pass."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import whybox.metrics as WM
from _support import assert_same_state, model_state


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    ).eval()


def edges(model, inputs, **options):
    """A Sobel filter: ignores the model entirely."""
    kernel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    return F.conv2d(inputs, kernel, padding=1)


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_edge_detector_is_flagged_and_gradients_pass(cnn, mode):
    x = torch.rand(4, 1, 8, 8)
    state = model_state(cnn)
    rng = torch.get_rng_state()
    flagged = WM.model_parameter_randomisation(cnn, x, explain=edges, target=1, mode=mode)
    assert flagged.layers == ["5", "2", "0"]
    assert flagged.similarity.shape == (3, 4)
    assert flagged.flagged and torch.allclose(flagged.mean_similarity, torch.ones(3))
    passed = WM.model_parameter_randomisation(cnn, x, explain="saliency", target=1, mode=mode)
    assert not passed.flagged and bool((passed.mean_similarity < 0.5).all())
    assert_same_state(cnn, state)  # randomised copies only
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is untouched


def test_layer_options_follow_the_copy_and_random_logit(cnn):
    x = torch.rand(3, 1, 8, 8)
    result = WM.model_parameter_randomisation(
        cnn,
        x,
        explain="grad_cam",
        explain_options={"layer": cnn[2]},
        target=0,
        layers=["5", "2"],
    )
    assert result.layers == ["5", "2"]
    logit = WM.random_logit(cnn, x, target=1, n_classes=3, seed=0)
    assert logit.similarity.shape == (3,) and bool((logit.random_targets != 1).all())


def test_errors_name_the_parameter(cnn):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="'layers'"):
        WM.model_parameter_randomisation(cnn, x, layers=["nope"], target=0)
    with pytest.raises(ValueError, match="'mode'"):
        WM.model_parameter_randomisation(cnn, x, mode="both", target=0)
    with pytest.raises(TypeError, match="'model'"):
        WM.model_parameter_randomisation(lambda t: t, x)


def test_randomisation_progress_bar_counts_layers(cnn, capsys):
    x = torch.randn(2, 1, 8, 8)
    quiet = WM.model_parameter_randomisation(cnn, x, target=0)
    shown = WM.model_parameter_randomisation(cnn, x, target=0, show_progress=True)
    torch.testing.assert_close(quiet.similarity, shown.similarity)
    n_layers = len(quiet.layers)
    err = capsys.readouterr().err
    assert "model_parameter_randomisation (cascading): layers" in err
    assert f"{n_layers}/{n_layers}" in err


def _spearman_by_hand(a, b):
    """Spearman per row through scipy's ranks (the reference the fast path must match)."""
    from scipy.stats import spearmanr

    return torch.tensor([spearmanr(x, y).statistic for x, y in zip(a.numpy(), b.numpy())])


def test_independent_steps_match_fresh_copies(cnn):
    """One copy with each layer put back after its step gives what a fresh copy per layer
    gives: every step differs from the trained model in its own layer only."""
    import copy

    from whybox.metrics.randomisation import _reinitialise

    x = torch.rand(3, 1, 8, 8)
    result = WM.model_parameter_randomisation(cnn, x, target=1, mode="independent", seed=5)
    import whybox

    base = whybox.explain(cnn, x, method="saliency", target=1).attributions.reshape(3, -1)
    for step, name in enumerate(result.layers):
        fresh = copy.deepcopy(cnn)
        _reinitialise(fresh.get_submodule(name), 5 + step)
        maps = whybox.explain(fresh, x, method="saliency", target=1).attributions.reshape(3, -1)
        expected = _spearman_by_hand(base, maps).to(result.similarity.dtype)
        torch.testing.assert_close(result.similarity[step], expected, rtol=1e-5, atol=1e-6)
    cascading = WM.model_parameter_randomisation(cnn, x, target=1, seed=5)
    # the first step is the same in both modes; later ones randomise more layers
    torch.testing.assert_close(cascading.similarity[0], result.similarity[0])
    assert not torch.allclose(cascading.similarity[1:], result.similarity[1:])


def test_independent_restores_batch_norm_buffers():
    """reset_parameters of a norm layer also resets its running statistics: the copy must
    get them back before the next step (else later steps see a changed layer)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.rand(4, 1, 8, 8)
    state = model_state(net)
    one = WM.model_parameter_randomisation(net, x, target=0, mode="independent", layers=["1"])
    both = WM.model_parameter_randomisation(
        net, x, target=0, mode="independent", layers=["1", "4"], seed=0
    )
    torch.testing.assert_close(both.similarity[0], one.similarity[0])
    alone = WM.model_parameter_randomisation(
        net, x, target=0, mode="independent", layers=["4"], seed=1
    )
    # step 2 (seed 0 + 1) randomises layer 4 of an intact copy, batch norm restored
    torch.testing.assert_close(both.similarity[1], alone.similarity[0])
    assert_same_state(net, state)


def test_reinitialise_leaves_every_generator_alone(monkeypatch):
    """CPU layers seed the CPU generator only (torch.manual_seed would also queue seeds
    for every CUDA device, which fork_rng does not restore)."""
    from whybox.metrics.randomisation import _reinitialise

    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    one, two = nn.Linear(4, 3), nn.Linear(4, 3)
    two.load_state_dict(one.state_dict())
    cpu = torch.get_rng_state()
    _reinitialise(one, 3)
    _reinitialise(two, 3)
    assert torch.equal(torch.get_rng_state(), cpu)
    assert seeded == []
    assert torch.equal(one.weight, two.weight)  # seeded: reproducible


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "guided_backprop"])
def test_random_logit_one_batched_call_matches_two_calls(cnn, method):
    """The single-pass methods explain both classes in one call of 2 N rows; the numbers
    are those of two separate calls (as a callable explain still makes)."""
    import whybox

    x = torch.rand(5, 1, 8, 8)
    target = torch.tensor([0, 1, 2, 1, 0])
    calls = []

    def two_calls(model, inputs, **kwargs):
        calls.append(inputs.shape[0])
        return whybox.explain(model, inputs, method=method, **kwargs)

    fast = WM.random_logit(cnn, x, target=target, n_classes=3, explain=method, seed=4)
    slow = WM.random_logit(cnn, x, target=target, n_classes=3, explain=two_calls, seed=4)
    assert calls == [5, 5]
    assert torch.equal(fast.random_targets, slow.random_targets)
    torch.testing.assert_close(fast.similarity, slow.similarity, rtol=0, atol=0)


def test_random_logit_batched_call_repeats_per_example_options():
    """Per-example forward arguments and options follow their rows into the 2 N rows."""
    torch.manual_seed(0)

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(6, 3)

        def forward(self, x, scale):
            return self.linear(x * scale)

    net = Scaled().eval()
    x = torch.randn(4, 6)
    scale = torch.tensor([[1.0], [2.0], [-1.0], [0.5]])
    target = [0, 1, 2, 0]
    seen = []

    def saliency(model, inputs, **kwargs):
        import whybox

        seen.append(kwargs["forward_args"].shape[0])
        return whybox.explain(model, inputs, method="saliency", **kwargs)

    fast = WM.random_logit(net, x, target=target, n_classes=3, forward_args=scale, seed=2)
    slow = WM.random_logit(
        net, x, target=target, n_classes=3, forward_args=scale, explain=saliency, seed=2
    )
    assert seen == [4, 4]
    torch.testing.assert_close(fast.similarity, slow.similarity, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_scripted_models_are_randomised_too(cnn, mode):
    # a ScriptModule has no get_submodule and no reset_parameters: its layers are found
    # by name and re-drawn at their own scale
    scripted = torch.jit.script(cnn)
    x = torch.rand(4, 1, 8, 8)
    state = model_state(scripted)
    passed = WM.model_parameter_randomisation(scripted, x, explain="saliency", target=1, mode=mode)
    assert passed.layers == ["5", "2", "0"]
    assert not passed.flagged and bool((passed.mean_similarity < 0.5).all())
    flagged = WM.model_parameter_randomisation(scripted, x, explain=edges, target=1, mode=mode)
    assert flagged.flagged
    assert_same_state(scripted, state)
