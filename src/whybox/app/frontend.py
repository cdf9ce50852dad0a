"""The page: HTML, CSS and plain JavaScript as string constants, served by the app itself.

No build step, no framework and no CDN: the browser loads ``/``, ``/static/app.css`` and
``/static/app.js`` from the same server and then talks only to ``/api``. Strings (rather
than package data files) keep the front end inside the wheel without packaging rules.
Heat maps are drawn on canvases from the numbers the API returns, so the sign, the view
and the opacity change without asking the server again.
"""

from __future__ import annotations

__all__ = ["INDEX_HTML", "APP_CSS", "APP_JS"]

INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="static/app.css">
</head>
<body>
<header id="top">
  <div class="brand"><span class="logo">why</span>box <span class="sub">Insights</span></div>
  <select id="ws-select" aria-label="Workspace"></select>
  <div id="ws-meta" class="muted"></div>
  <div class="spacer"></div>
  <div id="status" class="muted" role="status"></div>
</header>
<div id="banner" class="banner" hidden><span id="banner-text"></span>
  <button id="banner-close" class="icon" aria-label="Dismiss">&times;</button></div>
<div id="layout">
  <aside id="side">
    <section class="panel">
      <h2>Filter</h2>
      <label class="field-label">Prediction</label>
      <div id="filter-correctness" class="segmented" role="radiogroup">
        <button data-value="all" class="on">All</button>
        <button data-value="correct">Correct</button>
        <button data-value="incorrect">Incorrect</button>
      </div>
      <div id="filter-model-row" hidden>
        <label class="field-label" for="filter-model">Predictions of</label>
        <select id="filter-model"></select>
      </div>
      <label class="field-label">Predicted class</label>
      <div id="filter-predicted" class="picker"></div>
      <label class="field-label">True class</label>
      <div id="filter-label" class="picker"></div>
    </section>
    <section class="panel">
      <h2>Explain</h2>
      <label class="field-label">Models</label>
      <div id="models" class="checks"></div>
      <label class="field-label" for="target">Explain the class</label>
      <select id="target">
        <option value="predicted">predicted by each model</option>
        <option value="label">true label</option>
      </select>
      <label class="field-label">Methods</label>
      <div id="slots"></div>
      <button id="add-slot" class="link">+ add a method to compare</button>
      <div class="actions">
        <button id="compute" class="primary">Compute</button>
        <button id="cancel" disabled>Cancel</button>
      </div>
      <div id="progress" class="progress" hidden><div class="bar"></div></div>
      <div id="progress-text" class="muted small"></div>
    </section>
  </aside>
  <main id="content">
    <section id="results" hidden>
      <div class="toolbar">
        <h2>Attributions</h2>
        <span id="image-controls">
        <div class="segmented" id="view-mode">
          <button data-value="overlay" class="on">Overlay</button>
          <button data-value="heat">Heat map</button>
          <button data-value="input">Input</button>
        </div>
        <select id="sign" aria-label="Sign">
          <option value="absolute_value">magnitude</option>
          <option value="all">signed</option>
          <option value="positive">positive only</option>
          <option value="negative">negative only</option>
        </select>
        <input id="alpha" type="range" min="0" max="1" step="0.05" value="0.8"
               title="overlay opacity" aria-label="overlay opacity">
        </span>
        <span class="legend small muted"><i class="sw pos"></i>for the class
          <i class="sw neg"></i>against</span>
        <div class="spacer"></div>
        <div class="segmented" id="export" title="Export what is shown">
          <a id="export-png" class="button" download>&#x2913; PNG</a>
          <a id="export-html" class="button" download>HTML</a>
          <a id="export-json" class="button" download>JSON</a>
        </div>
      </div>
      <div id="result-body"></div>
    </section>
    <div class="toolbar">
      <h2 id="examples-title">Examples</h2>
      <div class="spacer"></div>
      <span id="selection" class="muted small"></span>
      <button id="prev" aria-label="Previous page">&lsaquo; Prev</button>
      <span id="page-info" class="muted small"></span>
      <button id="next" aria-label="Next page">Next &rsaquo;</button>
    </div>
    <div id="examples" class="cards"></div>
  </main>
