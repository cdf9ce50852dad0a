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
