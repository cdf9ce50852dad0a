"""Rollout, gradient-weighted rollout and attention flow as maths on attention tensors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from whybox.attention import (
    EncoderDecoderAttention,
    attention_flow,
    attention_rollout,
    gradient_weighted_rollout,
    max_flow,
)
from whybox.attention.flow import flow_network


def _random_attention(layers=3, batch=2, heads=4, tokens=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, heads, tokens, tokens, generator=g, dtype=dtype).mul(2).softmax(-1)
        for _ in range(layers)
    ]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("add_residual", [True, False])
def test_identity_attention_rolls_out_to_the_identity(head_fusion, add_residual):
    eye = torch.eye(6).expand(2, 3, 6, 6)
    rollout = attention_rollout([eye] * 4, head_fusion=head_fusion, add_residual=add_residual)
    assert rollout.shape == (2, 6, 6)
    torch.testing.assert_close(rollout, torch.eye(6).expand(2, 6, 6))
    flows = attention_flow([eye] * 2, head_fusion=head_fusion, add_residual=add_residual)
    torch.testing.assert_close(flows, torch.eye(6).expand(2, 6, 6))


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("add_residual", [True, False])
def test_rollout_rows_sum_to_one_and_match_the_definition(head_fusion, add_residual):
    attentions = _random_attention()
    rollout = attention_rollout(attentions, head_fusion=head_fusion, add_residual=add_residual)
    assert rollout.dtype == torch.float64 and (rollout >= 0).all()
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    # the definition, written out: fused heads (+ I), rows renormalised, A_3 A_2 A_1
    fuse = {"mean": torch.mean, "max": torch.amax, "min": torch.amin}[head_fusion]
    expected = torch.eye(5, dtype=torch.float64).expand(2, 5, 5)
    for attention in attentions:
        a = fuse(attention, dim=1) + (torch.eye(5, dtype=torch.float64) if add_residual else 0)
        expected = (a / a.sum(-1, keepdim=True)) @ expected
    torch.testing.assert_close(rollout, expected)
    # stacked (layers, batch, heads, tokens, tokens) gives the same
    stacked = attention_rollout(
        torch.stack(attentions), head_fusion=head_fusion, add_residual=add_residual
    )
    torch.testing.assert_close(stacked, rollout)


def test_gradient_weighted_rollout_rule():
    attentions = _random_attention(layers=2)
    gradients = [torch.randn_like(a) for a in attentions]
    relevance = gradient_weighted_rollout(attentions, gradients)
    eye = torch.eye(5, dtype=torch.float64)
    r = eye.expand(2, 5, 5)
    for a, g in zip(attentions, gradients):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    torch.testing.assert_close(relevance, r)
    # zero gradients: only the identity (each token is its own residual stream)
    zero = gradient_weighted_rollout(attentions, [torch.zeros_like(a) for a in attentions])
    torch.testing.assert_close(zero, eye.expand(2, 5, 5))
    with pytest.raises(ValueError, match="'gradients' parameter"):
        gradient_weighted_rollout(attentions, gradients[:1])


def _brute_force_max_flow(capacity, source, sink):
    """The minimum cut over every subset containing the source and not the sink."""
    n = len(capacity)
    others = [v for v in range(n) if v not in (source, sink)]
    best = np.inf
    for bits in itertools.product([False, True], repeat=len(others)):
        side = np.zeros(n, dtype=bool)
        side[source] = True
        side[[v for v, b in zip(others, bits) if b]] = True
        best = min(best, capacity[side][:, ~side].sum())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_max_flow_equals_the_minimum_cut_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n = 8
    capacity = rng.random((n, n)) * (rng.random((n, n)) < 0.5)  # antiparallel edges allowed
    np.fill_diagonal(capacity, 0)
    kept = capacity.copy()
    for source, sink in [(0, n - 1), (3, 1)]:
        got = max_flow(capacity, source, sink)
        assert got == pytest.approx(_brute_force_max_flow(capacity, source, sink), abs=1e-9)
    assert np.array_equal(capacity, kept)  # the input is not modified


def test_attention_flow_equals_brute_force_max_flow_on_a_tiny_graph():
    # 2 layers x 3 tokens: 9 nodes, 2^7 cuts per (query, token) pair
    attentions = _random_attention(layers=2, batch=2, heads=2, tokens=3, seed=3)
    flows = attention_flow(attentions)
    assert flows.shape == (2, 3, 3) and flows.dtype == torch.float64
    maps = []
    for a in attentions:
        fused = a.mean(1) + torch.eye(3, dtype=torch.float64)
        maps.append(fused / fused.sum(-1, keepdim=True))
    for b in range(2):
        capacity = np.zeros((9, 9))
        for layer in range(2):  # edges from token i above layer l to token j below it
            for i, j in itertools.product(range(3), range(3)):
                capacity[(layer + 1) * 3 + i, layer * 3 + j] = maps[layer][b, i, j].item()
        assert np.allclose(flow_network(np.stack([m[b].numpy() for m in maps])), capacity)
        for q, t in itertools.product(range(3), range(3)):
            expected = _brute_force_max_flow(capacity, 6 + q, t)
            assert flows[b, q, t].item() == pytest.approx(expected, abs=1e-9)
    # one query only, and a padded token left out
    one = attention_flow(attentions, queries=[-1])
    torch.testing.assert_close(one, flows[:, 2:])


def test_one_layer_flow_is_the_layer_map_and_flows_are_bounded():
    attentions = _random_attention(layers=1, tokens=4)
    flows = attention_flow(attentions)
    torch.testing.assert_close(flows, attention_rollout(attentions))
    deep = attention_flow(_random_attention(layers=3, tokens=4))
    assert (deep >= -1e-12).all() and (deep <= 1 + 1e-9).all()


def test_flow_skips_padded_tokens():
    attentions = _random_attention(layers=2, batch=1, tokens=5, seed=4)
    # padded keys get no attention (as a model's mask gives), then renormalise
    masked = []
    for a in attentions:
        a = a.clone()
        a[..., 3:] = 0
        masked.append(a / a.sum(-1, keepdim=True))
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    flows = attention_flow(masked, attention_mask=mask, queries=[0, 1])
    full = attention_flow(masked, queries=[0, 1])
    torch.testing.assert_close(flows, full)
    assert flows[..., 3:].abs().max() == 0


def test_bad_arguments_are_clear_errors():
    attentions = _random_attention()
    with pytest.raises(ValueError, match="'head_fusion' parameter of attention_rollout"):
        attention_rollout(attentions, head_fusion="median")
    with pytest.raises(TypeError, match="'add_residual' parameter"):
        attention_rollout(attentions, add_residual=1)
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(ValueError, match="cross-attention"):
        attention_rollout([torch.rand(1, 2, 3, 4)])
    with pytest.raises(ValueError, match="same batch and tokens"):
        attention_rollout([torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4)])
    with pytest.raises(TypeError, match="pass its .encoder or .decoder"):
        attention_rollout(EncoderDecoderAttention((), (), ()))
    with pytest.raises(ValueError, match="'queries' parameter of attention_flow"):
        attention_flow(attentions, queries=[7])
