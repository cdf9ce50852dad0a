"""Tiny-job overhead, session 11: KernelShap's per-example designs drawn at once.

``coalitions="per_example"`` (the facade's KernelShap) used to draw one design per example
by calling ``kernel_shap_coalitions`` ``N`` times. Now the ``N`` designs come from one
``torch.rand`` (``kernel_shap_coalition_stack``); the old route is still the fallback,
so each test compares the fast route with it (``_drawn_stack`` patched to ``None``): equal
attributions (``torch.equal``), the same generator state afterwards.
"""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import whybox.attr as facade
from whybox.core import randomness as randomness_module
from whybox.core.masks import coalitions as coalitions_module
from whybox.core.masks import kernel_shap_coalitions
from whybox.core.masks.coalitions import (
    coalition_stack_applies,
    code_rows,
    kernel_shap_coalition_stack,
)
from whybox.core.randomness import GlobalRandom
from whybox.methods import KernelShap
from whybox.methods import shapley as shapley_module


def _mlp(n_in: int = 12, n_out: int = 3, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, n_out)).to(dtype).eval()


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(x) + self.b(y))


@pytest.fixture
def old_route(monkeypatch):
    """A context in which KernelShap draws its per-example designs one by one, each by
    ``multinomial`` then ``rand`` (the code before session 11)."""

    class _Old:
        def __enter__(self):
            monkeypatch.setattr(shapley_module, "_drawn_stack", lambda *a, **k: None)
            # and kernel_shap_coalitions' multinomial + rand, not its one rand
            monkeypatch.setattr(coalitions_module, "_rand_is_multinomial", lambda: False)

        def __exit__(self, *exc):
            monkeypatch.undo()

    return _Old()


def _both(run, old_route, seed: int = 0):
    """``run()`` on the fast route and on the old one after the same global seed, with
    torch's global generator state after each."""
    torch.manual_seed(seed)
    fast = run()
    fast_state = torch.get_rng_state()
    with old_route:
        torch.manual_seed(seed)
        old = run()
        old_state = torch.get_rng_state()
    return fast, fast_state, old, old_state


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


# -- the stacked draw against kernel_shap_coalitions called in a row -------------------------
def _multinomial_route(monkeypatch, call):
    """``call()`` with kernel_shap_coalitions drawing by ``multinomial`` then ``rand``."""
    monkeypatch.setattr(coalitions_module, "_rand_is_multinomial", lambda: False)
    try:
        return call()
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("paired", [True, False])
def test_stack_is_the_sequential_designs(paired: bool, monkeypatch) -> None:
    cases = itertools.product((2, 3, 4, 6, 7, 12, 13), (3, 10, 28, 198, 398), (1, 2, 5, 32))
    drawn = 0
    for m, budget, n in cases:
        seq_gen = torch.Generator().manual_seed(m * 1000 + budget + n)
        fast_gen = torch.Generator().manual_seed(m * 1000 + budget + n)
        stack = kernel_shap_coalition_stack(m, budget, n, fast_gen, paired=paired)
        if stack is None:
            assert not coalition_stack_applies(m, budget, paired=paired)
            assert torch.equal(fast_gen.get_state(), seq_gen.get_state())  # nothing drawn
            continue
        drawn += 1
        designs = _multinomial_route(
            monkeypatch,
            lambda m=m, budget=budget, n=n, g=seq_gen: [
                kernel_shap_coalitions(m, budget, g, paired=paired) for _ in range(n)
            ],
        )
        # and the one-rand route of a single design gives the same designs
        one_gen = torch.Generator().manual_seed(m * 1000 + budget + n)
        for design in designs:
            again = kernel_shap_coalitions(m, budget, one_gen, paired=paired)
            assert torch.equal(again.masks, design.masks)
            assert torch.equal(again.weights, design.weights)
        assert torch.equal(one_gen.get_state(), seq_gen.get_state())
        assert torch.equal(fast_gen.get_state(), seq_gen.get_state())
        rows = code_rows(stack.codes, m)
        assert stack.codes.shape[1] == max(d.masks.shape[0] for d in designs)
        for i, design in enumerate(designs):
            r = int(stack.rows[i])
            assert r == design.masks.shape[0]
            assert np.array_equal(rows[i, :r], design.masks.numpy())
            assert np.array_equal(stack.weights[i, :r], design.weights.numpy())
            assert not rows[i, r:].any() and not stack.weights[i, r:].any()  # empty, weight 0
            assert stack.n_enumerated == design.n_enumerated
    assert drawn > 20


