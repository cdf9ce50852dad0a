"""The private helpers Captum-style code imports from Captum's influence paths (Arnoldi,
eigen-decompositions, parameter flattening, functional calls), Captum's progress bars and
Captum's words in the validation errors -- each checked against Captum 0.9 itself."""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from whybox.influence import TracInCP, TracInCPFast
from whybox.influence._core import arnoldi_influence_function as why_arnoldi
from whybox.influence._utils import common as why_common


def _captum_common():
    return pytest.importorskip("captum.influence._utils.common")


SHAPES = [(4, 3), (5,), (2, 2, 2)]


def _params(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES)


def test_flatten_and_unflatten_match_captum():
    cc = _captum_common()
    params = _params()
    flat = why_common._flatten_params(params)
    assert torch.equal(flat, cc._flatten_params(params))
    back = why_common._unflatten_params_factory(SHAPES)(flat)
    expected = cc._unflatten_params_factory(SHAPES)(flat)
    assert len(back) == len(expected) == len(SHAPES)
    for a, b, p in zip(back, expected, params):
        assert a.shape == b.shape == p.shape
        assert torch.equal(a, b) and torch.equal(a, p)


def test_eig_helper_and_top_eigen_match_captum():
    cc = _captum_common()
    g = torch.Generator().manual_seed(3)
    r = torch.randn(8, 5, generator=g, dtype=torch.float64)
    h = r @ r.T + 0.01 * torch.randn(8, 8, generator=g, dtype=torch.float64)
    for ours, theirs in zip(why_common._eig_helper(h), cc._eig_helper(h)):
        torch.testing.assert_close(ours, theirs)
    for k in (None, 3):
        ours = why_common._top_eigen(h, k, 1e-3, 1e-2)
        theirs = cc._top_eigen(h, k, 1e-3, 1e-2)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b)
    values, vectors = why_common._top_eigen(r @ r.T, 5, 0.0, 1e-8)
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, r @ r.T)


