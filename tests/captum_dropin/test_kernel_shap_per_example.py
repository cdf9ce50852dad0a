"""KernelShap explains each example of a batch on its own coalitions, drawn in turn.

Captum's KernelShap (a Lime subclass) fits one example at a time, each drawing its
coalitions from torch's global generator after the previous example's, so a batch's row
``i`` is what the ``i``-th of single calls gives after one ``torch.manual_seed`` (Captum's
``test_target_basic_multi_input_multi_target_KernelShap``). The facade keeps that contract
through the native ``coalitions="per_example"`` option, whose forwards still hold the rows
of every example. Checked here: the Captum scenario itself, the native option against
sequential single calls on one generator, batch-1 calls unchanged, the number of forwards,
and that the examples' designs really differ.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import whybox.attr as facade
from whybox.core.randomness import GlobalRandom
from whybox.methods import KernelShap
from whybox.methods import shapley as shapley_module


class _MultiInput(nn.Module):
    """Captum's ``BasicModel_MultiLayer_MultiInput`` layout: ``(x1, x2, x3, scale)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.linear = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))

    def forward(self, x1, x2, x3, scale: int):
        return self.linear(scale * (x1 + x2 + x3))


class _Counting(nn.Module):
    """An MLP that records the rows of every forward."""

    def __init__(self, d: int = 6, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
        self.rows: list[int] = []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.net(x)


def _close(a, b) -> None:
    # a batch's forward and a single row's may round differently (float32 GEMMs); the
    # designs decide the rest, and a shared design misses by far more than this
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_captum_targets_scenario_batch_rows_equal_sequential_singles() -> None:
    """The scenario of Captum's test_target_basic_multi_input_multi_target_KernelShap."""
    torch.manual_seed(42)
    net = _MultiInput().eval()
    inp1, inp2 = torch.randn(6, 3) * 10, torch.randn(6, 3) * 5
    inp3 = torch.randn(6, 3) * 2
    targets = [0, 1, 1, 0, 0, 1]
    method = facade.KernelShap(net)
    torch.manual_seed(1234)
    batch = method.attribute((inp1, inp2), additional_forward_args=(inp3, 5), target=targets)
    # Lime methods attribute a batch sequentially: seed once, not after every example
    torch.manual_seed(1234)
    for i in range(6):
        one = method.attribute(
            (inp1[i : i + 1], inp2[i : i + 1]),
            additional_forward_args=(inp3[i : i + 1], 5),
            target=targets[i],
        )
        for single, rows in zip(one, batch):
            assert (single - rows[i : i + 1]).abs().max() <= 0.0005


def _cases(n: int) -> dict[str, dict]:
    """Options of the native comparison; every mask has 5 features, too many for 30
    samples to enumerate (the designs are drawn)."""
    g = torch.Generator().manual_seed(11)
    # per-example masks holding every id (a single call then has the batch's features)
    per_example = torch.stack(
        [torch.cat([torch.randperm(5, generator=g), torch.tensor([2])]) for _ in range(n)]
    )
    return {
        "default": {},
        "groups": {"feature_mask": torch.tensor([[0, 0, 1, 2, 3, 4]])},
        "absent_ids": {"feature_mask": torch.tensor([[0, 0, 3, 4, 6, 7]])},
        "per_example_masks": {"feature_mask": per_example},
        "baselines_per_example": {"baselines": torch.randn(n, 6, generator=g)},
        "coefficients": {"return_input_shape": False},
        "chunks_of_3": {"chunk_size": 3 * n},
    }


def _rows(options: dict, i: int) -> dict:
    """``options`` for example ``i`` alone."""
    out = dict(options)
    for key in ("feature_mask", "baselines"):
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.shape[0] > 1:
            out[key] = value[i : i + 1]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(_cases(4)))
def test_native_per_example_equals_sequential_singles_on_one_generator(case, dtype) -> None:
    n, seed = 4, 7
    model = _Counting(dtype=dtype).eval()
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(2)).to(dtype)
    targets = [0, 2, 1, 2]
    options = _cases(n)[case]
    method = KernelShap(model)
    batch = method.attribute(
        x, target=targets, n_samples=30, seed=seed, coalitions="per_example", **options
    )
    shared = method.attribute(x, target=targets, n_samples=30, seed=seed, **options)
    assert not torch.allclose(shared.attributions[1:], batch.attributions[1:])  # drawn designs
    # an int seed seeds one generator for the whole batch: singles draw from one in turn
    generator = torch.Generator().manual_seed(seed)
    singles = [
        method.attribute(
            x[i : i + 1], target=targets[i], n_samples=30, seed=generator, **_rows(options, i)
        )
        for i in range(n)
    ]
    for i, one in enumerate(singles):
        assert one.attributions.dtype == batch.attributions.dtype == dtype
        _close(one.attributions, batch.attributions[i : i + 1])
        _close(one.delta, batch.delta[i : i + 1])
    # a generator as the seed: the batch leaves it where the singles leave theirs
    g_batch, g_singles = (torch.Generator().manual_seed(5) for _ in range(2))
    again = method.attribute(
        x, target=targets, n_samples=30, seed=g_batch, coalitions="per_example", **options
    )
    for i in range(n):
        one = method.attribute(
            x[i : i + 1], target=targets[i], n_samples=30, seed=g_singles, **_rows(options, i)
        )
        _close(one.attributions, again.attributions[i : i + 1])
    assert torch.equal(g_batch.get_state(), g_singles.get_state())