def test_stack_on_the_global_generator(monkeypatch) -> None:
    torch.manual_seed(5)
    designs = _multinomial_route(
        monkeypatch, lambda: [kernel_shap_coalitions(12, 198) for _ in range(32)]
    )
    want = torch.get_rng_state()
    torch.manual_seed(5)
    stack = kernel_shap_coalition_stack(12, 198, 32)
    assert torch.equal(torch.get_rng_state(), want)
    rows = code_rows(stack.codes, 12)
    for i, design in enumerate(designs):
        r = int(stack.rows[i])
        assert np.array_equal(rows[i, :r], design.masks.numpy())
        assert np.array_equal(stack.weights[i, :r], design.weights.numpy())


def test_threshold_selection_with_ties_falls_back_to_the_stable_order() -> None:
    tables = coalitions_module._host_tables(8, 60, True)
    rng = np.random.default_rng(0)
    n_rows = coalitions_module._THRESHOLD_ROWS + 50
    pick = rng.integers(0, tables.draw_sizes.shape[0], n_rows)
    keys = rng.random((n_rows, 8))
    order = keys.argsort(axis=1, kind="stable")
    want = np.add.reduce(tables.bits[order], axis=1, where=tables.group_prefix[pick])
    assert np.array_equal(coalitions_module._smallest_codes(keys, pick, tables), want)
    # ties at the threshold: every key of some rows equal; the stable order decides
    keys[::7] = 0.25
    keys[3, :] = np.array([0.5, 0.1, 0.5, 0.1, 0.5, 0.9, 0.1, 0.5])
    order = keys.argsort(axis=1, kind="stable")
    want = np.add.reduce(tables.bits[order], axis=1, where=tables.group_prefix[pick])
    assert np.array_equal(coalitions_module._smallest_codes(keys, pick, tables), want)
    # and on few rows (the argsort itself)
    few = keys[:20]
    order = few.argsort(axis=1, kind="stable")
    want = np.add.reduce(tables.bits[order], axis=1, where=tables.group_prefix[pick[:20]])
    assert np.array_equal(coalitions_module._smallest_codes(few, pick[:20], tables), want)


def test_stack_applies_only_where_it_draws_as_the_calls() -> None:
    assert coalition_stack_applies(12, 198)
    assert not coalition_stack_applies(1, 10)  # one feature: nothing to draw
    assert not coalition_stack_applies(63, 1000)  # beyond int64 codes
    assert not coalition_stack_applies(4, 14)  # every coalition enumerated
    assert not coalition_stack_applies(6, 3)  # one draw: multinomial's exponential route
    assert not coalition_stack_applies(6, 0)
    assert kernel_shap_coalition_stack(6, 3, 4) is None


def test_cached_tables_are_read_only_and_results_new_memory() -> None:
    cdf = coalitions_module._multinomial_cdf((1.0, 2.0, 3.0))
    with pytest.raises(ValueError):
        cdf[0] = 0.5
    gen = torch.Generator().manual_seed(1)
    first = kernel_shap_coalition_stack(6, 40, 3, gen)
    first.codes[:] = 0
    first.weights[:] = -1.0
    rows = code_rows(first.codes, 6)
    rows[:] = True  # a new array: the row table is not touched
    again = kernel_shap_coalition_stack(6, 40, 3, torch.Generator().manual_seed(1))
    assert again.codes.any() and (again.weights >= 0).all()
    assert not code_rows(np.zeros(1, dtype=np.int64), 6).any()


