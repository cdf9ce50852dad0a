"""A fractional baseline of an integer input is used as given, never truncated.

Truncating 0.1 to 0 for an integer feature would silently explain a different question
(the ablated value equals the original one, so its attribution is 0). Captum's arithmetic
promotes; whybox promotes too, and keeps integral baselines of integer inputs integer.
"""

from __future__ import annotations

import captum.attr as captum_attr
import torch
from torch.utils.data import DataLoader, TensorDataset

import whybox.attr as whybox_attr


def _sum_forward(*inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([t.flatten(1).to(torch.float32) for t in inputs], dim=1).sum(1)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[0.0, 0.1], [0.3, 0.4], [0.6, 0.7]]), torch.tensor([[0], [1], [3]])


def test_feature_ablation_fractional_baseline_of_integer_input_matches_captum() -> None:
    inputs = _inputs()
    baselines = (1.0, 0.1)
    ours = whybox_attr.FeatureAblation(_sum_forward).attribute(inputs, baselines=baselines)
    theirs = captum_attr.FeatureAblation(_sum_forward).attribute(inputs, baselines=baselines)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.to(torch.float32), b.to(torch.float32))
    # closed form: attribution = x - baseline for a sum
    torch.testing.assert_close(ours[1], inputs[1].to(torch.float32) - 0.1)


def test_integral_baseline_of_integer_input_stays_integer() -> None:
    seen: list[torch.dtype] = []

    def forward(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        seen.append(ids.dtype)
        return x.sum(1) + ids.sum(1)

    inputs = _inputs()
    whybox_attr.FeatureAblation(forward).attribute(inputs, baselines=(0.0, 2))
    assert set(seen) == {torch.int64}


def test_dataloader_attribution_fractional_baseline_equals_feature_ablation() -> None:
    x, ids = _inputs()
    loader = DataLoader(TensorDataset(x, ids), batch_size=2)
    baselines = (torch.tensor([[0.0, -1.0]]), 0.1)
    ablation = whybox_attr.FeatureAblation(_sum_forward)
    whole = whybox_attr.DataLoaderAttribution(ablation).attribute(loader, baselines=baselines)
    per_batch = [ablation.attribute(tuple(batch), baselines=baselines) for batch in loader]
    for got, parts in zip(whole, zip(*per_batch)):
        torch.testing.assert_close(got.to(torch.float32), torch.cat(parts).to(torch.float32))
    assert bool((whole[1] != 0).all())
