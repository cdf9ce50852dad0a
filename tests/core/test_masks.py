import math

import pytest
import torch

from whybox.core.masks import (
    coalitions_to_input_masks,
    enumerate_coalitions,
    grid_superpixels,
    kernel_shap_coalitions,
    relabel_contiguous,
    sample_permutations,
    shapley_kernel_weight,
    sliding_window_masks,
    superpixels,
    validate_feature_mask,
)
from whybox.core.surrogate import solve_constrained_wls

# ---------------------------------------------------------------------------
# Sliding windows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "window", "stride", "counts"),
    [
        ((5,), (2,), (2,), (3,)),  # last window clipped: starts 0, 2, 4
        ((6,), (2,), (2,), (3,)),
        ((3, 8, 8), (3, 3, 3), (1, 2, 2), (1, 4, 4)),
        ((4, 4), 4, 5, (1, 1)),  # stride > window allowed where the window spans the dim
        ((7, 5), (3, 2), 1, (5, 4)),
    ],
)
def test_window_counts(shape, window, stride, counts):
    win = sliding_window_masks(shape, window, stride)
    assert win.counts == counts
    assert len(win) == math.prod(counts)
    # every element covered; coverage equals the sum of the explicit masks
    full = win.masks()
    assert full.shape == (len(win),) + tuple(shape)
    torch.testing.assert_close(win.coverage(), full.long().sum(0))
    assert bool((win.coverage() > 0).all())
    # masks agree with slices (clipped to the input)
    for i in range(len(win)):
        ref = torch.zeros(shape, dtype=torch.bool)
        ref[win.slices(i)] = True
        assert torch.equal(full[i], ref)
    assert torch.equal(win.masks([len(win) - 1, 0]), full[[len(win) - 1, 0]])


def test_window_order_first_dim_fastest():
    win = sliding_window_masks((4, 6), (2, 2), (2, 2))
    assert win.starts[:4].tolist() == [[0, 0], [2, 0], [0, 2], [2, 2]]


@pytest.mark.parametrize(
    ("shape", "window", "stride"),
    [((1, 6, 7), (1, 3, 2), (1, 2, 2)), ((2, 5, 5), (2, 2, 3), (1, 1, 2)), ((9,), (4,), (3,))],
)
def test_windows_reproduce_captum_occlusion(shape, window, stride):
    from captum.attr import Occlusion

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(shape, generator=g, dtype=torch.float64)
    x = torch.randn((1,) + shape, generator=g, dtype=torch.float64)
    calls = []

    def f(inp):
        calls.append(inp.shape[0])
        return (inp * weight).flatten(1).sum(1)

    expected = Occlusion(f).attribute(x, sliding_window_shapes=window, strides=stride)
    win = sliding_window_masks(shape, window, stride)
    assert sum(calls) == 1 + len(win)  # Captum evaluates each window once
    masks = win.masks().to(torch.float64)
    diffs = f(x) - f(x * (1 - masks))  # baseline 0
    ours = (diffs.reshape((-1,) + (1,) * len(shape)) * masks).sum(0) / win.coverage()
    torch.testing.assert_close(ours.unsqueeze(0).float(), expected)


def test_window_validation_errors():
    with pytest.raises(ValueError, match="'window_shape' parameter"):
        sliding_window_masks((3, 4), (4, 1))
    with pytest.raises(ValueError, match="'window_shape' parameter .* 2 entries"):
        sliding_window_masks((3, 4), (1, 1, 1))
    with pytest.raises(ValueError, match="'strides' parameter .*cannot exceed"):
        sliding_window_masks((8,), 2, 3)
    with pytest.raises(ValueError, match="'strides' parameter"):
        sliding_window_masks((8,), 2, 0)


# ---------------------------------------------------------------------------
# Segmentations
# ---------------------------------------------------------------------------


