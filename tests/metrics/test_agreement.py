"""Agreement metrics: hand-computed values and scipy's Spearman."""

import pytest
import torch

import whybox.metrics as WM


def test_top_k_agreements_by_hand():
    a = torch.tensor([[3.0, -2.0, 1.0, 0.5, 0.0]])
    b = torch.tensor([[3.0, 2.0, 0.4, 1.0, 0.0]])
    # top-3 by magnitude: a -> (0, 1, 2), b -> (0, 1, 3)
    torch.testing.assert_close(WM.feature_agreement(a, b, k=3), torch.tensor([2 / 3]))
    torch.testing.assert_close(WM.rank_agreement(a, b, k=3), torch.tensor([2 / 3]))
    torch.testing.assert_close(WM.sign_agreement(a, b, k=3), torch.tensor([1 / 3]))
    torch.testing.assert_close(WM.signed_rank_agreement(a, b, k=3), torch.tensor([1 / 3]))
    assert WM.feature_agreement(a, a, k=5).item() == 1.0


def test_rank_correlation_matches_scipy_and_pairwise_agreement_by_hand():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a, b = torch.randn(4, 9), torch.randn(4, 9)
    b[:, :3] = a[:, :3]
    ours = WM.rank_correlation(a, b)
    for i in range(4):
        expected = stats.spearmanr(a[i].abs().numpy(), b[i].abs().numpy()).statistic
        assert abs(float(ours[i]) - expected) < 1e-5
    signed = WM.rank_correlation(a, b, absolute=False, features=[0, 2, 4, 6])
    expected = stats.spearmanr(a[0, [0, 2, 4, 6]].numpy(), b[0, [0, 2, 4, 6]].numpy()).statistic
    assert abs(float(signed[0]) - expected) < 1e-5
    x = torch.tensor([[1.0, 2.0, 3.0]])
    y = torch.tensor([[1.0, 3.0, 2.0]])  # pairs (0,1) (0,2) agree, (1,2) does not
    torch.testing.assert_close(WM.pairwise_rank_agreement(x, y), torch.tensor([2 / 3]))


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'k'"):
        WM.feature_agreement(torch.ones(1, 3), torch.ones(1, 3), k=4)
    with pytest.raises(ValueError, match="'b'"):
        WM.rank_agreement(torch.ones(1, 3), torch.ones(1, 4), k=1)
    with pytest.raises(ValueError, match="'features'"):
        WM.rank_correlation(torch.ones(1, 3), torch.ones(1, 3), features=[5])


def _awkward_rows(dtype, length, seed):
    """Rows with ties, signed zeros, infinities and NaNs of both signs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((3, length)).astype(dtype)
    rows[1] = np.round(rows[1], 1)  # many ties
    flat = rows[2]
    flat[:20], flat[20:30] = 0.0, -0.0
    flat[30:35], flat[35:40] = np.nan, -np.nan
    flat[40:45], flat[45:50] = np.inf, -np.inf
    return rows


@pytest.mark.parametrize("length", [12, 300, 3072])
@pytest.mark.parametrize("descending", [False, True])
def test_argsort_rows_is_numpy_stable_argsort(length, descending):
    """The packed-key sort of long float32 rows is numpy's stable order, ties and NaNs
    included (float64 and short rows take numpy's stable sort itself)."""
    import numpy as np

    from whybox.metrics._common import argsort_rows

    for dtype in (np.float32, np.float64):
        rows = _awkward_rows(dtype, length, seed=length)
        expected = np.argsort(-rows if descending else rows, axis=-1, kind="stable")
        got = argsort_rows(torch.from_numpy(rows), descending=descending)
        assert got.dtype == torch.long
        assert np.array_equal(got.numpy(), expected)


@pytest.mark.parametrize("length", [12, 300, 3072])
def test_average_ranks_match_scipy_with_and_without_ties(length):
    import numpy as np
    from scipy.stats import rankdata

    from whybox.metrics._common import average_ranks

    rows = _awkward_rows(np.float32, length, seed=1)[:2]  # scipy gives NaN ranks for NaNs
    for values in (rows, np.abs(rows[:1]), rows.astype(np.float64)):
        got = average_ranks(torch.from_numpy(values))
        assert got.dtype == torch.from_numpy(values).dtype
        assert np.array_equal(got.numpy(), rankdata(values, axis=-1))
    ints = torch.randint(0, 4, (2, length))
    torch.testing.assert_close(
        average_ranks(ints), torch.from_numpy(rankdata(ints.numpy(), axis=-1)).float()
    )