def test_multiple_inputs_and_target_per_example() -> None:
    torch.manual_seed(5)
    net = _MultiInput().eval()
    a, b, c = torch.randn(3, 3), torch.randn(3, 3), torch.randn(3, 3)
    torch.manual_seed(9)
    batch = facade.KernelShap(net).attribute(
        (a, b),
        additional_forward_args=(c, 2),
        target=[2, 0, 1],
        n_samples=20,
        baselines=(0.5, a.flip(0)),
    )
    torch.manual_seed(9)
    for i in range(3):
        one = facade.KernelShap(net).attribute(
            (a[i : i + 1], b[i : i + 1]),
            additional_forward_args=(c[i : i + 1], 2),
            target=[2, 0, 1][i],
            n_samples=20,
            baselines=(0.5, a.flip(0)[i : i + 1]),
        )
        for single, rows in zip(one, batch):
            _close(single, rows[i : i + 1])


@pytest.mark.parametrize("ppe", [1, 3])
@pytest.mark.parametrize("mask", [None, torch.tensor([[0, 1, 1, 2, 3, 3]])])
def test_batch_of_one_is_the_shared_route_bit_for_bit(ppe, mask) -> None:
    model = _Counting().eval()
    x = torch.randn(1, 6, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(21)
    got = facade.KernelShap(model).attribute(
        x, target=1, feature_mask=mask, n_samples=40, perturbations_per_eval=ppe
    )
    state = torch.get_rng_state()
    torch.manual_seed(21)
    shared = KernelShap(model).attribute(
        x,
        target=1,
        feature_mask=mask,
        n_samples=40,
        seed=GlobalRandom(),
        coalitions="shared",
        chunk_size="auto" if ppe == 1 else ppe,  # the facade's rows per forward
    )
    assert torch.equal(got, shared.attributions)
    assert torch.equal(state, torch.get_rng_state())  # the same draws from the global one


@pytest.mark.parametrize("batch", [1, 4, 16])
def test_forwards_do_not_grow_with_the_batch(batch) -> None:
    n_samples, ppe = 40, 4
    model = _Counting().eval()
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(batch))
    torch.manual_seed(0)
    facade.KernelShap(model).attribute(x, target=0, n_samples=n_samples, perturbations_per_eval=ppe)
    # every forward holds whole items of every example, ppe at a time
    assert len(model.rows) <= math.ceil(n_samples / ppe)
    assert all(rows % batch == 0 and rows <= ppe * batch for rows in model.rows)
    model.rows.clear()
    torch.manual_seed(0)
    facade.KernelShap(model).attribute(x, target=0, n_samples=n_samples)
    assert len(model.rows) == 1  # a tiny job: one forward for the whole batch


def test_examples_draw_different_designs() -> None:
    model = _Counting().eval()
    x = torch.randn(1, 6, generator=torch.Generator().manual_seed(8)).expand(3, 6)
    per = KernelShap(model).attribute(x, target=0, n_samples=12, seed=3, coalitions="per_example")
    shared = KernelShap(model).attribute(x, target=0, n_samples=12, seed=3)
    # three copies of one example: one design gives three equal rows, three designs do not
    assert torch.equal(shared.attributions[0], shared.attributions[1])
    assert not torch.equal(per.attributions[0], per.attributions[1])
    assert not torch.equal(per.attributions[1], per.attributions[2])
    torch.testing.assert_close(per.attributions[0], shared.attributions[0])  # the first draw
    designs, _ = shapley_module._example_designs(6, 10, 3, 3)
    masks = [d.coalitions.masks for d in designs]
    assert len(masks) == 3 and not torch.equal(masks[0], masks[1])
    # the native comparison's designs (5 features, 28 coalitions) merge different numbers
    # of duplicate draws: shorter designs are padded there
    designs, _ = shapley_module._example_designs(5, 28, 7, 4)
    assert len({d.coalitions.masks.shape[0] for d in designs}) > 1
    torch.manual_seed(0)
    f = facade.KernelShap(model).attribute(x, target=0, n_samples=12)
    assert not torch.equal(f[0], f[1])


def test_aggregate_model_and_fixed_designs_fall_back_to_one_design() -> None:
    net = _Counting().eval()

    def total(x):
        return net(x)[:, 0].sum()  # one value per batch

    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(4)
    got = facade.KernelShap(total).attribute(x, n_samples=30)
    state = torch.get_rng_state()
    torch.manual_seed(4)
    shared = KernelShap(total).attribute(x, n_samples=30, seed=GlobalRandom())
    assert torch.equal(got, shared.attributions[:1])
    assert torch.equal(state, torch.get_rng_state())  # one design drawn, as Captum
    # every coalition enumerated: no draw, one design for all (nothing to tell apart)
    designs, rewind = shapley_module._example_designs(4, 14, 0, 3)
    assert len(designs) == 1 and rewind is None
    four = {"target": 1, "n_samples": 16, "feature_mask": torch.tensor([[0, 0, 1, 2, 3, 3]])}
    exact = KernelShap(net).attribute(x, coalitions="per_example", **four)
    assert torch.equal(exact.attributions, KernelShap(net).attribute(x, **four).attributions)


def test_empty_batch_and_bad_option() -> None:
    model = _Counting().eval()
    out = KernelShap(model).attribute(torch.zeros(0, 6), target=0, coalitions="per_example")
    assert out.attributions.shape == (0, 6) and out.delta.shape == (0,)
    assert facade.KernelShap(model).attribute(torch.zeros(0, 6), target=0).shape == (0, 6)
    with pytest.raises(ValueError, match="coalitions"):
        KernelShap(model).attribute(torch.zeros(2, 6), target=0, coalitions="each")
