"""AttackComparator and MinParamPerturbation: Captum 0.9's aggregation and search, checked
against Captum on our models and against closed forms."""

from __future__ import annotations

import warnings
from collections import namedtuple

import pytest
import torch
from torch import nn

from whybox.robust import FGSM, AttackComparator, MinParamPerturbation
from whybox.robust._core.metrics.min_param_perturbation import drange

CR = pytest.importorskip("captum.robust")


def classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softmax(dim=1)).eval()


def accuracy(model_out, target):
    return (model_out.argmax(1) == target).float()


Metrics = namedtuple("Metrics", ["accuracy", "confidence"])


def two_metrics(model_out, target):
    return Metrics(accuracy(model_out, target), model_out.max(1).values.mean())


def noise(inputs, std=0.1):
    return inputs + std * torch.randn_like(inputs)


def close(a, b):
    """Equal results: tensors within float tolerance, same containers and keys."""
    if isinstance(a, dict):
        # key order of Captum's summaries follows a set of statistics (hash order): compare
        # the keys as sets
        assert isinstance(b, dict) and sorted(a) == sorted(b)
        for key in a:
            close(a[key], b[key])
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        assert type(a).__name__ == type(b).__name__
        assert getattr(a, "_fields", None) == getattr(b, "_fields", None)
        for x, y in zip(a, b):
            close(x, y)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, (a, b)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    else:
        assert a == b


def comparators(library, model, metric, preproc_fn=None):
    fgsm = FGSM if library == "whybox" else CR.FGSM
    cls = AttackComparator if library == "whybox" else CR.AttackComparator
    comparator = cls(model, metric, preproc_fn=preproc_fn)
    comparator.add_attack(
        fgsm(model), "FGSM", attack_kwargs={"epsilon": 0.2}, additional_attack_arg_names=["target"]
    )
    comparator.add_attack(noise, "Noise", num_attempts=3, attack_kwargs={"std": 0.3})
    comparator.add_attack(lambda x: x * 0.5, "Halve", apply_before_preproc=False)
    return comparator


