"""Each input-shaped cell carries a deletion check against random orders."""

from __future__ import annotations

import time

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from whybox.app import Feature, Workspace, create_app
from whybox.app.faithfulness import N_RANDOM, N_STEPS, deletion_check


class Additive(nn.Module):
    """Three classes, each a weighted sum of six positive inputs: removing a feature takes
    its contribution w_c,i * x_i away, so the order of largest contributions first gives the
    lowest curve there is."""

    def __init__(self, fail_on_zero: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[5.0, 1, 3, 0.5, 2, 4]] * 3))
        self.fail_on_zero = fail_on_zero

    def forward(self, x):
        zeros = x == 0
        if self.fail_on_zero and bool((zeros.any(1) & ~zeros.all(1)).any()):
            raise RuntimeError("partly zero rows are not allowed")
        return x @ self.weight.T


def test_the_top_first_curve_is_below_every_random_order():
    model = Additive()
    x = torch.tensor([[1.0, 2.0, 1.5, 4.0, 0.5, 1.0]])
    contributions = model.weight[0] * x
    check = deletion_check(model, (x,), [contributions], (torch.zeros_like(x),), target=0)
    assert check["n_random"] == N_RANDOM and len(check["fractions"]) == N_STEPS + 1
    assert check["morf"][0] == float(model(x)[0, 0]) and check["morf"][-1] == 0.0
    # removing round(f * 6) of the largest contributions at each fraction f
    ordered = contributions[0].sort(descending=True).values
    total = float(ordered.sum())
    for fraction, value in zip(check["fractions"], check["morf"]):
        removed = float(ordered[: round(fraction * 6)].sum())
        assert abs(value - (total - removed)) < 1e-4
    assert check["morf_auc"] < check["random_auc"]
    # the reversed order (least relevant first) loses against random
    worst = deletion_check(model, (x,), [-contributions], (torch.zeros_like(x),), target=0)
    assert worst["morf_auc"] > worst["random_auc"]


def test_layer_shaped_maps_and_batches_get_no_check():
    model = Additive()
    x = torch.rand(1, 6)
    assert deletion_check(model, (x,), [torch.rand(1, 3)], (torch.zeros_like(x),)) is None
    two = torch.rand(2, 6)
    assert deletion_check(model, (two,), [two], (torch.zeros_like(two),), target=0) is None


def run_job(model, methods):
    rows = torch.tensor([[1.0, 2.0, 1.5, 4.0, 0.5, 1.0]])
    ws = Workspace(
        models=[model],
        classes=["a", "b", "c"],
        features=[Feature("Row", kind="general")],
        dataset=[(rows, torch.zeros(1, dtype=torch.long))],
    )
    with TestClient(create_app(ws)) as client:
        job = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [0], "methods": methods, "target": 0},
        ).json()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = client.get(f"/api/jobs/{job['id']}").json()
            if done["status"] not in ("queued", "running"):
                break
            time.sleep(0.02)
        exported = client.get(f"/api/jobs/{job['id']}/export", params={"format": "html"})
        return done["cells"], exported.text


def test_cells_carry_the_check_and_the_html_export_says_it():
    cells, html = run_job(Additive(), [{"name": "integrated_gradients"}])
    (cell,) = cells
    assert cell["error"] is None
    check = cell["faithfulness"]
    assert len(check["morf"]) == len(check["random"]) == N_STEPS + 1
    assert check["morf_auc"] < check["random_auc"]  # IG is exact on an additive model
    assert "Deletion check: AUC" in html and "faithful: falls faster" in html


def test_a_model_that_rejects_the_removal_rows_keeps_its_explanation():
    # IG's rows (the path and the all-zero baseline) are never partly zero; removal rows are
    cells, _ = run_job(Additive(fail_on_zero=True), [{"name": "integrated_gradients"}])
    (cell,) = cells
    assert cell["error"] is None and cell["views"]
    assert cell["faithfulness"] is None
    assert any(
        "no deletion check" in w and "partly zero rows are not allowed" in w
        for w in cell["warnings"]
    )


def test_the_check_can_be_turned_off_per_workspace():
    rows = torch.tensor([[1.0, 2.0, 1.5, 4.0, 0.5, 1.0]])
    model = Additive()
    ws = Workspace(
        models=[model],
        classes=["a", "b", "c"],
        features=[Feature("Row", kind="general")],
        dataset=[(rows, torch.zeros(1, dtype=torch.long))],
        deletion_check=False,
    )
    with TestClient(create_app(ws)) as client:
        job = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [0], "methods": [{"name": "saliency"}], "target": 0},
        ).json()
        deadline = time.monotonic() + 20
        while client.get(f"/api/jobs/{job['id']}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (cell,) = client.get(f"/api/jobs/{job['id']}").json()["cells"]
    assert cell["error"] is None and cell["faithfulness"] is None
    with pytest.raises(TypeError, match="deletion_check"):
        Workspace(
            models=[model],
            classes=["a"],
            features=[Feature("Row", kind="general")],
            dataset=[],
            deletion_check="no",
        )
