"""SimilarityInfluence and the influence functions: Captum's numbers, the activation cache,
and the closed form of the influence function."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from whybox.influence import NaiveInfluenceFunction, SimilarityInfluence, euclidean_distance
from whybox.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_similarity_influence_gives_captums_numbers(tmp_path, metric):
    captum = pytest.importorskip("captum.influence")
    from captum.influence._core.similarity_influence import euclidean_distance as theirs_euclid

    model = _net()
    g = torch.Generator().manual_seed(1)
    src = TensorDataset(torch.randn(40, 6, generator=g), torch.zeros(40))
    inputs = torch.randn(5, 6, generator=g)
    results = []
    for cls, euclid, folder in (
        (SimilarityInfluence, euclidean_distance, "w"),
        (captum.SimilarityInfluence, theirs_euclid, "c"),
    ):
        options = (
            {}
            if metric == "cosine"
            else {"similarity_metric": euclid, "similarity_direction": "min"}
        )
        method = cls(
            model, ["0", "2"], src, str(tmp_path / folder), model_id="m", batch_size=6, **options
        )
        results.append(method.influence(inputs, top_k=4))
    ours, theirs = results
    assert list(ours) == list(theirs) == ["0", "2"]
    for layer in theirs:
        assert torch.equal(ours[layer][0], theirs[layer][0])
        torch.testing.assert_close(ours[layer][1], theirs[layer][1])


def test_similarity_reuses_cached_activations_and_reports_zero_activations(tmp_path):
    # a one-feature layer, relu(x_0): source rows with x_0 < 0 have zero activations
    model = nn.Sequential(nn.Linear(6, 1), nn.ReLU(), nn.Linear(1, 3)).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = 1.0
        model[0].bias.zero_()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 6, generator=g)
    inputs = torch.randn(3, 6, generator=g).abs()
    method = SimilarityInfluence(model, "1", TensorDataset(x), str(tmp_path), batch_size=4)
    calls = []
    handle = model[1].register_forward_hook(lambda *a: calls.append(1))
    with pytest.warns(RuntimeWarning, match="zero-vector activations"):
        first = method.influence(inputs, top_k=2)
    zero = first["zero_acts-1"]
    # [input, source] pairs, with indices into the whole source dataset
    expected = {(i, j) for i in range(3) for j in range(20) if x[j, 0] < 0}
    assert {tuple(pair) for pair in zero.tolist()} == expected
    n_calls = len(calls)
    with pytest.warns(RuntimeWarning):
        again = method.influence(inputs, top_k=2)
    assert len(calls) == n_calls + 1  # only the inputs' forward: the source came from disk
    assert torch.equal(again["1"][0], first["1"][0])
    handle.remove()


def _if_setup(tmp_path):
    model = _net()
    g = torch.Generator().manual_seed(2)
    train = TensorDataset(torch.randn(30, 6, generator=g), torch.randint(0, 3, (30,), generator=g))
    test = (torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g))
    path = str(tmp_path / "checkpoint.pt")
    torch.save(model.state_dict(), path)
    return model, train, test, path


@pytest.mark.parametrize("arnoldi", [False, True])
def test_influence_functions_give_captums_numbers(tmp_path, arnoldi):
    pytest.importorskip("captum.influence")
    from captum.influence import NaiveInfluenceFunction as TheirNaive
    from captum.influence._core.arnoldi_influence_function import (
        ArnoldiInfluenceFunction as TheirArnoldi,
    )

    model, train, test, path = _if_setup(tmp_path)
    loss = nn.CrossEntropyLoss(reduction="none")
    options = {"projection_dim": 8, "arnoldi_dim": 25} if arnoldi else {"projection_dim": 20}
    classes = (
        (ArnoldiInfluenceFunction, TheirArnoldi)
        if arnoldi
        else (NaiveInfluenceFunction, TheirNaive)
    )
    results = []
    for cls in classes:
        method = cls(
            model,
            train,
            path,
            loss_fn=loss,
            batch_size=5,
            layers=["2"] if not arnoldi else None,
            **options,
        )
        top = method.influence(test, k=3)
        results.append((method.influence(test), top.indices, method.self_influence()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-4)


def test_naive_influence_is_the_inverse_hessian_product(tmp_path):
    model, train, (xt, yt), path = _if_setup(tmp_path)
    loss = nn.CrossEntropyLoss(reduction="none")
    method = NaiveInfluenceFunction(
        model,
        train,
        path,
        layers=["2"],
        loss_fn=loss,
        projection_dim=1000,
        hessian_reg=1e-3,
        hessian_inverse_tol=0.0,
    )
    params = list(model[2].parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    x, y = train.tensors

    def total_loss(vector):
        w, b = vector[: shapes[0].numel()].reshape(shapes[0]), vector[shapes[0].numel() :]
        h = model[1](model[0](x))
        return loss(h @ w.T + b, y).sum()

    hess = torch.autograd.functional.hessian(total_loss, flat) + 1e-3 * torch.eye(len(flat))

    def grad_of(xi, yi):
        out = model(xi[None])
        return torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(loss(out, yi[None]).sum(), params)]
        )

    g_test = torch.stack([grad_of(xt[i], yt[i]) for i in range(len(xt))])
    g_train = torch.stack([grad_of(x[j], y[j]) for j in range(len(x))])
    expected = g_test @ torch.linalg.solve(hess.double(), g_train.T.double()).float()
    torch.testing.assert_close(_quiet(method.influence, (xt, yt)), expected, rtol=1e-3, atol=1e-4)
