"""Sparseness / entropy closed forms; localisation metrics against hand counts and sklearn."""

import math

import numpy as np
import pytest
import torch

import whybox.metrics as WM


@pytest.mark.parametrize("n", [2, 7, 50])
def test_sparseness_and_entropy_closed_forms(n):
    one_hot = torch.zeros(3, n)
    one_hot[torch.arange(3), torch.tensor([0, n - 1, n // 2])] = torch.tensor([1.0, -2.0, 5.0])
    uniform = torch.full((2, n), -0.3)
    torch.testing.assert_close(WM.sparseness(one_hot), torch.full((3,), (n - 1) / n))
    torch.testing.assert_close(WM.sparseness(uniform), torch.zeros(2))
    torch.testing.assert_close(WM.entropy(one_hot), torch.zeros(3))
    torch.testing.assert_close(WM.entropy(uniform), torch.full((2,), math.log(n)))
    assert WM.effective_complexity(one_hot).tolist() == [1, 1, 1]


def test_sparseness_matches_the_gini_formula_and_reads_tuples():
    torch.manual_seed(0)
    a = torch.randn(4, 3, 5)
    values = np.sort(np.abs(a.reshape(4, -1).numpy()), axis=1)
    n = values.shape[1]
    index = np.arange(1, n + 1)
    expected = ((2 * index - n - 1) * values).sum(1) / (n * values.sum(1))
    np.testing.assert_allclose(WM.sparseness(a).numpy(), expected, rtol=1e-5)
    split = (a[:, :1], a[:, 1:])
    torch.testing.assert_close(WM.sparseness(split), WM.sparseness(a))
    assert WM.sparseness(torch.zeros(2, 4)).tolist() == [0.0, 0.0]


def test_localisation_metrics():
    a = torch.zeros(2, 1, 4, 4)
    a[0, 0, 1, 1] = 3.0  # inside the mask
    a[0, 0, 3, 3] = 1.0
    a[1, 0, 3, 3] = 2.0  # outside
    a[1, 0, 1, 2] = -5.0
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    assert WM.pointing_game(a, mask).tolist() == [True, False]
    assert WM.pointing_game(a, mask, tolerance=1).tolist() == [True, True]
    torch.testing.assert_close(WM.relevance_mass(a, mask), torch.tensor([0.75, 0.0]))
    torch.testing.assert_close(WM.relevance_rank(a, mask), torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(WM.top_k_intersection(a, mask, k=2), torch.tensor([0.5, 0.0]))


def test_localisation_auc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    torch.manual_seed(1)
    a = torch.randint(0, 4, (3, 2, 6, 6)).float()  # many ties
    mask = torch.rand(3, 6, 6) > 0.6
    ours = WM.localisation_auc(a, mask)
    for i in range(3):
        score = a[i].sum(0).flatten().numpy()
        expected = metrics.roc_auc_score(mask[i].flatten().numpy(), score)
        assert abs(float(ours[i]) - expected) < 1e-6


def test_token_maps_sum_the_embedding_dimension():
    a = torch.zeros(1, 5, 3)
    a[0, 2] = 1.0
    token_mask = torch.zeros(1, 5, dtype=torch.bool)
    token_mask[0, 2] = True
    assert WM.pointing_game(a, token_mask).tolist() == [True]
    with pytest.raises(ValueError, match="'mask'"):
        WM.relevance_mass(a, torch.zeros(1, 4, dtype=torch.bool))
