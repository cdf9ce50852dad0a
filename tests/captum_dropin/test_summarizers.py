"""Summarizer, ClassSummarizer and the streaming statistics: closed forms, Welford's
stability, Captum's semantics and return shapes (parity with captum.attr)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import whybox.attr as _W
from whybox.attr import (
    MSE,
    ClassSummarizer,
    CommonStats,
    Count,
    Max,
    Mean,
    Min,
    StdDev,
    Sum,
    Summarizer,
    SummarizerSingleTensor,
    Var,
)
from whybox.attr._stat import GeneralAccumFn, Stat


def _all_stats(module):
    return [
        module.Mean(),
        module.Var(),
        module.Var(order=1),
        module.StdDev(),
        module.StdDev(order=1),
        module.Count(),
        module.MSE(),
        module.Sum(),
        module.Min(),
        module.Max(),
    ]


def test_closed_forms_of_a_known_stream():
    rows = torch.tensor([[1.0, -2.0], [3.0, 0.0], [8.0, 5.0], [0.0, 1.0]])
    summ = Summarizer(_all_stats(_W))
    for row in rows:
        summ.update(row)
    s = summ.summary
    x = rows.double()
    assert s["count"] == 4
    torch.testing.assert_close(s["mean"], rows.mean(0))
    torch.testing.assert_close(s["variance"], x.var(0, unbiased=False))
    torch.testing.assert_close(s["sample_variance"], x.var(0, unbiased=True))
    torch.testing.assert_close(s["std_dev"], x.std(0, unbiased=False))
    torch.testing.assert_close(s["sample_std_dev"], x.std(0, unbiased=True))
    torch.testing.assert_close(s["mse"], ((rows - rows.mean(0)) ** 2).sum(0))
    torch.testing.assert_close(s["sum"], rows.sum(0))
    torch.testing.assert_close(s["min"], rows.amin(0))
    torch.testing.assert_close(s["max"], rows.amax(0))
    # Captum's dtypes: mean / mse / min / max / sum as the input, variances in float64
    assert s["mean"].dtype == torch.float32 and s["variance"].dtype == torch.float64


def test_before_and_after_the_first_update():
    summ = Summarizer([Mean(), Var(order=1), Count()])
    assert summ.summary is None
    summ.update(torch.tensor([2.0, 4.0]))
    s = summ.summary
    assert s["count"] == 1
    torch.testing.assert_close(s["mean"], torch.tensor([2.0, 4.0]))
    # n <= order: zeros in the input's dtype, as Captum
    torch.testing.assert_close(s["sample_variance"], torch.zeros(2))


def test_integers_numbers_and_tuples():
    summ = Summarizer([Mean(), Sum()])
    summ.update(torch.tensor([1, 2]))
    summ.update(torch.tensor([2, 5]))
    assert summ.summary["mean"].dtype == torch.float64  # integer means in float64
    assert summ.summary["sum"].dtype == torch.int64 and summ.summary["sum"].tolist() == [3, 7]
    numbers = Summarizer([Var(order=1)])
    numbers.update(1.0)
    numbers.update(2.0)
    torch.testing.assert_close(numbers.summary["sample_variance"], torch.tensor(0.5).double())
    pairs = Summarizer([Mean()])
    pairs.update((torch.ones(2), 3.0))
    pairs.update((torch.zeros(2), 1.0))
    out = pairs.summary
    assert isinstance(out, list) and len(out) == 2
    torch.testing.assert_close(out[0]["mean"], torch.full((2,), 0.5))
    torch.testing.assert_close(out[1]["mean"], torch.tensor(2.0))


def test_mixing_tuples_and_single_inputs_is_an_assertion_error():
    summ = Summarizer([Mean()])
    summ.update((torch.ones(2),))
    with pytest.raises(AssertionError, match="tuple in every update"):
        summ.update(torch.ones(2))
    with pytest.raises(ValueError):  # also whybox's uniform ValueError
        summ.update(torch.ones(2))


def test_stat_names_equality_and_dependencies():
    assert [Var().name, Var(order=1).name, Var(order=2).name] == [
        "variance",
        "sample_variance",
        "variance(2)",
    ]
    assert StdDev(order=2).name == "std_dev(2)"  # Captum writes "std_dev2)"
    assert Mean(name="avg").name == "avg" and Mean() == Mean(name="avg")
    assert Var(order=1) != Var() and hash(Var(order=1)) == hash(Var(order=1))
    summ = Summarizer([StdDev(order=1)])
    assert set(summ.summary or {}) == set()
    kinds = [type(s) for s in summ._stats]
    assert kinds == [Count, Mean, MSE, Var, StdDev]  # dependencies first, each once
    summ.update(torch.ones(3))
    assert list(summ.summary) == ["sample_std_dev"]  # only what was asked for


def test_welford_is_stable_over_a_million_rows_with_a_large_offset():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1_000_000, 2, generator=gen, dtype=torch.float64)
    rows = 1e8 + noise
    summ = Summarizer([Mean(), Var(), StdDev(order=1)])
    for chunk in rows.split(50_000):
        summ.update_batch(chunk)
    exact = np.var(noise.numpy(), axis=0)  # the offset does not change the variance
    got = summ.summary["variance"].numpy()
    np.testing.assert_allclose(got, exact, rtol=1e-7)
    np.testing.assert_allclose(
        summ.summary["mean"].numpy(), 1e8 + noise.mean(0).numpy(), rtol=1e-13
    )
    # the naive sum-of-squares formula fails on the same data
    n = rows.shape[0]
    naive = (rows.square().sum(0) / n - (rows.sum(0) / n).square()).numpy()
    assert np.abs(naive - exact).max() > 0.05


def test_one_observation_at_a_time_is_stable_too():
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(3000, generator=gen, dtype=torch.float64)
    summ = Summarizer([Var(order=1)])
    for value in 1e9 + noise:
        summ.update(value)
    np.testing.assert_allclose(
        summ.summary["sample_variance"].item(), np.var(noise.numpy(), ddof=1), rtol=1e-6
    )


def test_update_batch_equals_one_update_per_row():
    gen = torch.Generator().manual_seed(2)
    rows = torch.randn(37, 3, 2, generator=gen)
    one, batched = Summarizer(_all_stats(_W)), Summarizer(_all_stats(_W))
    for row in rows:
        one.update(row)
    batched.update_batch(rows[:5])
    batched.update_batch(rows[5:])
    for name, value in one.summary.items():
        if isinstance(value, int):
            assert batched.summary[name] == value
        else:
            torch.testing.assert_close(batched.summary[name], value, rtol=1e-5, atol=1e-5)


def test_user_statistics_are_fed_one_row_at_a_time():
    class Product(GeneralAccumFn):
        def __init__(self):
            super().__init__(fn=torch.mul, name="product")

    class RowsSeen(Stat):
        def __init__(self):
            super().__init__(name="rows")
            self.rows = 0

        def update(self, x):
            self.rows += 1

        def get(self):
            return self.rows

    summ = Summarizer([Product(), RowsSeen(), Mean()])
    rows = torch.tensor([[2.0], [3.0], [4.0]])
    summ.update_batch(rows)
    assert summ.summary["rows"] == 3
    torch.testing.assert_close(summ.summary["product"], torch.tensor([24.0]))
    torch.testing.assert_close(summ.summary["mean"], torch.tensor([3.0]))


def test_single_tensor_summarizer_interface():
    stats = [Count(), Mean()]
    single = SummarizerSingleTensor(stats, summary_stats_indices=[1])
    single.update(torch.tensor(2.0))
    single.update(torch.tensor(4.0))
    assert single.get(Mean()) is stats[1] and single.get(Var()) is None
    assert single.summary == {"mean": torch.tensor(3.0)}


def test_first_observation_is_copied():
    summ = Summarizer([Min()])
    x = torch.tensor([1.0, 2.0])
    summ.update(x)
    x.fill_(-5.0)  # Captum's Min would now report -5
    torch.testing.assert_close(summ.summary["min"], torch.tensor([1.0, 2.0]))


def test_class_summarizer_by_label():
    summ = ClassSummarizer(CommonStats())
    x = torch.tensor([[1.0], [10.0], [3.0], [20.0]])
    summ.update(x, labels=["a", "b", "a", "b"])
    summ.update(torch.tensor([[5.0]]), labels="a")
    classes = summ.class_summaries
    assert set(classes) == {"a", "b"}
    torch.testing.assert_close(classes["a"][0]["mean"], torch.tensor([3.0]))
    torch.testing.assert_close(classes["b"][0]["max"], torch.tensor([20.0]))
    overall = summ.summary  # labelled updates summarise tuples: a list of one summary
    assert isinstance(overall, list) and len(overall) == 1
    torch.testing.assert_close(overall[0]["mean"], torch.tensor([39.0 / 5]))
    # one label for the whole batch
    other = ClassSummarizer([Count()])
    other.update(torch.ones(4, 2), labels=7)
    assert other.class_summaries == {7: [{"count": 4}]}


def test_class_summarizer_tensor_labels_group_by_value():
    summ = ClassSummarizer([Count()])
    summ.update(torch.zeros(4, 2), labels=torch.tensor([0, 1, 0, 1]))
    assert summ.class_summaries == {0: [{"count": 2}], 1: [{"count": 2}]}


def test_class_summarizer_without_labels_and_bad_labels():
    summ = ClassSummarizer([Mean()])
    summ.update(torch.ones(3, 2))  # one observation (Captum's rule without labels)
    assert isinstance(summ.summary, dict) and summ.class_summaries == {}
    bad = ClassSummarizer([Mean()])
    with pytest.raises(AssertionError, match="one label per example"):
        bad.update(torch.ones(3, 2), labels=[0, 1])


# --------------------------------------------------------------------------------------
# parity with Captum 0.9
# --------------------------------------------------------------------------------------


def _close(ours, theirs):
    if isinstance(theirs, torch.Tensor):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b)
    elif isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            _close(ours[key], theirs[key])
    else:
        assert ours == theirs


@pytest.mark.parametrize("form", ["tensor", "tuple", "int"])
def test_summarizer_parity_with_captum(form):
    C = pytest.importorskip("captum.attr")
    gen = torch.Generator().manual_seed(3)
    ours, theirs = Summarizer(_all_stats(_W)), C.Summarizer(_all_stats(C))
    for _ in range(12):
        x = torch.randn(4, 3, generator=gen)
        if form == "tuple":
            x = (x, torch.randn(2, generator=gen))
        elif form == "int":
            x = (x * 10).long()
        ours.update(x)
        theirs.update(x)
    _close(ours.summary, theirs.summary)


def test_class_summarizer_parity_with_captum():
    C = pytest.importorskip("captum.attr")
    gen = torch.Generator().manual_seed(4)
    ours, theirs = ClassSummarizer(CommonStats()), C.ClassSummarizer(C.CommonStats())
    for _ in range(6):
        x = torch.randn(5, 3, generator=gen)
        labels = torch.randint(0, 3, (5,), generator=gen).tolist()
        ours.update(x, labels)
        theirs.update(x, labels)
    ours.update(torch.ones(1, 3), 9)
    theirs.update(torch.ones(1, 3), 9)
    _close(ours.summary, theirs.summary)
    _close(ours.class_summaries, theirs.class_summaries)


def test_common_stats():
    kinds = [type(s) for s in CommonStats()]
    assert kinds == [Mean, Var, StdDev, Min, Max]
    assert [s.name for s in CommonStats()] == [
        "mean",
        "sample_variance",
        "sample_std_dev",
        "min",
        "max",
    ]