def test_relabel_contiguous_round_trip_voc_ids():
    seg = torch.tensor([[0, 15, 15], [255, 0, 15]], dtype=torch.uint8)
    relabeled, mapping = relabel_contiguous(seg)
    assert mapping.tolist() == [0, 15, 255]
    assert relabeled.tolist() == [[0, 1, 1], [2, 0, 1]]
    assert relabeled.dtype == torch.long
    assert torch.equal(mapping[relabeled], seg)
    with pytest.raises(ValueError, match="'segments' parameter"):
        relabel_contiguous(torch.rand(3))


def test_grid_superpixels():
    mask = grid_superpixels((3, 5, 7), 3)
    assert mask.shape == (5, 7) and mask.dtype == torch.long
    assert mask.unique().tolist() == list(range(2 * 3))
    assert mask[0, 0] == 0 and mask[0, 3] == 1 and mask[3, 0] == 3 and mask[4, 6] == 5
    assert torch.bincount(mask.flatten()).tolist() == [9, 9, 3, 6, 6, 2]
    rect = grid_superpixels((4, 4), (1, 4))
    assert rect[:, 0].tolist() == [0, 1, 2, 3] and bool((rect == rect[:, :1]).all())


def _two_tone_image():
    img = torch.zeros(3, 16, 16)
    img[0, :, 8:] = 1.0  # left black, right red
    img[1, 8:, :] += 0.5
    return img


def test_superpixels_slic_quickshift_grid():
    pytest.importorskip("skimage")
    img = _two_tone_image()
    for method, kwargs in [
        ("slic", {"n_segments": 4, "compactness": 0.1}),
        ("quickshift", {"kernel_size": 2, "max_dist": 4}),
        ("grid", {"cell": 4}),
    ]:
        mask = superpixels(img.unsqueeze(0), method, **kwargs)
        assert mask.shape == (16, 16) and mask.dtype == torch.long
        k = int(mask.max()) + 1
        assert k > 1 and mask.unique().tolist() == list(range(k))
    slic = superpixels(img, "slic", n_segments=4, compactness=0.1)
    # segments follow the colour edges: no segment straddles the left/right edge
    for s in slic.unique():
        cols = (slic == s).nonzero()[:, 1]
        assert bool((cols < 8).all()) or bool((cols >= 8).all())
    gray = superpixels(img[:1], "slic", n_segments=4, compactness=0.1)
    assert gray.shape == (16, 16)


def test_superpixels_errors():
    with pytest.raises(ValueError, match="'method' parameter"):
        superpixels(torch.zeros(3, 4, 4), "watershed")
    with pytest.raises(ValueError, match="'cell'"):
        superpixels(torch.zeros(3, 4, 4), "grid")
    with pytest.raises(ValueError, match="'image' parameter"):
        superpixels(torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------------------
# Feature masks
# ---------------------------------------------------------------------------


def test_feature_mask_validation_messages():
    x = torch.zeros(2, 3, 4)
    validate_feature_mask(torch.zeros(1, 3, 4, dtype=torch.long), x)
    validate_feature_mask(torch.zeros(4, dtype=torch.int32), x)  # broadcasts
    with pytest.raises(ValueError, match="'feature_mask' must be an integer tensor"):
        validate_feature_mask(torch.zeros(1, 3, 4), x)
    with pytest.raises(ValueError, match="'feature_mask' must be an integer tensor"):
        validate_feature_mask(torch.zeros(1, 3, 4, dtype=torch.bool), x)
    with pytest.raises(ValueError, match=r"'feature_mask' of shape \(1, 3, 5\) does not broadcast"):
        validate_feature_mask(torch.zeros(1, 3, 5, dtype=torch.long), x)
    with pytest.raises(ValueError, match=r"'feature_mask' of shape \(3, 3, 4\) does not"):
        validate_feature_mask(torch.zeros(3, 3, 4, dtype=torch.long), x)
    with pytest.raises(ValueError, match=r"'feature_mask\[1\]'"):
        validate_feature_mask((torch.zeros(1, dtype=torch.long), torch.zeros(1)), (x, x))
    with pytest.raises(ValueError, match="one mask per input"):
        validate_feature_mask(torch.zeros(1, dtype=torch.long), (x, x))


def test_coalitions_to_input_masks_matches_captum_transform():
    from captum.attr._core.lime import default_from_interp_rep_transform

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 3, generator=g)
    base = torch.full_like(x, -9.0)
    mask = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    coal = torch.tensor([[1, 0, 1], [0, 1, 1]])
    (keep,) = coalitions_to_input_masks(coal, mask)
    assert keep.shape == (2, 1, 2, 3) and keep.dtype == torch.bool
    for row in range(2):
        ours = torch.where(keep[row], x, base)
        theirs = default_from_interp_rep_transform(
            coal[row : row + 1], x, feature_mask=mask, baselines=base
        )
        assert torch.equal(ours, theirs)


