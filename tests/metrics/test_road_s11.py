"""ROAD's banded route builds every group's system in one vectorised pass and returns only
the removed entries (``_banded_values``, put in place by ``_direct_impute``): checked
against SciPy's ``spsolve`` on the same systems built independently, against the route it
replaced (kept here verbatim as the reference, to the bit), and against Quantus 0.6's
``noisy_linear_imputation`` where Quantus is importable."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")
from scipy.sparse import csc_matrix  # noqa: E402
from scipy.sparse.linalg import spsolve  # noqa: E402

import whybox.metrics as WM  # noqa: E402
from whybox.metrics import faithfulness  # noqa: E402

NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]


# -- references ---------------------------------------------------------------------------
def spsolve_fill(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The harmonic fill of one ``(C, H, W)`` float64 image, its system assembled pixel by
    pixel into a sparse matrix and solved by ``spsolve`` (fully removed: 0)."""
    channels, height, width = image.shape
    out = image.astype(np.float64).copy()
    unknown = np.flatnonzero(removed)
    if unknown.size == 0:
        return out
    if unknown.size == removed.size:
        out[:] = 0.0
        return out
    number = {int(p): k for k, p in enumerate(unknown)}
    rows, cols, vals = [], [], []
    rhs = np.zeros((unknown.size, channels))
    flat = image.reshape(channels, -1)
    for k, p in enumerate(unknown):
        i, j = divmod(int(p), width)
        for di, dj in NEIGHBOURS:
            if not (0 <= i + di < height and 0 <= j + dj < width):
                continue
            weight = 1 / 12 if di and dj else 1 / 6
            q = (i + di) * width + j + dj
            rows.append(k)
            cols.append(k)
            vals.append(weight)
            if q in number:
                rows.append(k)
                cols.append(number[q])
                vals.append(-weight)
            else:
                rhs[k] += weight * flat[:, q]
    system = csc_matrix((vals, (rows, cols)), shape=(unknown.size, unknown.size))
    solution = spsolve(system, rhs).reshape(unknown.size, channels)
    out.reshape(channels, -1)[:, unknown] = solution.T
    return out


def reference_banded_fill(x, rem, out, height, width) -> None:
    """The banded route as it was before (one band matrix built per group, in a loop;
    ``solveh_banded``'s numbers through ``_banded_solve``), verbatim."""
    groups, per, pixels = x.shape
    if height > width:
        shape = (groups, per, height, width)
        flipped = np.zeros((groups, per, pixels))
        reference_banded_fill(
            x.reshape(shape).transpose(0, 1, 3, 2).reshape(groups, per, pixels),
            rem.reshape(groups, height, width).transpose(0, 2, 1).reshape(groups, pixels),
            flipped,
            width,
            height,
        )
        out[...] = (
            flipped.reshape(groups, per, width, height)
            .transpose(0, 1, 3, 2)
            .reshape(groups, per, pixels)
        )
        return
    number = np.cumsum(rem, axis=1) - 1
    number[~rem] = -1
    padded = np.full((groups, height + 2, width + 2), -1, dtype=np.int64)
    padded[:, 1:-1, 1:-1] = number.reshape(groups, height, width)
    group, pixel = np.nonzero(rem)
    rhs = faithfulness._known_sums(x, rem, height, width)[group, :, pixel]
    diagonal = faithfulness._grid_degree(height, width)[pixel]
    starts = np.searchsorted(group, np.arange(groups + 1))
    upper = []
    for di, dj, weight in faithfulness._LATER_NEIGHBOURS:
        neighbour = padded[:, 1 + di : 1 + di + height, 1 + dj : 1 + dj + width]
        g, at = np.nonzero((neighbour.reshape(groups, pixels) >= 0) & rem)
        bounds = np.searchsorted(g, np.arange(groups + 1))
        upper.append((number[g, at], neighbour.reshape(groups, pixels)[g, at], bounds, weight))
    solved = np.empty_like(rhs)
    for k in range(groups):
        lo, hi = starts[k], starts[k + 1]
        if hi == lo:
            continue
        parts = [(r[b[k] : b[k + 1]], c[b[k] : b[k + 1]], w) for r, c, b, w in upper]
        band = max([int((c - r).max()) for r, c, _ in parts if r.size] + [0])
        ab = np.zeros((band + 1, hi - lo))
        ab[band] = diagonal[lo:hi]
        for r, c, weight in parts:
            ab[band + r - c, c] = -weight
        solved[lo:hi] = faithfulness._banded_solve(ab, rhs[lo:hi])
    out[group, :, pixel] = solved


