"""Self-contained HTML helpers: escaping, page wrapper, embedded figures, notebook display.

Every page produced here is a single file: inline CSS, images as ``data:`` URIs, no
scripts, no CDN and no network access, so it opens offline in any browser.
"""

from __future__ import annotations

import base64
import html as _html
import io
import os
import sys
from typing import Any

BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.3em; }
.wb-legend { border-top: 1px solid; margin: 5px 0; padding-top: 5px; display: inline-block; }
.wb-swatch { display: inline-block; width: 10px; height: 10px; border: 1px solid;
             vertical-align: middle; }
.wb-text { line-height: 2.1; word-wrap: break-word; overflow-wrap: anywhere; }
.wb-chip { border-radius: 3px; padding: 1px 2px; margin: 0 1px; color: #000;
           white-space: pre-wrap; cursor: default; }
.wb-chip:hover { outline: 1px solid #333; }
.wb-dark { color: #fff; }
.wb-scale { display: inline-block; width: 160px; height: 10px; vertical-align: middle;
            border: 1px solid #999;
            background: linear-gradient(to right, rgb(214,38,41), #fff, rgb(43,161,43)); }
table.wb-records { width: 100%; border-collapse: collapse; }
table.wb-records th, table.wb-records td { text-align: left; vertical-align: top;
                                           padding: 4px 8px; border-bottom: 1px solid #ddd; }
table.wb-features { border-collapse: collapse; }
table.wb-features td { padding: 2px 8px; }
.wb-bar-cell { width: 320px; position: relative; }
.wb-bar { height: 12px; display: inline-block; }
.wb-mono { font-family: ui-monospace, Menlo, Consolas, monospace; }
""".strip()


def escape(text: Any) -> str:
    """HTML-escape any value's ``str`` (quotes included, safe inside attributes)."""
    return _html.escape(str(text), quote=True)


def page(body: str, *, title: str = "whybox", extra_css: str = "") -> str:
    """Wrap an HTML fragment in a complete, self-contained HTML5 document.

    Parameters
    ----------
    body : str
        Trusted HTML fragment (callers escape user text).
    title : str
        Document title (escaped here).
    extra_css : str
        Additional CSS appended to :data:`BASE_CSS`.

    Returns
    -------
    str
        ``<!DOCTYPE html>`` document with inline CSS only.
    """
    css = BASE_CSS + ("\n" + extra_css if extra_css else "")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>\n{css}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def fragment(body: str) -> str:
    """A fragment carrying its own ``<style>`` block (for notebooks / embedding)."""
    return f'<div class="whybox-view"><style>{BASE_CSS}</style>{body}</div>'


def figure_to_bytes(fig: Any, fmt: str = "png", *, dpi: float = 100) -> bytes:
    """Render a matplotlib figure (pyplot-managed or bare) to PNG/SVG/PDF bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def figure_img_tag(fig: Any, *, dpi: float = 100, alt: str = "attribution chart") -> str:
    """``<img>`` tag embedding the figure as a base64 PNG ``data:`` URI (no files, no network)."""
    data = base64.b64encode(figure_to_bytes(fig, "png", dpi=dpi)).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def in_notebook() -> bool:
    """True when running inside an IPython kernel or shell (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get = getattr(ipython, "get_ipython", None)
    try:
        return get is not None and get() is not None
    except Exception:  # pragma: no cover - defensive: odd IPython states
        return False


class HTMLView:
    """An HTML result usable everywhere: a string, a notebook cell, or a file.

    Parameters
    ----------
    data : str
        The HTML fragment.
    title : str
        Title used when saving as a full page.

    Attributes
    ----------
    data : str
        The HTML fragment (same attribute name as ``IPython.display.HTML``).
    """

    def __init__(self, data: str, *, title: str = "whybox") -> None:
        self.data = data
        self.title = title

    def _repr_html_(self) -> str:
        return self.data

    def __str__(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return f"<HTMLView {len(self.data)} characters; .save(path) to write a page>"

    def to_page(self) -> str:
        """The fragment wrapped in a complete self-contained HTML document."""
        return page(self.data, title=self.title)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write a complete self-contained HTML page to ``path``; returns the path."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_page())
        return os.fspath(path)

    def display(self) -> None:
        """Show in Jupyter/IPython; no-op elsewhere."""
        if in_notebook():
            from IPython.display import display

            display(self)
