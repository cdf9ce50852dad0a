"""The job runner and the lazy dataset: work happens off the request loop, can be
cancelled, is bounded, never kills the worker, and a big dataset is read (and predicted)
only as far as the pages go."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from whybox.app import Feature, Limits, Workspace, create_app
from whybox.app.compute import Cancelled, compute_cell


class Counting(nn.Module):
    """A linear classifier over 4 numbers that counts the rows it sees and can be slowed
    down or made to fail on rows whose first value is exactly 13."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)
        self.rows = 0
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def forward(self, x):
        self.rows += x.shape[0]
        self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        if (x[:, 0] == 13).any():
            raise RuntimeError("the model cannot handle 13")
        return self.linear(x)


def big_dataset(n_batches=50, size=100, read=None):
    """A generator of 5000 rows, counting the batches it has produced."""
    g = torch.Generator().manual_seed(0)
    for b in range(n_batches):
        if read is not None:
            read.append(b)
        yield torch.randn(size, 4, generator=g), torch.randint(0, 3, (size,), generator=g)


def workspace(model, dataset, **kw):
    return Workspace(
        models=[model],
        classes=["a", "b", "c"],
        features=[Feature("Row", kind="general", categories=["w", "x", "y", "z"])],
        dataset=dataset,
        chunk=kw.pop("chunk", 64),
        **kw,
    )


def wait(client, job_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_thousands_of_examples_are_read_and_predicted_lazily():
    read: list[int] = []
    model = Counting()
    ws = workspace(model, big_dataset(read=read))
    with TestClient(create_app(ws)) as client:
        page = client.get("/api/workspaces/default/examples", params={"limit": 12}).json()
        assert len(page["items"]) == 12 and page["has_more"] and page["total"] is None
        assert len(read) == 1 and model.rows == 12  # one batch read, 12 rows predicted
        far = client.get("/api/workspaces/default/examples", params={"offset": 4990}).json()
        assert [i["id"] for i in far["items"]] == list(range(4990, 5000))
        assert far["total"] == 5000 and not far["has_more"] and model.rows == 22
        # a filter scans in chunks until the page (and one more match) is found
        before = model.rows
        wrong = client.get(
            "/api/workspaces/default/examples", params={"correctness": "incorrect", "limit": 5}
        ).json()
        assert len(wrong["items"]) == 5 and all(
            i["predictions"][0]["correct"] is False for i in wrong["items"]
        )
        assert model.rows - before <= 64  # one chunk was enough (two thirds are wrong)
        again = client.get(
            "/api/workspaces/default/examples", params={"correctness": "incorrect", "limit": 5}
        ).json()
        assert again["items"] == wrong["items"] and model.rows - before <= 64  # cached


def test_a_filter_scan_is_bounded_per_request_and_resumes():
    model = Counting()
    ws = workspace(model, big_dataset())
    limits = Limits(max_scan=500)
    with TestClient(create_app(ws, limits=limits)) as client:
        # predicted "c" with label "c" is never incorrect: nothing matches, so each
        # request scans its budget and the next one goes on from there
        query = {"predicted": "c", "label": "c", "correctness": "incorrect", "limit": 10}
        first = client.get("/api/workspaces/default/examples", params=query).json()
        assert first["items"] == [] and first["scan_limited"] and first["scanned"] == 500
        assert first["has_more"] and first["total"] is None
        second = client.get("/api/workspaces/default/examples", params=query).json()
        assert second["scanned"] == 1000
        assert model.rows == 1000  # never the whole dataset in these two requests


def test_cancel_a_running_job_and_the_queue_is_bounded():
    model = Counting(delay=0.05)
    ws = workspace(model, [(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))])
    limits = Limits(max_pending_jobs=1, max_examples_per_job=8, max_cells_per_job=64)
    with TestClient(create_app(ws, limits=limits)) as client:
        client.get("/api/workspaces/default/examples")  # predictions cached first
        body = {
            "examples": list(range(8)),
            "methods": [{"name": "feature_ablation"}, {"name": "occlusion"}],
        }
        job = client.post("/api/workspaces/default/jobs", json=body).json()
        busy = client.post("/api/workspaces/default/jobs", json=body)
        assert busy.status_code == 429 and "too many jobs" in busy.json()["error"].lower()
        deadline = time.monotonic() + 10
        while client.get(f"/api/jobs/{job['id']}").json()["progress"]["done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get("/api/health").status_code == 200  # the loop answers meanwhile
        cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        done = wait(client, job["id"], timeout=5)
        assert done["status"] == "cancelled" and done["progress"]["done"] < 16
        # the worker is free again
        quick = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [0], "methods": [{"name": "saliency"}]},
        ).json()
        assert wait(client, quick["id"])["status"] == "done"


def test_cancel_inside_a_method_stops_at_the_next_forward():
    model = Counting()
    ws = workspace(model, [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))])
    app = create_app(ws)
    catalog = app.state.whybox.catalogs["default"]
    spec, params = catalog.validate("integrated_gradients", {}, models=[0])
    ws.predictions(0, [0])
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        compute_cell(
            ws,
            catalog,
            example=0,
            model=0,
            spec=spec,
            params=params,
            target="predicted",
            check=check,
        )


