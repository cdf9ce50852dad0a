"""Random sources: seeded reproducibility, shapes / dtypes / devices, and GlobalRandom drawing
exactly what Captum 0.9 draws from the global generators, in the same order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whybox.core.randomness import (
    GeneratorRandom,
    GlobalRandom,
    RandomSource,
    check_seed,
    make_random,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _draws(source: RandomSource, like: torch.Tensor) -> list[torch.Tensor]:
    """One of every draw, in a fixed order."""
    return [
        source.normal((3, 4), 0.5, like=like),
        source.uniform(5, like=like),
        source.choice(7, 6),
        source.permutations(4, 6),
        source.permutations(3, 2, exclude_identity=True),
        source.bernoulli((5, 9)),
    ]


def test_seeded_sources_reproduce_and_differ_by_seed():
    like = torch.zeros(1)
    first = _draws(make_random(3), like)
    again = _draws(make_random(3), like)
    other = _draws(make_random(4), like)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    # a torch.Generator is used as given: same state, same draws
    from_generator = _draws(make_random(torch.Generator().manual_seed(3)), like)
    for a, b in zip(first, from_generator):
        assert torch.equal(a, b)


def test_seed_none_follows_torch_manual_seed_and_sources_pass_through():
    like = torch.zeros(1)
    torch.manual_seed(11)
    first = _draws(make_random(None), like)
    torch.manual_seed(11)
    again = _draws(make_random(None), like)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    source = GlobalRandom()
    assert make_random(source) is source


def test_generator_random_leaves_the_global_generators_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    _draws(make_random(1), torch.zeros(1))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("source", [make_random(0), GlobalRandom()], ids=["generator", "global"])
def test_shapes_dtypes_and_devices(source, device):
    for dtype in (torch.float32, torch.float64):
        like = torch.zeros(2, dtype=dtype, device=device)
        noise = source.normal((3, 4), 2.0, like=like)
        assert noise.shape == (3, 4) and noise.dtype == dtype and noise.device == like.device
        alphas = source.uniform(50, like=like)
        assert alphas.shape == (50,) and alphas.dtype == dtype and alphas.device == like.device
        assert bool((alphas >= 0).all() and (alphas < 1).all())
    # integer "like" tensors (token ids) get the default floating dtype
    assert source.normal((2,), 1.0, like=torch.zeros(2, dtype=torch.long)).dtype == torch.float32
    index = source.choice(4, 100)
    assert index.dtype == torch.long and index.shape == (100,)
    assert set(index.tolist()) <= {0, 1, 2, 3}
    perms = source.permutations(20, 5, device=device)
    assert perms.shape == (20, 5) and perms.dtype == torch.long and perms.device.type == device
    assert torch.equal(perms.sort(dim=1).values.cpu(), torch.arange(5).expand(20, 5))
    mask = source.bernoulli((40, 30), device=device)
    assert mask.shape == (40, 30) and mask.dtype == torch.bool and mask.device.type == device
    assert 0.4 < mask.float().mean().item() < 0.6
    assert not source.bernoulli((3, 3), 0.0).any() and source.bernoulli((3, 3), 1.0).all()
    # empty requests
    assert source.permutations(0, 4).shape == (0, 4)
    assert source.permutations(3, 0).shape == (3, 0)


@pytest.mark.parametrize("source", [make_random(0), GlobalRandom()], ids=["generator", "global"])
def test_excluding_the_identity(source):
    torch.manual_seed(0)
    # for n = 2 half of all permutations are the identity: none may come back
    perms = source.permutations(200, 2, exclude_identity=True)
    assert torch.equal(perms, torch.tensor([1, 0]).expand(200, 2))
    plain = source.permutations(200, 2)
    assert bool((plain == torch.arange(2)).all(dim=1).any())  # the identity does occur
    with pytest.raises(ValueError, match="exclude_identity needs n >= 2"):
        source.permutations(1, 1, exclude_identity=True)
    with pytest.raises(ValueError, match=">= 0"):
        source.permutations(-1, 3)


def test_global_random_draws_like_torch_and_numpy_in_captum_order():
    torch.manual_seed(5)
    np.random.seed(5)
    source = GlobalRandom()
    like = torch.zeros(1, dtype=torch.float64)
    got = [
        source.permutations(3, 6),  # ShapleyValueSampling: one randperm per sample
        source.permutations(4, 2, exclude_identity=True),  # FeaturePermutation
        source.bernoulli((6, 5)),  # Lime's default sampler, one (1, M) row per sample
        source.normal((2, 3), 0.3, like=like),  # NoiseTunnel
        source.uniform(4, like=like),  # GradientShap's path points (numpy)
        source.choice(9, 5),  # GradientShap's baseline indices (numpy)
    ]
    torch.manual_seed(5)
    np.random.seed(5)
    expected_perms = torch.stack([torch.randperm(6) for _ in range(3)])
    shuffles = []
    for _ in range(4):
        perm = torch.randperm(2)
        while bool((perm == torch.arange(2)).all()):
            perm = torch.randperm(2)
        shuffles.append(perm)
    samples = torch.cat([torch.bernoulli(torch.ones(1, 5) * 0.5) for _ in range(6)]).bool()
    noise = torch.normal(0, torch.tensor(0.3).repeat(2, 3)).double()
    alphas = torch.tensor(np.random.uniform(0.0, 1.0, 4), dtype=torch.float64)
    index = torch.as_tensor(np.random.choice(9, 5))
    expected = [expected_perms, torch.stack(shuffles), samples, noise, alphas, index]
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)
    assert source.generator is None  # helpers taking generator= use the global one


def test_global_random_matches_captums_own_samplers():
    captum_lime = pytest.importorskip("captum.attr._core.lime")
    captum_shapley = pytest.importorskip("captum.attr._core.shapley_value")
    x = torch.zeros(1, 7)
    torch.manual_seed(9)
    theirs = torch.cat([captum_lime.default_perturb_func(x, num_interp_features=7) for _ in "ab"])
    orders = torch.tensor(list(captum_shapley._perm_generator(7, 4)))
    torch.manual_seed(9)
    ours = GlobalRandom().bernoulli((2, 7))
    assert torch.equal(ours, theirs.bool())
    assert torch.equal(GlobalRandom().permutations(4, 7), orders)


@pytest.mark.parametrize("groups, fit_draws", [(1, False), (1, True), (3, True), (2, False)])
@pytest.mark.parametrize("n_samples, m", [(1, 1), (7, 3), (200, 12), (40, 257)])
def test_global_lime_samples_are_captums_per_sample_draws(n_samples, m, groups, fit_draws):
    # Captum's order: per example, one (1, M) Bernoulli draw per sample, then (when its
    # surrogate trains) the DataLoader seed and the nn.Linear(M, 1) initialisation
    torch.manual_seed(11)
    per_group = []
    for _ in range(groups):
        draws = [torch.bernoulli(torch.full((1, m), 0.5)).bool() for _ in range(n_samples)]
        per_group.append(torch.cat(draws))
        if fit_draws:
            torch.empty((), dtype=torch.int64).random_()
            torch.nn.Linear(m, 1)
    expected = per_group[0] if groups == 1 else torch.stack(per_group, dim=1)
    after_expected = torch.rand(4)
    torch.manual_seed(11)
    got = GlobalRandom().lime_samples(n_samples, m, groups, fit_draws=fit_draws)
    after_got = torch.rand(4)
    assert got.dtype == torch.bool and got.shape == expected.shape
    assert torch.equal(got, expected)
    assert torch.equal(after_got, after_expected)  # the generator is left where Captum leaves it


def test_generator_random_exposes_its_generator():
    generator = torch.Generator().manual_seed(0)
    source = GeneratorRandom(generator)
    assert source.generator is generator
    assert make_random(generator).generator is generator


def test_check_seed():
    for ok in (None, 0, 2**40, np.int64(3), torch.Generator(), GlobalRandom()):
        check_seed("M", "seed", ok)
    for bad in ("1", 1.5, True, [1]):
        with pytest.raises(TypeError, match="The 'seed' parameter of M must be None, an int"):
            check_seed("M", "seed", bad)


def test_random_source_is_an_interface():
    with pytest.raises(TypeError):
        RandomSource()  # abstract: every draw must be implemented
