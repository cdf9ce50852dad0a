"""The app end to end in headless Chromium, with every request outside 127.0.0.1 blocked:
load, filter, pick a method, change a parameter, compute, see the heat map change, compare
methods and models side by side, export. Screenshots go to /tmp/whybox-app/."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from _chromium import ARGS, CHROMIUM, require_chromium

require_chromium()

from playwright.sync_api import sync_playwright  # noqa: E402

import whybox.attr  # noqa: E402
from whybox.app import AppServer, create_app, demo_workspaces  # noqa: E402
from whybox.insights import AttributionVisualizer, Batch  # noqa: E402
from whybox.insights.attr_vis.features import ImageFeature  # noqa: E402

SHOTS = Path("/tmp/whybox-app")


@pytest.fixture(scope="module")
def demo_server(demo_cache):
    torch.set_num_threads(1)
    spaces = demo_workspaces(cache_dir=demo_cache)
    server = AppServer(create_app(spaces, allowed_hosts=["127.0.0.1"]))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    outside, errors = [], []

    def only_loopback(route):
        url = route.request.url
        if url.startswith("data:") or urlparse(url).hostname == "127.0.0.1":
            route.continue_()
        else:  # offline: nothing may leave the machine
            outside.append(url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert outside == [], outside
    assert errors == [], errors


def wait_done(pg, previous=None):
    """Wait for a finished job (a new one when ``previous`` is the last job id)."""
    pg.wait_for_function(
        "prev => { const r = document.querySelector('#results');"
        " return r && r.dataset.status === 'done' && r.dataset.job !== prev; }",
        arg=previous or "",
        timeout=30_000,
    )
    pg.wait_for_function(
        "() => [...document.querySelectorAll('canvas.heat')].every(c => c.dataset.painted)"
    )
    return pg.get_attribute("#results", "data-job")


def shot(pg, name, *, full_page=False):
    """A screenshot once every picture has loaded, from the top of the page."""
    pg.wait_for_function("() => [...document.images].every(i => i.complete)")
    pg.evaluate("() => window.scrollTo(0, 0)")
    pg.screenshot(path=str(SHOTS / name), full_page=full_page)


def heat_pixels(pg):
    return pg.eval_on_selector("canvas.heat", "c => c.toDataURL()")


def download(pg, selector):
    with pg.expect_download() as info:
        pg.click(selector)
    return Path(info.value.path()).read_bytes()


def test_browse_filter_explain_compare_export(page, demo_server):
    pg = page
    pg.goto(demo_server.url + "#ws=digits")
    pg.wait_for_selector("#examples .card")
    assert pg.locator("#examples .card").count() == 12
    assert "Digits CNN" in pg.inner_text("#examples")
    shot(pg, "01-load.png")

    # filter: the CNN's mistakes only
    pg.click("#filter-correctness button[data-value=incorrect]")
    pg.wait_for_function(
        "() => { const cards = [...document.querySelectorAll('#examples .card')];"
        " return cards.length && cards.every(c => c.querySelector('.head .badge.bad')); }"
    )
    assert pg.locator("#examples .card.selected").count() == 1
    shot(pg, "02-incorrect.png")

    # pick a method, change a parameter, compute: the heat map appears
    pg.select_option(".slot select.method", "occlusion")
    pg.fill(".slot [name=window]", "2")
    pg.fill(".slot [name=stride]", "1")
    pg.click("#compute")
    job = wait_done(pg)
    first = heat_pixels(pg)
    assert pg.locator("#result-body .cell[data-method=occlusion]").count() == 2  # two models
    shot(pg, "03-occlusion.png")

    # a new parameter value recomputes and the picture changes
    pg.fill(".slot [name=window]", "4")
    pg.click("#compute")
    job = wait_done(pg, job)
    second = heat_pixels(pg)
    assert second != first
    # the sign is drawn in the browser: no new job, a different picture
    pg.select_option("#sign", "all")
    pg.wait_for_function(
        "() => document.querySelector('canvas.heat').dataset.painted === 'overlay:all'"
    )
    assert heat_pixels(pg) != second and pg.get_attribute("#results", "data-job") == job

    # a second method side by side (two methods x two models)
    pg.click("#add-slot")
    pg.locator(".slot select.method").nth(1).select_option("integrated_gradients")
    pg.locator(".slot").nth(1).locator("[name=n_steps]").fill("16")
    pg.click("#compute")
    job = wait_done(pg, job)
    assert pg.locator("#result-body .cell[data-method=integrated_gradients]").count() == 2
    assert pg.locator("#result-body .cell[data-method=occlusion]").count() == 2
    assert "δ" in pg.inner_text("#result-body .cell[data-method=integrated_gradients] .meta")
    # every cell's deletion check: a verdict, the two areas and a drawn sparkline
    faith = pg.locator("#result-body .cell .faith")
    assert faith.count() == 4
    text = faith.first.inner_text()
    assert "AUC" in text and "vs random" in text and "random" in faith.first.get_attribute("title")
    painted = pg.evaluate(
        "() => { const c = document.querySelector('.faith canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"
    )
    assert painted > 30
    shot(pg, "04-compare.png", full_page=True)

    # export what is shown
    exported = json.loads(download(pg, "#export-json"))
    assert exported["job"] == job and len(exported["cells"]) == 4
    assert download(pg, "#export-png")[:8] == b"\x89PNG\r\n\x1a\n"
    html = download(pg, "#export-html").decode("utf-8")
    assert "<script" not in html and "data:image/png;base64," in html

    # a parameter out of range is caught in the form, before any request
    pg.locator(".slot").nth(1).locator("[name=n_steps]").fill("0")
    pg.click("#compute")
    pg.wait_for_selector(".slot .params .err")
    assert "n_steps" in pg.inner_text(".slot .params .err")
    assert pg.get_attribute("#results", "data-job") == job


def test_text_and_tabular_views(page, demo_server):
    pg = page
    pg.goto(demo_server.url + "#ws=text")
    pg.wait_for_selector("#examples .card")
    pg.click("#compute")
    job = wait_done(pg)
    assert pg.locator("#result-body .tok").count() >= 3
    shot(pg, "05-text.png")

    pg.select_option("#ws-select", "tabular")
    pg.wait_for_function(
        "() => document.querySelector('#ws-meta').textContent.includes('Measurements')"
    )
    pg.wait_for_selector("#examples .card")
    pg.click("#compute")
    wait_done(pg, job)
    assert pg.locator("#result-body .bars .bfill").count() == 12
    assert pg.is_hidden("#image-controls")
    shot(pg, "06-tabular.png")


def test_seed_visualizer_page_shows_classes_and_the_heat_map_numbers(page, kit, capsys):
    model = kit.tiny_model(0)
    input_imgs, labels = kit.images(8, seed=5)

    def baseline_func(input):
        return input * 0

    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: torch.nn.functional.softmax(o, 1),
        classes=kit.CLASSES,
        features=[
            ImageFeature(
                "Photo", baseline_transforms=[baseline_func], input_transforms=[kit.normalize]
            )
        ],
        dataset=[Batch(input_imgs, labels=labels)],
    )
    with visualizer:
        port = visualizer.serve(blocking=False)
        pg = page
        pg.goto(f"http://127.0.0.1:{port}/")
        pg.wait_for_selector("#examples .card")
        with torch.no_grad():
            probs = torch.softmax(model(torch.stack([kit.normalize(i) for i in input_imgs])), 1)
        predicted = [kit.CLASSES[i] for i in probs.argmax(1).tolist()]
        names = pg.locator("#examples .card .pred.top .name").all_inner_texts()
        assert names == predicted
        pg.click("#compute")
        wait_done(pg)
        shot(pg, "07-seed.png")
        shown = pg.evaluate("() => window.whybox.state.job.cells[0].views[0].map")
    x = kit.normalize(input_imgs[0]).unsqueeze(0)
    expected = whybox.attr.IntegratedGradients(model).attribute(
        x, baselines=baseline_func(x), target=int(probs[0].argmax())
    )
    torch.testing.assert_close(
        torch.tensor(shown, dtype=torch.float64), expected[0].sum(0).double(), rtol=1e-5, atol=1e-6
    )
    capsys.readouterr()