# ---------------------------------------------------------------------------
# Coalitions and permutations
# ---------------------------------------------------------------------------


def test_enumerate_coalitions():
    coal = enumerate_coalitions(4)
    assert coal.shape == (16, 4) and coal.dtype == torch.bool
    assert len({tuple(r) for r in coal.tolist()}) == 16
    assert not coal[0].any() and coal[-1].all()
    assert coal[5].tolist() == [True, False, True, False]
    assert enumerate_coalitions(0).shape == (1, 0)
    with pytest.raises(ValueError, match="do not fit"):
        enumerate_coalitions(40)


def test_enumerate_coalitions_range_is_a_chunk_of_the_enumeration():
    full = enumerate_coalitions(5)
    for start, stop in [(0, 32), (7, 19), (31, 32), (4, 4)]:
        assert torch.equal(enumerate_coalitions(5, start=start, stop=stop), full[start:stop])
    # a range keeps memory bounded, so more features than a full enumeration allows
    chunk = enumerate_coalitions(40, start=2**39, stop=2**39 + 3)
    assert chunk.shape == (3, 40) and chunk.sum(1).tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match="'stop' parameter"):
        enumerate_coalitions(3, stop=9)
    with pytest.raises(ValueError, match="'start' parameter .* <= 'stop'"):
        enumerate_coalitions(3, start=5, stop=2)
    with pytest.raises(ValueError, match="int64"):
        enumerate_coalitions(63, start=0, stop=1)


def test_sample_permutations_seeded():
    perms = sample_permutations(6, 200, torch.Generator().manual_seed(3))
    assert perms.shape == (200, 6) and perms.dtype == torch.long
    assert torch.equal(perms.sort(1).values, torch.arange(6).expand(200, 6))
    assert torch.equal(perms, sample_permutations(6, 200, torch.Generator().manual_seed(3)))
    # every feature shows up first sometimes
    assert set(perms[:, 0].tolist()) == set(range(6))
    with pytest.raises(ValueError, match="'n_samples' parameter"):
        sample_permutations(3, -1)


def test_shapley_kernel_weight_values():
    w = shapley_kernel_weight(4, torch.arange(5))
    assert w[0] == math.inf and w[4] == math.inf
    torch.testing.assert_close(
        w[1:4], torch.tensor([0.25, 0.125, 0.25], dtype=torch.float64), rtol=1e-12, atol=0
    )


def _total_mass(m):
    return sum((m - 1) / (s * (m - s)) for s in range(1, m))


@pytest.mark.parametrize("m", [2, 3, 5, 7])
def test_kernel_shap_full_enumeration_exact(m):
    coal = kernel_shap_coalitions(m, 2**m - 2)
    assert coal.masks.shape == (2**m - 2, m)
    assert coal.n_enumerated == 2**m - 2
    rows = {tuple(r) for r in coal.masks.tolist()}
    assert len(rows) == 2**m - 2
    sizes = coal.masks.sum(1)
    assert bool(((sizes > 0) & (sizes < m)).all())
    torch.testing.assert_close(coal.weights, shapley_kernel_weight(m, sizes), rtol=1e-12, atol=0)
    assert coal.weights.sum().item() == pytest.approx(_total_mass(m), rel=1e-12)


