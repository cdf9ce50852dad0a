"""Rows through the model per method against the minimum the method's maths needs.

Overhead must not come back as extra model calls: each case counts the rows every forward
of one call carries (chunks large enough for one forward where the method allows) and
compares them with the rows the method cannot do without, derived from its definition.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from whybox import methods as M

N_FEATURES = 6


class Counting(nn.Module):
    """A small MLP that records the rows of every forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(N_FEATURES, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
        )
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        return self.net(x)


def _x(batch: int) -> Tensor:
    return torch.randn(batch, N_FEATURES, generator=torch.Generator().manual_seed(1))


BIG = 10_000  # a chunk that holds every row of these calls


# name -> (call(model, x), rows it needs for a batch of N)
def _cases(n: int) -> dict[str, tuple]:
    refs = torch.randn(4, N_FEATURES, generator=torch.Generator().manual_seed(2))
    return {
        # one forward + backward of the rows
        "saliency": (lambda m, x: M.Saliency(m).attribute(x, target=1), n),
        "input_x_gradient": (lambda m, x: M.InputXGradient(m).attribute(x, target=1), n),
        # inputs and baselines in one forward; the delta reuses its outputs
        "deeplift": (
            lambda m, x: M.DeepLift(m).attribute(x, target=1, chunk_size=BIG),
            2 * n,
        ),
        # every (example, reference) pair as two rows
        "deeplift_shap": (
            lambda m, x: M.DeepLiftShap(m).attribute(
                x, baselines=refs, target=1, chunk_size=BIG, return_delta=False
            ),
            2 * n * len(refs),
        ),
        # one row per (step, example)
        "integrated_gradients": (
            lambda m, x: M.IntegratedGradients(m).attribute(
                x, target=1, n_steps=7, chunk_size=BIG, return_delta=False
            ),
            7 * n,
        ),
        # one row per (sample, example)
        "gradient_shap": (
            lambda m, x: M.GradientShap(m).attribute(
                x,
                baselines=refs,
                n_samples=5,
                target=1,
                seed=0,
                chunk_size=BIG,
                return_delta=False,
            ),  # fmt: skip
            5 * n,
        ),
        # k noisy copies, each through the inner method's own rows
        "noise_tunnel_ig": (
            lambda m, x: M.NoiseTunnel(M.IntegratedGradients(m)).attribute(
                x,
                nt_samples=3,
                stdevs=0.1,
                seed=0,
                target=1,
                n_steps=4,
                chunk_size=BIG,
                return_delta=False,
            ),  # fmt: skip
            3 * 4 * n,
        ),
        # the original and one ablation per feature
        "feature_ablation": (
            lambda m, x: M.FeatureAblation(m).attribute(x, target=1, chunk_size=BIG),
            (N_FEATURES + 1) * n,
        ),
        # per permutation the M - 1 inner coalitions, plus the empty and the full ones
        "shapley_value_sampling": (
            lambda m, x: M.ShapleyValueSampling(m).attribute(
                x, target=1, n_samples=3, seed=0, chunk_size=BIG
            ),
            (2 + 3 * (N_FEATURES - 1)) * n,
        ),
        # every coalition of M features once
        "shapley_values": (
            lambda m, x: M.ShapleyValues(m).attribute(x, target=1, chunk_size=BIG),
            2**N_FEATURES * n,
        ),
    }


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(_cases(1)))
def test_rows_through_the_model_are_the_minimum(name, batch):
    call, needed = _cases(batch)[name]
    model, x = Counting(), _x(batch)
    call(model, x)
    assert sum(model.sizes) == needed, model.sizes
    assert len(model.sizes) == 1  # a chunk that holds them all: one forward


@pytest.mark.parametrize("chunk", [2, 5])
def test_fixed_chunks_split_the_minimum_into_ceil_forwards(chunk):
    model, x = Counting(), _x(3)
    M.IntegratedGradients(model).attribute(
        x, target=1, n_steps=6, chunk_size=chunk, return_delta=False
    )
    rows = 6 * 3
    assert sum(model.sizes) == rows
    # whole steps per chunk when a chunk holds one (3 rows each), else rows as they come
    per = chunk - chunk % 3 if chunk >= 3 else chunk
    assert len(model.sizes) == math.ceil(rows / per)
