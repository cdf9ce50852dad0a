"""Text faithfulness with tokens removed (shortened rows), and tau-LOO against scipy."""

import pytest
import torch

import whybox.metrics as WM
from whybox.metrics.text import _kendall_tau_b


@pytest.fixture
def keyword():
    task = WM.planted_keyword_task(n_samples=4, seed=0)
    embedding, ids = task.extras["embedding"], task.extras["token_ids"]

    def model(input_ids, attention_mask=None):
        embedded = embedding(input_ids) * attention_mask.unsqueeze(-1)
        return task.model(embedded)

    return model, ids, task.extras["token_mask"]


def test_the_keyword_is_comprehensive_sufficient_and_ranked(keyword):
    model, ids, truth = keyword
    mask = torch.ones_like(ids)
    c = WM.comprehensiveness(model, ids, truth.float(), target=1, attention_mask=mask)
    s = WM.sufficiency(model, ids, truth.float(), target=1, attention_mask=mask)
    loo = WM.tau_loo(model, ids, truth.float(), target=1, attention_mask=mask)
    assert c.drops.shape == (4, 9) and bool((c.score > 0.99).all())
    torch.testing.assert_close(s.score, torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(loo.score, torch.ones(4))
    reverse = WM.comprehensiveness(model, ids, -truth.float(), target=1, attention_mask=mask)
    assert bool((reverse.score < c.score).all())


def test_removal_shortens_rows_and_keeps_special_tokens():
    seen = []

    def model(input_ids, attention_mask):
        seen.append((input_ids.clone(), attention_mask.clone()))
        return torch.stack([attention_mask.sum(1).float(), input_ids.sum(1).float()], dim=1)

    ids = torch.tensor([[101, 5, 6, 7, 102]])
    special = torch.tensor([True, False, False, False, True])
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0, 0.0]])
    WM.comprehensiveness(
        model,
        ids,
        scores,
        target=0,
        attention_mask=torch.ones_like(ids),
        special_mask=special,
        thresholds=[0.34],
        probabilities=False,
    )
    removed_ids, removed_mask = seen[0]  # the removal rows (the original comes after)
    # the top third of the 3 rankable tokens (token 5) removed; the rest moved left
    assert removed_ids.tolist() == [[101, 6, 7, 102, 0]]
    assert removed_mask.tolist() == [[True, True, True, True, False]]


def test_kendall_tau_b_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a = torch.randint(0, 4, (3, 10)).float()
    b = torch.randint(0, 4, (3, 10)).float()
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 7:] = False
    ours = _kendall_tau_b(a, b, valid)
    for i in range(3):
        keep = valid[i]
        expected = stats.kendalltau(a[i][keep].numpy(), b[i][keep].numpy()).statistic
        assert abs(float(ours[i]) - expected) < 1e-6


def test_errors_name_the_parameter(keyword):
    model, ids, truth = keyword
    with pytest.raises(ValueError, match="'thresholds'"):
        WM.comprehensiveness(model, ids, truth.float(), target=1, thresholds=[0.0])
    with pytest.raises(ValueError, match="'input_ids'"):
        WM.sufficiency(model, ids.float(), truth.float(), target=1)
    with pytest.raises(ValueError, match="'attributions'"):
        WM.tau_loo(model, ids, truth[:, :3].float(), target=1)


def test_one_logit_models_compare_sigmoid_probabilities():
    # a softmax over a single column is always 1: every drop would silently be 0
    weights = torch.tensor([0.0, 2.0, -1.0, 0.5, 3.0])

    def model(input_ids, attention_mask):
        return (weights[input_ids] * attention_mask).sum(1, keepdim=True)  # (N, 1) logit

    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    mask = torch.ones_like(ids)
    scores = weights[ids]
    result = WM.comprehensiveness(
        model, ids, scores, target=0, attention_mask=mask, thresholds=[0.25, 0.5]
    )
    full = model(ids, mask).sigmoid()[:, 0]
    # the top 1 and top 2 tokens removed: the 4 (3.0) then the 1 (2.0)
    expected = torch.stack(
        [full - (full.logit() - 3.0).sigmoid(), full - (full.logit() - 5.0).sigmoid()], 1
    )
    torch.testing.assert_close(result.drops, expected)
    assert bool((result.score > 0.1).all())
    raw = WM.comprehensiveness(
        model, ids, scores, target=0, attention_mask=mask, thresholds=[0.25], probabilities=False
    )
    torch.testing.assert_close(raw.drops[:, 0], torch.tensor([3.0, 3.0]))


@pytest.mark.parametrize("metric", ["comprehensiveness", "sufficiency", "tau_loo"])
def test_show_progress_never_changes_the_numbers(keyword, metric, capsys):
    model, ids, truth = keyword
    mask = torch.ones_like(ids)
    fn = getattr(WM, metric)
    quiet = fn(model, ids, truth.float(), target=1, attention_mask=mask, chunk_size=5)
    capsys.readouterr()
    shown = fn(
        model, ids, truth.float(), target=1, attention_mask=mask, chunk_size=5, show_progress=True
    )
    torch.testing.assert_close(quiet.drops, shown.drops)
    assert metric in capsys.readouterr().err
    with pytest.raises(TypeError, match="show_progress"):
        fn(model, ids, truth.float(), target=1, attention_mask=mask, show_progress="yes")
