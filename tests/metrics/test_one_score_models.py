"""Models with one score per example have no predicted class: checks built on one say so."""

import pytest
import torch
from torch import nn

import whybox.metrics as WM
from whybox.core.validation import ParameterError


def image_model(classes):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8 * 8, classes)).eval()


def test_road_accuracy_needs_a_score_per_class():
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ParameterError, match="'measure' parameter of road.*one score per example"):
        WM.road(image_model(1), x, x, target=0, measure="accuracy", n_steps=2)
    # the raw output of the same model is fine, and so is accuracy with two classes
    assert WM.road(image_model(1), x, x, target=0, n_steps=2).curve.shape == (2, 3)
    two = WM.road(image_model(2), x, x, target=0, measure="accuracy", n_steps=2, seed=0)
    assert set(two.curve.unique().tolist()) <= {0.0, 1.0}


def test_keep_prediction_needs_a_score_per_class():
    x = torch.randn(3, 4)
    torch.manual_seed(0)
    with pytest.raises(ParameterError, match="'keep_prediction' parameter of max_sensitivity"):
        WM.max_sensitivity(nn.Linear(4, 1), x, target=0, keep_prediction=True, seed=0)
    kept = WM.max_sensitivity(nn.Linear(4, 2), x, target=0, keep_prediction=True, seed=0)
    assert kept.samples.shape == (3, 10)