def reference_impute(images, removed, noise=None):
    """``noisy_linear_impute(solver="direct")`` as it was: the dense float64 fill of
    :func:`reference_banded_fill`, plus noise, through ``torch.where``."""
    rows, channels, height, width = images.shape
    masks = removed.shape[1]
    groups, per, pixels = rows * masks, channels // masks, height * width
    x = images.to(torch.float64).reshape(groups, per, pixels).numpy()
    rem = removed.reshape(groups, pixels).numpy()
    rem = rem & ~rem.all(axis=1, keepdims=True)
    out = np.zeros((groups, per, pixels))
    with faithfulness._blas_single_thread()():
        reference_banded_fill(x, rem, out, height, width)
    filled = torch.from_numpy(out).reshape(rows, channels, height, width)
    if noise is not None:
        filled = filled + noise
    mask = removed.expand(rows, channels, height, width)
    return torch.where(mask, filled.to(images.dtype), images)


# -- masks ----------------------------------------------------------------------------------
def make_mask(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    if kind == "scattered":
        m = rng.random((height, width)) < 0.3
    elif kind == "dense":
        m = rng.random((height, width)) < 0.9
    elif kind == "block":
        m[height // 4 : max(height // 4 + 1, 3 * height // 4), width // 4 : 3 * width // 4 + 1] = (
            True
        )
    elif kind == "edges":
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    elif kind == "corners":
        for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            m[i, j] = True
        if height > 2 and width > 2:
            m[1, 1] = m[-2, -2] = True
    elif kind == "all_but_one":
        m[:] = True
        m[height // 2, width // 2] = False
    elif kind == "none":
        pass
    elif kind == "all":
        m[:] = True
    else:  # pragma: no cover
        raise ValueError(kind)
    return m


KINDS = ["scattered", "dense", "block", "edges", "corners", "all_but_one", "none", "all"]
SHAPES = [(1, 1), (1, 6), (6, 1), (2, 2), (7, 7), (5, 11), (11, 5), (16, 16), (3, 20)]


def batch(kinds, height, width, channels, rng, per_channel=False):
    masks = channels if per_channel else 1
    removed = np.stack(
        [np.stack([make_mask(k, height, width, rng) for _ in range(masks)]) for k in kinds]
    )
    images = rng.standard_normal((len(kinds), channels, height, width))
    return torch.from_numpy(images), torch.from_numpy(removed)


# -- the new route against spsolve ----------------------------------------------------------
@pytest.mark.parametrize("height, width", SHAPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_banded_values_match_spsolve_of_the_same_system(height, width, channels):
    rng = np.random.default_rng(height * 100 + width * 10 + channels)
    images, removed = batch(KINDS, height, width, channels, rng)
    got = WM.noisy_linear_impute(images, removed, solver="direct")
    assert faithfulness._blas_single_thread() is not None  # the banded route ran
    for k in range(len(KINDS)):
        expected = spsolve_fill(images[k].numpy(), removed[k, 0].numpy())
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(got[k].numpy() - expected).max() <= 1e-12 * scale, KINDS[k]
        kept = ~removed[k, 0].numpy()
        assert np.array_equal(got[k].numpy()[:, kept], images[k].numpy()[:, kept])


@pytest.mark.parametrize("height, width", [(5, 11), (11, 5), (16, 16)])
def test_per_channel_masks_match_spsolve(height, width):
    rng = np.random.default_rng(7)
    images, removed = batch(KINDS, height, width, 3, rng, per_channel=True)
    got = WM.noisy_linear_impute(images, removed, solver="direct")
    for k, c in itertools.product(range(len(KINDS)), range(3)):
        expected = spsolve_fill(images[k, c : c + 1].numpy(), removed[k, c].numpy())
        assert np.abs(got[k, c : c + 1].numpy() - expected).max() <= 1e-12 * max(
            1.0, float(np.abs(expected).max())
        )


def test_banded_values_come_in_mask_order():
    """``_banded_values`` lists the removed entries group by group, channel by channel,
    pixels row-major: the order of ``x[broadcast removed]`` (tall images included)."""
    rng = np.random.default_rng(2)
    for height, width in ((6, 9), (9, 6)):
        images, removed = batch(KINDS, height, width, 3, rng)
        x = images.reshape(len(KINDS), 3, -1).numpy()
        rem = removed.reshape(len(KINDS), -1).numpy()
        with faithfulness._blas_single_thread()():
            values = faithfulness._banded_values(x, rem, height, width)
        for k in range(len(KINDS)):
            expected = spsolve_fill(images[k].numpy(), removed[k, 0].numpy())
            dense = np.zeros_like(x)
            dense[np.broadcast_to(rem[:, None], x.shape)] = values
            mask = rem[k]
            assert np.allclose(dense[k][:, mask], expected.reshape(3, -1)[:, mask], atol=1e-12)


# -- the new route against the old one, to the bit ------------------------------------------
@pytest.mark.parametrize("height, width", SHAPES + [(32, 32), (24, 40), (40, 24)])
@pytest.mark.parametrize("channels, per_channel", [(1, False), (3, False), (3, True)])
def test_impute_is_the_old_route_to_the_bit(height, width, channels, per_channel):
    rng = np.random.default_rng(height + 31 * width + 7 * channels + per_channel)
    images, removed = batch(KINDS, height, width, channels, rng, per_channel)
    images = images.float()
    noise = torch.from_numpy(rng.standard_normal(images.shape)).float() * 0.01
    for nz in (None, noise, noise[:1], torch.zeros(()), noise * 0.0):  # * 0.0: signed zeros
        got = WM.noisy_linear_impute(images, removed, noise=nz, solver="direct")
        expected = reference_impute(images, removed, nz)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.equal(got, expected)
        assert torch.equal(torch.signbit(got), torch.signbit(expected))


def test_signed_zeros_are_the_old_routes():
    """Kept pixels exactly 0 or -0 and removed ones negative: every term of the right-hand
    sides is a signed zero, and the fill's zeros carry the old route's signs."""
    rng = np.random.default_rng(4)
    for kept_value, trial in itertools.product((0.0, -0.0), range(6)):
        height, width = (9, 12) if trial % 2 else (12, 9)
        removed = torch.from_numpy(rng.random((4, 1, height, width)) < 0.4 + 0.1 * trial)
        images = -torch.from_numpy(rng.random((4, 3, height, width))).float()
        images = images.masked_fill(~removed, kept_value)
        for nz in (None, torch.zeros(()), torch.zeros(images.shape) * -1.0):
            got = WM.noisy_linear_impute(images, removed, noise=nz, solver="direct")
            expected = reference_impute(images, removed, nz)
            assert torch.equal(torch.signbit(got), torch.signbit(expected))


def test_impute_keeps_dtype_grad_and_layout():
    rng = np.random.default_rng(5)
    images, removed = batch(["scattered", "block"], 9, 7, 3, rng)
    got = WM.noisy_linear_impute(images, removed, solver="direct")  # float64 images
    assert got.dtype == torch.float64
    assert torch.equal(got, reference_impute(images, removed))
    leaf = images.float().requires_grad_(True)
    out = WM.noisy_linear_impute(leaf.transpose(2, 3), removed.transpose(2, 3))
    assert torch.equal(
        out.detach(), reference_impute(leaf.detach().transpose(2, 3), removed.transpose(2, 3))
    )
    out.sum().backward()  # the kept pixels pass their gradient through, removed ones none
    kept = (~removed).expand_as(leaf).float()
    assert torch.equal(leaf.grad, kept)


def test_road_curves_are_the_old_routes(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 10, 5),
    )
    inputs = torch.rand(3, 3, 12, 10)
    attributions = torch.randn(3, 3, 12, 10)
    kwargs = dict(target=torch.tensor([0, 2, 4]), n_steps=6, noise_std=0.01, seed=3)
    new = WM.road(model, inputs, attributions, **kwargs)
    accuracy = WM.road(model, inputs, attributions, measure="accuracy", **kwargs)

    def old(images, removed, *, noise=None, solver="auto", max_iterations=None):
        return reference_impute(images, removed, noise)

    monkeypatch.setattr(faithfulness, "noisy_linear_impute", old)
    assert torch.equal(new.curve, WM.road(model, inputs, attributions, **kwargs).curve)
    assert torch.equal(
        accuracy.curve, WM.road(model, inputs, attributions, measure="accuracy", **kwargs).curve
    )


def test_banded_fill_wrapper_writes_the_dense_fill():
    rng = np.random.default_rng(9)
    images, removed = batch(KINDS, 8, 13, 2, rng)
    x = images.reshape(len(KINDS), 2, -1).numpy()
    rem = removed.reshape(len(KINDS), -1).numpy()
    rem = rem & ~rem.all(axis=1, keepdims=True)
    got, expected = np.zeros_like(x), np.zeros_like(x)
    with faithfulness._blas_single_thread()():
        faithfulness._banded_fill(x, rem, got, 8, 13)
        reference_banded_fill(x, rem, expected, 8, 13)
    assert np.array_equal(got, expected)


# -- Quantus ------------------------------------------------------------------------------------
def test_impute_matches_quantus_noisy_linear_imputation():
    perturb = pytest.importorskip("quantus.functions.perturb_func")
    rng = np.random.default_rng(11)
    for height, width in ((16, 16), (9, 14)):
        for kind in ("scattered", "dense", "block", "edges", "all_but_one"):
            image = rng.random((3, height, width))
            mask = make_mask(kind, height, width, rng)
            expected = perturb.noisy_linear_imputation(
                arr=image, indices=np.flatnonzero(mask), noise=0.0
            )
            got = WM.noisy_linear_impute(
                torch.from_numpy(image)[None], torch.from_numpy(mask)[None, None]
            )[0].numpy()
            assert np.abs(got - expected).max() <= 1e-12, kind
