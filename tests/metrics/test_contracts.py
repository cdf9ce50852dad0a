"""Contracts every metric keeps: empty batches, float64, no Captum import, user tensors kept."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import whybox.attr as WA
import whybox.metrics as WM


def _net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype).eval()


EMPTY = {
    "infidelity": lambda m, x: WM.infidelity(m, lambda i: (0 * i, i), x, x, target=0),
    "sensitivity_max": lambda m, x: WM.sensitivity_max(WA.Saliency(m).attribute, x, target=0),
    "max_sensitivity": lambda m, x: WM.max_sensitivity(m, x, target=0).score,
    "deletion": lambda m, x: WM.deletion(m, x, x, target=0).score,
    "faithfulness_correlation": lambda m, x: WM.faithfulness_correlation(m, x, x, target=0).score,
    "completeness": lambda m, x: WM.completeness(m, x, x, target=0),
    "non_sensitivity": lambda m, x: WM.non_sensitivity(m, x, x, target=0).violations,
    "sparseness": lambda m, x: WM.sparseness(x),
    "entropy": lambda m, x: WM.entropy(x),
    "feature_agreement": lambda m, x: WM.feature_agreement(x, x, k=2),
    "relevance_mass": lambda m, x: WM.relevance_mass(x, x > 0),
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_an_empty_batch_gives_an_empty_result(name):
    assert EMPTY[name](_net(), torch.zeros(0, 5)).shape == (0,)


def test_float64_in_float64_out_and_inputs_untouched():
    model = _net(torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    attr = torch.randn(3, 5, dtype=torch.float64)
    before = (x.clone(), attr.clone())
    results = [
        WM.deletion(model, x, attr, target=1, n_steps=4).curve,
        WM.faithfulness_correlation(model, x, attr, target=1, n_samples=5, seed=0).score,
        WM.max_sensitivity(model, x, target=1, seed=0).score,
        WM.infidelity_score(model, x, attr, target=1, seed=0),
        WM.infidelity(model, lambda i: (0.1 * i, 0.9 * i), x, attr, target=1),
        WM.sparseness(attr),
        WM.rank_correlation(attr, x),
    ]
    assert all(r.dtype == torch.float64 for r in results)
    assert torch.equal(x, before[0]) and torch.equal(attr, before[1]) and not x.requires_grad


def test_whybox_metrics_never_imports_captum():
    code = "import sys, whybox.metrics; print('captum' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code]).decode().strip() == "False"