@pytest.mark.parametrize("name", ["_functional_call", "_custom_functional_call"])
def test_functional_calls_differentiate_the_given_parameters(name):
    cc = _captum_common()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(6, 3)
    results = []
    for fn in (getattr(why_common, name), getattr(cc, name)):
        w = net[2].weight.detach().clone().requires_grad_(True)
        out = fn(net, {"2.weight": w}, (x,))
        (grad,) = torch.autograd.grad(out.pow(2).sum(), w)
        results.append((out.detach(), grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    # whybox leaves the model as it was (Captum re-registers copies of the parameters)
    why_net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    why_net.load_state_dict(net.state_dict())
    kept = list(why_net.parameters())
    getattr(why_common, name)(why_net, {"2.weight": torch.zeros(1, 4)}, (x,))
    assert all(a is b for a, b in zip(why_net.parameters(), kept))


def _matrix(symmetric: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    n = sum(torch.Size(s).numel() for s in SHAPES)
    values = 10 ** torch.linspace(-2, 2, n, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    if symmetric:
        return q @ torch.diag(values) @ q.T
    m = torch.randn(n, n, generator=g, dtype=torch.float64) + n * torch.eye(n, dtype=torch.float64)
    return m @ torch.diag(values) @ torch.linalg.inv(m)


@pytest.mark.parametrize("symmetric", [True, False])
def test_parameter_arnoldi_and_distill_match_captum(symmetric):
    pytest.importorskip("captum.influence")
    from captum.influence._core import arnoldi_influence_function as cap_arnoldi

    a = _matrix(symmetric)
    unflatten = why_common._unflatten_params_factory(SHAPES)

    def hvp(v):
        return unflatten(a @ why_common._flatten_params(v))

    b = _params(7)
    cpu = torch.device("cpu")
    ours = why_arnoldi._parameter_arnoldi(hvp, b, 12, 1e-3, cpu, False)
    theirs = cap_arnoldi._parameter_arnoldi(hvp, b, 12, 1e-3, cpu, False)
    assert len(ours[0]) == len(theirs[0])
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=1e-4)
    for q_ours, q_theirs in zip(ours[0], theirs[0]):
        assert [t.shape for t in q_ours] == [t.shape for t in q_theirs]
        for x, y in zip(q_ours, q_theirs):
            torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4)

    values, vectors = why_arnoldi._parameter_distill(*ours, 4, 0.0, 0.0)
    cap_values, cap_vectors = cap_arnoldi._parameter_distill(*theirs, 4, 0.0, 0.0)
    torch.testing.assert_close(values, cap_values, rtol=1e-3, atol=1e-4)
    for v, w in zip(vectors, cap_vectors):
        for x, y in zip(v, w):
            torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-3)
    # each returned vector is an eigenvector of ``a`` for its eigenvalue
    for value, vector in zip(values, vectors):
        flat = why_common._flatten_params(vector)
        torch.testing.assert_close(a @ flat, value * flat, rtol=1e-2, atol=1e-2)


def test_parameter_distill_of_an_empty_basis_says_what_to_change():
    with pytest.raises(ValueError, match="arnoldi_tol"):
        why_arnoldi._parameter_distill([], torch.zeros(1, 0), 2, 0.0, 0.0)


# -- Captum's progress bars ------------------------------------------------------------------
def _descriptions(run) -> list[str]:
    """The tqdm descriptions written to stderr by ``run`` that reached 100%, in order."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
    return re.findall(r"([A-Za-z][^\r\n:]*): 100%", err.getvalue())


@pytest.mark.parametrize("outer_loop_by_checkpoints", [True, False])
@pytest.mark.parametrize("name", ["TracInCP", "TracInCPFast"])
def test_self_influence_progress_bars_are_captums(
    setup, load_with_lr, name, outer_loop_by_checkpoints
):
    captum = pytest.importorskip("captum.influence")
    model, train, _, paths = setup
    loss = nn.CrossEntropyLoss(reduction="none" if name == "TracInCP" else "sum")
    seen = []
    for cls in (getattr(captum, name), {"TracInCP": TracInCP, "TracInCPFast": TracInCPFast}[name]):
        extra = {"final_fc_layer": "fc"} if name == "TracInCPFast" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracin = cls(
                model,
                **extra,
                train_dataset=train,
                checkpoints=paths,
                checkpoints_load_func=load_with_lr,
                loss_fn=loss,
                batch_size=5,
            )

        def run(tracin=tracin):
            tracin.self_influence(
                DataLoader(train, batch_size=5),
                show_progress=True,
                outer_loop_by_checkpoints=outer_loop_by_checkpoints,
            )

        seen.append(sorted(set(_descriptions(run))))
    assert seen[0] == seen[1]
    what = f"Using {name} to compute self influence."
    expected = {f"{what} Processing batch"}
    if outer_loop_by_checkpoints:
        expected.add(f"{what} Processing checkpoint")
    assert set(seen[1]) == expected


def test_self_influence_by_checkpoints_shows_one_batch_bar_per_checkpoint(setup, load_with_lr):
    model, train, _, paths = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracin = TracInCP(
            model, train, paths, load_with_lr, loss_fn=nn.CrossEntropyLoss(reduction="none")
        )
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        tracin.self_influence(
            DataLoader(train, batch_size=5), show_progress=True, outer_loop_by_checkpoints=True
        )
    text = err.getvalue()
    done = "Using TracInCP to compute self influence. Processing batch: 100%"
    assert text.count(done) >= len(paths)
    assert "Processing checkpoint: 100%" in text


# -- Captum's words in the errors ------------------------------------------------------------
def test_errors_keep_whybox_wording_and_carry_captums_words(setup, load_with_lr, tmp_path):
    model, train, test, paths = setup
    loss = nn.CrossEntropyLoss(reduction="sum")
    tracin = TracInCPFast(model, "fc", train, paths, load_with_lr, loss_fn=loss)
    with pytest.raises(AssertionError, match=r"'inputs' parameter of TracInCPFast.*required."):
        tracin.influence(None, k=None)
    with pytest.raises(
        ValueError, match=r"'final_fc_layer' parameter.*Invalid final_fc_layer str: \"nope\" "
    ):
        TracInCPFast(model, "nope", train, paths, load_with_lr, loss_fn=loss)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ValueError, match=r"'checkpoints' parameter of TracInCP.*Invalid checkpoints provided "
    ):
        TracInCP(model, train, str(empty), load_with_lr)


@pytest.mark.parametrize("name", ["_functional_call", "_custom_functional_call"])
def test_private_helpers_carry_captums_names(name):
    # parameterized tests (Captum's) are named after the function's __name__
    import captum.influence._utils.common as theirs

    import whybox.influence._utils.common as ours

    assert getattr(ours, name).__name__ == getattr(theirs, name).__name__ == name