def test_kernel_shap_partial_enumeration_and_pairs():
    m, budget = 10, 100
    gen = torch.Generator().manual_seed(11)
    coal = kernel_shap_coalitions(m, budget, gen)
    # sizes 1 and 9 (20 coalitions) fit the budget, sizes 2 and 8 (90) do not
    assert coal.n_enumerated == 20
    enum = coal.masks[:20]
    assert sorted(enum.sum(1).tolist()) == [1] * 10 + [9] * 10
    assert len({tuple(r) for r in enum.tolist()}) == 20
    torch.testing.assert_close(coal.weights[:20], shapley_kernel_weight(m, enum.sum(1)))
    sampled = coal.masks[20:]
    assert 0 < sampled.shape[0] <= budget - 20 and sampled.shape[0] % 2 == 0
    assert torch.equal(sampled[0::2], ~sampled[1::2])  # antithetic pairs
    sizes = sampled.sum(1)
    assert bool(((sizes >= 2) & (sizes <= 8)).all())
    assert bool((coal.weights > 0).all())
    assert coal.weights.sum().item() == pytest.approx(_total_mass(m), rel=1e-12)
    assert torch.equal(coal.weights[20::2], coal.weights[21::2])
    # reproducible with a seeded generator, different with another seed
    again = kernel_shap_coalitions(m, budget, torch.Generator().manual_seed(11))
    assert torch.equal(again.masks, coal.masks) and torch.equal(again.weights, coal.weights)
    other = kernel_shap_coalitions(m, budget, torch.Generator().manual_seed(12))
    assert not torch.equal(other.masks, coal.masks)


def test_kernel_shap_unpaired_and_tiny_budgets():
    coal = kernel_shap_coalitions(8, 50, torch.Generator().manual_seed(0), paired=False)
    assert coal.masks.shape[0] <= 50 and bool((coal.weights > 0).all())
    sizes = coal.masks.sum(1)
    assert bool(((sizes > 0) & (sizes < 8)).all())
    assert kernel_shap_coalitions(1, 10).masks.shape == (0, 1)
    assert kernel_shap_coalitions(5, 0).masks.shape == (0, 5)
    small = kernel_shap_coalitions(12, 6, torch.Generator().manual_seed(0))
    assert small.n_enumerated == 0 and small.masks.shape[0] <= 6


def test_kernel_shap_sampled_estimate_exact_for_additive_game():
    # An additive game lies in the model class: any coalition set with the constraint
    # recovers it exactly, which checks that sampled rows are consistent.
    m = 12
    g = torch.Generator().manual_seed(1)
    contrib = torch.randn(m, generator=g, dtype=torch.float64)
    coal = kernel_shap_coalitions(m, 60, g)
    assert coal.n_enumerated < coal.masks.shape[0]
    y = coal.masks.double() @ contrib
    phi = solve_constrained_wls(coal.masks.double(), y, coal.weights, contrib.sum())
    torch.testing.assert_close(phi, contrib, rtol=0, atol=1e-9)


def test_kernel_shap_size_distribution_follows_kernel():
    m = 12
    coal = kernel_shap_coalitions(m, 4000, torch.Generator().manual_seed(2))
    sampled = coal.masks[coal.n_enumerated :]
    w = coal.weights[coal.n_enumerated :]
    small = torch.minimum(sampled.sum(1), m - sampled.sum(1))
    mass = {s: (m - 1) / (s * (m - s)) * (1 if 2 * s == m else 2) for s in range(1, m // 2 + 1)}
    enumerated = {min(s, m - s) for s in coal.masks[: coal.n_enumerated].sum(1).tolist()}
    left = [s for s in mass if s not in enumerated]
    total = sum(mass[s] for s in left)
    for s in left:
        share = w[small == s].sum().item() / w.sum().item()
        assert share == pytest.approx(mass[s] / total, abs=0.05)


def test_missing_skimage_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.raises(ImportError, match=r"whybox\[image\]"):
        superpixels(torch.zeros(3, 4, 4), "slic")
    assert superpixels(torch.zeros(3, 4, 4), "grid", cell=2).max() == 3  # grid needs no skimage
