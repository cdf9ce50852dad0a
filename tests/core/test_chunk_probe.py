"""The automatic chunk's throughput probe, and forwards per method against the minimum.

Automatic chunks are sized here with a small byte budget (64 KiB of input per chunk, 21
rows of 3x16x16 floats), so small evaluations have enough chunks to probe.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch
from torch import Tensor, nn

import whybox.attr
from whybox.core import chunks
from whybox.methods import FeatureAblation, IntegratedGradients, Occlusion

SHAPE = (3, 16, 16)
ROW_BYTES = math.prod(SHAPE) * 4
DEFAULT_ROWS = 2**16 // ROW_BYTES  # the byte-sized automatic chunk: 21 rows


class Counting(nn.Module):
    """A linear classifier that records the rows of every forward (and can be slow)."""

    def __init__(self, cost=None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 3))
        self.sizes: list[int] = []
        self.cost = cost  # rows -> seconds to sleep per forward
        self.lock = threading.Lock()

    def forward(self, x: Tensor) -> Tensor:
        with self.lock:
            self.sizes.append(x.shape[0])
        if self.cost is not None:
            time.sleep(self.cost(x.shape[0]))
        return self.net(x)


@pytest.fixture(autouse=True)
def probe_on(monkeypatch):
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", 2**16)
    chunks.set_probe(True)
    chunks.clear_probe_cache()
    yield
    chunks.set_probe(None)
    chunks.clear_probe_cache()


def _model(cost=None) -> Counting:
    torch.manual_seed(0)
    return Counting(cost).eval()


def _inputs(batch: int = 2) -> Tensor:
    return torch.randn((batch,) + SHAPE, generator=torch.Generator().manual_seed(1))


def _mask() -> Tensor:
    """15 feature groups: 4x4-pixel cells of the 16x16 image (one cell merged)."""
    cells = (torch.arange(16) // 4)[:, None] * 4 + (torch.arange(16) // 4)[None, :]
    return cells.clamp(max=14).view(1, 1, 16, 16)


N_GROUPS = 15
WINDOWS = 16  # 4x4 windows of 4x4 pixels (stride 4)

CASES = {
    "integrated_gradients": lambda m, x, c: IntegratedGradients(m).attribute(
        x, target=1, n_steps=60, chunk_size=c, return_delta=False
    ),
    "feature_ablation": lambda m, x, c: FeatureAblation(m).attribute(
        x, target=1, feature_mask=_mask(), chunk_size=c
    ),
    "occlusion": lambda m, x, c: Occlusion(m).attribute(
        x, target=1, sliding_window_shapes=(3, 4, 4), strides=(3, 4, 4), chunk_size=c
    ),
}


def _items_and_rows_per_item(name: str, batch: int) -> tuple[int, int, int]:
    """(items, rows per item, items per group) of one call of case ``name``."""
    if name == "integrated_gradients":
        return 60 * batch, 1, batch  # one row per (step, example); whole steps
    if name == "feature_ablation":
        return N_GROUPS + 1, batch, 1  # the original and one ablation per group
    return WINDOWS + 1, batch, 1  # the original and one per window


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_probe_never_changes_results(name):
    model, x = _model(), _inputs()
    expected = CASES[name](model, x, 7).attributions
    model.sizes.clear()
    for _ in range(4):  # probing spreads over the first calls
        torch.testing.assert_close(
            CASES[name](model, x, "auto").attributions, expected, rtol=1e-5, atol=1e-6
        )
    assert len(set(model.sizes[:-1])) >= 3  # several chunk sizes were really timed
    assert chunks.probe_records(model)  # ...and remembered


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunk", [3, 8, 40])
def test_a_fixed_chunk_is_never_probed_and_needs_the_minimum_of_forwards(name, chunk):
    batch = 2
    model, x = _model(), _inputs(batch)
    CASES[name](model, x, chunk)
    items, per_item, group = _items_and_rows_per_item(name, batch)
    rows_per_chunk = chunks.whole_groups(chunk, group * per_item) if group > 1 else chunk
    items_per_chunk = max(1, rows_per_chunk // per_item)
    assert len(model.sizes) == math.ceil(items / items_per_chunk)
    assert model.sizes[:-1] == [items_per_chunk * per_item] * (len(model.sizes) - 1)
    assert chunks.probe_records(model) == {}


def test_feature_ablation_needs_ceil_of_groups_plus_one_over_chunk_forwards():
    model, x = _model(), _inputs(1)
    for chunk in (1, 2, 4, 5, 16, 100):
        model.sizes.clear()
        FeatureAblation(model).attribute(x, target=0, feature_mask=_mask(), chunk_size=chunk)
        assert len(model.sizes) == math.ceil((N_GROUPS + 1) / chunk)


def test_integrated_gradients_with_delta_needs_one_more_chunked_pass():
    batch, n_steps, chunk = 2, 10, 6  # 20 path rows in 6-row chunks; delta: 4 rows
    model, x = _model(), _inputs(batch)
    IntegratedGradients(model).attribute(x, target=0, n_steps=n_steps, chunk_size=chunk)
    assert len(model.sizes) == math.ceil(n_steps * batch / chunk) + math.ceil(2 * batch / chunk)


@pytest.mark.parametrize("name", sorted(CASES))
def test_with_the_probe_forwards_stay_near_the_minimum_at_the_smallest_candidate(name):
    batch = 2
    model, x = _model(), _inputs(batch)
    items, per_item, group = _items_and_rows_per_item(name, batch)
    smallest = chunks.whole_groups(max(1, 8 // per_item), group)  # the 8-row candidate
    for _ in range(3):
        model.sizes.clear()
        CASES[name](model, x, "auto")
        assert len(model.sizes) <= math.ceil(items / smallest) + 2


def test_the_probe_chooses_the_fastest_size():
    # a fixed cost per forward: bigger chunks are faster, up to the memory bound
    overhead = _model(cost=lambda rows: 0.02)  # well above a loaded machine's noise
    x = _inputs(2)  # 16 items of 2 rows; the byte-sized chunk holds 10
    for _ in range(8):
        CASES["feature_ablation"](overhead, x, "auto")
    overhead.sizes.clear()
    CASES["feature_ablation"](overhead, x, "auto")
    assert overhead.sizes == [2 * (N_GROUPS + 1)]  # the largest candidate: one forward
    # a penalty above 8 rows: small chunks are faster
    penalty = _model(cost=lambda rows: 0.0002 * rows + (0.05 if rows > 8 else 0.0))
    big = _inputs(4)
    for _ in range(8):
        CASES["integrated_gradients"](penalty, big, "auto")
    penalty.sizes.clear()
    CASES["integrated_gradients"](penalty, big, "auto")
    assert set(penalty.sizes) == {8}  # two whole steps of 4 examples per forward


def test_the_second_call_reuses_the_choice_without_probing():
    model, x = _model(), _inputs(2)
    items = 60 * 2
    for _ in range(8):  # every candidate timed often enough to be compared
        CASES["integrated_gradients"](model, x, "auto")
    (records,) = chunks.probe_records(model).values()
    model.sizes.clear()
    CASES["integrated_gradients"](model, x, "auto")
    winner = model.sizes[0]
    # a timed candidate as fast as the fastest (within the probe's tolerance)
    assert winner in records
    assert records[winner] <= min(records.values()) * (1 + chunks._PROBE_TOLERANCE)
    assert len(model.sizes) == math.ceil(items / winner)
    assert model.sizes[:-1] == [winner] * (len(model.sizes) - 1)
    assert list(chunks.probe_records(model).values()) == [records]  # nothing re-timed


def test_the_probe_stays_under_the_memory_bound(monkeypatch):
    # 30 rows of input per chunk at most: the 32-row candidate is never tried
    monkeypatch.setitem(chunks._PROBE_BYTES, "cpu", 30 * ROW_BYTES)
    bound = chunks.probe_bound(DEFAULT_ROWS, ROW_BYTES, torch.device("cpu"))
    assert bound == 30
    model, x = _model(), _inputs(1)
    for _ in range(4):
        IntegratedGradients(model).attribute(x, target=0, n_steps=300, return_delta=False)
    assert max(model.sizes) <= bound
    # without the cap the same calls try the bigger candidates (within _PROBE_SPAN)
    monkeypatch.setitem(chunks._PROBE_BYTES, "cpu", 2**30)
    chunks.clear_probe_cache()
    model.sizes.clear()
    for _ in range(4):
        IntegratedGradients(model).attribute(x, target=0, n_steps=300, return_delta=False)
    largest = max(r for r in chunks._PROBE_ROWS if r <= DEFAULT_ROWS * chunks._PROBE_SPAN)
    assert largest > bound
    assert max(model.sizes) == largest
    assert max(model.sizes) <= chunks.probe_bound(DEFAULT_ROWS, ROW_BYTES, torch.device("cpu"))


def test_the_probe_can_be_turned_off(monkeypatch):
    model, x = _model(), _inputs(2)
    items, per_item, _ = _items_and_rows_per_item("feature_ablation", 2)
    default_items = DEFAULT_ROWS // per_item
    chunks.set_probe(None)
    monkeypatch.setenv("WHYBOX_CHUNK_PROBE", "0")
    assert not chunks.probe_enabled()
    for _ in range(3):
        CASES["feature_ablation"](model, x, "auto")
    rest = (items - default_items) * per_item
    assert model.sizes == [default_items * per_item, rest] * 3  # the byte-sized chunk only
    assert chunks.probe_records(model) == {}
    monkeypatch.setenv("WHYBOX_CHUNK_PROBE", "1")
    assert chunks.probe_enabled()
    chunks.set_probe(False)
    assert not chunks.probe_enabled()


def test_captum_batching_arguments_fix_the_chunk():
    model, x = _model(), _inputs(2)
    whybox.attr.FeatureAblation(model).attribute(
        x, target=1, feature_mask=_mask(), perturbations_per_eval=3
    )
    assert len(model.sizes) == math.ceil((N_GROUPS + 1) / 3)  # 3 perturbations per forward
    model.sizes.clear()
    whybox.attr.IntegratedGradients(model).attribute(
        x, target=1, n_steps=60, internal_batch_size=10
    )
    path_forwards = math.ceil(60 * 2 / 10)
    assert len(model.sizes) in (path_forwards, path_forwards + 1)  # (+ the delta's forward)
    assert set(model.sizes[:path_forwards]) == {10}
    assert chunks.probe_records(model) == {}


def test_models_returning_one_value_per_batch_keep_one_perturbation_per_forward():
    class Total(Counting):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x)[:, 1].sum()

    torch.manual_seed(0)
    model, x = Total().eval(), _inputs(2)
    chunks.set_probe(False)
    expected = FeatureAblation(model).attribute(x, feature_mask=_mask()).attributions
    chunks.set_probe(True)
    for _ in range(3):
        model.sizes.clear()
        result = FeatureAblation(model).attribute(x, feature_mask=_mask()).attributions
        torch.testing.assert_close(result, expected)
        assert set(model.sizes[1:]) == {2}  # after the first chunk: one perturbation each


def test_threads_probing_one_model_get_the_right_results():
    model, x = _model(), _inputs(2)
    expected = CASES["integrated_gradients"](model, x, 7).attributions
    results: list[Tensor] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(CASES["integrated_gradients"](model, x, "auto").attributions)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 12
    for result in results:
        torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)
