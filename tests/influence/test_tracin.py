"""TracIn: Captum's numbers, the brute-force definition, a planted mislabelled point, and
the engine's contracts (chunking never changes results; the model is not touched)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from whybox.influence import TracInCP, TracInCPFast, TracInCPFastRandProj
from whybox.influence._utils.nearest_neighbors import AnnoyNearestNeighbors

CASES = {
    "per-example loss": dict(loss_fn=nn.CrossEntropyLoss(reduction="none")),
    "sample-wise mean": dict(
        loss_fn=nn.CrossEntropyLoss(reduction="mean"), sample_wise_grads_per_batch=True
    ),
    "outputs, one layer": dict(loss_fn=None, layers=["fc"]),
}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tracincp_gives_captums_numbers(setup, load_with_lr, case):
    captum = pytest.importorskip("captum.influence")
    model, train, test, paths = setup
    results = []
    for cls in (TracInCP, captum.TracInCP):
        tracin = _quiet(cls, model, train, paths, load_with_lr, batch_size=4, **CASES[case])
        top = tracin.influence(test, k=4, proponents=False)
        results.append(
            (
                tracin.influence(test),
                top.indices,
                top.influence_scores,
                tracin.self_influence(),
                tracin.self_influence(
                    DataLoader(train, batch_size=7), outer_loop_by_checkpoints=True
                ),
                tracin.influence(test, aggregate=True),
            )
        )
    ours, theirs = results
    for a, b in zip(ours, theirs):
        if a.dtype == torch.long:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _per_example_gradient(model, x, y, loss_fn):
    params = [p for p in model.parameters()]
    loss = model(x[None]).sum() if loss_fn is None else loss_fn(model(x[None]), y[None]).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def test_influence_is_the_sum_over_checkpoints_of_gradient_dot_products(setup, load_with_lr):
    model, train, (xt, yt), paths = setup
    loss = nn.CrossEntropyLoss(reduction="none")
    tracin = TracInCP(model, train, paths, load_with_lr, loss_fn=loss, batch_size=4)
    scores = tracin.influence((xt, yt))
    self_scores = tracin.self_influence()
    brute = torch.zeros(len(xt), len(train))
    brute_self = torch.zeros(len(train))
    for path in paths:
        lr = load_with_lr(model, path)
        tests = torch.stack(
            [_per_example_gradient(model, xt[i], yt[i], loss) for i in range(len(xt))]
        )
        trains = torch.stack(
            [_per_example_gradient(model, *train[j], loss) for j in range(len(train))]
        )
        brute += lr * tests @ trains.T
        brute_self += lr * (trains**2).sum(1)
    torch.testing.assert_close(scores, brute, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(self_scores, brute_self, rtol=1e-5, atol=1e-6)
    iq_test = tracin.compute_intermediate_quantities((xt, yt))
    iq_train = tracin.compute_intermediate_quantities(DataLoader(train, batch_size=8))
    torch.testing.assert_close(iq_test @ iq_train.T, brute, rtol=1e-4, atol=1e-5)


def _planted(tmp_path):
    """Two separated blobs, one training point labelled with the wrong blob; a logistic
    classifier trained on them with SGD, a checkpoint every 10 epochs."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 2, generator=g) + 2.5, torch.randn(20, 2, generator=g) - 2.5])
    y = torch.cat([torch.zeros(20, dtype=torch.long), torch.ones(20, dtype=torch.long)])
    flipped = 7
    y[flipped] = 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    paths = []
    for epoch in range(1, 41):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
        if epoch % 10 == 0:
            path = os.path.join(tmp_path, f"epoch-{epoch}.pt")
            torch.save(model.state_dict(), path)
            paths.append(path)
    return model.eval(), TensorDataset(x, y), flipped, paths


def test_a_mislabelled_point_has_the_largest_self_influence(tmp_path):
    model, train, flipped, paths = _planted(tmp_path)
    loss = nn.CrossEntropyLoss(reduction="sum")
    tracin = TracInCP(model, train, paths, loss_fn=loss, sample_wise_grads_per_batch=True)
    fast = TracInCPFast(model, model[0], train, paths, loss_fn=loss)
    for method in (tracin, fast):
        scores = method.self_influence()
        assert int(scores.argmax()) == flipped
        assert scores[flipped] > 2 * scores[torch.arange(len(scores)) != flipped].max()


