"""The seed's Captum Insights code with only the import changed, served for real.

``serve(blocking=False)`` returns a port on 127.0.0.1 only; computing Integrated Gradients
through the app gives exactly ``whybox.attr.IntegratedGradients`` on the same example, with
the feature's ``input_transforms`` applied and its ``baseline_transforms`` as baselines.
"""

from __future__ import annotations

import socket
import sys
import time
import types

import httpx
import pytest
import torch

import whybox.attr
from whybox.insights import AttributionVisualizer, Batch
from whybox.insights.attr_vis.features import (
    BaseFeature,
    EmptyFeature,
    FeatureOutput,
    GeneralFeature,
    ImageFeature,
    TextFeature,
)


def seed_visualizer(kit, *, n=12):
    """The seed's cell, on a small local CNN (``normalize`` as its input transform)."""
    model = kit.tiny_model(0)
    input_imgs, labels = kit.images(n, seed=5)

    def baseline_func(input):
        return input * 0

    def formatted_data_iter():
        for start in range(0, n, 4):
            yield Batch(input_imgs[start : start + 4], labels=labels[start : start + 4])

    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: torch.nn.functional.softmax(o, 1),
        classes=kit.CLASSES,
        features=[
            ImageFeature(
                "Photo",
                baseline_transforms=[baseline_func],
                input_transforms=[kit.normalize],
            )
        ],
        dataset=formatted_data_iter(),
    )
    return visualizer, model, input_imgs, baseline_func


def wait_job(client, job_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def other_addresses():
    """This machine's non-loopback IPv4 addresses (none in some sandboxes)."""
    found = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(info[4][0])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))


def test_seed_code_serves_on_loopback_and_matches_whybox_attr(kit, capsys):
    visualizer, model, input_imgs, baseline_func = seed_visualizer(kit)
    port = visualizer.serve(blocking=False, debug=False, port=None, bind_all=False)
    try:
        assert isinstance(port, int) and port > 0
        assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
        assert visualizer._server._socket.getsockname()[0] == "127.0.0.1"
        for address in other_addresses():  # nothing listens there
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=0.5).close()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/").status_code == 200
            page = client.get("/api/workspaces/default/examples", params={"limit": 12}).json()
            assert len(page["items"]) == 12
            names = {p["predicted_name"] for i in page["items"] for p in i["predictions"]}
            assert names <= set(kit.CLASSES) and names
            # a DNS-rebinding page reaches the server under another host name: refused
            assert client.get("/api/health", headers={"Host": "evil.example"}).status_code == 400

            k = 7
            item = page["items"][k]
            predicted = item["predictions"][0]["predicted"]
            job = client.post(
                "/api/workspaces/default/jobs",
                json={"examples": [k], "methods": [{"name": "integrated_gradients"}]},
            ).json()
            job = wait_job(client, job["id"])
            [cell] = job["cells"]
            assert cell["error"] is None and cell["target"] == predicted
            exported = client.get(f"/api/jobs/{job['id']}/export?format=json").json()

        x = kit.normalize(input_imgs[k]).unsqueeze(0)
        baselines = baseline_func(kit.normalize(input_imgs[k])).unsqueeze(0)
        expected, delta = whybox.attr.IntegratedGradients(model).attribute(
            x, baselines=baselines, target=predicted, return_convergence_delta=True
        )
        got = torch.tensor(exported["cells"][0]["attributions"][0]["values"], dtype=torch.float64)
        torch.testing.assert_close(got, expected[0].double(), rtol=1e-5, atol=1e-7)
        heat = torch.tensor(cell["views"][0]["map"], dtype=torch.float64)
        torch.testing.assert_close(heat, expected[0].sum(0).double(), rtol=1e-5, atol=1e-6)
        assert cell["delta"][0] == pytest.approx(float(delta[0]), abs=1e-6)
    finally:
        visualizer.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    assert visualizer.port is None


def test_several_visualizers_stop_and_context_manager(kit, capsys):
    first, *_ = seed_visualizer(kit)
    second, *_ = seed_visualizer(kit, n=4)
    with first, second:
        a, b = first.serve(), second.serve()
        assert a != b and first.serve() == a  # serving again keeps the port
        for port, n in ((a, 12), (b, 4)):
            page = httpx.get(f"http://127.0.0.1:{port}/api/workspaces/default/examples").json()
            assert len(page["items"]) == n
    for port in (a, b):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    # the port is free again: an explicit port can be served, a busy one is refused
    third, *_ = seed_visualizer(kit, n=4)
    try:
        assert third.serve(port=a) == a
        fourth, *_ = seed_visualizer(kit, n=4)
        with pytest.raises(OSError, match="Cannot listen"):
            fourth.serve(port=a)
    finally:
        third.stop()
    capsys.readouterr()


