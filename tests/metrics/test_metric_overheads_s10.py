"""The per-call savings of issue 13 (session 10) keep every number bit for bit.

* ranks with few ties fix only the tied elements (``_share_tied_ranks``);
* randomisation and random logit write each table's magnitudes into one preallocated
  table, and share the original maps' centred ranks over the steps' correlations;
* deletion's per-feature scores are the attributions themselves for default masks, and
  each row's example comes from a repeat instead of a division.

Every reference is re-derived here from plain operations (a stable numpy sort and a loop
over runs for the ranks, ``copy.deepcopy`` plus each layer's ``reset_parameters`` for the
randomised models, a loop over examples and steps for the deletion rows).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM
from whybox.metrics import _common
from whybox.metrics._common import average_ranks, pearson, pearson_each
from whybox.metrics.faithfulness import _setup
from whybox.metrics.randomisation import _reinitialise


# -- references ------------------------------------------------------------------------------
def reference_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks per row by a stable numpy sort and a loop over runs of equal values
    (``NaN`` != ``NaN``: each NaN is a run of its own, as in whybox)."""
    array = values.detach().numpy()
    size = array.shape[-1]
    rows = array.reshape(-1, size)
    out = np.empty(rows.shape, dtype=array.dtype)
    for r, row in enumerate(rows):
        order = np.argsort(row, kind="stable")
        ordered = row[order]
        i = 0
        while i < size:
            j = i
            while j + 1 < size and ordered[j + 1] == ordered[j]:
                j += 1
            out[r, order[i : j + 1]] = (i + j) / 2 + 1
            i = j + 1
    return torch.from_numpy(out.reshape(array.shape))


@torch.no_grad()
def reference_reinitialise(module: nn.Module, seed: int) -> None:
    """The re-initialisation by its definition: the module's ``reset_parameters`` under a
    seeded, forked global RNG; a parameter it leaves unchanged (no initialiser, or a
    deterministic one) gets Gaussian noise with the parameter's standard deviation."""
    params = list(module.parameters(recurse=False))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        before = [p.detach().clone() for p in params]
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
        for p, old in zip(params, before):
            if torch.equal(p, old):
                std = float(old.float().std()) if old.numel() > 1 else 1.0
                p.copy_(torch.randn_like(p) * (std if std > 0 else 1.0))


def saliency(model, x, **kwargs):
    return whybox.explain(model, x, method="saliency", abs=False, **kwargs).attributions


def reference_randomisation(model, x, target, layers, *, mode, absolute, seed, given=None, fn):
    """Spearman similarity per step, by a deep copy, each layer re-initialised in turn."""
    base = given if given is not None else fn(model, x, target=target)
    randomised = copy.deepcopy(model)
    tables = []
    for step, name in enumerate(layers):
        layer = randomised.get_submodule(name)
        reference_reinitialise(layer, seed + step)
        tables.append(fn(randomised, x, target=target))
        if mode == "independent":
            with torch.no_grad():
                for mine, theirs in zip(layer.parameters(), model.get_submodule(name).parameters()):
                    mine.copy_(theirs)

    def ranks(maps):
        table = maps.reshape(maps.shape[0], -1)
        return reference_ranks(table.abs() if absolute else table)

    base_ranks = ranks(base)
    return torch.stack([pearson(base_ranks, ranks(t)) for t in tables])


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype and values, ``NaN`` (a constant map's correlation) equal to ``NaN``."""
    return a.dtype == b.dtype and torch.equal(torch.nan_to_num(a, nan=7.0), b.nan_to_num(7.0))


class Scale(nn.Module):
    """A layer with parameters and no ``reset_parameters``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels).view(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def small_cnn(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),  # a deterministic initialiser (ones / zeros)
            nn.ReLU(),
            Scale(4),  # no initialiser
            nn.Flatten(),
            nn.LayerNorm(4 * 16 * 16),  # deterministic too
            nn.Linear(4 * 16 * 16, 5),
        )
        .to(dtype)
        .eval()
    )


# -- ranks -------------------------------------------------------------------------------------
def planted_ties(shape, dtype=torch.float32, seed=0):
    """Real-valued rows with a few planted ties: pairs, a triple, runs at both ends of a
    row, and a row whose last run and the next row's first run share one value."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=g, dtype=dtype)
    flat = values.view(-1, shape[-1])
    flat[0, 5] = flat[0, 9]
    flat[0, 1] = flat[0, 2] = flat[0, 3]
    flat[1, :3] = -9.0  # a run at the row's start (the smallest values)
    flat[1, -2:] = 9.0  # and one at its end (the largest)
    flat[2, :2] = 9.0  # the next row starts with the same value: runs never join rows
    flat[3, 7] = 0.0
    flat[3, 8] = -0.0  # equal: one run
    return values


@pytest.mark.parametrize("shape", [(6, 3072), (2, 3, 400), (4, 256)])
def test_ranks_with_few_ties_equal_the_reference_and_fix_only_the_tied(monkeypatch, shape):
    calls = []
    share = _common._share_tied_ranks
    monkeypatch.setattr(_common, "_share_tied_ranks", lambda *a: calls.append(1) or share(*a))
    values = planted_ties(shape)
    got = average_ranks(values)
    assert calls, "the few-ties path did not run"
    assert got.dtype == torch.float32
    assert torch.equal(got, reference_ranks(values))
    # float64 rows take the torch path: the same numbers
    assert torch.equal(average_ranks(values.double()), reference_ranks(values.double()))


@pytest.mark.parametrize("kind", ["heavy ties", "integers", "nan", "all equal", "none"])
def test_ranks_of_every_tie_pattern_equal_the_reference(kind):
    g = torch.Generator().manual_seed(1)
    values = torch.randn(5, 700, generator=g)
    if kind == "heavy ties":
        values = values.clamp_min(0)  # half zeros: the dense numbering
    elif kind == "integers":
        values = values.mul(3).round()
    elif kind == "nan":
        values = planted_ties((5, 700))
        values[:, ::9] = float("nan")
        values[2, -5:] = float("nan")
    elif kind == "all equal":
        values = torch.full((5, 700), 2.5)
    assert torch.equal(average_ranks(values), reference_ranks(values))


# -- randomisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("given", [False, True])
def test_randomisation_equals_a_deepcopy_and_reset_reference(dtype, mode, absolute, given):
    model = small_cnn(dtype)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=dtype)
    target = [0, 1, 2, 4]
    layers = WM.randomisable_layers(model)
    maps = saliency(model, x, target=target) if given else None
    state = torch.get_rng_state()
    result = WM.model_parameter_randomisation(
        model,
        x,
        target=target,
        explain_options={"abs": False},
        attributions=maps,
        mode=mode,
        absolute=absolute,
        seed=5,
    )
    assert torch.equal(torch.get_rng_state(), state)  # the global generator left alone
    expected = reference_randomisation(
        model, x, target, layers, mode=mode, absolute=absolute, seed=5, given=maps, fn=saliency
    )
    assert result.layers == layers
    assert same(result.similarity, expected)


