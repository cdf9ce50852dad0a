"""What tiny jobs reuse between calls (KernelSHAP's design plan, the sum-zero basis,
Occlusion's window grids) never leaks into results: callers cannot corrupt it, and the
cached and uncached paths give identical numbers."""

from __future__ import annotations

import torch
from torch import nn

from whybox.core.masks import kernel_shap_coalitions
from whybox.core.surrogate import solve_constrained_wls
from whybox.methods import KernelShap, Occlusion


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_kernel_shap_design_is_fresh_on_every_call():
    first = kernel_shap_coalitions(6, 40, torch.Generator().manual_seed(3))
    first.masks.fill_(False)  # a caller scribbling on its design...
    first.weights.fill_(0.0)
    again = kernel_shap_coalitions(6, 40, torch.Generator().manual_seed(3))
    other = kernel_shap_coalitions(6, 40, torch.Generator().manual_seed(4))
    # ...does not reach the next call's: same seed, same design; still a valid design
    assert again.masks.any() and (again.weights > 0).all()
    assert again.n_enumerated == other.n_enumerated  # the enumerated part is shared
    assert torch.equal(again.masks[: again.n_enumerated], other.masks[: other.n_enumerated])
    fresh = kernel_shap_coalitions(6, 40, torch.Generator().manual_seed(3))
    assert torch.equal(fresh.masks, again.masks) and torch.equal(fresh.weights, again.weights)


def test_constrained_wls_recovers_a_linear_game_on_repeated_calls():
    torch.manual_seed(1)
    for p in (2, 5, 5, 9):
        X = (torch.rand(60, p) > 0.5).double()
        coef = torch.randn(p, dtype=torch.float64)
        got = solve_constrained_wls(X, X @ coef, torch.rand(60, dtype=torch.float64), coef.sum())
        torch.testing.assert_close(got, coef, rtol=0, atol=1e-10)


def test_occlusion_results_do_not_share_memory_with_the_cached_grid():
    model = _mlp()
    x = torch.randn(3, 6)
    method = Occlusion(model)
    first = method.attribute(x, target=1, sliding_window_shapes=(2,)).attributions
    expected = first.clone()
    first.mul_(0.0).add_(7.0)
    second = method.attribute(x, target=1, sliding_window_shapes=(2,)).attributions
    assert torch.equal(second, expected)


def test_occlusion_cached_and_uncached_grids_agree_exactly():
    model = _mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    model = model.double()
    method = Occlusion(model)
    for window, stride in [((2,), 1), ((3,), (2,)), ((1,), 1), ((6,), 1)]:
        cached = method.attribute(x, target=2, sliding_window_shapes=window, strides=stride)
        # a list stride takes the uncached path (and the multi-input builder for two inputs)
        uncached = method.attribute(x, target=2, sliding_window_shapes=list(window), strides=stride)
        assert torch.equal(cached.attributions, uncached.attributions)


def test_occlusion_window_drop_is_the_closed_form_for_a_linear_model():
    # f(x) = w . x: occluding a window (baseline 0) drops sum of w_j x_j over it; each
    # element's attribution is the mean drop over the windows covering it
    linear = nn.Linear(5, 1, bias=False).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    got = Occlusion(linear).attribute(x, sliding_window_shapes=(2,)).attributions
    contrib = x * linear.weight.detach()[0]
    windows = [(s, s + 2) for s in range(4)]
    expected = torch.zeros_like(x)
    for j in range(5):
        covering = [contrib[:, a:b].sum(1) for a, b in windows if a <= j < b]
        expected[:, j] = torch.stack(covering).mean(0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_kernel_shap_all_features_present_or_not_gives_the_same_values():
    # every id present (the coalitions are used as they are) vs a mask whose ids skip one
    # (coalitions are scattered to the present ids): the same game, the same numbers
    model = _mlp().double()
    x = torch.randn(2, 6, dtype=torch.float64)
    dense = torch.tensor([[0, 0, 1, 1, 2, 2]])
    sparse = torch.tensor([[0, 0, 2, 2, 3, 3]])
    a = KernelShap(model).attribute(x, target=0, feature_mask=dense, n_samples=30, seed=5)
    b = KernelShap(model).attribute(x, target=0, feature_mask=sparse, n_samples=30, seed=5)
    assert torch.equal(a.attributions, b.attributions)
