"""KernelSHAP's host (numpy) post-processing of its draws keeps the design's properties."""

from __future__ import annotations

import math

import pytest
import torch

from whybox.core.masks import kernel_shap_coalitions


@pytest.mark.parametrize("m", [4, 7, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_paired_draws_are_unique_complements_with_full_mass(m: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    design = kernel_shap_coalitions(m, 40, g)
    sampled = design.masks[design.n_enumerated :]
    assert sampled.dtype == torch.bool and design.weights.dtype == torch.float64
    assert torch.equal(sampled[1::2], ~sampled[0::2])
    assert torch.unique(design.masks, dim=0).shape[0] == design.masks.shape[0]
    total = sum((m - 1) / (s * (m - s)) for s in range(1, m))
    assert math.isclose(float(design.weights.sum()), total, rel_tol=1e-12)
    # the same seed gives the same design and leaves the generator at the same state
    g2 = torch.Generator().manual_seed(seed)
    again = kernel_shap_coalitions(m, 40, g2)
    assert torch.equal(again.masks, design.masks) and torch.equal(g.get_state(), g2.get_state())