</div>
<script src="static/app.js"></script>
</body>
</html>
"""

APP_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d8dee4; --bg:#f6f8fa; --card:#fff;
        --accent:#2f6feb; --pos:#1a9850; --neg:#d73027; --sel:#dbe7ff; }
* { box-sizing: border-box; }
html, body { margin:0; height:100%; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg);
       background:var(--bg); }
header#top { display:flex; align-items:center; gap:14px; height:52px; padding:0 18px;
             background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:5; }
.brand { font-weight:700; font-size:18px; letter-spacing:.2px; }
.brand .logo { color:var(--accent); }
.brand .sub { font-weight:500; color:var(--muted); }
.spacer { flex:1; }
.muted { color:var(--muted); }
.small { font-size:12px; }
#layout { display:grid; grid-template-columns: 330px 1fr; gap:16px; padding:16px; align-items:start; }
aside .panel, main > .cards, #results { background:var(--card); border:1px solid var(--line);
  border-radius:8px; }
aside .panel { padding:12px 14px 14px; margin-bottom:16px; }
h2 { font-size:15px; margin:0 0 8px; }
.field-label { display:block; font-size:12px; color:var(--muted); margin:10px 0 4px; font-weight:600; }
select, input[type=number], input[type=text] { font:inherit; padding:4px 6px; border:1px solid var(--line);
  border-radius:6px; background:#fff; min-width:0; }
aside select { width:100%; }
button, a.button { font:inherit; padding:5px 10px; border:1px solid var(--line); border-radius:6px;
  background:#fff; color:var(--fg); cursor:pointer; text-decoration:none; display:inline-block; }
button:hover:not(:disabled), a.button:hover { background:#f3f4f6; }
button:disabled { opacity:.5; cursor:default; }
button.primary { background:var(--accent); border-color:var(--accent); color:#fff; font-weight:600; }
button.primary:hover:not(:disabled) { background:#2459c9; }
button.link { border:none; background:none; color:var(--accent); padding:4px 0; }
button.icon { border:none; background:none; font-size:18px; line-height:1; padding:0 4px; }
.segmented { display:inline-flex; border:1px solid var(--line); border-radius:6px; overflow:hidden; }
.segmented button { border:none; border-radius:0; border-right:1px solid var(--line); padding:4px 10px; }
.segmented button:last-child { border-right:none; }
.segmented a.button { border:none; border-radius:0; border-right:1px solid var(--line); padding:4px 10px; }
.segmented a.button:last-child { border-right:none; }
.segmented button.on { background:var(--sel); color:#0b3d91; font-weight:600; }
.picker { display:flex; flex-wrap:wrap; gap:4px; }
.chip { font-size:12px; padding:2px 8px; border-radius:12px; border:1px solid var(--line);
        background:#fff; cursor:pointer; }
.chip.on { background:var(--accent); border-color:var(--accent); color:#fff; }
.chip .x { margin-left:4px; }
.picker input { flex:1 1 120px; }
.checks label { display:flex; align-items:center; gap:6px; margin:2px 0; }
.slot { border:1px solid var(--line); border-radius:6px; padding:8px; margin-bottom:8px; background:#fbfcfd; }
.slot-head { display:flex; gap:6px; align-items:center; }
.slot-head select { flex:1; }
.slot .desc { font-size:12px; color:var(--muted); margin:4px 0 2px; }
.params { display:grid; grid-template-columns: 1fr 136px; gap:4px 8px; align-items:center; margin-top:6px; }
.params label { font-size:12px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.params input[type=number], .params select { width:136px; }
.params input:invalid { border-color:var(--neg); background:#fff5f5; }
.params .err { grid-column: 1 / -1; color:var(--neg); font-size:12px; }
.actions { display:flex; gap:8px; margin-top:8px; }
.actions .primary { flex:1; }
.progress { height:6px; background:#eaeef2; border-radius:3px; margin-top:10px; overflow:hidden; }
.progress .bar { height:100%; width:0; background:var(--accent); }
.toolbar { display:flex; align-items:center; gap:10px; padding:10px 12px; border-bottom:1px solid var(--line);
           flex-wrap:wrap; }
.toolbar h2 { margin:0; }
main > .toolbar { background:#fff; border:1px solid var(--line); border-bottom:none; border-radius:8px 8px 0 0; }
main > .cards { border-radius:0 0 8px 8px; }
.cards { display:grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap:10px; padding:12px; }
.card { border:1px solid var(--line); border-radius:8px; padding:8px; cursor:pointer; background:#fff;
        position:relative; }
.card:hover { border-color:#a8b3bf; }
.card.selected { border-color:var(--accent); box-shadow:0 0 0 2px var(--sel); background:#f7faff; }
.card .head { display:flex; justify-content:space-between; align-items:baseline; font-size:12px; }
.card .id { color:var(--muted); }
.card img.pix { image-rendering: pixelated; width:96px; height:96px; object-fit:contain;
        background:#000; border-radius:4px; display:block; margin:6px auto; }
.card .text { font-size:12px; margin:6px 0; max-height:5.6em; overflow:hidden; }
.card .general { font-size:11px; margin:6px 0; color:var(--muted); }
.preds { font-size:12px; }
.pred-model { font-size:11px; color:var(--muted); margin-top:4px; }
.pred { display:grid; grid-template-columns: 1fr 44px; gap:4px; align-items:center; }
.pred .name { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.pred .meter { grid-column: 1 / -1; height:3px; background:#eef1f4; border-radius:2px; margin-bottom:2px; }
.pred .meter div { height:100%; background:#8c959f; border-radius:2px; }
.pred.top .meter div { background:var(--accent); }
.pred .pct { text-align:right; color:var(--muted); font-variant-numeric: tabular-nums; }
.badge { font-size:11px; padding:0 6px; border-radius:9px; font-weight:600; }
.badge.ok { background:#dafbe1; color:#116329; }
.badge.bad { background:#ffebe9; color:#a40e26; }
#results { margin-bottom:16px; }
#result-body { padding:12px; }
.example-block { margin-bottom:18px; }
.example-block h3 { font-size:14px; margin:0 0 8px; }
.compare { display:grid; gap:10px; align-items:start; }
.compare .colhead { font-size:12px; font-weight:600; color:var(--muted); }
.compare .rowhead { font-size:12px; font-weight:600; padding-top:6px; overflow-wrap:anywhere; }
.compare .rowhead .small { font-weight:400; }
.cell { border:1px solid var(--line); border-radius:8px; padding:8px; background:#fff; min-width:0; }
.cell .meta { font-size:11px; color:var(--muted); margin-bottom:6px; }
.cell .error { color:var(--neg); font-size:12px; white-space:pre-wrap; }
.view { margin-bottom:8px; }
.view .vname { font-size:11px; color:var(--muted); margin-bottom:2px; }
canvas.heat { width:100%; max-width:220px; display:block; margin:0 auto; border-radius:4px;
              background:#fff; border:1px solid var(--line); }
.tokens { line-height:2; font-size:13px; }
.tok { padding:1px 3px; margin:0 1px; border-radius:3px; white-space:pre; }
.bars { display:grid; grid-template-columns: minmax(60px, 38%) 1fr 52px; gap:2px 8px; font-size:11px;
        align-items:center; }
.bars .bval { text-align:right; color:var(--muted); font-variant-numeric: tabular-nums; }
.bars .bname { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.bars .btrack { position:relative; height:12px; background:#f3f4f6; border-radius:2px; }
.bars .bfill { position:absolute; top:0; height:100%; border-radius:2px; }
.bars .bmid { position:absolute; left:50%; top:0; bottom:0; width:1px; background:#afb8c1; }
#image-controls { display:inline-flex; align-items:center; gap:8px; }
#alpha { width:80px; }
#image-controls[hidden] { display:none; }
.legend .sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 8px;
              vertical-align:-1px; }
.legend .sw.pos { background:var(--pos); }
.legend .sw.neg { background:var(--neg); }
.contrib { font-size:11px; color:var(--muted); margin-top:4px; }
.faith { font-size:11px; color:var(--muted); margin-top:4px; display:flex; align-items:center; gap:6px; }
.faith canvas { width:96px; height:28px; border:1px solid var(--line); border-radius:3px; background:#fff; }
.faith.good .verdict { color:#116329; font-weight:600; }
.faith.poor .verdict { color:var(--neg); font-weight:600; }
.banner { margin:12px 16px 0; padding:8px 12px; border:1px solid #ffb4ae; background:#fff1f0;
          color:#82071e; border-radius:6px; display:flex; align-items:center; gap:8px; }
.banner[hidden] { display:none; }
.banner span { flex:1; }
.empty { padding:30px; text-align:center; color:var(--muted); grid-column: 1 / -1; }
"""

