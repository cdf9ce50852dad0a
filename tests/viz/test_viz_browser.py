"""Render the HTML views in headless Chromium: offline, tokens visible, nothing executed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from _chromium import ARGS, CHROMIUM, require_chromium

require_chromium()

from playwright.sync_api import sync_playwright  # noqa: E402

from whybox import viz  # noqa: E402
from whybox.attr import visualization as cviz  # noqa: E402

TOKENS = ["The", "film", "was", "<script>", "wonderful", "&", "dull"]
VALUES = [0.05, 0.2, 0.0, -0.1, 0.9, 0.01, -0.7]


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 900, "height": 500})
        requests = []
        pg.on("request", lambda req: requests.append(req.url))
        pg.requests = requests
        pg.dialogs = []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        yield pg
        browser.close()


def open_html(page, tmp_path, html, name):
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    page.requests.clear()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    # Offline: only the file itself (and data: URIs) were requested.
    assert [u for u in page.requests if not u.startswith(("file://", "data:"))] == []
    assert page.evaluate("document.scripts.length") == 0 and page.dialogs == []


def screenshot_rgb(page):
    from matplotlib.image import imread

    return imread(io.BytesIO(page.screenshot(full_page=True)), format="png")[:, :, :3]


def test_text_chips_render(page, tmp_path):
    html = viz.text_html(torch.tensor(VALUES), tokens=TOKENS, title="Review <1>")
    open_html(page, tmp_path, html, "chips.html")
    body = page.inner_text("body")
    for tok in TOKENS:
        assert tok in body
    assert "Review <1>" in body
    chip = page.locator(".wb-chip").nth(4)
    assert chip.get_attribute("title") == "wonderful: +0.9000"
    img = screenshot_rgb(page)
    assert img.std() > 0.02  # not blank
    green = (img[:, :, 1] > img[:, :, 0] + 0.25).sum()
    red = (img[:, :, 0] > img[:, :, 1] + 0.25).sum()
    assert green > 50 and red > 50  # positive and negative chips are painted


def test_visualize_text_page_renders(page, tmp_path):
    rec = cviz.VisualizationDataRecord(
        np.array(VALUES), 0.93, "pos", "pos", "pos", 0.36, TOKENS, 0.0
    )
    out = cviz.visualize_text([rec])
    path = out.save(tmp_path / "records.html")
    open_html(page, tmp_path, Path(path).read_text(encoding="utf-8"), "records2.html")
    headers = page.locator("th").all_inner_texts()
    assert headers == [
        "True Label",
        "Predicted Label",
        "Attribution Label",
        "Attribution Score",
        "Word Importance",
    ]
    body = page.inner_text("body")
    assert "pos (0.93)" in body and "wonderful" in body and "#script" in body
    assert "Negative" in body and "Positive" in body
    assert screenshot_rgb(page).std() > 0.02


def test_tabular_and_image_pages_render(page, tmp_path):
    html = viz.attribution_html(
        np.array([0.4, -1.0, 0.2]), feature_names=["a<b", "income", "zip"], title="t"
    )
    open_html(page, tmp_path, html, "tab.html")
    assert page.locator("td").first.inner_text() == "income"
    assert "a<b" in page.inner_text("body")
    html = viz.attribution_html(torch.randn(3, 16, 16), torch.rand(3, 16, 16))
    open_html(page, tmp_path, html, "img.html")
    size = page.evaluate(
        "(() => { const i = document.querySelector('img'); "
        "return [i.complete, i.naturalWidth, i.naturalHeight]; })()"
    )
    assert size[0] and size[1] > 100 and size[2] > 100  # embedded PNG decoded offline
