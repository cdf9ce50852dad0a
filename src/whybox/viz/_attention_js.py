"""Inline CSS and JavaScript of the attention views (:mod:`whybox.viz.attention`).

Kept as Python strings rather than package data so the views work from any install
(wheel, editable, zipapp) without resource lookups. Plain ES5-compatible script with no
loader (no require.js, no d3): notebook front ends that strip AMD loaders or block the
network still run it. Every CSS rule is scoped under ``.wbav`` so a view never restyles
the notebook around it. Token text only ever reaches the DOM through ``textContent``;
the SVG built from strings holds numbers and colours only.
"""

from __future__ import annotations

ATTENTION_CSS = """
.wbav { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
        sans-serif; color: #222; background: #fff; padding: 10px 14px 14px;
        border-radius: 6px; box-sizing: border-box; max-width: 100%; overflow-x: auto;
        text-align: left; }
.wbav * { box-sizing: border-box; }
.wbav.wbav-dark { background: #121212; color: #ddd; }
.wbav-title { font-weight: 600; margin: 0 0 6px; }
.wbav-note { color: #888; font-size: 12px; margin: 0 0 6px; }
.wbav-bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px;
            margin: 0 0 6px; user-select: none; }
.wbav-bar label { display: inline-flex; align-items: center; gap: 5px; }
.wbav select { font: inherit; padding: 1px 4px; border-radius: 4px; border: 1px solid #bbb;
               background: #fff; color: #222; }
.wbav-dark select { background: #222; color: #ddd; border-color: #555; }
.wbav-muted { color: #777; }
.wbav-summary { margin-left: auto; font-size: 12px; }
.wbav-dark .wbav-muted { color: #999; }
.wbav-heads { display: inline-flex; flex-wrap: wrap; gap: 3px; }
.wbav-hbtn { font: inherit; font-size: 11px; min-width: 24px; height: 22px; padding: 0 4px;
             border: 2px solid var(--wbav-c); background: var(--wbav-c); color: #fff;
             border-radius: 4px; cursor: pointer; font-variant-numeric: tabular-nums; }
.wbav-hbtn.wbav-off { background: transparent; color: var(--wbav-c); opacity: .6; }
.wbav-tbtn { font: inherit; font-size: 11px; height: 22px; padding: 0 7px; cursor: pointer;
             border: 1px solid #bbb; border-radius: 4px; background: #f4f4f4; color: #333; }
.wbav-dark .wbav-tbtn { background: #2a2a2a; color: #ddd; border-color: #555; }
.wbav-readout { min-height: 18px; font-size: 12px; color: #555; margin: 0 0 8px;
                white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.wbav-dark .wbav-readout { color: #aaa; }
.wbav-readout b { color: #111; font-weight: 600; white-space: pre; }
.wbav-dark .wbav-readout b { color: #fff; }
.wbav-num { font-variant-numeric: tabular-nums; }
.wbav-panel { display: flex; align-items: flex-start; }
.wbav-col { display: flex; flex-direction: column; min-width: 3em; }
.wbav-tok { height: 20px; line-height: 20px; padding: 0 6px; white-space: pre;
            border-radius: 3px; cursor: default; max-width: 16em; overflow: hidden;
            text-overflow: ellipsis; font-variant-ligatures: none; }
.wbav-left .wbav-tok { text-align: right; }
.wbav-tok:hover, .wbav-tok.wbav-on { background: #e6e6e6; }
.wbav-tok.wbav-on { font-weight: 600; }
.wbav-dark .wbav-tok:hover, .wbav-dark .wbav-tok.wbav-on { background: #333; }
.wbav-mid { flex: none; }
.wbav-svg { display: block; overflow: visible; }
.wbav-strip { display: flex; flex-wrap: wrap; gap: 2px 3px; margin: 0 0 10px;
              max-height: 9.5em; overflow-y: auto; }
.wbav-chip { padding: 0 4px; border: 1px solid #ddd; border-radius: 3px; white-space: pre;
             cursor: default; line-height: 18px; }
.wbav-dark .wbav-chip { border-color: #444; }
.wbav-chip:hover, .wbav-chip.wbav-on { background: #e6e6e6; }
.wbav-dark .wbav-chip:hover, .wbav-dark .wbav-chip.wbav-on { background: #333; }
.wbav-grid { display: flex; flex-direction: column; gap: 4px; }
.wbav-grow { display: flex; align-items: center; gap: 4px; }
.wbav-rlabel { flex: none; width: 54px; font-size: 11px; text-align: right; padding-right: 4px;
               color: #666; font-variant-numeric: tabular-nums; }
.wbav-dark .wbav-rlabel { color: #999; }
.wbav-clabel { flex: none; font-size: 11px; text-align: center; color: #666;
               font-variant-numeric: tabular-nums; }
.wbav-dark .wbav-clabel { color: #999; }
.wbav-thumb { flex: none; display: block; border: 1px solid #e2e2e2; border-radius: 3px;
              background: #fcfcfc; cursor: pointer; }
.wbav-dark .wbav-thumb { border-color: #2c2c2c; background: #000; }
.wbav-thumb:hover { border-color: #888; }
.wbav-thumb.wbav-sel { outline: 2px solid #1f77b4; outline-offset: 1px; }
.wbav-dark .wbav-thumb.wbav-sel { outline-color: #eee; }
.wbav-detail { margin: 4px 0 8px 58px; padding: 8px 12px 12px; border: 1px solid #ddd;
               border-radius: 6px; background: #fff; align-self: flex-start; }
.wbav-dark .wbav-detail { border-color: #3a3a3a; background: #181818; }
.wbav-detail .wbav-readout { white-space: normal; width: 0; min-width: 100%; min-height: 34px; }
.wbav-dhead { display: flex; align-items: center; gap: 12px; margin: 0 0 4px;
              font-weight: 600; }
.wbav-close { font: inherit; font-size: 16px; line-height: 1; padding: 0 6px; height: 22px;
              border: 1px solid transparent; border-radius: 4px; background: transparent;
              color: inherit; cursor: pointer; }
.wbav-close:hover { border-color: #999; }
.wbav-error { color: #b00020; white-space: pre-wrap; font-family: ui-monospace, monospace; }
""".strip()