APP_JS = r"""
"use strict";
(function () {
  const S = {
    wsList: [], wid: null, info: null, methods: [], byName: {},
    filter: { correctness: "all", model: 0, predicted: [], label: [] },
    offset: 0, limit: 12, page: null, items: [], selected: new Set(),
    slots: [], job: null, pollTimer: null, shownCells: -1,
    view: { mode: "overlay", sign: "absolute_value", alpha: 0.8 },
  };
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined) continue;
      node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }

  async function api(path, options) {
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      throw new Error((data && data.error) || (response.status + " " + response.statusText));
    }
    return data;
  }

  function showError(message) {
    $("#banner-text").textContent = message;
    $("#banner").hidden = false;
  }
  function clearError() { $("#banner").hidden = true; }
  function status(text) { $("#status").textContent = text; }
  const pct = (v) => v === null ? "–" : (100 * v).toFixed(v >= 0.995 || v < 0.001 ? 0 : 1) + "%";
  const fmt = (v) => (v === null || v === undefined) ? "–" :
    (Math.abs(v) >= 1e3 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(2) : v.toFixed(3);

  // ---------------------------------------------------------------- workspaces
  async function init() {
    bindStatic();
    try {
      S.wsList = await api("api/workspaces");
    } catch (e) { showError("Cannot reach the server: " + e.message); return; }
    const select = $("#ws-select");
    select.replaceChildren(...S.wsList.map(w => el("option", { value: w.id, text: w.title })));
    select.hidden = S.wsList.length < 2;
    const wanted = new URLSearchParams(location.hash.slice(1)).get("ws");
    const first = S.wsList.find(w => w.id === wanted) || S.wsList[0];
    if (first) { select.value = first.id; await loadWorkspace(first.id); }
  }

  async function loadWorkspace(wid) {
    stopPolling();
    S.wid = wid; S.offset = 0; S.selected.clear(); S.job = null; S.shownCells = -1;
    S.filter = { correctness: "all", model: 0, predicted: [], label: [] };
    $("#results").hidden = true;
    delete $("#results").dataset.status;
    delete $("#results").dataset.job;
    $("#progress").hidden = true;
    $("#progress-text").textContent = "";
    finish();
    clearError();
    try {
      [S.info, S.methods] = await Promise.all([
        api("api/workspaces/" + encodeURIComponent(wid)),
        api("api/workspaces/" + encodeURIComponent(wid) + "/methods"),
      ]);
    } catch (e) { showError(e.message); return; }
    S.byName = Object.fromEntries(S.methods.map(m => [m.name, m]));
    S.limit = Math.min(12, S.info.limits.max_page_size);
    const feats = S.info.features.map(f => f.name + " (" + f.type + ")").join(", ");
    $("#ws-meta").textContent = S.info.models.length + " model" + (S.info.models.length > 1 ? "s" : "") +
      " · " + S.info.n_classes + " classes · " + feats;
    document.title = S.info.title;
    buildFilters();
    buildModels();
    S.slots = [];
    $("#slots").replaceChildren();
    const first = S.byName["integrated_gradients"] && S.byName["integrated_gradients"].available
      ? "integrated_gradients" : (S.methods.find(m => m.available) || {}).name;
    if (first) addSlot(first);
    setSegment("#filter-correctness", "all");
    await loadExamples();
  }

  // ---------------------------------------------------------------- filters
  function setSegment(sel, value) {
    $$(sel + " button").forEach(b => b.classList.toggle("on", b.dataset.value === value));
  }

  function buildFilters() {
    const models = S.info.models;
    $("#filter-model-row").hidden = models.length < 2;
    $("#filter-model").replaceChildren(...models.map(m => el("option", { value: m.index, text: m.name })));
    buildPicker("#filter-predicted", "predicted");
    buildPicker("#filter-label", "label");
  }

  function buildPicker(sel, key) {
    const box = $(sel);
    box.replaceChildren();
    const classes = S.info.classes;
    const toggle = (index) => {
      const list = S.filter[key];
      const at = list.indexOf(index);
      if (at >= 0) list.splice(at, 1); else list.push(index);
      buildPicker(sel, key);
      refilter();
    };
    if (classes.length <= 24) {
      classes.forEach((name, index) => box.append(el("button", {
        class: "chip" + (S.filter[key].includes(index) ? " on" : ""),
        "data-kind": key, "data-index": index, title: name, text: name,
        onclick: () => toggle(index),
      })));
      return;
    }
    // many classes: chips for the chosen ones and a search box to add more
    S.filter[key].forEach(index => box.append(el("button", {
      class: "chip on", "data-kind": key, "data-index": index, onclick: () => toggle(index),
    }, classes[index], el("span", { class: "x", text: "×" }))));
    const listId = "classes-" + key;
    const input = el("input", { type: "text", list: listId, placeholder: "add a class…",
      "aria-label": key + " class" });
    input.addEventListener("change", () => {
      const index = classes.indexOf(input.value);
      if (index >= 0 && !S.filter[key].includes(index)) toggle(index);
      input.value = "";
    });
    box.append(input, el("datalist", { id: listId }, classes.map(c => el("option", { value: c }))));
  }

  // ---------------------------------------------------------------- examples
  function query() {
    const q = new URLSearchParams({ offset: S.offset, limit: S.limit, correctness: S.filter.correctness,
      model: S.filter.model });
    S.filter.predicted.forEach(i => q.append("predicted", i));
    S.filter.label.forEach(i => q.append("label", i));
    return q.toString();
  }

  // a new filter starts on its first page with its first example selected
  function refilter() { S.offset = 0; S.selected.clear(); loadExamples(); }

  async function loadExamples() {
    const box = $("#examples");
    status("loading examples…");
    let page;
    try {
      page = await api("api/workspaces/" + encodeURIComponent(S.wid) + "/examples?" + query());
    } catch (e) { status(""); showError(e.message); return; }
    S.page = page; S.items = page.items;
    status("");
    box.replaceChildren();
    if (!page.items.length) {
      box.append(el("div", { class: "empty",
        text: page.scan_limited ? "No matches in the first " + page.scanned + " examples yet — press Next to search on."
                                : "No example matches this filter." }));
    }
    for (const item of page.items) box.append(card(item));
    const from = page.items.length ? page.offset + 1 : 0;
    const to = page.offset + page.items.length;
    const of = page.total !== null ? " of " + page.total : (page.has_more ? " of " + Math.max(to + 1, page.scanned) + "+" : "");
    $("#page-info").textContent = from + "–" + to + of;
    $("#prev").disabled = page.offset === 0;
    $("#next").disabled = !page.has_more;
    if (S.selected.size === 0 && page.items.length) S.selected.add(page.items[0].id);
    refreshSelection();
  }

  function card(item) {
    const node = el("div", { class: "card", "data-id": item.id, tabindex: 0,
      onclick: () => toggleSelect(item.id), onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggleSelect(item.id); } } });
    const main = item.predictions[0];
    const badge = main && main.correct !== null
      ? el("span", { class: "badge " + (main.correct ? "ok" : "bad"), text: main.correct ? "✓ correct" : "✗ wrong" }) : null;
    node.append(el("div", { class: "head" }, el("span", { class: "id", text: "#" + item.id }), badge));
    for (const f of item.features) {
      if (f.type === "image") node.append(el("img", { class: "pix", src: f.image_url, alt: f.name }));
      else if (f.type === "text") node.append(el("div", { class: "text", text: f.tokens.join(" ") }));
      else if (f.type === "general") {
        const names = f.names.length ? f.names : f.values.map((_, i) => "x" + i);
        node.append(el("div", { class: "general",
          text: names.slice(0, 3).map((n, i) => n + " " + fmt(f.values[i])).join(" · ") + (names.length > 3 ? " …" : "") }));
      }
    }
    node.append(el("div", { class: "small" }, "True: ", el("b", { class: "label", text: item.label_name === null ? "–" : item.label_name })));
    const preds = el("div", { class: "preds" });
    for (const p of item.predictions) {
      if (item.predictions.length > 1) {
        preds.append(el("div", { class: "pred-model" }, p.model_name + " ",
          p.correct === null ? null : el("span", { class: "badge " + (p.correct ? "ok" : "bad"), text: p.correct ? "✓" : "✗" })));
      } else {
        preds.append(el("div", { class: "pred-model", text: "Predicted" }));
      }
      p.top.slice(0, item.predictions.length > 1 ? 2 : 3).forEach((t, rank) => {
        const share = Math.max(0, Math.min(1, t.score || 0));
        preds.append(el("div", { class: "pred" + (rank === 0 ? " top" : "") },
          el("span", { class: "name", title: t.name }, rank === 0 ? el("b", { text: t.name }) : t.name),
          el("span", { class: "pct", text: pct(t.score) }),
          el("div", { class: "meter" }, el("div", { style: "width:" + (100 * share).toFixed(1) + "%" }))));
      });
    }
    node.append(preds);
    if (S.selected.has(item.id)) node.classList.add("selected");
    return node;
  }

  function toggleSelect(id) {
    const max = S.info.limits.max_examples_per_job;
    if (S.selected.has(id)) S.selected.delete(id);
    else if (S.selected.size < max) S.selected.add(id);
    else { showError("At most " + max + " examples per computation."); return; }
    refreshSelection();
  }

  function refreshSelection() {
    $$("#examples .card").forEach(c => c.classList.toggle("selected", S.selected.has(Number(c.dataset.id))));
    const n = S.selected.size;
    $("#selection").textContent = n ? n + " selected" : "click examples to select";
  }

  // ---------------------------------------------------------------- models and methods
  function buildModels() {
    const box = $("#models");
    box.replaceChildren(...S.info.models.map(m => el("label", {},
      el("input", { type: "checkbox", value: m.index, checked: true, name: "model", onchange: () => S.slots.forEach(renderParams) }),
      m.name)));
    const target = $("#target");
    target.replaceChildren(
      el("option", { value: "predicted", text: "predicted by each model" }),
      el("option", { value: "label", text: "true label" }),
      ...S.info.classes.map((c, i) => el("option", { value: String(i), text: "class: " + c })));
    target.disabled = !S.info.use_label_for_attr;
  }

  function chosenModels() {
    return $$("#models input:checked").map(i => Number(i.value));
  }

  function addSlot(name) {
    const slot = { id: Math.random().toString(36).slice(2), method: name, values: {} };
    S.slots.push(slot);
    const box = el("div", { class: "slot", "data-slot": slot.id });
    const select = el("select", { class: "method", "aria-label": "Method" });
    const groups = [["Available", S.methods.filter(m => m.available)], ["Not offered", S.methods.filter(m => !m.available)]];
    for (const [label, list] of groups) {
      if (!list.length) continue;
      select.append(el("optgroup", { label }, list.map(m => el("option", {
        value: m.name, text: m.label, disabled: !m.available, title: m.available ? m.description : m.reason }))));
    }
    select.value = name;
    select.addEventListener("change", () => { slot.method = select.value; slot.values = {}; renderParams(slot); });
    const remove = el("button", { class: "icon", title: "Remove", "aria-label": "Remove method", text: "×",
      onclick: () => { if (S.slots.length < 2) return; S.slots = S.slots.filter(s => s !== slot); box.remove(); } });
    box.append(el("div", { class: "slot-head" }, select, remove), el("div", { class: "desc" }), el("div", { class: "params" }));
    $("#slots").append(box);
    slot.box = box;
    renderParams(slot);
  }

  function renderParams(slot) {
    const spec = S.byName[slot.method];
    const box = slot.box;
    $(".desc", box).textContent = spec.description;
    const grid = $(".params", box);
    grid.replaceChildren();
    for (const p of spec.params) {
      const id = slot.id + "-" + p.name;
      let input;
      const current = p.name in slot.values ? slot.values[p.name] : p.default;
      if (p.type === "bool") {
        input = el("input", { type: "checkbox", id, name: p.name, checked: !!current });
      } else if (p.type === "choice") {
        input = el("select", { id, name: p.name }, p.choices.map(c => el("option", { value: c, text: c })));
        input.value = current;
      } else if (p.type === "layer") {
        const models = chosenModels();
        const info = spec.layers[String(models.length ? models[0] : 0)] || { choices: [], default: null };
        input = el("select", { id, name: p.name },
          el("option", { value: "", text: "auto" + (info.default ? " (" + info.default + ")" : "") }),
          info.choices.map(c => el("option", { value: c, text: c })));
        input.value = current || "";
      } else {
        input = el("input", { type: "number", id, name: p.name, step: p.type === "int" ? 1 : "any",
          min: p.minimum, max: p.maximum, placeholder: p.nullable ? "auto" : null,
          required: !p.nullable, value: current === null || current === undefined ? "" : current });
      }
      input.title = p.help;
      input.addEventListener("change", () => { slot.values[p.name] = readParam(p, input); });
      grid.append(el("label", { for: id, title: p.help, text: p.name.replace(/_/g, " ") }), input);
    }
    if (!spec.params.length) grid.append(el("div", { class: "desc", text: "no parameters" }));
  }

  function readParam(p, input) {
    if (p.type === "bool") return input.checked;
    if (p.type === "choice") return input.value;
    if (p.type === "layer") return input.value || null;
    if (input.value === "") return p.nullable ? null : NaN;
    return p.type === "int" ? Number.parseInt(input.value, 10) : Number.parseFloat(input.value);
  }

  function collectMethods() {
    const out = [];
    let ok = true;
    for (const slot of S.slots) {
      const spec = S.byName[slot.method];
      const params = {};
      $$(".params .err", slot.box).forEach(e => e.remove());
      for (const p of spec.params) {
        const input = $("[name='" + p.name + "']", slot.box);
        const value = readParam(p, input);
        if (input.validity && !input.validity.valid || Number.isNaN(value)) {
          ok = false;
          const range = [p.minimum !== undefined ? "≥ " + p.minimum : null, p.maximum !== undefined ? "≤ " + p.maximum : null].filter(Boolean).join(", ");
          input.after(el("div", { class: "err", text: p.name + ": enter " + (p.type === "int" ? "an integer" : "a number") + (range ? " " + range : "") }));
        }
        params[p.name] = value;
      }
      out.push({ name: slot.method, params });
    }
    return ok ? out : null;
  }

  // ---------------------------------------------------------------- jobs
  async function compute() {
    clearError();
    const methods = collectMethods();
    if (!methods) { showError("Some parameters are out of range."); return; }
    const models = chosenModels();
    if (!models.length) { showError("Choose at least one model."); return; }
    if (!S.selected.size && S.items.length) S.selected.add(S.items[0].id);
    const tv = $("#target").value;
    const body = { examples: Array.from(S.selected), models, methods,
      target: /^\d+$/.test(tv) ? Number(tv) : tv };
    let job;
    try {
      job = await api("api/workspaces/" + encodeURIComponent(S.wid) + "/jobs", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    } catch (e) { showError(e.message); return; }
    S.job = job; S.shownCells = -1;
    $("#compute").disabled = true; $("#cancel").disabled = false;
    $("#progress").hidden = false;
    track(job);
    poll();
  }

  function stopPolling() { if (S.pollTimer) clearTimeout(S.pollTimer); S.pollTimer = null; }

  async function poll() {
    stopPolling();
    if (!S.job) return;
    let job;
    const seen = S.job.cells ? S.job.cells.length : 0;
    try { job = await api("api/jobs/" + S.job.id + "?since=" + seen); }
    catch (e) { showError(e.message); finish(); return; }
    if (!S.job || job.id !== S.job.id) return;
    // only the new cells travel: keep the ones already shown
    job.cells = (S.job.cells || []).slice(0, job.cells_from).concat(job.cells);
    S.job = job;
    track(job);
    if (job.status === "queued" || job.status === "running") S.pollTimer = setTimeout(poll, 200);
    else finish();
  }

  function finish() {
    $("#compute").disabled = false; $("#cancel").disabled = true;
  }

  async function cancel() {
    if (!S.job) return;
    try { await api("api/jobs/" + S.job.id + "/cancel", { method: "POST" }); }
    catch (e) { showError(e.message); }
  }

  function track(job) {
    const p = job.progress;
    $("#progress .bar").style.width = (100 * p.fraction).toFixed(1) + "%";
    const words = { queued: "queued", running: "computing", done: "done", failed: "failed", cancelled: "cancelled" };
    $("#progress-text").textContent = words[job.status] + " · " + p.done + " / " + p.total +
      (job.status === "running" && p.current ? " · " + p.current : "") + (job.error ? " · " + job.error : "");
    $("#results").dataset.status = job.status;
    $("#results").dataset.job = job.id;
    if (job.cells && job.cells.length !== S.shownCells) { S.shownCells = job.cells.length; renderResults(job); }
    const done = !(job.status === "queued" || job.status === "running");
    for (const fmt of ["png", "html", "json"]) {
      const a = $("#export-" + fmt);
      a.href = "api/jobs/" + job.id + "/export?format=" + fmt;
      a.setAttribute("download", "whybox-" + job.id + "." + fmt);
      a.classList.toggle("disabled", !done);
      a.style.pointerEvents = done ? "" : "none";
      a.style.opacity = done ? "" : "0.5";
    }
  }

  // ---------------------------------------------------------------- results
  function renderResults(job) {
    const body = $("#result-body");
    $("#results").hidden = false;
    body.replaceChildren();
    const models = job.request.models;
    const methods = job.request.methods;
    for (const eid of job.request.examples) {
      const item = S.items.find(i => i.id === eid);
      const title = "Example #" + eid + (item && item.label_name !== null ? " · true: " + item.label_name : "");
      const grid = el("div", { class: "compare",
        style: "grid-template-columns: 130px repeat(" + models.length + ", minmax(170px, 1fr))" });
      grid.append(el("div"));
      models.forEach(m => grid.append(el("div", { class: "colhead", text: S.info.models[m].name })));
      methods.forEach((method, k) => {
        const spec = S.byName[method.name] || { label: method.name };
        // the parameters that differ from the method's defaults say what this row is
        const defaults = Object.fromEntries((spec.params || []).map(p => [p.name, p.default]));
        const summary = Object.entries(method.params).filter(([n, v]) => v !== null && v !== defaults[n])
          .map(([n, v]) => n + "=" + v).join(", ");
        grid.append(el("div", { class: "rowhead" }, spec.label, el("div", { class: "small muted", text: summary })));
        models.forEach(m => {
          const cell = job.cells.find(c => c.example === eid && c.model === m && c.method === method.name &&
            JSON.stringify(c.params) === JSON.stringify(method.params));
          grid.append(cell ? cellNode(cell) : el("div", { class: "cell muted small", text: job.status === "cancelled" ? "cancelled" : "…" }));
        });
      });
      body.append(el("div", { class: "example-block", "data-example": eid }, el("h3", { text: title }), grid));
    }
    $("#image-controls").hidden = !$("canvas.heat", body);
  }

  function cellNode(cell) {
    const node = el("div", { class: "cell", "data-method": cell.method, "data-model": cell.model });
    if (cell.error) { node.append(el("div", { class: "error", text: cell.error })); return node; }
    const bits = [];
    if (cell.target_name !== null) bits.push("target: " + cell.target_name);
    if (cell.delta && cell.delta.length) {
      const worst = Math.max(...cell.delta.map(d => Math.abs(d || 0)));
      bits.push("δ " + fmt(worst));
    }
    bits.push(cell.seconds.toFixed(2) + " s");
    node.append(el("div", { class: "meta", text: bits.join(" · ") }));
    for (const view of cell.views) node.append(viewNode(view));
    if (cell.contributions) {
      node.append(el("div", { class: "contrib", text: "contribution: " +
        cell.contributions.map(c => c.name + " " + (100 * c.value).toFixed(0) + "%").join(" · ") }));
    }
    if (cell.faithfulness) node.append(faithNode(cell.faithfulness));
    for (const w of cell.warnings || []) node.append(el("div", { class: "small muted", text: "⚠ " + w }));
    return node;
  }

  // the deletion check: the explained output as the features the map ranks first are
  // removed (blue) against random orders (grey); a faithful map falls faster (less area)
  function faithNode(f) {
    const known = f.morf_auc !== null && f.random_auc !== null;
    const faster = known && f.morf_auc < f.random_auc;
    const box = el("div", { class: "faith" + (known ? (faster ? " good" : " poor") : ""),
      title: "Deletion check: the explained output as the features this map ranks first are " +
        "removed (blue) and in " + f.n_random + " random orders (grey, their mean). A faithful " +
        "map makes the output fall faster than random: a smaller area under its curve." });
    const canvas = el("canvas", { class: "spark", width: 96, height: 28 });
    drawSpark(canvas, f);
    box.append(canvas, el("span", {},
      el("span", { class: "verdict", text: known ? (faster ? "beats random" : "no better than random") : "deletion" }),
      " · AUC " + fmt(f.morf_auc) + " vs random " + fmt(f.random_auc)));
    return box;
  }

  function drawSpark(canvas, f) {
    const ctx = canvas.getContext("2d");
    const values = f.morf.concat(f.random).filter(v => v !== null);
    if (!values.length) return;
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
    const x = (t) => 2 + t * (canvas.width - 4);
    const y = (v) => canvas.height - 2 - (v - lo) / (hi - lo) * (canvas.height - 4);
    const line = (curve, colour, dash) => {
      ctx.beginPath();
      ctx.setLineDash(dash);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      let open = false;
      curve.forEach((v, i) => {
        if (v === null) { open = false; return; }
        const px = x(f.fractions[i]), py = y(v);
        if (open) ctx.lineTo(px, py); else { ctx.moveTo(px, py); open = true; }
      });
      ctx.stroke();
    };
    line(f.random, "#8c959f", [3, 2]);
    line(f.morf, "#1f4e9c", []);
  }

  function viewNode(view) {
    const name = view.feature || view.layer || "";
    const box = el("div", { class: "view" }, el("div", { class: "vname", text: name }));
    if (view.map) {
      const canvas = el("canvas", { class: "heat", "data-feature": name });
      canvas._view = view;
      box.append(canvas);
      paint(canvas);
    } else if (view.type === "text") {
      box.append(tokensNode(view.tokens, view.values));
    } else if (view.values) {
      box.append(barsNode(view.names, view.values));
    }
    return box;
  }

  // the colour of a normalised value: green positive, red negative, orange magnitude
  function colour(v, sign) {
    if (sign === "absolute_value") return [255, 128, 0];
    if (sign === "negative") return [215, 48, 39];
    if (sign === "positive") return [26, 152, 80];
    return v >= 0 ? [26, 152, 80] : [215, 48, 39];
  }

  function normalise(values, sign, outlier) {
    const kept = values.map(v => sign === "all" ? v : sign === "positive" ? Math.max(v, 0) :
      sign === "negative" ? Math.max(-v, 0) : Math.abs(v));
    // the value below which (100 - outlier)% of the total magnitude lies saturates the scale
    const mags = kept.map(Math.abs).sort((a, b) => a - b);
    const total = mags.reduce((a, b) => a + b, 0);
    let scale = 0;
    if (total > 0) {
      let run = 0;
      const goal = total * (100 - outlier) / 100;
      for (const m of mags) { run += m; if (run >= goal) { scale = m; break; } }
      if (!scale) scale = mags[mags.length - 1];
    }
    return kept.map(v => scale ? Math.max(-1, Math.min(1, v / scale)) : 0);
  }

  const imageCache = {};
  function loadImage(src) {
    if (!imageCache[src]) {
      imageCache[src] = new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => resolve(null);
        img.src = src;
      });
    }
    return imageCache[src];
  }

  async function paint(canvas) {
    const view = canvas._view;
    const { mode, sign, alpha } = S.view;
    const h = view.height, w = view.width;
    const img = view.image ? await loadImage(view.image) : null;
    const baseW = img ? img.naturalWidth : w, baseH = img ? img.naturalHeight : h;
    const cssW = 220, cssH = Math.round(cssW * baseH / baseW);
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * ratio); canvas.height = Math.round(cssH * ratio);
    canvas.style.aspectRatio = baseW + " / " + baseH;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    const smallImage = img && Math.max(baseW, baseH) < 96;
    if (img && mode !== "heat") {
      ctx.imageSmoothingEnabled = !smallImage;
      // overlay: a grey copy of the picture under the heat map (Captum's blend)
      ctx.filter = mode === "overlay" ? "grayscale(1) contrast(0.8)" : "none";
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      ctx.filter = "none";
    }
    if (mode === "input") { canvas.dataset.painted = mode + ":" + sign; return; }
    const flat = view.map.flat();
    const norm = normalise(flat, sign, 2);
    const off = document.createElement("canvas");
    off.width = w; off.height = h;
    const octx = off.getContext("2d");
    const pixels = octx.createImageData(w, h);
    for (let i = 0; i < norm.length; i++) {
      const [r, g, b] = colour(norm[i], sign);
      pixels.data[4 * i] = r; pixels.data[4 * i + 1] = g; pixels.data[4 * i + 2] = b;
      pixels.data[4 * i + 3] = Math.round(255 * Math.abs(norm[i]));
    }
    octx.putImageData(pixels, 0, 0);
    // a layer map smaller than the picture is stretched smoothly (as Grad-CAM upsamples)
    ctx.imageSmoothingEnabled = view.type === "layer" && (w < baseW || h < baseH) ? true : !(Math.max(w, h) < 96);
    ctx.globalAlpha = mode === "overlay" && img ? alpha : 1;
    ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
    canvas.dataset.painted = mode + ":" + sign;
  }

  function repaintAll() { $$("canvas.heat").forEach(paint); }

  function tokensNode(tokens, values) {
    const max = Math.max(1e-12, ...values.map(Math.abs));
    return el("div", { class: "tokens" }, tokens.map((t, i) => {
      const v = values[i] / max;
      const [r, g, b] = colour(v, "all");
      return el("span", { class: "tok", title: t + ": " + fmt(values[i]),
        style: "background: rgba(" + r + "," + g + "," + b + "," + (0.85 * Math.abs(v)).toFixed(3) + ")" }, t);
    }));
  }

  function barsNode(names, values) {
    const order = values.map((v, i) => i).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a])).slice(0, 12);
    const max = Math.max(1e-12, ...values.map(Math.abs));
    const box = el("div", { class: "bars" });
    for (const i of order) {
      const v = values[i], width = 50 * Math.abs(v) / max;
      const [r, g, b] = colour(v, "all");
      box.append(el("div", { class: "bname", title: names[i] + ": " + fmt(v), text: names[i] }),
        el("div", { class: "btrack", title: fmt(v) }, el("div", { class: "bmid" }),
          el("div", { class: "bfill", style: (v >= 0 ? "left:50%;" : "right:50%;") + "width:" + width.toFixed(1) +
            "%;background:rgb(" + r + "," + g + "," + b + ")" })),
        el("div", { class: "bval", text: fmt(v) }));
    }
    return box;
  }

  // ---------------------------------------------------------------- wiring
  function bindStatic() {
    $("#banner-close").addEventListener("click", clearError);
    $("#ws-select").addEventListener("change", (e) => loadWorkspace(e.target.value));
    $$("#filter-correctness button").forEach(b => b.addEventListener("click", () => {
      S.filter.correctness = b.dataset.value; setSegment("#filter-correctness", b.dataset.value);
      refilter();
    }));
    $("#filter-model").addEventListener("change", (e) => { S.filter.model = Number(e.target.value); refilter(); });
    $("#prev").addEventListener("click", () => { S.offset = Math.max(0, S.offset - S.limit); loadExamples(); });
    $("#next").addEventListener("click", () => { S.offset += S.limit; loadExamples(); });
    $("#add-slot").addEventListener("click", () => {
      if (S.slots.length >= S.info.limits.max_methods_per_job) { showError("At most " + S.info.limits.max_methods_per_job + " methods at once."); return; }
      const used = new Set(S.slots.map(s => s.method));
      const next = S.methods.find(m => m.available && !used.has(m.name)) || S.methods.find(m => m.available);
      addSlot(next.name);
    });
    $("#compute").addEventListener("click", compute);
    $("#cancel").addEventListener("click", cancel);
    $$("#view-mode button").forEach(b => b.addEventListener("click", () => {
      S.view.mode = b.dataset.value; setSegment("#view-mode", b.dataset.value); repaintAll();
    }));
    $("#sign").addEventListener("change", (e) => { S.view.sign = e.target.value; repaintAll(); });
    $("#alpha").addEventListener("input", (e) => { S.view.alpha = Number(e.target.value); repaintAll(); });
  }

  window.whybox = { state: S, repaintAll };
  document.addEventListener("DOMContentLoaded", init);
})();
"""