@pytest.mark.parametrize("metric", [accuracy, two_metrics], ids=["tensor", "namedtuple"])
@pytest.mark.parametrize("perturbations_per_eval", [1, 2, 4])
def test_attack_comparator_matches_captum(metric, perturbations_per_eval):
    """Same seeds, same attacks (Captum's FGSM beside ours): identical per-batch results
    and summaries over three batches, with a preprocessing step."""
    model = classifier()
    ours = comparators("whybox", model, metric, preproc_fn=lambda x: x * 2)
    theirs = comparators("captum", model, metric, preproc_fn=lambda x: x * 2)
    torch.manual_seed(1)
    batches = [(torch.rand(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x, y in batches:
            torch.manual_seed(2)
            mine = ours.evaluate(x, perturbations_per_eval=perturbations_per_eval, target=y)
            torch.manual_seed(2)
            captums = theirs.evaluate(x, perturbations_per_eval=perturbations_per_eval, target=y)
            close(mine, captums)
    close(ours.summary(), theirs.summary())
    assert set(ours.summary()) == {
        "Original", "FGSM", "Noise Mean Attempt", "Noise Min Attempt", "Noise Max Attempt", "Halve",
    }  # fmt: skip
    ours.reset()
    theirs.reset()
    assert ours.summary() == theirs.summary() == {}


def test_summary_aggregates_as_captum_does():
    """Each batch counts once: its tensor metric is averaged over dim 0 first, then the
    summary is the mean over batches (not over examples); for several attempts, the
    min / max over attempts of each batch are averaged over batches."""
    outputs = iter([torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, 1.0])])

    def metric(model_out):
        return model_out

    comparator = AttackComparator(lambda x: x, metric)
    attempts = iter([torch.tensor([2.0, 4.0]), torch.tensor([6.0, 0.0]), torch.tensor([1.0, 1.0])])
    comparator.add_attack(lambda x: next(attempts), "Pick", num_attempts=3)
    first = comparator.evaluate(next(outputs))
    assert torch.equal(first["Original"], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(first["Pick"]["mean"], torch.tensor([3.0, 5.0 / 3.0]))
    assert torch.equal(first["Pick"]["min"], torch.tensor([1.0, 0.0]))
    assert torch.equal(first["Pick"]["max"], torch.tensor([6.0, 4.0]))
    attempts = iter([torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([3.0])])
    comparator.evaluate(next(outputs))
    summary = comparator.summary()
    # batch means 0.25 and 1.0: the summary is their mean, not the mean of the 6 examples
    torch.testing.assert_close(summary["Original"]["mean"], torch.tensor(0.625))
    # attempts' min per batch: mean([1, 0]) = 0.5, then 0 -> 0.25; max: 5, 3 -> 4
    torch.testing.assert_close(summary["Pick Min Attempt"]["mean"], torch.tensor(0.25))
    torch.testing.assert_close(summary["Pick Max Attempt"]["mean"], torch.tensor(4.0))
    # attempts' mean per batch: mean([3, 5/3]) = 7/3, then 2 -> 13/6
    torch.testing.assert_close(summary["Pick Mean Attempt"]["mean"], torch.tensor(13 / 6))


def test_attack_comparator_raw_inputs_floats_and_warnings():
    """Inputs of any type reach the preprocessing; float metrics are summarised like
    Captum's (float32 tensors); a missing per-batch attack argument warns."""
    comparator = AttackComparator(
        lambda x: x, lambda out: float(out.sum()), preproc_fn=torch.tensor
    )
    comparator.add_attack(
        lambda xs: [v + 1 for v in xs], "Shift", additional_attack_arg_names=["k"]
    )
    with pytest.warns(UserWarning, match="Additional sample arg k"):
        result = comparator.evaluate([1.0, 2.0])
    assert result["Original"] == torch.tensor(3.0)
    assert result["Shift"]["mean"].dtype == torch.float32
    theirs = CR.AttackComparator(lambda x: x, lambda out: float(out.sum()), preproc_fn=torch.tensor)
    theirs.add_attack(lambda xs: [v + 1 for v in xs], "Shift")
    close(result, theirs.evaluate([1.0, 2.0]))


def test_attack_comparator_argument_errors():
    comparator = AttackComparator(lambda x: x, accuracy)
    comparator.add_attack(noise, "Noise")
    with pytest.raises(RuntimeError, match="'name'"):
        comparator.add_attack(noise, "Noise")
    with pytest.raises(ValueError, match="'num_attempts'"):
        comparator.add_attack(noise, "Other", num_attempts=0)
    with pytest.raises(ValueError, match="'perturbations_per_eval'"):
        comparator.evaluate(torch.rand(2, 3), perturbations_per_eval=0)
    with pytest.raises(TypeError, match="'metric'"):
        AttackComparator(lambda x: x, "accuracy")


# -- MinParamPerturbation -----------------------------------------------------------------


def linear_two_class(seed: int):
    torch.manual_seed(seed)
    weight = torch.randn(2, 5, dtype=torch.float64)
    linear = nn.Linear(5, 2).double()
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.zero_()
    return nn.Sequential(linear, nn.Softmax(dim=1)).eval(), weight


@pytest.mark.parametrize("mode", ["linear", "binary"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_param_finds_the_smallest_fgsm_epsilon_that_flips(mode, seed):
    """FGSM on a linear two-class model lowers the margin (w_y - w_o) . x by
    eps * ||w_y - w_o||_1, so the prediction flips first at eps* = margin / ||.||_1:
    the search returns the first grid value above eps*."""
    model, weight = linear_two_class(seed)
    torch.manual_seed(seed + 10)
    x = torch.randn(1, 5, dtype=torch.float64) * 0.3
    y = int(model(x).argmax(1))
    d = weight[y] - weight[1 - y]
    eps_star = float(d @ x[0]) / float(d.abs().sum())
    step = 0.01
    expected = next(v for v in drange(0.0, 2.0, step) if v > eps_star + 1e-9)
    search = MinParamPerturbation(model, FGSM(model), "epsilon", 0.0, 2.0, step, mode=mode)
    attacked, value = search.evaluate(x, target=y, attack_kwargs={"target": y})
    assert value == pytest.approx(expected, abs=1e-9)
    assert 0 < value - eps_star <= step + 1e-9
    assert int(model(attacked).argmax(1)) != y
    just_below = FGSM(model).perturb(x, value - step, y)
    assert int(model(just_below).argmax(1)) == y


def test_min_param_returns_none_when_nothing_flips():
    model, _ = linear_two_class(3)
    x = torch.randn(1, 5, dtype=torch.float64)
    y = int(model(x).argmax(1))
    search = MinParamPerturbation(
        model, lambda inp, scale: inp * (1 + scale), "scale", 0.0, 1.0, 0.1
    )
    assert search.evaluate(x, target=y) == (None, None)


@pytest.mark.parametrize("mode", ["linear", "binary"])
@pytest.mark.parametrize("perturbations_per_eval", [1, 3])
def test_min_param_matches_captum_with_a_random_attack(mode, perturbations_per_eval):
    """Gaussian noise of growing std on a batch, 2 attempts per value: with the same
    global seed both libraries draw the same noise and return the same value and input."""
    model = classifier(4)
    torch.manual_seed(5)
    x = torch.rand(4, 4)
    y = model(x).argmax(1)

    def run(cls):
        torch.manual_seed(6)
        search = cls(model, noise, "std", 0.0, 3.0, 0.05, mode=mode, num_attempts=2)
        return search.evaluate(x, target=y, perturbations_per_eval=perturbations_per_eval)

    ours, theirs = run(MinParamPerturbation), run(CR.MinParamPerturbation)
    assert ours[1] is not None
    assert ours[1] == theirs[1]
    assert torch.equal(ours[0], theirs[0])


def test_min_param_with_extra_args_and_a_custom_correct_fn():
    def forward(x, offset):
        return x.sum(1, keepdim=True) + offset

    def still_positive(model_out):
        return bool((model_out > 0).all())

    for cls in (MinParamPerturbation, CR.MinParamPerturbation):
        search = cls(forward, lambda x, drop: x - drop, "drop", 0, 10, 1, correct_fn=still_positive)
        _, value = search.evaluate(
            torch.tensor([[1.0, 2.0]]), additional_forward_args=(torch.tensor([[0.5]]),),
            perturbations_per_eval=4,
        )  # fmt: skip
        assert value == 2  # 3 + 0.5 - 2 * 2 < 0 first at drop = 2


def test_min_param_argument_errors_are_assertion_errors_too():
    model = classifier()
    with pytest.raises(AssertionError, match="'arg_max'"):
        MinParamPerturbation(model, noise, "std", 0.0, 0.1, 0.2)
    with pytest.raises(AssertionError, match="'mode'"):
        MinParamPerturbation(model, noise, "std", 0.0, 1.0, 0.1, mode="ternary")
    with pytest.raises(ValueError, match="'num_attempts'"):
        MinParamPerturbation(model, noise, "std", 0.0, 1.0, 0.1, num_attempts=0)
    search = MinParamPerturbation(lambda x: x.sum(1), noise, "std", 0.0, 1.0, 0.1)
    with pytest.raises(AssertionError, match="'correct_fn'"):
        search.evaluate(torch.rand(2, 3), target=0)
