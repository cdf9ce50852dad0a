"""The short paths of tiny perturbation jobs give the numbers of the general ones.

Default feature masks (every scalar its own feature) are handled as id ranges (slices,
not gathers); a mask that broadcasts over some input dimensions is gathered at its own
size; KernelSHAP merges duplicate coalitions through integer codes; per-chunk coalitions
are built from item ranges. Each is checked against the general path, exactly, and the
shared (cached) tensors these paths use never leak into results.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox.core.masks.coalitions import _unique_rows
from whybox.core.perturbation import check_finite_each, prepare_masks
from whybox.core.validation import ParameterError
from whybox.methods import (
    FeatureAblation,
    FeaturePermutation,
    KernelShap,
    Lime,
    Occlusion,
    ShapleyValues,
    ShapleyValueSampling,
)


def _mlp(n_in: int = 7) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, 9), nn.ReLU(), nn.Linear(9, 3)).eval()


class _Two(nn.Module):
    """The MLP on two inputs, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()

    def forward(self, a, b):
        return self.net(torch.cat([a, b], dim=1))


class _Cnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def _run(method, inputs, **options):
    return method.attribute(inputs, target=2, **options)


_SEEDED = {"seed": 4}
_CASES = [
    (FeatureAblation, {}),
    (FeaturePermutation, _SEEDED),
    (ShapleyValueSampling, {"n_samples": 3, **_SEEDED}),
    (KernelShap, {"n_samples": 40, **_SEEDED}),
    (Lime, {"n_samples": 30, **_SEEDED}),
]