def test_chunking_never_changes_results_and_the_model_is_not_touched(setup, load_with_lr):
    model, train, test, paths = setup
    loss = nn.CrossEntropyLoss(reduction="none")
    frozen = {n: p.requires_grad for n, p in model.named_parameters()}
    model.fc.bias.requires_grad_(False)
    auto = TracInCP(model, train, paths, load_with_lr, loss_fn=loss)
    small = TracInCP(
        model, DataLoader(train, batch_size=7), paths, load_with_lr, loss_fn=loss, chunk_size=3
    )
    torch.testing.assert_close(auto.influence(test), small.influence(test), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(auto.self_influence(), small.self_influence(), rtol=1e-5, atol=1e-6)
    assert not model.fc.bias.requires_grad  # frozen parameters stay frozen (and are skipped)
    assert all(p.grad is None for p in model.parameters())
    model.fc.bias.requires_grad_(True)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == frozen
    # the model is left at the last checkpoint loaded, as in Captum
    last = torch.load(paths[-1])["state"]
    assert all(torch.equal(last[n], p) for n, p in model.state_dict().items())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_tracincp_fast_gives_captums_numbers(setup, load_with_lr, reduction):
    captum = pytest.importorskip("captum.influence")
    model, train, test, paths = setup
    loss = nn.CrossEntropyLoss(reduction=reduction)
    results = []
    for cls in (TracInCPFast, captum.TracInCPFast):
        fast = cls(model, model.fc, train, paths, load_with_lr, loss_fn=loss, batch_size=4)
        top = fast.influence(test, k=3)
        results.append(
            (fast.influence(test), top.indices, top.influence_scores, fast.self_influence())
        )
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("projection_dim", [None, 9])
def test_tracincp_fast_rand_proj_gives_captums_numbers(setup, load_with_lr, projection_dim):
    captum = pytest.importorskip("captum.influence")
    model, train, test, paths = setup
    loss = nn.CrossEntropyLoss(reduction="sum")
    results = []
    for cls in (TracInCPFastRandProj, captum.TracInCPFastRandProj):
        # annoy is optional: both get the exact search (Captum's default needs annoy)
        method = _quiet(
            cls, model, "fc", train, paths, load_with_lr, loss_fn=loss, batch_size=4,
            nearest_neighbors=AnnoyNearestNeighbors(), projection_dim=projection_dim, seed=5,
        )  # fmt: skip
        top = method.influence(test, k=3, proponents=False)
        results.append((method.influence(test, k=None), top.indices, top.influence_scores))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_exact_nearest_neighbours_without_annoy():
    g = torch.Generator().manual_seed(0)
    data, query = torch.randn(50, 7, generator=g), torch.randn(4, 7, generator=g)
    search = AnnoyNearestNeighbors()
    search.setup(data)
    indices, values = search.get_nearest_neighbors(query, 5)
    expected = torch.topk(query @ data.T, 5, dim=1)
    if search.exact:
        assert torch.equal(indices, expected.indices)
        torch.testing.assert_close(values, expected.values)


def test_errors_name_the_parameter(setup, load_with_lr):
    model, train, test, paths = setup
    with pytest.raises(AssertionError, match="'checkpoints' parameter of TracInCP"):
        TracInCP(model, train, [], load_with_lr)
    with pytest.raises(AssertionError, match="'loss_fn' parameter of TracInCP"):
        TracInCP(
            model,
            train,
            paths,
            load_with_lr,
            loss_fn=nn.CrossEntropyLoss(),
            sample_wise_grads_per_batch=False,
        )
    with pytest.raises(AssertionError, match="'layers' parameter of TracInCP"):
        TracInCP(model, train, paths, load_with_lr, layers=["nope"])
    with pytest.raises(AssertionError, match="'final_fc_layer' parameter of TracInCPFast"):
        TracInCPFast(model, "nope", train, paths, load_with_lr, loss_fn=nn.CrossEntropyLoss())
    with pytest.raises(AssertionError, match="'batch_size' parameter of TracInCP"):
        TracInCP(model, train, paths, load_with_lr, batch_size=None)


class MixedNet(nn.Module):
    """A 2-D convolution (gradients from its captured input and output gradient), a 1-D one
    (vmap), a linear layer on 3-D inputs (not factorable: all flat) and a linear head."""

    def __init__(self, per_step: bool) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(1, 2, 3, padding=1, stride=(1, 2))
        self.conv = nn.Conv1d(2, 3, 3, padding=1)
        self.per_step = nn.Linear(3, 4) if per_step else None
        self.head = nn.Linear((4 if per_step else 3) * 5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv2d(x[:, None])).mean(dim=2)  # (N, 2, 3) -> conv over 5
        h = torch.nn.functional.pad(h, (1, 1))
        h = torch.tanh(self.conv(h)).transpose(1, 2)  # (N, 5, 3)
        if self.per_step is not None:
            h = torch.relu(self.per_step(h))
        return self.head(h.flatten(1))


@pytest.mark.parametrize(
    ("layers", "per_step"), [(None, True), (None, False), (["head", "conv2d"], True)]
)
def test_factored_and_flat_gradients_agree_with_brute_force(tmp_path, layers, per_step):
    torch.manual_seed(0)
    model = MixedNet(per_step).eval()
    g = torch.Generator().manual_seed(4)
    train = TensorDataset(
        torch.randn(12, 2, 5, generator=g), torch.randint(0, 2, (12,), generator=g)
    )
    xt, yt = torch.randn(3, 2, 5, generator=g), torch.randint(0, 2, (3,), generator=g)
    path = os.path.join(tmp_path, "c.pt")
    torch.save(model.state_dict(), path)
    loss = nn.CrossEntropyLoss(reduction="none")
    tracin = TracInCP(model, train, [path], loss_fn=loss, layers=layers, batch_size=5)
    chosen = [p for n, p in model.named_parameters() if layers is None or n.split(".")[0] in layers]

    def grad(x, y):
        value = loss(model(x[None]), y[None]).sum()
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(value, chosen)])

    tests = torch.stack([grad(xt[i], yt[i]) for i in range(3)])
    trains = torch.stack([grad(*train[j]) for j in range(12)])
    torch.testing.assert_close(tracin.influence((xt, yt)), tests @ trains.T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tracin.self_influence(), (trains**2).sum(1), rtol=1e-5, atol=1e-6)
