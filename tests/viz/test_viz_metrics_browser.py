"""Metric result pages in headless Chromium: offline, the chart decodes, the numbers show."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from _chromium import ARGS, CHROMIUM, require_chromium

require_chromium()

from playwright.sync_api import sync_playwright  # noqa: E402

from whybox import metrics  # noqa: E402

#: where the screenshots go when WHYBOX_SCREENSHOTS names a folder (to look at them)
SHOTS = os.environ.get("WHYBOX_SCREENSHOTS")


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 900, "height": 700})
        requests = []
        pg.on("request", lambda req: requests.append(req.url))
        pg.requests = requests
        yield pg
        browser.close()


def results():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(6, 6)
    maps = x.clone().requires_grad_(True)
    model(maps)[:, 0].sum().backward()
    grads = maps.grad.detach()
    return {
        "deletion": metrics.deletion(model, x, grads, target=0, n_steps=10),
        "randomisation": metrics.model_parameter_randomisation(model, x, target=0),
        "sensitivity": metrics.max_sensitivity(model, x, target=0, n_samples=8, seed=0),
    }


@pytest.mark.parametrize("name", ["deletion", "randomisation", "sensitivity"])
def test_metric_page_renders_offline(page, tmp_path, name):
    from matplotlib.image import imread

    result = results()[name]
    path = tmp_path / f"{name}.html"
    path.write_text(result.to_html(), encoding="utf-8")
    page.requests.clear()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert [u for u in page.requests if not u.startswith(("file://", "data:"))] == []
    assert page.evaluate("document.scripts.length") == 0
    size = page.evaluate(
        "(() => { const i = document.querySelector('.wb-metric-figure img'); "
        "return [i.complete, i.naturalWidth, i.naturalHeight]; })()"
    )
    assert size[0] and size[1] > 300 and size[2] > 200  # the embedded chart decoded
    heading = page.inner_text("h1")
    assert heading == page.evaluate("document.title")
    summary = dict(
        zip(
            page.locator(".wb-metric-summary th").all_inner_texts(),
            page.locator(".wb-metric-summary td").all_inner_texts(),
        )
    )
    assert summary["examples"] == "6"
    points = page.locator(".wb-metric-points tbody tr").count()
    expected = {
        "deletion": 11,
        "randomisation": len(result.layers) if name == "randomisation" else 0,
    }
    assert points == expected.get(name, 6)
    shot = page.screenshot(full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / f"metric_{name}.png").write_bytes(shot)
    pixels = imread(io.BytesIO(shot), format="png")[:, :, :3]
    assert pixels.std() > 0.05  # a chart and a table, not a blank page
    blue = (pixels[:, :, 2] > pixels[:, :, 0] + 0.3).sum()
    assert blue > 200  # the mean line / boxes are painted
