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