def test_bind_all_listens_on_every_interface(kit, capsys):
    visualizer, *_ = seed_visualizer(kit, n=4)
    with visualizer:
        port = visualizer.serve(bind_all=True)
        assert visualizer._server._socket.getsockname()[0] == "0.0.0.0"
        assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
    capsys.readouterr()


def test_render_prints_the_url_or_shows_an_iframe(kit, capsys, monkeypatch):
    visualizer, *_ = seed_visualizer(kit, n=4)
    with visualizer:
        visualizer.render()
        out = capsys.readouterr().out
        assert f"Open http://127.0.0.1:{visualizer.port}/" in out

        shown = []
        display = types.ModuleType("IPython.display")
        display.IFrame = lambda src, width, height: ("iframe", src, width, height)
        display.display = shown.append
        ipython = types.ModuleType("IPython")
        ipython.display = display
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        monkeypatch.setitem(sys.modules, "IPython.display", display)
        monkeypatch.setattr("whybox.viz.html.in_notebook", lambda: True)
        visualizer.render()
        assert shown == [("iframe", visualizer.url, "100%", 820)]
    capsys.readouterr()


def test_feature_classes_keep_captums_attributes():
    def f(x):
        return x

    image = ImageFeature("Photo", baseline_transforms=f, input_transforms=[])
    assert image.baseline_transforms == [f] and image.input_transforms == []
    assert image.visualization_transform is None and image.visualization_type() == "image"
    text = TextFeature(
        "Review", baseline_transforms=None, input_transforms=[f], visualization_transform=f
    )
    assert text.visualization_type() == "text" and text.baseline_transforms == []
    general = GeneralFeature("Row", categories=["a", "b"])
    assert general.visualization_type() == "general" and general.categories == ["a", "b"]
    assert EmptyFeature().visualization_type() == "empty"
    with pytest.raises(NotImplementedError):
        BaseFeature("x", None, None, None).visualization_type()

    out = general.visualize(torch.tensor([[3.0, -4.0]]), torch.tensor([[1.0, 2.0]]), 0.5)
    assert isinstance(out, FeatureOutput)
    assert out.base == ["a: 1.00", "b: 2.00"] and out.modified == pytest.approx([60.0, -80.0])
    words = TextFeature("t", None, None, lambda ids: ["hi", "there"])
    out = words.visualize(torch.tensor([[[1.0, 1.0], [-4.0, 0.0]]]), torch.tensor([[0, 1]]), 1.0)
    assert out.base == ["hi", "there"] and out.modified == pytest.approx([50.0, -100.0])
    out = image.visualize(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), 1.0)
    assert out.type == "image" and out.base and out.modified


def test_multi_input_batches_with_additional_args(kit):
    """Two features (an image and a row of numbers) and an extra forward argument."""

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = kit.tiny_model(2)
            self.row = torch.nn.Linear(4, 10)

        def forward(self, image, row, scale):
            return self.cnn(image) + self.row(row) * scale

    torch.manual_seed(3)
    model = TwoInputs().eval()
    images, labels = kit.images(6, seed=9)
    rows = torch.randn(6, 4)
    visualizer = AttributionVisualizer(
        models=model,
        classes=kit.CLASSES,
        features=[
            ImageFeature("Photo", baseline_transforms=[], input_transforms=[kit.normalize]),
            GeneralFeature("Stats", categories=["w", "x", "y", "z"]),
        ],
        dataset=[Batch((images, rows), labels=labels, additional_args=torch.full((6, 1), 0.5))],
        score_func=lambda o: torch.softmax(o, 1),
    )
    from fastapi.testclient import TestClient

    with TestClient(visualizer.create_app()) as client:
        job = client.post(
            "/api/workspaces/default/jobs",
            json={
                "examples": [4],
                "methods": [{"name": "integrated_gradients"}],
                "target": "label",
            },
        ).json()
        [cell] = wait_job(client, job["id"])["cells"]
    assert cell["error"] is None, cell["error"]
    assert [v["type"] for v in cell["views"]] == ["image", "general"]
    assert cell["views"][1]["names"] == ["w", "x", "y", "z"]
    assert sum(abs(c["value"]) for c in cell["contributions"]) == pytest.approx(1.0)
    x = (kit.normalize(images[4]).unsqueeze(0), rows[4:5])
    expected = whybox.attr.IntegratedGradients(model).attribute(
        x, target=int(labels[4]), additional_forward_args=(torch.full((1, 1), 0.5),)
    )
    got = torch.tensor(cell["views"][1]["values"], dtype=torch.float64)
    torch.testing.assert_close(got, expected[1][0].double(), rtol=1e-5, atol=1e-7)
