"""The chunk probe splits an evaluation that fits in one automatic chunk, only when safe.

Automatic chunks are sized here with a small byte budget (64 KiB of input per chunk, 21
rows of 3x16x16 floats), so small evaluations fit in one chunk and a split into two to
four equal chunks is near enough to be timed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from whybox.core import chunks
from whybox.methods import DeepLift, FeatureAblation, IntegratedGradients, Saliency
from whybox.methods.deeplift_rules import Rescale, RuleSet

SHAPE = (3, 16, 16)
ROW_BYTES = math.prod(SHAPE) * 4
DEFAULT_ROWS = 2**16 // ROW_BYTES  # 21


class Counting(nn.Module):
    """A small classifier recording the rows of every forward; ``reduce`` makes it return
    one value per batch (``"mean"`` or ``"sum"`` of the class-1 logits)."""

    def __init__(self, reduce: str | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(SHAPE), 8), nn.ReLU(), nn.Linear(8, 3)
        )
        self.reduce = reduce
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        out = self.net(x)
        if self.reduce == "mean":
            return out[:, 1].mean()
        if self.reduce == "sum":
            return out[:, 1].sum()
        return out


@pytest.fixture(autouse=True)
def probe_on(monkeypatch):
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", 2**16)
    chunks.set_probe(True)
    chunks.clear_probe_cache()
    yield
    chunks.set_probe(None)
    chunks.clear_probe_cache()


def _model(reduce: str | None = None) -> Counting:
    torch.manual_seed(0)
    return Counting(reduce).eval()


def _inputs(batch: int) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn((batch,) + SHAPE, generator=generator)


def _mask() -> Tensor:
    """15 feature groups: 4x4-pixel cells of the 16x16 image (one cell merged)."""
    cells = (torch.arange(16) // 4)[:, None] * 4 + (torch.arange(16) // 4)[None, :]
    return cells.clamp(max=14).view(1, 1, 16, 16)


def test_split_candidates_are_equal_whole_group_splits_near_the_automatic_chunk():
    for items, n_items, group in [(21, 20, 1), (21, 16, 1), (40, 36, 4), (85, 80, 4)]:
        sizes = chunks._split_candidates(items, n_items, group)
        assert n_items in sizes  # one forward is always a candidate
        for size in sizes:
            assert size % group == 0 or size == n_items
            assert size * chunks._PROBE_SPAN >= items or size == n_items
            parts = math.ceil(n_items / size)
            assert 1 <= parts <= chunks._PROBE_SPLITS
            # equal parts: the last chunk is short by less than a group per other chunk
            last = n_items - (parts - 1) * size
            assert 0 < last <= size
            assert last >= size - (parts - 1) * group
    # a few rows far below the automatic chunk: splitting them would only add forwards
    assert chunks._split_candidates(4096, 100, 1) == [100]
    assert not chunks.probe_may_split(4096, 100)
    assert chunks.probe_may_split(21, 20)
    chunks.set_probe(False)
    assert not chunks.probe_may_split(21, 20)


def test_a_call_that_fits_is_one_forward_first_then_split_and_results_do_not_change():
    model, x = _model(), _inputs(1)  # 16 items of one row: within the 21-row chunk
    expected = FeatureAblation(model).attribute(x, target=1, feature_mask=_mask(), chunk_size=7)
    model.sizes.clear()
    FeatureAblation(model).attribute(x, target=1, feature_mask=_mask())
    assert model.sizes == [16]  # the model's outputs per row are not known yet
    for _ in range(6):
        result = FeatureAblation(model).attribute(x, target=1, feature_mask=_mask())
        torch.testing.assert_close(result.attributions, expected.attributions)
    assert min(model.sizes) < 16  # splits were timed
    (records,) = chunks.probe_records(model).values()
    assert set(records) == set(chunks._split_candidates(DEFAULT_ROWS, 16, 1))


def test_a_path_that_fits_is_split_into_whole_steps():
    model, x = _model(), _inputs(2)  # 10 steps x 2 examples = 20 rows: one chunk
    expected = IntegratedGradients(model).attribute(
        x, target=1, n_steps=10, chunk_size=6, return_delta=False
    )
    model.sizes.clear()
    for _ in range(6):
        result = IntegratedGradients(model).attribute(x, target=1, n_steps=10, return_delta=False)
        torch.testing.assert_close(result.attributions, expected.attributions)
    assert min(model.sizes) < 20
    assert all(size % 2 == 0 for size in model.sizes)  # whole steps of both examples


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_a_model_returning_one_value_per_batch_is_never_split(reduce):
    # the gradient of a batch mean depends on the rows in the forward: a split would give
    # each row 1/chunk instead of 1/N of its gradient
    model, x = _model(reduce), _inputs(20)  # 20 rows: one automatic chunk
    leaf = x.clone().requires_grad_(True)
    (closed,) = torch.autograd.grad(model(leaf), leaf)  # the whole batch in one forward
    model.sizes.clear()
    for _ in range(6):
        result = Saliency(model).attribute(x, abs=False)
        torch.testing.assert_close(result.attributions, closed)
    assert set(model.sizes) == {20}
    # per-row models of the same shapes are split (so the test above can fail)
    per_row = _model()
    for _ in range(6):
        Saliency(per_row).attribute(x, target=1)
    assert min(per_row.sizes) < 20


class _CoupledRescale(Rescale):
    """Rescale, flagged as mixing rows: DeepLift must put every pair in one forward."""

    couples_rows = True


def test_a_rule_mixing_rows_keeps_every_pair_in_one_forward():
    model, x = _model(), _inputs(8)  # 8 pairs = 16 rows: one automatic chunk
    baseline = torch.zeros_like(x)
    rules = RuleSet({nn.ReLU: _CoupledRescale()})
    for _ in range(6):
        DeepLift(model, rules=rules).attribute(x, baselines=baseline, target=1)
    assert set(model.sizes) == {16}
    # without the flag the same calls are split once per-row outputs are known
    plain = _model()
    for _ in range(6):
        DeepLift(plain, rules=RuleSet({nn.ReLU: Rescale()})).attribute(
            x, baselines=baseline, target=1
        )
    assert min(plain.sizes) < 16


def test_candidates_within_tolerance_count_as_fast_and_the_automatic_one_wins():
    tolerance = chunks._PROBE_TOLERANCE
    # a flat curve: the chunk without a probe, whichever candidate was lucky
    flat = {8: 1.0, 21: 1.0 + tolerance / 2, 32: 1.0 + tolerance / 3}
    assert chunks._fastest(flat, 21) == 21
    # a real gain beyond the tolerance is taken
    assert chunks._fastest({8: 1.0, 21: 1.0 + 2 * tolerance, 32: 1.5}, 21) == 8
    # of several fast ones, the one nearest the automatic chunk (by ratio)
    near = {4: 1.0, 16: 1.0, 64: 1.0 + 2 * tolerance}
    assert chunks._fastest(near, 21) == 16
