"""Captum's module paths of the metrics (``metrics._core.infidelity`` /
``metrics._core.sensitivity``) give whybox's objects."""

from __future__ import annotations

import torch

import whybox.metrics as metrics
from whybox.metrics._core import infidelity as core_infidelity
from whybox.metrics._core import sensitivity as core_sensitivity


def test_core_paths_re_export_whybox_objects():
    assert core_infidelity.infidelity is metrics.infidelity
    assert (
        core_infidelity.infidelity_perturb_func_decorator
        is metrics.infidelity_perturb_func_decorator
    )
    assert core_sensitivity.sensitivity_max is metrics.sensitivity_max
    assert core_sensitivity.default_perturb_func is metrics.sensitivity.default_perturb_func


def test_default_perturb_func_stays_in_the_ball_and_returns_a_tuple():
    torch.manual_seed(0)
    x = torch.zeros(3, 4)
    (out,) = core_sensitivity.default_perturb_func(x, 0.1)
    assert out.shape == x.shape and out.abs().max() <= 0.1 and out.abs().max() > 0