@pytest.mark.parametrize("cls, options", _CASES, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize("chunk", ["auto", 5])
def test_default_masks_equal_the_same_masks_given_explicitly(cls, options, chunk):
    x = torch.randn(5, 7)
    ids = torch.arange(7).view(1, 7)
    default = _run(cls(_mlp()), x, chunk_size=chunk, **options)
    explicit = _run(cls(_mlp()), x, feature_mask=ids, chunk_size=chunk, **options)
    assert torch.equal(default.attributions, explicit.attributions)
    # two inputs: ids continue across them
    a, b = x[:, :3], x[:, 3:]
    masks = (torch.arange(3).view(1, 3), torch.arange(3, 7).view(1, 4))
    default = _run(cls(_Two()), (a, b), chunk_size=chunk, **options)
    explicit = _run(cls(_Two()), (a, b), feature_mask=masks, chunk_size=chunk, **options)
    for got, want in zip(default.attributions, explicit.attributions):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "cls, options",
    [
        (FeatureAblation, {}),
        (KernelShap, {"n_samples": 30, **_SEEDED}),
        (Lime, {"n_samples": 30, **_SEEDED}),
        (ShapleyValueSampling, {"n_samples": 2, **_SEEDED}),
        (ShapleyValues, {}),
    ],
    ids=lambda c: getattr(c, "__name__", ""),
)
def test_broadcast_masks_equal_the_same_masks_expanded(cls, options):
    x = torch.randn(2, 3, 6, 6)
    grid = (torch.arange(6)[:, None] // 3 * 2 + torch.arange(6)[None, :] // 3).view(1, 1, 6, 6)
    for mask in (grid, grid[0], grid.expand(2, 1, 6, 6)):  # (1, 1, H, W), (1, H, W), (N, 1, ...)
        compact = _run(cls(_Cnn()), x, feature_mask=mask, **options)
        shape = (mask.shape[0], 3, 6, 6) if mask.dim() == 4 else (3, 6, 6)
        full = mask.expand(shape).contiguous()
        expanded = _run(cls(_Cnn()), x, feature_mask=full, **options)
        assert torch.equal(compact.attributions, expanded.attributions)


def test_broadcast_masks_keep_their_statistics():
    x = torch.randn(2, 3, 4, 4)
    mask = torch.tensor([[5, 5, 7, 7]] * 4).view(1, 1, 4, 4)
    with pytest.warns(UserWarning, match="shifting ids"):
        masks = prepare_masks(mask, (x,), owner="Lime", shift_negative=True)
    assert masks.n_features == 3
    assert masks.present.tolist() == [True, False, True]
    assert masks.flat[0].shape == (1, 48) and int(masks.flat[0].max()) == 2
    small, shape = masks.compact[0]
    assert shape == (1, 4, 4) and small.shape == (1, 16) and int(small.min()) == 0


@pytest.mark.parametrize("m", [1, 2, 5, 12, 40, 62, 63, 70])
@pytest.mark.parametrize("n", [0, 1, 9, 300])
def test_unique_rows_by_codes_equals_torch_unique(m, n):
    g = torch.Generator().manual_seed(m * 1000 + n)
    rows = torch.rand(n, m, generator=g) > torch.rand(1, generator=g)
    rows = torch.cat([rows, rows[: n // 3]])  # duplicates to merge
    want_rows, want_counts = torch.unique(rows, dim=0, return_counts=True)
    got_rows, got_counts = _unique_rows(rows)
    assert torch.equal(got_rows, want_rows)
    assert torch.equal(got_counts, want_counts)


def _leaves(value):
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("per", [1, 2, 3, 7, 100])
def test_ablation_and_occlusion_chunks_built_from_item_ranges(per):
    # every chunk boundary (the original in the first chunk or not) gives the numbers of
    # one chunk (up to the model's rounding, which may depend on how many rows it sees)
    x = torch.randn(3, 7)
    a, b = x[:, :3], x[:, 3:]
    for method, inputs, options in [
        (FeatureAblation(_mlp()), x, {}),
        (FeatureAblation(_Two()), (a, b), {}),
        (FeaturePermutation(_mlp()), x, {"seed": 1}),
        (FeaturePermutation(_Two()), (a, b), {"seed": 1}),
        (Occlusion(_Two()), (a, b), {"sliding_window_shapes": ((2,), (3,))}),
    ]:
        got = _run(method, inputs, chunk_size=per * 3, **options).attributions
        one = _run(method, inputs, chunk_size=10**6, **options).attributions
        for g, o in zip(_leaves(got), _leaves(one)):
            torch.testing.assert_close(g, o, rtol=0, atol=1e-6)
    # ablation of a linear model: the drop is w_j x_j for every feature
    linear = nn.Linear(7, 3)
    drops = FeatureAblation(linear).attribute(x, target=2, chunk_size=per * 3).attributions
    torch.testing.assert_close(drops, x * linear.weight.detach()[2], rtol=0, atol=1e-6)


def test_results_never_share_memory_with_cached_masks_or_extras():
    x = torch.randn(4, 7)
    for method, options in [
        (KernelShap(_mlp()), {"n_samples": 30, "seed": 0}),
        (ShapleyValueSampling(_mlp()), {"n_samples": 2, "seed": 0}),
        (FeatureAblation(_mlp()), {}),
        (Lime(_mlp()), {"n_samples": 20, "seed": 0}),
    ]:
        first = _run(method, x, **options)
        expected = first.attributions.clone()
        table = first.extras.get("feature_attributions")
        table_before = None if table is None else table.clone()
        first.attributions.mul_(0.0).add_(3.0)  # a caller scribbling on its result...
        if table is not None:
            assert torch.equal(table, table_before)  # ...does not reach the table
            table.fill_(-1.0)
        again = _run(method, x, **options)  # ...nor the next call (cached masks, ids)
        assert torch.equal(again.attributions, expected)


def test_check_finite_each_reports_the_first_bad_argument_and_tolerates_overflow():
    big = torch.full((4,), 3e38)  # finite, but its float32 sum overflows
    check_finite_each("Lime", (("inputs", (big,), "finite"),))
    bad = torch.tensor([1.0, float("nan")])
    with pytest.raises(ParameterError, match="'baselines' parameter of Lime.*1 NaN"):
        check_finite_each(
            "Lime",
            (("inputs", (big, torch.arange(3)), "finite"), ("baselines", (bad,), "finite")),
        )
    with pytest.raises(ParameterError, match="'inputs' parameter of Lime.*1 infinite"):
        check_finite_each(
            "Lime",
            (("inputs", (torch.tensor([float("inf")]),), "finite"), ("baselines", (bad,), "f")),
        )