# __WBAV_UID__ is replaced by the view's id (hex only) when the page is built.
ATTENTION_JS = r"""
(function () {
  "use strict";
  var UID = "__WBAV_UID__";
  var ROW = 20, SPAN = 210, MIN_LINE = 0.01, MIN_FOCUS = 0.001, TOP = 6;
  // The tab10 colours (matplotlib's default cycle), then golden-angle hues.
  var BASE = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
              [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
              [188, 189, 34], [23, 190, 207]];

  function hsl(h, s, l) {
    var a = s * Math.min(l, 1 - l);
    function f(n) {
      var k = (n + h / 30) % 12;
      return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    }
    return [f(0), f(8), f(4)];
  }
  function rgb(i) { return i < BASE.length ? BASE[i] : hsl((i * 137.508) % 360, 0.6, 0.5); }
  function css(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function op(w) { return w <= 0 ? "0" : (w >= 1 ? "1" : w.toFixed(3)); }

  // Weights of one view: a (query range) x (key range) window of one matrix.
  function accessor(P, vi) {
    var v = P.views[vi], m = P.mats[v.mat], q0 = v.q[0], k0 = v.k[0];
    return {
      v: v, m: m, nq: v.left.length, nk: v.right.length,
      w: function (l, h, i, j) { return m.attn[l][h][q0 + i][k0 + j]; }
    };
  }

  function column(tokens, side, pos0) {
    var col = node("div", "wbav-col wbav-" + side);
    for (var i = 0; i < tokens.length; i++) {
      var t = node("div", "wbav-tok", tokens[i]);
      t.setAttribute("data-i", String(i));
      t.title = (side === "left" ? "query #" : "key #") + (pos0 + i) + "  " + tokens[i];
      col.appendChild(t);
    }
    return col;
  }

  // Width of the weight-box strip beside each token column: one slot per head, fixed
  // by the number of heads in the matrix so toggling heads never moves the columns.
  function stripWidth(slots) { return Math.max(26, Math.min(80, 8 + 4 * slots)); }

  // One attention panel: query tokens | lines (+ weight boxes) | key tokens.
  // heads: [{h: position in the matrix, label: head number, css: colour, slot: box slot}].
  function drawPanel(host, A, l, layerLabel, heads, readout, hint, slots) {
    host.textContent = "";
    var STRIP = stripWidth(slots);
    var nq = A.nq, nk = A.nk, H = Math.max(nq, nk) * ROW, W = SPAN + 2 * STRIP;
    var x1 = STRIP, x2 = STRIP + SPAN, a, i, j, w;
    var panel = node("div", "wbav-panel");
    var left = column(A.v.left, "left", A.v.qpos), right = column(A.v.right, "right", A.v.kpos);
    var mid = node("div", "wbav-mid");
    panel.appendChild(left); panel.appendChild(mid); panel.appendChild(right);
    host.appendChild(panel);
    function y(k) { return k * ROW + ROW / 2; }
    var parts = [];
    for (a = 0; a < heads.length; a++) {
      parts.push('<g stroke="' + heads[a].css + '" data-h="' + heads[a].label + '">');
      for (i = 0; i < nq; i++) {
        for (j = 0; j < nk; j++) {
          w = A.w(l, heads[a].h, i, j);
          if (w >= MIN_LINE) {
            parts.push('<line x1="' + x1 + '" y1="' + y(i) + '" x2="' + x2 + '" y2="' + y(j) +
                       '" stroke-opacity="' + op(w) + '"/>');
          }
        }
      }
      parts.push("</g>");
    }
    mid.innerHTML = '<svg class="wbav-svg" width="' + W + '" height="' + H + '" viewBox="0 0 ' +
      W + " " + H + '"><g class="wbav-base" stroke-width="2">' + parts.join("") +
      '</g><g class="wbav-focus" stroke-width="2"></g><g class="wbav-boxes"></g></svg>';
    var gBase = mid.querySelector(".wbav-base"), gFocus = mid.querySelector(".wbav-focus");
    var gBox = mid.querySelector(".wbav-boxes");
    var bw = Math.min(12, (STRIP - 8) / Math.max(1, slots));
    var current = null;

    function setHint() {
      readout.textContent = heads.length ? hint : "No head selected: click a head to show it.";
    }
    function unfocus() {
      if (current) { current.classList.remove("wbav-on"); current = null; }
      gBase.removeAttribute("visibility");
      gFocus.innerHTML = ""; gBox.innerHTML = "";
      setHint();
    }
    function focus(side, idx, el) {
      if (current) { current.classList.remove("wbav-on"); }
      current = el; el.classList.add("wbav-on");
      var fromLeft = side === "left", n = fromLeft ? nk : nq, lines = [], boxes = [], mean = [];
      var t, qi, kj;
      for (t = 0; t < n; t++) { mean.push(0); }
      for (a = 0; a < heads.length; a++) {
        lines.push('<g stroke="' + heads[a].css + '">');
        for (t = 0; t < n; t++) {
          qi = fromLeft ? idx : t; kj = fromLeft ? t : idx;
          w = A.w(l, heads[a].h, qi, kj);
          mean[t] += w / heads.length;
          if (w >= MIN_FOCUS) {
            lines.push('<line class="wbav-fl" data-h="' + heads[a].label + '" data-i="' + qi +
                       '" data-j="' + kj + '" x1="' + x1 + '" y1="' + y(qi) + '" x2="' + x2 +
                       '" y2="' + y(kj) + '" stroke-opacity="' + op(w) + '"/>');
            var bx = fromLeft ? x2 + 5 + heads[a].slot * bw : x1 - 5 - (heads[a].slot + 1) * bw;
            boxes.push('<rect x="' + bx + '" y="' + (t * ROW + 3) + '" width="' + bw +
                       '" height="' + (ROW - 6) + '" fill="' + heads[a].css +
                       '" fill-opacity="' + op(w) + '"/>');
          }
        }
        lines.push("</g>");
      }
      gBase.setAttribute("visibility", "hidden");
      gFocus.innerHTML = lines.join(""); gBox.innerHTML = boxes.join("");
      // Readout: the strongest partners (mean over the shown heads), as numbers.
      var order = [];
      for (t = 0; t < n; t++) { order.push(t); }
      order.sort(function (p, q) { return mean[q] - mean[p]; });
      readout.textContent = "";
      var own = fromLeft ? A.v.left[idx] : A.v.right[idx];
      var pos = (fromLeft ? A.v.qpos : A.v.kpos) + idx;
      readout.appendChild(document.createTextNode("Layer " + layerLabel + " \u00b7 " +
        (fromLeft ? "query" : "key") + " #" + pos + " "));
      readout.appendChild(node("b", null, "\u201c" + own + "\u201d"));
      readout.appendChild(document.createTextNode(fromLeft ? " attends to " : " is attended by "));
      var others = fromLeft ? A.v.right : A.v.left;
      for (t = 0; t < Math.min(TOP, n); t++) {
        if (t) { readout.appendChild(document.createTextNode(" \u00b7 ")); }
        readout.appendChild(node("b", null, others[order[t]]));
        readout.appendChild(node("span", "wbav-num", " " + mean[order[t]].toFixed(3)));
      }
      if (heads.length > 1) {
        readout.appendChild(node("span", "wbav-muted", "  (mean of " + heads.length + " heads)"));
      }
    }
    function bind(col, side) {
      col.addEventListener("mouseover", function (e) {
        var t = e.target.closest ? e.target.closest(".wbav-tok") : null;
        if (t && heads.length) { focus(side, +t.getAttribute("data-i"), t); }
      });
      col.addEventListener("mouseleave", unfocus);
    }
    bind(left, "left"); bind(right, "right");
    setHint();
  }

  function viewSelect(P, vi, onChange) {
    var sel = node("select", "wbav-filter");
    for (var i = 0; i < P.views.length; i++) {
      var o = node("option", null, P.views[i].name);
      o.value = String(i);
      sel.appendChild(o);
    }
    sel.value = String(vi);
    sel.addEventListener("change", function () { onChange(+sel.value); });
    var lab = node("label", null, "Attention");
    lab.appendChild(sel);
    return lab;
  }

  var HINT = "Hover a token to trace its attention \u00b7 click a head to toggle it, " +
             "double-click to show only that head";

  function headView(root, P) {
    var vi = P.view, A = accessor(P, vi), layer = P.layer, on = {}, i;
    var bar = node("div", "wbav-bar"), readout = node("div", "wbav-readout");
    var stage = node("div", "wbav-stage");
    var layerSel = node("select", "wbav-layer");
    var lab = node("label", null, "Layer");
    lab.appendChild(layerSel); bar.appendChild(lab);
    if (P.views.length > 1) {
      bar.appendChild(viewSelect(P, vi, function (v) {
        vi = v; A = accessor(P, vi); fillLayers(); fillHeads(); redraw();
      }));
    }
    var headsWrap = node("span", "wbav-bar");
    headsWrap.style.margin = "0"; headsWrap.style.gap = "5px";
    headsWrap.appendChild(node("span", "wbav-muted", "Heads"));
    var headsBox = node("span", "wbav-heads");
    var allBtn = node("button", "wbav-tbtn wbav-all", "all");
    var noneBtn = node("button", "wbav-tbtn wbav-none", "none");
    allBtn.type = noneBtn.type = "button";
    headsWrap.appendChild(headsBox); headsWrap.appendChild(allBtn); headsWrap.appendChild(noneBtn);
    bar.appendChild(headsWrap);
    if (P.note) { bar.appendChild(node("span", "wbav-muted wbav-summary", P.note)); }
    root.appendChild(bar); root.appendChild(readout); root.appendChild(stage);
    var initial = P.heads;
    for (i = 0; i < A.m.heads.length; i++) {
      on[A.m.heads[i]] = !initial || initial.indexOf(A.m.heads[i]) >= 0;
    }

    function fillLayers() {
      layerSel.textContent = "";
      for (var k = 0; k < A.m.layers.length; k++) {
        var o = node("option", null, String(A.m.layers[k]));
        o.value = String(A.m.layers[k]);
        layerSel.appendChild(o);
      }
      if (A.m.layers.indexOf(layer) < 0) { layer = A.m.layers[0]; }
      layerSel.value = String(layer);
    }
    function fillHeads() {
      headsBox.textContent = "";
      var any = false, k;
      for (k = 0; k < A.m.heads.length; k++) { if (on[A.m.heads[k]] !== undefined) { any = true; } }
      for (k = 0; k < A.m.heads.length; k++) {
        var label = A.m.heads[k];
        if (!any) { on[label] = true; }
        var b = node("button", "wbav-hbtn", String(label));
        b.type = "button";
        b.setAttribute("data-h", String(label));
        b.style.setProperty("--wbav-c", css(rgb(label)));
        b.title = "Head " + label + ": click to toggle, double-click to show only this head";
        headsBox.appendChild(b);
      }
    }
    function redraw() {
      var heads = [], k;
      for (k = 0; k < A.m.heads.length; k++) {
        var label = A.m.heads[k];
        if (on[label]) { heads.push({h: k, label: label, css: css(rgb(label)), slot: k}); }
      }
      var btns = headsBox.children;
      for (k = 0; k < btns.length; k++) {
        var lb = +btns[k].getAttribute("data-h");
        btns[k].classList.toggle("wbav-off", !on[lb]);
        btns[k].setAttribute("aria-pressed", on[lb] ? "true" : "false");
      }
      drawPanel(stage, A, A.m.layers.indexOf(layer), layer, heads, readout, HINT,
                A.m.heads.length);
      stage.setAttribute("data-layer", String(layer));
      stage.setAttribute("data-view", String(vi));
      stage.setAttribute("data-heads", heads.map(function (x) { return x.label; }).join(","));
    }
    layerSel.addEventListener("change", function () { layer = +layerSel.value; redraw(); });
    headsBox.addEventListener("click", function (e) {
      var b = e.target.closest ? e.target.closest(".wbav-hbtn") : null;
      if (!b) { return; }
      var lb = +b.getAttribute("data-h");
      on[lb] = !on[lb]; redraw();
    });
    headsBox.addEventListener("dblclick", function (e) {
      var b = e.target.closest ? e.target.closest(".wbav-hbtn") : null;
      if (!b) { return; }
      var lb = +b.getAttribute("data-h");
      for (var k = 0; k < A.m.heads.length; k++) { on[A.m.heads[k]] = A.m.heads[k] === lb; }
      redraw();
    });
    function setAll(v) {
      for (var k = 0; k < A.m.heads.length; k++) { on[A.m.heads[k]] = v; }
      redraw();
    }
    allBtn.addEventListener("click", function () { setAll(true); });
    noneBtn.addEventListener("click", function () { setAll(false); });
    fillLayers(); fillHeads(); redraw();
  }

  function modelView(root, P) {
    var vi = P.view, A = null, detail = null, thumbs = [], rows = [], S = 64;
    var dark = P.mode === "dark", dpr = window.devicePixelRatio || 1;
    // Lighter colours on black: the darker tab10 entries (brown, grey) vanish otherwise.
    function layerRgb(l) {
      var c = rgb(A.m.layers[l]);
      if (!dark) { return c; }
      return [0, 1, 2].map(function (k) { return Math.round(c[k] + (255 - c[k]) * 0.3); });
    }
    var bar = node("div", "wbav-bar");
    if (P.views.length > 1) {
      bar.appendChild(viewSelect(P, vi, function (v) { vi = v; build(); }));
    }
    bar.appendChild(node("span", "wbav-muted",
      "Click a head to enlarge it \u00b7 hover a token to trace it in every head"));
    if (P.note) { bar.appendChild(node("span", "wbav-muted wbav-summary", P.note)); }
    var strip = node("div", "wbav-strip"), grid = node("div", "wbav-grid");
    root.appendChild(bar); root.appendChild(strip); root.appendChild(grid);

    function drawThumb(cv, l, h, focusRow) {
      var ctx = cv.getContext("2d"), nq = A.nq, nk = A.nk, col = layerRgb(l), i, j, w;
      if (!ctx) { return; }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, S, S);
      if (P.thumb === "matrix") {
        // One pixel per (query, key), scaled up without smoothing: stays legible for
        // long inputs where line thumbnails turn into a grey blur. Scaled to the head's
        // largest weight, since with many keys every weight is small.
        var img = ctx.createImageData(nk, nq), d = img.data, p = 0, top = 1e-9;
        for (i = 0; i < nq; i++) {
          for (j = 0; j < nk; j++) { top = Math.max(top, A.w(l, h, i, j)); }
        }
        for (i = 0; i < nq; i++) {
          var dim = focusRow >= 0 && i !== focusRow ? 0.15 : 1;
          for (j = 0; j < nk; j++) {
            w = Math.max(0, Math.min(1, A.w(l, h, i, j) / top));
            d[p] = col[0]; d[p + 1] = col[1]; d[p + 2] = col[2];
            d[p + 3] = Math.round(255 * Math.pow(w, 0.4) * dim); p += 4;
          }
        }
        var off = document.createElement("canvas");
        off.width = nk; off.height = nq;
        off.getContext("2d").putImageData(img, 0, 0);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(off, 2, 2, S - 4, S - 4);
        return;
      }
      var pad = 3, x1 = pad + 2, x2 = S - pad - 2, span = S - 2 * pad;
      ctx.strokeStyle = css(col);
      ctx.lineWidth = Math.max(nq, nk) > 40 ? 0.7 : 1;
      for (i = 0; i < nq; i++) {
        if (focusRow >= 0 && i !== focusRow) { continue; }
        var yq = pad + (i + 0.5) * span / nq;
        for (j = 0; j < nk; j++) {
          w = A.w(l, h, i, j);
          if (w < MIN_LINE) { continue; }
          ctx.globalAlpha = Math.min(1, w);
          ctx.beginPath(); ctx.moveTo(x1, yq); ctx.lineTo(x2, pad + (j + 0.5) * span / nk);
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
    }
    function drawAll(focusRow) {
      for (var l = 0; l < thumbs.length; l++) {
        for (var h = 0; h < thumbs[l].length; h++) { drawThumb(thumbs[l][h], l, h, focusRow); }
      }
    }
    function closeDetail() {
      if (!detail) { return; }
      thumbs[detail.l][detail.h].classList.remove("wbav-sel");
      detail.el.parentNode.removeChild(detail.el);
      detail = null;
    }
    function openDetail(l, h) {
      if (detail && detail.l === l && detail.h === h) { closeDetail(); return; }
      closeDetail();
      var box = node("div", "wbav-detail"), head = node("div", "wbav-dhead");
      var title = node("span", "wbav-dtitle",
        "Layer " + A.m.layers[l] + " \u00b7 Head " + A.m.heads[h]);
      var close = node("button", "wbav-close", "\u00d7");
      close.type = "button"; close.title = "Close"; close.setAttribute("aria-label", "Close");
      close.addEventListener("click", closeDetail);
      head.appendChild(title); head.appendChild(close);
      var readout = node("div", "wbav-readout"), host = node("div", "wbav-stage");
      box.appendChild(head); box.appendChild(readout); box.appendChild(host);
      box.setAttribute("data-layer", String(A.m.layers[l]));
      box.setAttribute("data-head", String(A.m.heads[h]));
      rows[l].parentNode.insertBefore(box, rows[l].nextSibling);
      drawPanel(host, A, l, A.m.layers[l],
        [{h: h, label: A.m.heads[h], css: css(layerRgb(l)), slot: 0}], readout,
        "Hover a token to trace its attention", 1);
      thumbs[l][h].classList.add("wbav-sel");
      detail = {l: l, h: h, el: box};
      if (box.scrollIntoView) { box.scrollIntoView({block: "nearest"}); }
    }
    function build() {
      detail = null; A = accessor(P, vi);
      strip.textContent = ""; grid.textContent = ""; thumbs = []; rows = [];
      var i, l, h;
      for (i = 0; i < A.v.left.length; i++) {
        var c = node("span", "wbav-chip", A.v.left[i]);
        c.setAttribute("data-i", String(i));
        c.title = "query #" + (A.v.qpos + i);
        strip.appendChild(c);
      }
      var nh = A.m.heads.length;
      var avail = (root.clientWidth || 960) - 90;
      S = Math.max(40, Math.min(96, Math.floor(avail / nh) - 4));
      var headRow = node("div", "wbav-grow");
      headRow.appendChild(node("div", "wbav-rlabel", "head \u2192"));
      for (h = 0; h < nh; h++) {
        var cl = node("div", "wbav-clabel", String(A.m.heads[h]));
        cl.style.width = S + "px";
        headRow.appendChild(cl);
      }
      grid.appendChild(headRow);
      for (l = 0; l < A.m.layers.length; l++) {
        var row = node("div", "wbav-grow");
        row.setAttribute("data-layer", String(A.m.layers[l]));
        row.appendChild(node("div", "wbav-rlabel", "Layer " + A.m.layers[l]));
        var line = [];
        for (h = 0; h < nh; h++) {
          var cv = document.createElement("canvas");
          cv.className = "wbav-thumb";
          cv.width = Math.round(S * dpr); cv.height = Math.round(S * dpr);
          cv.style.width = S + "px"; cv.style.height = S + "px";
          cv.setAttribute("data-l", String(l)); cv.setAttribute("data-h", String(h));
          cv.setAttribute("data-layer", String(A.m.layers[l]));
          cv.setAttribute("data-head", String(A.m.heads[h]));
          cv.setAttribute("role", "button"); cv.tabIndex = 0;
          cv.title = "Layer " + A.m.layers[l] + ", head " + A.m.heads[h] + ": click to enlarge";
          row.appendChild(cv); line.push(cv);
        }
        grid.appendChild(row); rows.push(row); thumbs.push(line);
      }
      drawAll(-1);
      root.setAttribute("data-view", String(vi));
    }
    grid.addEventListener("click", function (e) {
      var t = e.target;
      if (t && t.classList && t.classList.contains("wbav-thumb")) {
        openDetail(+t.getAttribute("data-l"), +t.getAttribute("data-h"));
      }
    });
    grid.addEventListener("keydown", function (e) {
      var t = e.target;
      if ((e.key === "Enter" || e.key === " ") && t.classList.contains("wbav-thumb")) {
        e.preventDefault(); openDetail(+t.getAttribute("data-l"), +t.getAttribute("data-h"));
      } else if (e.key === "Escape") { closeDetail(); }
    });
    var chipOn = null;
    strip.addEventListener("mouseover", function (e) {
      var c = e.target.closest ? e.target.closest(".wbav-chip") : null;
      if (!c || c === chipOn) { return; }
      if (chipOn) { chipOn.classList.remove("wbav-on"); }
      chipOn = c; c.classList.add("wbav-on");
      drawAll(+c.getAttribute("data-i"));
    });
    strip.addEventListener("mouseleave", function () {
      if (chipOn) { chipOn.classList.remove("wbav-on"); chipOn = null; }
      drawAll(-1);
    });
    if (dark) { root.classList.add("wbav-dark"); }
    build();
  }

  function init(root) {
    if (root.getAttribute("data-wbav-ready")) { return; }
    root.setAttribute("data-wbav-ready", "1");
    try {
      var P = JSON.parse(root.querySelector("script.wbav-data").textContent);
      var fallback = root.querySelector(".wbav-static");
      if (fallback) { fallback.parentNode.removeChild(fallback); }
      if (P.kind === "head") { headView(root, P); } else { modelView(root, P); }
      root.setAttribute("data-wbav-ready", "2");
    } catch (err) {
      root.appendChild(node("div", "wbav-error", "whybox attention view failed: " + err));
      if (window.console) { console.error(err); }
    }
  }
  // By id, not document.currentScript: notebook front ends that re-insert or eval the
  // script (jQuery .html(), JupyterLab) leave currentScript unset or elsewhere. The same
  // output shown twice gives two roots with one id: initialise each.
  var roots = document.querySelectorAll('[id="' + UID + '"]');
  for (var r = 0; r < roots.length; r++) { init(roots[r]); }
})();
""".strip()
