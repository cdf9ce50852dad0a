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


def _torch_reference(m: int, n_samples: int, seed: int, paired: bool):
    """The sampled rows and weights re-derived with torch ops from the same draws (the
    route every non-CPU generator takes), independently of the numpy post-processing."""
    from whybox.core.masks.coalitions import _kernel_shap_plan

    plan = _kernel_shap_plan(m, n_samples, paired)
    assert plan.n_draws > 0  # a budget that samples, not only enumerates
    g = torch.Generator().manual_seed(seed)
    pick = torch.multinomial(plan.g_masses, plan.n_draws, replacement=True, generator=g)
    size = plan.draw_sizes[pick]
    keys = torch.rand(plan.n_draws, m, generator=g, dtype=torch.float64)
    first = torch.argsort(torch.argsort(keys, dim=1), dim=1) < size[:, None]
    if paired and plan.draws_half:
        first = torch.where(((size * 2 == m) & ~first[:, 0])[:, None], ~first, first)
    rows, counts = torch.unique(first, dim=0, return_counts=True)
    weights = counts.to(torch.float64) * plan.per_draw_w
    if paired:
        rows = torch.stack([rows, ~rows], dim=1).reshape(-1, m)
        weights = weights.repeat_interleave(2)
    return rows, weights, g.get_state()


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize(("m", "n_samples"), [(5, 17), (8, 60), (12, 198), (15, 500)])
def test_host_draws_equal_the_torch_route(m: int, n_samples: int, paired: bool) -> None:
    g = torch.Generator().manual_seed(3)
    design = kernel_shap_coalitions(m, n_samples, g, paired=paired)
    rows, weights, state = _torch_reference(m, n_samples, 3, paired)
    k = design.n_enumerated
    assert torch.equal(design.masks[k:], rows)
    assert torch.equal(design.weights[design.weights.shape[0] - weights.shape[0] :], weights)
    assert torch.equal(g.get_state(), state)