# -- the facade (Captum defaults): fast route == old route, same global state ------------
@pytest.mark.parametrize("batch", [1, 2, 4, 32])
@pytest.mark.parametrize("n_samples", [5, 25, 200, 400])
def test_facade_kernel_shap_batches(batch: int, n_samples: int, old_route) -> None:
    model = _mlp()
    x = torch.randn(batch, 12, generator=torch.Generator().manual_seed(batch))
    target = torch.arange(batch) % 3
    method = facade.KernelShap(model)
    fast, fs, old, os_ = _both(
        lambda: method.attribute(x, target=target, n_samples=n_samples), old_route
    )
    assert _equal(fast, old) and torch.equal(fs, os_)


def test_facade_kernel_shap_masks_baselines_float64_and_two_inputs(old_route) -> None:
    model = _mlp(dtype=torch.float64)
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]])
    baselines = torch.full((1, 12), 0.5, dtype=torch.float64)
    method = facade.KernelShap(model)

    def run():
        return method.attribute(x, baselines=baselines, target=1, feature_mask=mask, n_samples=60)

    fast, fs, old, os_ = _both(run, old_route)
    assert fast.dtype == torch.float64 and _equal(fast, old) and torch.equal(fs, os_)
    # absent ids (not every id present): the designs are over the present ones
    sparse = torch.tensor([[0, 0, 2, 2, 4, 4, 5, 5, 7, 7, 8, 8]])
    fast, fs, old, os_ = _both(
        lambda: method.attribute(x, target=0, feature_mask=sparse, n_samples=30), old_route
    )
    assert _equal(fast, old) and torch.equal(fs, os_)
    two = _TwoInputs().eval()
    a = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    b = torch.randn(4, 3, generator=torch.Generator().manual_seed(4))
    method2 = facade.KernelShap(two)
    fast, fs, old, os_ = _both(
        lambda: method2.attribute((a, b), baselines=(0.1, 0.2), target=2, n_samples=50),
        old_route,
    )
    assert _equal(fast, old) and torch.equal(fs, os_)
    fast, fs, old, os_ = _both(
        lambda: method2.attribute((a, b), target=0, n_samples=50, return_input_shape=False),
        old_route,
    )
    assert _equal(fast, old) and torch.equal(fs, os_)


def test_facade_batch_rows_are_sequential_single_calls() -> None:
    model = _mlp()
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(9))
    method = facade.KernelShap(model)
    torch.manual_seed(3)
    batch = method.attribute(x, target=1, n_samples=80)
    after_batch = torch.get_rng_state()
    torch.manual_seed(3)
    singles = [method.attribute(x[i : i + 1], target=1, n_samples=80) for i in range(4)]
    assert torch.equal(batch, torch.cat(singles))
    assert torch.equal(after_batch, torch.get_rng_state())


def test_aggregate_model_falls_back_to_the_first_design(old_route) -> None:
    net = _mlp()

    def total(x):
        return net(x)[:, 0].sum()  # one value per batch

    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    method = facade.KernelShap(total)
    fast, fs, old, os_ = _both(lambda: method.attribute(x, n_samples=40), old_route)
    assert _equal(fast, old) and torch.equal(fs, os_)
    # a caller's generator is left where one design leaves it
    for seed in (torch.Generator().manual_seed(8), GlobalRandom()):
        native = KernelShap(total)

        def run(seed=seed, native=native):
            if isinstance(seed, torch.Generator):
                seed.manual_seed(8)
            out = native.attribute(x, n_samples=40, seed=seed, coalitions="per_example")
            state = seed.get_state() if isinstance(seed, torch.Generator) else None
            return out.attributions, state

        (fa, fg), fs, (oa, og), os_ = _both(run, old_route)
        assert torch.equal(fa, oa) and torch.equal(fs, os_)
        if fg is not None:
            assert torch.equal(fg, og)


# -- the native method with every kind of source -------------------------------------------
@pytest.mark.parametrize("coalitions", ["per_example", "shared"])
@pytest.mark.parametrize("kind", ["global", "generator", "none", "int"])
def test_native_per_example_sources(kind: str, coalitions: str, old_route) -> None:
    model = _mlp()
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(6))
    method = KernelShap(model)

    def run():
        seed = {
            "global": GlobalRandom(),
            "generator": torch.Generator().manual_seed(21),
            "none": None,
            "int": 21,
        }[kind]
        out = method.attribute(x, target=2, n_samples=120, seed=seed, coalitions=coalitions)
        return out.attributions, out.delta

    fast, fs, old, os_ = _both(run, old_route)
    assert _equal(fast, old) and torch.equal(fs, os_)


