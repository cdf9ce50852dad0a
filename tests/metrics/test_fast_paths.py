"""The metrics' fast paths give the same numbers as the plain computations they replace.

* the imputation's two exact solvers (banded Cholesky for narrow images, nested-dissection
  sparse LU for wide ones) against a dense solve and each other;
* host-side average ranks against the torch path and SciPy;
* deletion / insertion rows built by broadcasting against a plain loop, for every baseline
  form and chunk size;
* ``attributions=`` (the unperturbed explanation given, as Quantus' ``a_batch``): the same
  numbers with fewer rows through the model.
"""

import numpy as np
import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM
import whybox.metrics.faithfulness as faithfulness
from _dense_fill import dense_fill
from whybox.metrics._common import average_ranks


def masks(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Scattered masks of growing density, with a blob in the second image."""
    rows, _, height, width = shape
    density = torch.linspace(0.1, 0.9, rows).view(rows, 1, 1, 1)
    removed = torch.rand(rows, 1, height, width, generator=generator) < density
    removed[min(1, rows - 1), :, 1 : height - 1, 1 : width // 2] = True
    return removed


@pytest.mark.parametrize("banded", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 6, 11), (3, 2, 11, 6), (2, 1, 1, 9)])
def test_both_direct_solvers_match_the_dense_solve(monkeypatch, banded, shape):
    pytest.importorskip("scipy")
    if banded:
        pytest.importorskip("threadpoolctl")
    else:  # the sparse LU even for narrow images
        monkeypatch.setattr(faithfulness, "_BANDED_MAX_SIDE", 0)
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(shape, generator=generator, dtype=torch.float64)
    removed = masks(shape, generator)
    out = WM.noisy_linear_impute(images, removed, solver="direct")
    for r in range(shape[0]):
        expected = dense_fill(images[r], removed[r, 0])
        torch.testing.assert_close(out[r], expected, atol=1e-12, rtol=0)


def test_the_solvers_agree_on_cifar_sized_masks_and_without_threadpoolctl(monkeypatch):
    pytest.importorskip("scipy")
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(4, 3, 32, 32, generator=generator, dtype=torch.float64)
    removed = masks(images.shape, generator)
    banded = WM.noisy_linear_impute(images, removed, solver="direct")
    monkeypatch.setattr(faithfulness, "_blas_single_thread", lambda: None)
    sparse = WM.noisy_linear_impute(images, removed, solver="direct")
    torch.testing.assert_close(banded, sparse, atol=1e-10, rtol=0)
    keep = ~removed.expand_as(images)
    assert torch.equal(banded[keep], images[keep])


@pytest.mark.parametrize("height,width", [(1, 1), (1, 8), (7, 1), (5, 9), (32, 32), (31, 17)])
def test_dissection_order_is_a_permutation_with_the_first_separator_last(height, width):
    order = faithfulness._dissection_order(height, width)
    assert np.array_equal(np.sort(order), np.arange(height * width))
    if height * width > faithfulness._DISSECTION_LEAF:
        # the first split cuts the longer side in the middle; that line is ordered last
        if height >= width:
            line = (height // 2) * width + np.arange(width)
        else:
            line = np.arange(height) * width + width // 2
        assert np.array_equal(order[-line.size :], line)


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan", "signed zeros"])
@pytest.mark.parametrize("shape", [(8, 3072), (2, 3, 300)])
def test_host_average_ranks_match_the_torch_path_and_scipy(kind, shape):
    generator = torch.Generator().manual_seed(2)
    values = torch.randn(shape, generator=generator)
    if kind == "ties":
        values = (values * 4).round()
    elif kind == "nan":
        values[..., ::7] = float("nan")
    elif kind == "signed zeros":
        values[..., ::5] = 0.0
        values[..., 1::5] = -0.0
    host = average_ranks(values)  # float32 rows on the CPU: one packed sort
    reference = average_ranks(values.double())  # float64: the torch path
    assert host.dtype == torch.float32
    assert torch.equal(host.double(), reference)
    if kind != "nan":
        stats = pytest.importorskip("scipy.stats")
        expected = stats.rankdata(values.numpy(), method="average", axis=-1)
        assert np.array_equal(host.numpy(), expected.astype(np.float32))


def test_host_average_ranks_keep_float32_under_a_float64_default():
    values = torch.randn(3, 400, generator=torch.Generator().manual_seed(1)).float()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ranks = average_ranks(values)
    finally:
        torch.set_default_dtype(previous)
    assert ranks.dtype == torch.float32
    assert torch.equal(ranks.double(), average_ranks(values.double()))


def plain_curve(model, x, attr, baseline, n_steps, insert):
    """Deletion / insertion points by a loop over examples and steps."""
    n, d = x.shape
    base = torch.as_tensor(baseline, dtype=x.dtype).expand(n, d)
    curve = torch.empty(n, n_steps + 1)
    for i in range(n):
        order = attr[i].argsort(descending=True, stable=True)
        for k in range(n_steps + 1):
            chosen = order[: round(k / n_steps * d)]
            row = base[i].clone() if insert else x[i].clone()
            row[chosen] = x[i, chosen] if insert else base[i, chosen]
            with torch.no_grad():
                curve[i, k] = model(row[None])[0, 1]
    return curve


@pytest.mark.parametrize("insert", [False, True])
def test_removal_rows_equal_a_plain_loop_for_every_baseline_and_chunk(insert):
    torch.manual_seed(3)
    n, d = 6, 6  # a (D,) baseline with D == N must broadcast, never index examples
    model = nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, 2))
    x, attr = torch.randn(n, d), torch.randn(n, d)
    metric = WM.insertion if insert else WM.deletion
    baselines = [None, 0.25, torch.randn(n, d), torch.randn(1, d), torch.randn(d)]
    for baseline in baselines:
        expected = plain_curve(model, x, attr, 0.0 if baseline is None else baseline, 5, insert)
        for chunk in (1, 4, 7, "auto"):
            result = metric(
                model, x, attr, baselines=baseline, target=1, n_steps=5, chunk_size=chunk
            )
            torch.testing.assert_close(result.curve, expected, rtol=0, atol=1e-6)


class RowCounter(nn.Module):
    """Counts the rows the wrapped model is called on (copies count into the same list)."""

    def __init__(self, net: nn.Module, seen: list[int]) -> None:
        super().__init__()
        self.net = net
        self.record = seen.append  # deepcopy keeps builtin methods: copies share the list

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.record(x.shape[0])
        return self.net(x)


@pytest.fixture
def counted():
    torch.manual_seed(4)
    seen: list[int] = []
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)
    )
    return RowCounter(net.eval(), seen), seen, torch.rand(5, 1, 6, 6)


@pytest.mark.parametrize("metric", [WM.max_sensitivity, WM.avg_sensitivity, WM.local_lipschitz])
def test_given_attributions_keep_the_robustness_numbers_and_save_one_explanation(counted, metric):
    model, seen, x = counted
    maps = whybox.explain(model, x, method="saliency", target=2, abs=False).attributions
    seen.clear()
    plain = metric(model, x, target=2, explain_options={"abs": False}, n_samples=4, seed=1)
    rows_plain = sum(seen)
    seen.clear()
    given = metric(
        model, x, target=2, explain_options={"abs": False}, attributions=maps, n_samples=4, seed=1
    )
    assert torch.equal(given.samples, plain.samples)
    assert rows_plain - sum(seen) == x.shape[0]
    with pytest.raises(ValueError, match="'attributions'"):
        metric(model, x, target=2, attributions=maps[:3], n_samples=2)
    with pytest.raises(ValueError, match="'attributions'"):
        metric(model, x, target=2, attributions=maps[:, :, :3], n_samples=2)


def test_given_attributions_keep_random_logit_and_explain_only_the_other_class(counted):
    model, seen, x = counted
    target = torch.tensor([0, 1, 2, 3, 0])
    maps = whybox.explain(model, x, method="saliency", target=target).attributions
    seen.clear()
    plain = WM.random_logit(model, x, target=target, n_classes=4, seed=3)
    assert sum(seen) == 2 * x.shape[0]
    seen.clear()
    given = WM.random_logit(model, x, target=target, n_classes=4, seed=3, attributions=maps)
    assert sum(seen) == x.shape[0]
    assert torch.equal(given.random_targets, plain.random_targets)
    assert torch.equal(given.similarity, plain.similarity)


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_given_attributions_keep_the_randomisation_numbers_and_skip_the_original_pass(
    counted, mode
):
    model, seen, x = counted
    maps = whybox.explain(model, x, method="saliency", target=1).attributions
    seen.clear()
    plain = WM.model_parameter_randomisation(model, x, target=1, mode=mode)
    passes_plain = len(seen)
    seen.clear()
    given = WM.model_parameter_randomisation(model, x, target=1, mode=mode, attributions=maps)
    assert torch.equal(given.similarity, plain.similarity)
    assert passes_plain - len(seen) == 1 and len(seen) == len(given.layers)
