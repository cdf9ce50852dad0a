"""Pictures and exports: PNG bytes of inputs, and a job's results as PNG, HTML or JSON.

The browser draws heat maps itself from the numbers (so the sign, the view and the
opacity change without a round trip); the exports here draw the same results with
:mod:`whybox.viz` into files that open anywhere, offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import html as _html
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "encode_png",
    "to_pixels",
    "png_data_uri",
    "escape_html",
    "export_json",
    "export_html",
    "export_png",
]


def escape_html(text: Any) -> str:
    """HTML-escape any value's ``str`` (quotes included)."""
    return _html.escape(str(text), quote=True)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode ``(H, W)`` grey or ``(H, W, 3 | 4)`` ``uint8`` pixels as a PNG file.

    A dozen lines of zlib instead of an imaging dependency: thumbnails are tiny and the
    browser scales them (``image-rendering: pixelated``).
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )


def png_data_uri(png: bytes) -> str:
    """A ``data:`` URI for PNG bytes (no file, no network)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_pixels(value: Any) -> np.ndarray:
    """An image tensor or array in any common layout -> ``uint8`` pixels.

    Accepts ``(1, C, H, W)``, ``(C, H, W)``, ``(H, W, C)`` and ``(H, W)`` with ``C`` in
    1, 3, 4; values in ``[0, 1]`` or ``[0, 255]``, anything else (normalised images) is
    rescaled to its range.
    """
    if isinstance(value, Tensor):
        arr = value.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(value, dtype=np.float64)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            f"An image feature must draw as (C, H, W) or (H, W) pixels; got shape {arr.shape}."
        )
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if low >= 0.0 and high <= 1.0:
        arr = arr * 255.0
    elif not (low >= 0.0 and high <= 255.0):
        arr = (arr - low) / ((high - low) or 1.0) * 255.0
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


# -- exports ---------------------------------------------------------------------------------
def _nested(t: Tensor) -> Any:
    """Nested lists of floats; non-finite values (which JSON cannot carry) become null."""
    return _finite_or_none(t.detach().to("cpu", torch.float64).numpy().tolist())


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value if math.isfinite(value) else None


def export_json(job: Any) -> dict[str, Any]:
    """Every cell of a finished job with its full attributions (per feature, as nested
    lists without the batch dimension) and the view data the page draws."""
    cells = []
    for cell in job.cells:
        data = cell.to_json()
        data["attributions"] = [
            {"name": name, "shape": list(t.shape[1:]), "values": _nested(t[0])}
            for name, t in cell.attributions
        ]
        cells.append(data)
    return {
        "job": job.id,
        "workspace": job.workspace,
        "created": _dt.datetime.fromtimestamp(job.created, _dt.timezone.utc).isoformat(),
        "request": job.request,
        "cells": cells,
    }


def _title(cell: Any) -> str:
    target = "" if cell.target is None else f" -> {cell.target_name}"
    delta = ""
    if cell.delta:
        delta = f"  |delta| {max(abs(d) for d in cell.delta if d is not None):.2g}"
    return f"#{cell.example} · {cell.model_name} · {cell.method_label}{target}{delta}"


def _resized(values: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A 2-D map resized (bilinear) to an image's height and width."""
    if values.shape == tuple(shape):
        return values
    t = torch.as_tensor(values, dtype=torch.float64)[None, None]
    out = torch.nn.functional.interpolate(
        t, size=tuple(shape), mode="bilinear", align_corners=False
    )
    return out[0, 0].numpy()


def _draw_view(ax: Any, view: dict[str, Any], pixels: np.ndarray | None) -> None:
    from whybox.viz import plot_feature_bar, render_image_attr

    if "map" in view:
        values = np.asarray(view["map"], dtype=np.float64)
        if pixels is not None:
            values = _resized(values, pixels.shape[:2])
            render_image_attr(values, pixels, method="blended_heat_map", ax=ax, alpha_overlay=0.6)
        else:
            render_image_attr(values, method="heat_map", sign="all", ax=ax)
        ax.set_title(view.get("feature", view.get("layer", "")), fontsize=9)
        return
    names = view.get("tokens") or view.get("names") or None
    plot_feature_bar(np.asarray(view["values"], dtype=np.float64), names, top_k=12, ax=ax)
    ax.set_title(view.get("feature", view.get("layer", "")), fontsize=9)
    ax.tick_params(labelsize=7)