@pytest.mark.parametrize("resolution", [2.0**16, 8.0])
def test_randomisation_with_tied_maps_equals_the_reference(monkeypatch, resolution):
    # maps rounded to a grid: a few ties (fine grid) or many (coarse grid) per row
    def rounded(model, x, **kwargs):
        maps = saliency(model, x, **kwargs)
        return (maps / maps.abs().amax() * resolution).round()

    calls = []
    share = _common._share_tied_ranks
    monkeypatch.setattr(_common, "_share_tied_ranks", lambda *a: calls.append(1) or share(*a))
    model = small_cnn(torch.float32)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    result = WM.model_parameter_randomisation(model, x, target=1, explain=rounded, seed=2)
    expected = reference_randomisation(
        model,
        x,
        1,
        WM.randomisable_layers(model),
        mode="cascading",
        absolute=True,
        seed=2,
        fn=rounded,
    )
    assert same(result.similarity, expected)
    assert bool(calls) == (resolution > 8)  # few ties: fixed one by one; many: numbered


def test_randomisation_with_given_maps_of_another_dtype_ranks_them_apart():
    model = small_cnn(torch.float32)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    given = saliency(model, x, target=2).double()  # float64 maps, float32 steps
    result = WM.model_parameter_randomisation(
        model, x, target=2, explain_options={"abs": False}, attributions=given
    )
    expected = reference_randomisation(
        model,
        x,
        2,
        WM.randomisable_layers(model),
        mode="cascading",
        absolute=True,
        seed=0,
        given=given,
        fn=saliency,
    )
    assert same(result.similarity, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reinitialised_layers_and_generator_states_equal_the_reference(dtype):
    model = small_cnn(dtype)
    for step, name in enumerate(WM.randomisable_layers(model)):
        ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
        state = torch.get_rng_state()
        _reinitialise(ours.get_submodule(name), 10 + step)
        assert torch.equal(torch.get_rng_state(), state)
        reference_reinitialise(theirs.get_submodule(name), 10 + step)
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)


def test_a_stock_layer_built_from_the_same_seed_still_gets_new_weights():
    # reset_parameters of a Linear made right after torch.manual_seed(seed) redraws its very
    # weights: the unchanged check (noise instead) is what keeps the step meaningful, so
    # stock Linear / Conv layers cannot skip it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    _reinitialise(ours[0], 0)
    reference_reinitialise(theirs[0], 0)
    assert not torch.equal(ours[0].weight, model[0].weight)
    assert torch.equal(ours[0].weight, theirs[0].weight)
    assert torch.equal(ours[0].bias, theirs[0].bias)