def test_rows_padded_where_designs_merge_duplicates(old_route) -> None:
    # 5 features and 28 coalitions: the designs merge different numbers of duplicates
    model = _mlp(n_in=5)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(4))
    stack, _ = shapley_module._drawn_stack(5, 26, torch.Generator().manual_seed(7), 8)
    assert len(set(stack.rows)) > 1
    method = facade.KernelShap(model)
    fast, fs, old, os_ = _both(lambda: method.attribute(x, target=0, n_samples=28), old_route)
    assert _equal(fast, old) and torch.equal(fs, os_)


def test_kernels_that_draw_otherwise_take_the_old_route(monkeypatch, old_route) -> None:
    model = _mlp()
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(12))
    method = facade.KernelShap(model)

    class _OffCpu:  # a source whose generator lives on an accelerator: never drawn here
        generator = SimpleNamespace(device=torch.device("cuda"))

    assert coalition_stack_applies(12, 98)
    assert shapley_module._drawn_stack(12, 98, _OffCpu(), 4) is None
    torch.manual_seed(0)
    want = method.attribute(x, target=0, n_samples=100)
    monkeypatch.setattr(coalitions_module, "_rand_is_multinomial", lambda: False)
    assert not coalition_stack_applies(12, 98)
    assert kernel_shap_coalition_stack(12, 98, 4) is None
    called = []
    real = shapley_module._example_designs

    def spy(*args):
        called.append(args)
        return real(*args)

    monkeypatch.setattr(shapley_module, "_example_designs", spy)
    torch.manual_seed(0)
    assert torch.equal(method.attribute(x, target=0, n_samples=100), want)
    assert called  # the designs were drawn one by one


def test_two_threads() -> None:
    model = _mlp()
    x = torch.randn(8, 12, generator=torch.Generator().manual_seed(13))
    method = KernelShap(model)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        out = method.attribute(x, target=1, n_samples=150, seed=gen, coalitions="per_example")
        return out.attributions

    want = {s: run(s) for s in (1, 2)}
    results: dict[int, list[torch.Tensor]] = {1: [], 2: []}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for _ in range(20):
                results[seed].append(run(seed))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for seed, got in results.items():
        assert len(got) == 20 and all(torch.equal(g, want[seed]) for g in got)


# -- Lime's default samples with Captum's fit draws, from one rand --------------------------
@pytest.fixture
def lime_old_route(monkeypatch):
    """A context in which GlobalRandom.lime_samples draws group by group, op by op."""

    class _Old:
        def __enter__(self):
            monkeypatch.setattr(randomness_module, "_lime_draws_in_one", lambda *a: False)

        def __exit__(self, *exc):
            monkeypatch.undo()

    return _Old()


@pytest.mark.parametrize("groups", [1, 2, 4, 32])
@pytest.mark.parametrize("fit_draws", [True, False])
def test_lime_samples_one_draw_is_the_loop(groups: int, fit_draws: bool, lime_old_route) -> None:
    source = GlobalRandom()
    for n_samples, m in ((1, 1), (25, 12), (200, 12), (7, 30)):

        def run(n_samples=n_samples, m=m):
            out = source.lime_samples(n_samples, m, groups, fit_draws=fit_draws)
            return out, torch.rand(3)  # what is drawn next sees the same state

        fast, fs, old, os_ = _both(run, lime_old_route)
        assert _equal(fast, old) and torch.equal(fs, os_)
        assert fast[0].is_contiguous() and fast[0].dtype == torch.bool


@pytest.mark.parametrize("batch", [1, 4, 32])
def test_facade_lime_batches(batch: int, lime_old_route) -> None:
    model = _mlp()
    x = torch.randn(batch, 12, generator=torch.Generator().manual_seed(batch))
    target = torch.arange(batch) % 3
    method = facade.Lime(model)
    for n_samples in (25, 200):
        fast, fs, old, os_ = _both(
            lambda n_samples=n_samples: method.attribute(x, target=target, n_samples=n_samples),
            lime_old_route,
        )
        assert _equal(fast, old) and torch.equal(fs, os_)


