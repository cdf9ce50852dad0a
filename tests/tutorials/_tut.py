"""Shared helpers of the tutorial-parity tests: run one tutorial's calls on Captum and on
whybox (same seeds) and compare; Captum is the oracle only."""

from __future__ import annotations

import importlib
import random

import numpy as np
import pytest
import torch

captum = pytest.importorskip("captum")


def lib(name: str, module: str):
    """``module`` (spelled with ``captum``) imported from ``name`` (captum or whybox)."""
    return importlib.import_module(module.replace("captum", name, 1))


def seed(value: int = 0) -> None:
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def both(fn):
    """``(captum result, whybox result)`` of ``fn(name)``, each after the same seeding."""
    out = []
    for name in ("captum", "whybox"):
        seed()
        out.append(fn(name))
    return out


def assert_close(a, b, atol=1e-5, path="result"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.shape == b.shape and a.dtype == b.dtype, (path, a.shape, b.shape, a.dtype, b.dtype)
        assert torch.allclose(a.float(), b.float(), atol=atol, rtol=1e-4), (
            path,
            (a.float() - b.float()).abs().max().item(),
        )
    elif isinstance(a, np.ndarray):
        assert_close(torch.as_tensor(a), torch.as_tensor(np.asarray(b)), atol, path)
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_close(a[k], b[k], atol, f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, atol, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=atol, rel=1e-4), path
    else:
        assert a == b, (path, a, b)


def figure_summary(result):
    """What a visualize_* call drew: return types, panels, image data and colour limits."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    fig, axes = result
    assert isinstance(fig, Figure)
    kinds = [
        type(a).__name__ for a in (axes if isinstance(axes, (list, tuple, np.ndarray)) else [axes])
    ]
    assert all(
        isinstance(a, Axes)
        for a in (axes if isinstance(axes, (list, tuple, np.ndarray)) else [axes])
    )
    images = [im for ax in fig.axes for im in ax.images]
    summary = {
        "axes_type": type(axes).__name__ if isinstance(axes, (list, tuple)) else "Axes",
        "kinds": kinds,
        "n_axes": len(fig.axes),
        "titles": [ax.get_title() for ax in fig.axes],
        "data": [
            np.ma.filled(np.ma.asarray(im.get_array()).astype(float), -999.0) for im in images
        ],
        "clims": [tuple(round(float(v), 4) for v in im.get_clim()) for im in images],
        "cmaps": [im.get_cmap().name for im in images],
        "alphas": [im.get_alpha() for im in images],
    }
    plt.close("all")
    return summary


def patch_captum_text_view(monkeypatch):
    """Let Captum's ``visualize_text`` run without IPython (it asserts IPython otherwise)."""
    cv = importlib.import_module("captum.attr._utils.visualization")

    class HTML:
        def __init__(self, data):
            self.data = data

    monkeypatch.setattr(cv, "HAS_IPYTHON", True, raising=False)
    monkeypatch.setattr(cv, "HTML", HTML, raising=False)
    monkeypatch.setattr(cv, "display", lambda *a, **k: None, raising=False)
