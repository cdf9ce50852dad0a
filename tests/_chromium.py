"""Headless Chromium for the browser tests: where it is and the flags it runs with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("WHYBOX_CHROMIUM", "/usr/bin/chromium")
#: no sandbox (containers), no GPU, and nothing that reaches the network by itself
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip the calling test module unless Playwright and Chromium are both installed."""
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}", allow_module_level=True)