def test_facade_lime_masks_baselines_float64_two_inputs(lime_old_route) -> None:
    model = _mlp(dtype=torch.float64)
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]])
    method = facade.Lime(model)
    fast, fs, old, os_ = _both(
        lambda: method.attribute(x, baselines=0.5, target=1, feature_mask=mask, n_samples=60),
        lime_old_route,
    )
    assert fast.dtype == torch.float64 and _equal(fast, old) and torch.equal(fs, os_)
    two = _TwoInputs().eval()
    a = torch.randn(3, 5, generator=torch.Generator().manual_seed(3))
    b = torch.randn(3, 3, generator=torch.Generator().manual_seed(4))
    method2 = facade.Lime(two)
    fast, fs, old, os_ = _both(
        lambda: method2.attribute((a, b), baselines=(0.1, 0.2), target=2, n_samples=40),
        lime_old_route,
    )
    assert _equal(fast, old) and torch.equal(fs, os_)
    fast, fs, old, os_ = _both(
        lambda: method2.attribute((a, b), target=0, n_samples=40, return_input_shape=False),
        lime_old_route,
    )
    assert _equal(fast, old) and torch.equal(fs, os_)


def test_facade_lime_batch_rows_are_sequential_single_calls() -> None:
    model = _mlp()
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(9))
    method = facade.Lime(model)
    torch.manual_seed(3)
    batch = method.attribute(x, target=1, n_samples=50)
    after = torch.get_rng_state()
    torch.manual_seed(3)
    singles = [method.attribute(x[i : i + 1], target=1, n_samples=50) for i in range(3)]
    assert torch.equal(batch, torch.cat(singles)) and torch.equal(after, torch.get_rng_state())


def test_lime_one_draw_fallbacks(monkeypatch) -> None:
    # float64 default dtype: the samples' rand draws 64-bit numbers, the loop draws
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert not randomness_module._lime_draws_in_one(10, 4)
        torch.manual_seed(1)
        got = GlobalRandom().lime_samples(10, 4, 3, fit_draws=True)
        state = torch.get_rng_state()
        torch.manual_seed(1)
        want = []
        for _ in range(3):  # Captum's draws, op by op
            want.append(torch.bernoulli(torch.full((10, 4), 0.5)).bool())
            torch.empty((), dtype=torch.int64).random_()
            torch.empty(1, 4).uniform_()
            torch.empty(1).uniform_()
        assert torch.equal(got, torch.stack(want, dim=1))
        assert torch.equal(state, torch.get_rng_state())
    finally:
        torch.set_default_dtype(previous)
    # a torch whose kernels draw otherwise: the loop
    monkeypatch.setattr(randomness_module, "_lime_rand_in_one", lambda: False)
    assert not randomness_module._lime_draws_in_one(10, 4)
    torch.manual_seed(1)
    loop = GlobalRandom().lime_samples(10, 4, 2, fit_draws=True)
    monkeypatch.undo()
    torch.manual_seed(1)
    assert torch.equal(GlobalRandom().lime_samples(10, 4, 2, fit_draws=True), loop)
    # the self-check leaves torch's global generator alone
    randomness_module._lime_rand_in_one.cache_clear()
    torch.manual_seed(4)
    before = torch.get_rng_state()
    assert randomness_module._lime_rand_in_one()
    assert torch.equal(before, torch.get_rng_state())


def test_lime_samples_are_captums_draws_op_by_op() -> None:
    torch.manual_seed(6)
    got = GlobalRandom().lime_samples(30, 5, 4, fit_draws=True)
    state = torch.get_rng_state()
    torch.manual_seed(6)
    want = []
    for _ in range(4):  # Captum: (1, M) per sample, then its fit's DataLoader and nn.Linear
        want.append(torch.cat([torch.bernoulli(torch.full((1, 5), 0.5)) for _ in range(30)]))
        torch.empty((), dtype=torch.int64).random_()
        nn.Linear(5, 1)
    assert torch.equal(got, torch.stack(want, dim=1).bool())
    assert torch.equal(state, torch.get_rng_state())