def test_a_failing_model_is_a_cell_error_and_the_worker_lives_on():
    rows = torch.randn(3, 4)
    rows[1, 0] = 13.0
    model = Counting()
    ws = workspace(model, [(rows, torch.zeros(3, dtype=torch.long))])
    with TestClient(create_app(ws)) as client:
        # predictions of the batch fail on row 1: the owner's model error is a 500 with its cause
        response = client.get("/api/workspaces/default/examples")
        assert response.status_code == 500 and "cannot handle 13" in response.json()["error"]
        job = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [1, 2], "methods": [{"name": "saliency"}], "target": 0},
        ).json()
        cells = wait(client, job["id"])["cells"]
        assert "cannot handle 13" in cells[0]["error"] and cells[1]["error"] is None
        assert client.get("/api/health").status_code == 200


def test_workspace_construction_is_checked():
    model = Counting()
    with pytest.raises(ValueError, match="at least one model"):
        Workspace(models=[], classes=["a"], features=[Feature("x")], dataset=[])
    with pytest.raises(TypeError, match="classes"):
        Workspace(models=model, classes="abc", features=[Feature("x")], dataset=[])
    with pytest.raises(TypeError, match="iterable of Batch"):
        Workspace(models=model, classes=["a"], features=[Feature("x")], dataset=torch.zeros(3))
    with pytest.raises(ValueError, match="kind"):
        Feature("x", kind="video")
    with pytest.raises(TypeError, match="Insights feature"):
        Workspace(models=model, classes=["a"], features=["photo"], dataset=[])
    with pytest.raises(TypeError, match="create_app"):
        create_app({})


def test_predictions_on_request_threads_are_unchanged_while_the_worker_hooks_the_model(kit):
    """DeepLift / LRP / guided backprop / Grad-CAM hook the model on the worker thread;
    the predictions other threads compute at the same time stay exact."""
    model = kit.tiny_model(0)
    x, y = kit.images(64, seed=11)
    ws = Workspace(
        models=[model],
        classes=kit.CLASSES,
        features=[Feature("Photo", input_transforms=[kit.normalize])],
        dataset=[(x, y)],
        score_func=lambda o: torch.softmax(o, 1),
        chunk=8,
    )
    with torch.no_grad():
        expected = torch.softmax(model(torch.stack([kit.normalize(i) for i in x])), 1)
    limits = Limits(max_examples_per_job=8, max_cells_per_job=48)
    with TestClient(create_app(ws, limits=limits)) as client:
        methods = [{"name": n} for n in ("deeplift", "lrp", "guided_backprop", "grad_cam")]
        job = client.post(
            "/api/workspaces/default/jobs", json={"examples": list(range(8)), "methods": methods}
        ).json()
        # pages of examples the worker has not touched, predicted while it runs
        page = client.get("/api/workspaces/default/examples", params={"offset": 8, "limit": 56})
        done = wait(client, job["id"])
    assert done["status"] == "done" and all(c["error"] is None for c in done["cells"])
    for item in page.json()["items"]:
        top = item["predictions"][0]["top"][0]
        assert top["index"] == int(expected[item["id"]].argmax())
        assert top["score"] == pytest.approx(float(expected[item["id"]].max()), rel=1e-5)


def test_polling_returns_only_new_cells_and_nan_scores_are_null():
    class Flaky(nn.Module):
        def forward(self, x):
            out = x[:, :3].clone()
            out[x[:, 3] > 100] = float("nan")
            return out

    rows = torch.randn(4, 4)
    rows[2, 3] = 1000.0
    ws = workspace(Flaky(), [(rows, torch.zeros(4, dtype=torch.long))])
    with TestClient(create_app(ws)) as client:
        items = client.get("/api/workspaces/default/examples").json()["items"]
        assert items[2]["predictions"][0]["top"][0]["score"] is None
        job = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [0, 1, 3], "methods": [{"name": "saliency"}], "target": 0},
        ).json()
        wait(client, job["id"])
        later = client.get(f"/api/jobs/{job['id']}", params={"since": 2}).json()
        assert later["cells_from"] == 2 and [c["example"] for c in later["cells"]] == [3]


def test_side_by_side_a_model_without_the_needed_layer_gets_its_own_error(kit):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = kit.images(4)
    ws = Workspace(
        models=[kit.tiny_model(0), mlp],
        classes=kit.CLASSES,
        features=[Feature("Photo")],
        dataset=[(x, y)],
    )
    with TestClient(create_app(ws)) as client:
        methods = client.get("/api/workspaces/default/methods/grad_cam_plus_plus").json()
        assert methods["layers"]["1"]["default"] is None
        job = client.post(
            "/api/workspaces/default/jobs",
            json={"examples": [0], "methods": [{"name": "grad_cam_plus_plus"}]},
        ).json()
        cnn, other = wait(client, job["id"])["cells"]
    assert cnn["error"] is None and cnn["views"][0]["type"] == "image"
    assert "needs a convolutional layer" in other["error"] and "has none" in other["error"]
    only_mlp = Workspace(
        models=[mlp], classes=kit.CLASSES, features=[Feature("Photo")], dataset=[(x, y)]
    )
    with TestClient(create_app(only_mlp)) as client:
        spec = client.get("/api/workspaces/default/methods/grad_cam_plus_plus").json()
        assert not spec["available"] and "convolutional" in spec["reason"]
