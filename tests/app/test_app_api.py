"""Every endpoint of the app, with good input and with every class of bad input.

Bad input always gets a 4xx JSON ``{"error": ...}`` naming the problem; afterwards the
server still answers and the worker still computes.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
from fastapi.testclient import TestClient

from whybox.app import Limits, create_app

CLASSES = ["cat", "teapot", "trilobite", "dog", "boat", "car", "tree", "lamp", "fish", "cup"]
TEST_LIMITS = Limits(
    max_examples_per_job=4,
    max_methods_per_job=3,
    max_cells_per_job=12,
    max_n_steps=100,
    max_n_samples=50,
    max_evaluations=5_000,
    max_page_size=20,
)

JOBS = "/api/workspaces/default/jobs"
EXAMPLES = "/api/workspaces/default/examples"


@pytest.fixture(scope="module")
def client(small_workspace, kit):
    assert kit.CLASSES == CLASSES and kit.TEST_LIMITS == TEST_LIMITS
    app = create_app(small_workspace, limits=TEST_LIMITS)
    with TestClient(app) as c:
        yield c


def wait(client, job_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def refused(response, status=422, *words):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body["error"]


def healthy(client):
    assert client.get("/api/health").json() == {"status": "ok", "workspaces": 1}


# -- good input ---------------------------------------------------------------------------------
def test_page_and_static_files_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/app.js"' in page.text and "http" not in page.text.split("<body>")[1]
    js, css = client.get("/static/app.js"), client.get("/static/app.css")
    assert js.status_code == css.status_code == 200
    assert "javascript" in js.headers["content-type"] and "css" in css.headers["content-type"]
    assert "https://" not in js.text and "https://" not in css.text
    assert client.get("/docs").status_code == 404  # Swagger UI would load a CDN


def test_workspaces_and_info(client):
    [summary] = client.get("/api/workspaces").json()
    assert summary["id"] == "default" and [m["name"] for m in summary["models"]] == [
        "CNN A",
        "CNN B",
    ]
    info = client.get("/api/workspaces/default").json()
    assert info["classes"] == CLASSES and info["features"][0]["type"] == "image"
    assert info["limits"]["max_n_steps"] == TEST_LIMITS.max_n_steps


def test_examples_page_with_predictions(client, small_workspace):
    page = client.get(EXAMPLES, params={"limit": 5}).json()
    assert [item["id"] for item in page["items"]] == [0, 1, 2, 3, 4]
    assert page["has_more"] and page["offset"] == 0
    item = page["items"][0]
    assert item["label_name"] == CLASSES[item["label"]]
    for m, pred in enumerate(item["predictions"]):
        top = pred["top"]
        assert len(top) == 4 and top[0]["score"] >= top[1]["score"]
        assert top[0]["name"] == CLASSES[top[0]["index"]]
        assert pred["correct"] == (top[0]["index"] == item["label"])
        x, _ = small_workspace.model_inputs(0)
        with torch.no_grad():
            probs = torch.softmax(small_workspace.models[m](*x), 1)[0]
        assert top[0]["score"] == pytest.approx(float(probs.max()), rel=1e-5)
    assert item["features"][0]["image_url"] == "api/workspaces/default/examples/0/image/0"
    png = client.get("/" + item["features"][0]["image_url"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_filters(client):
    everything = client.get(EXAMPLES, params={"limit": 20, "offset": 0}).json()
    rest = client.get(EXAMPLES, params={"limit": 20, "offset": 20}).json()
    items = everything["items"] + rest["items"]
    assert len(items) == 24 and rest["total"] == 24 and not rest["has_more"]
    wrong = client.get(EXAMPLES, params={"limit": 20, "correctness": "incorrect"}).json()
    expected = [i["id"] for i in items if i["predictions"][0]["correct"] is False]
    assert [i["id"] for i in wrong["items"]] == expected[:20]
    top = items[0]["predictions"][1]["predicted"]
    by_b = client.get(EXAMPLES, params={"predicted": CLASSES[top], "model": 1, "limit": 20}).json()
    assert by_b["items"] and all(i["predictions"][1]["predicted"] == top for i in by_b["items"])
    label = items[0]["label"]
    by_label = client.get(
        EXAMPLES, params=[("label", str(label)), ("label", CLASSES[label])]
    ).json()
    assert by_label["items"] and all(i["label"] == label for i in by_label["items"])


def test_one_example(client):
    item = client.get(f"{EXAMPLES}/3").json()
    assert item["id"] == 3 and len(item["predictions"]) == 2


def test_methods_list_the_registry_with_constraints(client):
    import whybox

    methods = client.get("/api/workspaces/default/methods").json()
    assert sorted(m["name"] for m in methods) == whybox.available_methods()
    ig = client.get("/api/workspaces/default/methods/integrated_gradients").json()
    n_steps = next(p for p in ig["params"] if p["name"] == "n_steps")
    assert n_steps == {
        "name": "n_steps",
        "type": "int",
        "default": 50,
        "minimum": 1,
        "maximum": TEST_LIMITS.max_n_steps,
        "nullable": False,
        "help": "integration steps",
    }
    rule = next(p for p in ig["params"] if p["name"] == "rule")
    assert "gausslegendre" in rule["choices"] and ig["has_delta"]
    cam = client.get("/api/workspaces/default/methods/grad_cam").json()
    assert cam["needs_layer"] and cam["layers"]["0"]["default"] == "features.0"
    unavailable = {m["name"]: m["reason"] for m in methods if not m["available"]}
    assert "neuron_conductance" in unavailable and unavailable["neuron_conductance"]


def test_job_lifecycle_and_exports(client):
    body = {
        "examples": [0, 1],
        "models": [0, 1],
        "methods": [
            {"name": "integrated_gradients", "params": {"n_steps": 20}},
            {"name": "occlusion", "params": {"window": 2, "stride": 2}},
        ],
    }
    response = client.post(JOBS, json=body)
    assert response.status_code == 202, response.text
    job = wait(client, response.json()["id"])
    assert job["status"] == "done" and job["progress"]["done"] == job["progress"]["total"] == 8
    cells = job["cells"]
    assert all(c["error"] is None for c in cells), [c["error"] for c in cells]
    ig = next(c for c in cells if c["method"] == "integrated_gradients")
    view = ig["views"][0]
    assert view["type"] == "image" and (view["height"], view["width"]) == (8, 8)
    assert (
        ig["delta"] and ig["target_name"] in CLASSES and view["image"].startswith("data:image/png")
    )
    listed = client.get("/api/jobs").json()
    assert listed[0]["id"] == job["id"] and "cells" not in listed[0]
    data = client.get(f"/api/jobs/{job['id']}/export", params={"format": "json"})
    assert data.headers["content-disposition"].startswith("attachment")
    exported = json.loads(data.content)
    assert len(exported["cells"]) == 8 and exported["cells"][0]["attributions"][0]["shape"] == [
        3,
        8,
        8,
    ]
    html = client.get(f"/api/jobs/{job['id']}/export?format=html").text
    assert "<script" not in html and "data:image/png;base64," in html
    png = client.get(f"/api/jobs/{job['id']}/export?format=png").content
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_text_and_general_views(client):
    body = {
        "examples": [2],
        "models": [0],
        "methods": [
            {"name": "grad_cam", "params": {"layer": "features.0"}},
            {"name": "layer_conductance", "params": {"n_steps": 8}},
            {"name": "shapley_value_sampling", "params": {"n_samples": 2, "grid": 4}},
        ],
        "target": "label",
    }
    job = wait(client, client.post(JOBS, json=body).json()["id"])
    cells = {c["method"]: c for c in job["cells"]}
    assert all(c["error"] is None for c in cells.values()), cells
    assert cells["grad_cam"]["views"][0]["type"] == "layer"
    assert len(cells["layer_conductance"]["views"][0]["map"]) == 8
    label = client.get(f"{EXAMPLES}/2").json()["label"]
    assert cells["grad_cam"]["target"] == label


# -- bad input --------------------------------------------------------------------------------
BAD_BODIES = [
    ('{"examples": [0],', "not valid JSON"),
    ("[]", "must be a JSON object; got an array"),
    ("null", "JSON object"),
    ("3", "must be a JSON object; got a number"),
    ('"text"', "must be a JSON object; got a string"),
    ("", "JSON object"),
    ("{}", "'examples' is required"),
    ('{"examples": "0", "methods": [{"name": "saliency"}]}', "examples"),
    ('{"examples": [0.5], "methods": [{"name": "saliency"}]}', "examples.0"),
    ('{"examples": [true], "methods": [{"name": "saliency"}]}', "examples.0"),
    ('{"examples": [0], "methods": {"name": "saliency"}}', "methods"),
    ('{"examples": [0], "methods": [{"name": 3}]}', "methods.0.name"),
    ('{"examples": [0], "methods": [{"name": "saliency", "params": []}]}', "params"),
    ('{"examples": [0], "methods": [{"name": "saliency"}], "models": "all"}', "models"),
    ('{"examples": [0], "methods": [{"name": "saliency"}], "target": 1.5}', "target"),
    ('{"examples": [0], "methods": [{"name": "saliency"}], "target": "someone"}', "target"),
    ('{"examples": [0], "methods": [{"name": "saliency"}], "colour": "red"}', "unknown field"),
    ('{"examples": [], "methods": [{"name": "saliency"}]}', "examples"),
    ('{"examples": [0], "methods": []}', "methods"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_malformed_job_bodies(client, body, words):
    response = client.post(JOBS, content=body, headers={"Content-Type": "application/json"})
    refused(response, 422, words)
    healthy(client)


def _job(methods=None, **fields):
    body = {"examples": [0], "methods": methods or [{"name": "integrated_gradients"}]}
    body.update(fields)
    return body


BAD_JOBS = [
    (_job(examples=[99999]), 422, "unknown example id 99999"),
    (_job(examples=[-1]), 422, "example"),
    (_job(examples=[10**30]), 422, "example"),
    (_job(examples=[0, 1, 2, 3, 4]), 422, "at most 4 examples"),
    (_job(models=[2]), 422, "unknown model 2"),
    (_job(target=10), 422, "out of range"),
    (_job([{"name": "nope"}]), 404, "unknown method 'nope'"),
    (_job([{"name": "neuron_conductance"}]), 422, "not offered"),
    (_job([{"name": "integrated_gradients", "params": {"n_steps": 0}}]), 422, "n_steps", ">= 1"),
    (_job([{"name": "integrated_gradients", "params": {"n_steps": 10**6}}]), 422, "<= 100"),
    (_job([{"name": "integrated_gradients", "params": {"n_steps": "50"}}]), 422, "integer"),
    (_job([{"name": "integrated_gradients", "params": {"n_steps": 2.5}}]), 422, "integer"),
    (_job([{"name": "integrated_gradients", "params": {"n_steps": None}}]), 422, "null"),
    (_job([{"name": "integrated_gradients", "params": {"rule": "simpson"}}]), 422, "rule"),
    (_job([{"name": "integrated_gradients", "params": {"steps": 5}}]), 422, "unknown parameter"),
    (_job([{"name": "saliency", "params": {"abs": 1}}]), 422, "true or false"),
    (_job([{"name": "gradient_shap", "params": {"n_samples": 51}}]), 422, "n_samples"),
    (_job([{"name": "gradient_shap", "params": {"stdevs": -1}}]), 422, "stdevs"),
    (_job([{"name": "deeplift", "params": {"eps": 0}}]), 422, "eps"),
    (_job([{"name": "grad_cam", "params": {"layer": "nope"}}]), 422, "not a submodule"),
    (_job([{"name": "grad_cam", "params": {"layer": 3}}]), 422, "layer"),
    (_job([{"name": "occlusion", "params": {"window": 0}}]), 422, "window"),
    (_job([{"name": "shapley_values", "params": {"grid": 1}}]), 422, "model evaluations"),
    (
        _job([{"name": "saliency"}, {"name": "deeplift"}, {"name": "lrp"}], examples=[0, 1, 2, 3]),
        422,
        "cells",
    ),
]


@pytest.mark.parametrize(("body", "status", "words"), [(b, s, w) for b, s, *w in BAD_JOBS])
def test_unknown_ids_and_out_of_range_parameters(client, body, status, words):
    refused(client.post(JOBS, json=body), status, *([words] if isinstance(words, str) else words))
    healthy(client)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"offset": -1}, "offset"),
        ({"offset": "abc"}, "offset"),
        ({"limit": 0}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": 21}, "at most 20"),
        ({"model": 2}, "unknown model"),
        ({"model": "x"}, "model"),
        ({"correctness": "maybe"}, "correctness"),
        ({"predicted": "unicorn"}, "unknown class 'unicorn'"),
        ({"label": "99"}, "unknown class"),
    ],
)
def test_bad_example_queries(client, params, words):
    refused(client.get(EXAMPLES, params=params), 422, words)
    healthy(client)


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/api/workspaces/nope", 404, "unknown workspace"),
        ("GET", "/api/workspaces/nope/examples", 404, "unknown workspace"),
        ("GET", "/api/workspaces/nope/methods", 404, "unknown workspace"),
        ("POST", "/api/workspaces/nope/jobs", 404, "unknown workspace"),
        ("GET", f"{EXAMPLES}/abc", 422, "eid"),
        ("GET", f"{EXAMPLES}/-1", 422, "eid"),
        ("GET", f"{EXAMPLES}/999999", 404, "unknown example id"),
        ("GET", f"{EXAMPLES}/{10**40}", 404, "unknown example id"),
        ("GET", f"{EXAMPLES}/0/image/3", 404, "not an image feature"),
        ("GET", f"{EXAMPLES}/0/image/x", 422, "fid"),
        ("GET", f"{EXAMPLES}/999/image/0", 404, "unknown example"),
        ("GET", "/api/workspaces/default/methods/nope", 404, "unknown method"),
        ("GET", "/api/jobs/nope", 404, "unknown job"),
        ("POST", "/api/jobs/nope/cancel", 404, "unknown job"),
        ("GET", "/api/jobs/nope/export", 404, "unknown job"),
        ("GET", "/api/nothing-here", 404, "no such page"),
        ("DELETE", "/api/health", 405, "not allowed"),
        ("POST", "/api/workspaces", 405, "not allowed"),
        ("PUT", JOBS, 405, "not allowed"),
    ],
)
def test_unknown_ids_and_routes(client, method, path, status, words):
    json_body = _job() if method == "POST" and path.endswith("/jobs") else None
    refused(client.request(method, path, json=json_body), status, words)
    healthy(client)


def test_bodies_sent_to_endpoints_without_one_are_ignored(client):
    for body in ("{not json", "[]", "null", "3"):
        for path in ("/api/health", EXAMPLES, "/api/workspaces/default/methods"):
            response = client.request(
                "GET", path, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 200, (path, body, response.text)
        cancel = client.post("/api/jobs/nope/cancel", content=body)
        refused(cancel, 404, "unknown job")
    healthy(client)


def test_other_content_types_and_huge_bodies(client):
    text = {"Content-Type": "text/plain"}
    refused(client.post(JOBS, content=b"examples=0", headers=text), 422, "application/json")
    raw = b"\xff\xfe\x00"
    refused(
        client.post(JOBS, content=raw, headers={"Content-Type": "application/json"}), 400, "UTF-8"
    )
    refused(client.post(JOBS, content=b"x" * 1_000_001), 413, "larger than")
    healthy(client)


def test_export_format_and_running_jobs(client, small_workspace):
    job = client.post(JOBS, json=_job()).json()
    refused(client.get(f"/api/jobs/{job['id']}/export", params={"format": "gif"}), 422, "format")
    done = wait(client, job["id"])
    assert done["status"] == "done"
    # a job that is still running cannot be exported yet
    state = client.app.state.whybox
    running = state.runner.get(done["id"])
    running.status = "running"
    try:
        refused(client.get(f"/api/jobs/{done['id']}/export"), 409, "still running")
    finally:
        running.status = "done"


def test_the_worker_still_computes_after_all_that(client):
    job = wait(client, client.post(JOBS, json=_job([{"name": "saliency"}])).json()["id"])
    assert job["status"] == "done" and job["cells"][0]["error"] is None
    healthy(client)
