"""ROAD's banded solves call LAPACK's ``pbsv`` directly: the same numbers as SciPy's
``solveh_banded`` (which calls it for bands wider than one), and the same refusals."""

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")
from scipy.linalg import LinAlgError, solveh_banded  # noqa: E402

from whybox.metrics import faithfulness  # noqa: E402


def _spd_band(n: int, band: int, rng: np.random.Generator) -> np.ndarray:
    """Upper band storage of a diagonally dominant symmetric matrix."""
    ab = np.zeros((band + 1, n))
    ab[:band] = -rng.random((band, n))
    ab[band] = 2.0 * band + 1.0 + rng.random(n)
    for k in range(band):  # entries above the first row do not exist
        ab[k, : band - k] = 0.0
    return ab


@pytest.mark.parametrize("band", [0, 1, 2, 5, 33])
@pytest.mark.parametrize("n, per", [(1, 1), (7, 3), (300, 2)])
def test_banded_solve_is_solveh_banded_to_the_bit(band, n, per):
    if band >= n:
        pytest.skip("a band as wide as the system: ROAD never builds one")
    rng = np.random.default_rng(band * 1000 + n)
    ab = _spd_band(n, band, rng)
    rhs = rng.standard_normal((n, per))
    expected = solveh_banded(ab.copy(), rhs.copy(), check_finite=False)
    got = faithfulness._banded_solve(ab.copy(), rhs.copy())
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_banded_solve_refuses_an_indefinite_system():
    ab = np.array([[0.0, 2.0, 2.0], [1.0, 1.0, 1.0]])  # [[1, 2, 0], [2, 1, 2], [0, 2, 1]]
    ab = np.vstack([np.zeros((1, 3)), ab])  # band 2: the direct LAPACK call
    with pytest.raises(LinAlgError, match="not positive definite"):
        faithfulness._banded_solve(ab, np.ones((3, 1)))


def test_banded_fill_matches_the_sparse_factorisation():
    """The banded route (images up to 128 px a side) and the sparse LU agree on the fill."""
    torch.manual_seed(0)
    x = torch.rand(3, 2, 20, 27, dtype=torch.float64)
    removed = torch.rand(3, 1, 20, 27) < torch.tensor([0.2, 0.6, 0.95]).view(3, 1, 1, 1)
    banded = faithfulness._direct_fill(x, removed)
    assert faithfulness._blas_single_thread() is not None  # the banded route ran
    groups, pixels = 3, 20 * 27
    xs = x.reshape(groups, 2, pixels).numpy()
    rem = removed.reshape(groups, pixels).numpy()
    sparse = np.zeros((groups, 2, pixels))
    faithfulness._direct_block(xs, rem, sparse, 20, 27)
    mask = rem[:, None, :].repeat(2, axis=1)
    assert np.allclose(banded.reshape(groups, 2, pixels).numpy()[mask], sparse[mask], atol=1e-12)