def _pearson_by_hand(a, b):
    """The textbook per-row correlation, in the promoted dtype, op by op."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    return (a * b).sum(dim=-1) / (a.square().sum(dim=-1) * b.square().sum(dim=-1)).sqrt()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pearson_each_equals_one_pearson_per_table(dtype):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(4, 300, generator=g, dtype=dtype)
    others = [torch.randn(4, 300, generator=g, dtype=dtype) for _ in range(3)]
    others[1][2] = 1.5  # a constant row: NaN
    base[3] = 0.0  # and a constant base row
    got = pearson_each(base, others)
    for a, other in zip(got, others):
        assert same(a, _pearson_by_hand(base, other))
        assert same(pearson(base, other), _pearson_by_hand(base, other))
    mixed = [o.float() for o in others] if dtype == torch.float64 else others
    for a, other in zip(pearson_each(base, mixed), mixed):
        assert same(a, _pearson_by_hand(base, other))


# -- random logit ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("given", [False, True])
def test_random_logit_equals_the_reference(dtype, absolute, given):
    model = small_cnn(dtype)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(6), dtype=dtype)
    target = torch.tensor([0, 1, 2, 4])
    maps = saliency(model, x, target=target.tolist()) if given else None
    result = WM.random_logit(
        model,
        x,
        target=target,
        n_classes=5,
        explain_options={"abs": False},
        attributions=maps,
        absolute=absolute,
        seed=3,
    )
    offsets = torch.randint(1, 5, (4,), generator=torch.Generator().manual_seed(3))
    others = (target + offsets) % 5
    assert torch.equal(result.random_targets, others)
    if given:
        first, second = maps, saliency(model, x, target=others.tolist())
    else:  # both classes in one call of 2 N rows, as the metric explains them
        both = saliency(model, torch.cat([x, x]), target=target.tolist() + others.tolist())
        first, second = both[:4], both[4:]
    tables = [m.reshape(4, -1) for m in (first, second)]
    ranks = [reference_ranks(t.abs() if absolute else t) for t in tables]
    assert same(result.similarity, pearson(*ranks))


# -- deletion ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64])
def test_default_mask_scores_equal_sums_into_zeros_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(5, 3, 2, 2, generator=g), torch.randn(5, 4, generator=g))
    attrs = [torch.randn(5, 3, 2, 2, generator=g), torch.randn(5, 4, generator=g)]
    attrs[0][:, 0] = -0.0  # signed zeros: adding into zeros makes them +0.0
    attrs = [a.mul(4).round().to(dtype) for a in attrs]

    def model(a, b):
        return torch.cat([a.flatten(1), b], 1)

    for inputs, maps in [(x, tuple(attrs)), (x[1], attrs[1])]:
        net = model if isinstance(inputs, tuple) else nn.Identity()
        none = (None,) * 4  # baselines, target, forward_args, feature_mask
        scores = _setup("deletion", net, inputs, maps, *none, "auto", False).scores
        parts = maps if isinstance(maps, tuple) else (maps,)
        want = scores.dtype
        expected = torch.zeros(5, sum(p[0].numel() for p in parts), dtype=want)
        start = 0
        for p in parts:
            width = p[0].numel()
            ids = torch.arange(start, start + width).expand(5, width)
            expected.scatter_add_(1, ids, p.reshape(5, -1).to(want))
            start += width
        assert scores.dtype == (dtype if dtype.is_floating_point else torch.float32)
        assert torch.equal(scores, expected)
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[scores.element_size()]
        assert torch.equal(scores.view(bits), expected.view(bits))  # -0.0 is not +0.0
        if isinstance(maps, torch.Tensor):
            assert scores.data_ptr() != maps.data_ptr()  # the metric's own table


class RowModel(nn.Module):
    """Row-local outputs (each row's sums), recording every row it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.clone())
        weights = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)
        return torch.stack([x.sum(1), (x * weights).sum(1), x.abs().sum(1)], 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1, 7, 40, "auto"])
def test_deletion_rows_and_their_examples_equal_a_plain_loop(dtype, chunk):
    g = torch.Generator().manual_seed(8)
    n, d, steps = 9, 12, 5
    x = torch.randn(n, d, generator=g, dtype=dtype)
    attr = torch.randn(n, d, generator=g, dtype=dtype).mul(2).round()  # ties: stable order
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    model = RowModel()
    result = WM.deletion(model, x, attr, target=target, n_steps=steps, chunk_size=chunk)
    rows, values = [], []
    for i in range(n):
        order = np.argsort(-attr[i].numpy(), kind="stable")
        for k in range(steps + 1):
            row = x[i].clone()
            row[torch.from_numpy(order[: round(k / steps * d)])] = 0.0
            rows.append(row)
            values.append(RowModel()(row[None])[0, target[i]])
    seen = torch.cat(model.rows)
    assert torch.equal(seen[-len(rows) :], torch.stack(rows))  # after any chunk probe
    assert torch.equal(result.curve, torch.stack(values).reshape(n, steps + 1))