def _quiet(draw: Any) -> Any:
    """Run a drawing function with matplotlib's layout warnings silenced."""

    @functools.wraps(draw)
    def run(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return draw(*args, **kwargs)

    return run


@_quiet
def export_png(job: Any, workspace: Any) -> bytes:
    """The job's results as one PNG: a row per cell, a panel per view."""
    from matplotlib.figure import Figure

    from whybox.viz.html import figure_to_bytes

    cells = [c for c in job.cells if c.error is None]
    if not cells:
        fig = Figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, "No results to export.", ha="center", va="center")
        return figure_to_bytes(fig)
    columns = max(len(c.views) for c in cells) or 1
    fig = Figure(figsize=(3.4 * columns, 3.3 * len(cells)))
    axes = fig.subplots(len(cells), columns, squeeze=False)
    for row, cell in enumerate(cells):
        for col in range(columns):
            ax = axes[row][col]
            if col >= len(cell.views):
                ax.axis("off")
                continue
            view = cell.views[col]
            pixels = _pixels_for(view, cell.example, workspace)
            _draw_view(ax, view, pixels)
        axes[row][0].set_ylabel(_title(cell), fontsize=8, rotation=0, ha="left", va="bottom")
        axes[row][0].yaxis.set_label_coords(0.0, 1.08)
    fig.tight_layout()
    return figure_to_bytes(fig, dpi=90)


def _pixels_for(view: dict[str, Any], example: int, workspace: Any) -> np.ndarray | None:
    index = view.get("image_feature")
    if index is None:
        return None
    return to_pixels(workspace.display_value(example, index))


@_quiet
def _faithfulness_text(check: dict[str, Any]) -> str:
    """One line for a cell's deletion check (see :mod:`whybox.app.faithfulness`)."""

    def shown(value: Any) -> str:
        return "-" if value is None else f"{value:.4g}"

    ours, theirs = check["morf_auc"], check["random_auc"]
    verdict = ""
    if ours is not None and theirs is not None:
        verdict = " (faithful: falls faster)" if ours < theirs else " (not faster than random)"
    return (
        f"Deletion check: AUC {shown(ours)} removing the top-ranked features first, "
        f"{shown(theirs)} in {check['n_random']} random orders{verdict}"
    )


def export_html(job: Any, workspace: Any) -> str:
    """The job's results as one self-contained HTML page (no scripts, no network)."""
    from matplotlib.figure import Figure

    from whybox.viz import tabular_html, text_html
    from whybox.viz.html import escape, figure_img_tag, page

    parts = [
        f"<h1>{escape(workspace.title)}</h1>",
        f"<p>Job {escape(job.id)} · {len(job.cells)} result(s)</p>",
    ]
    for cell in job.cells:
        parts.append(f"<h2>{escape(_title(cell))}</h2>")
        params = ", ".join(f"{k}={v}" for k, v in cell.params.items())
        parts.append(f'<p class="wb-mono">{escape(cell.method)}({escape(params)})</p>')
        if cell.error is not None:
            parts.append(f"<p><b>Error:</b> {escape(cell.error)}</p>")
            continue
        for view in cell.views:
            name = view.get("feature", view.get("layer", ""))
            if "map" in view:
                fig = Figure(figsize=(6.4, 3.4))
                pixels = _pixels_for(view, cell.example, workspace)
                axes = fig.subplots(1, 2)
                if pixels is not None:
                    from whybox.viz import render_image_attr

                    render_image_attr(None, pixels, method="original_image", ax=axes[0])
                    axes[0].set_title("input", fontsize=9)
                else:
                    axes[0].axis("off")
                _draw_view(axes[1], view, pixels)
                fig.tight_layout()
                parts.append(figure_img_tag(fig, alt=f"{name} attribution"))
            elif view["type"] == "text":
                parts.append(
                    text_html(
                        np.asarray(view["values"]),
                        tokens=view["tokens"],
                        title=name,
                        full_page=False,
                    )
                )
            else:
                names = view.get("names")
                inputs = view.get("inputs")
                parts.append(
                    tabular_html(
                        np.asarray(view["values"], dtype=np.float64),
                        names,
                        inputs=None if inputs is None else np.asarray(inputs, dtype=np.float64),
                        top_k=20,
                        title=name,
                        full_page=False,
                    )
                )
        if cell.contributions:
            text = ", ".join(f"{c['name']}: {100 * c['value']:+.0f}%" for c in cell.contributions)
            parts.append(f"<p>Contributions: {escape(text)}</p>")
        if cell.faithfulness:
            parts.append(f"<p>{escape(_faithfulness_text(cell.faithfulness))}</p>")
    return page("\n".join(parts), title=f"{workspace.title} - job {job.id}")
