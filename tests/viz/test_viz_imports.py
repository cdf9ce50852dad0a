"""Import hygiene: no pyplot at import, no captum ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_viz_imports_do_not_load_pyplot_or_captum():
    res = run(
        "import sys\n"
        "import whybox.viz, whybox.attr.visualization\n"
        "from whybox.attr.visualization import visualize_text\n"
        "bad = [m for m in sys.modules if m == 'matplotlib.pyplot' or m.startswith('captum')]\n"
        "print('BAD', bad)\n"
        "assert not bad, bad\n"
    )
    assert res.returncode == 0, res.stderr + res.stdout


def test_drawing_without_pyplot_never_loads_pyplot():
    res = run(
        "import sys, numpy as np\n"
        "from whybox.attr import visualization as v\n"
        "v.visualize_image_attr(np.ones((4, 4)), use_pyplot=False)\n"
        "v.visualize_timeseries_attr(np.ones((5, 2)), np.ones((5, 2)), use_pyplot=False)\n"
        "v.visualize_text([v.VisualizationDataRecord([1.0], 1.0, 1, 1, 1, 1.0, ['a'], 0.0)])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    assert res.returncode == 0, res.stderr + res.stdout


def test_whybox_attr_does_not_load_pyplot():
    res = run("import sys, whybox.attr\nassert 'matplotlib.pyplot' not in sys.modules\n")
    assert res.returncode == 0, res.stderr + res.stdout


def test_viz_source_never_mentions_captum_imports():
    root = SRC / "whybox"
    files = list((root / "viz").glob("*.py")) + [root / "attr" / "visualization.py"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert "import captum" not in text and "from captum" not in text, f


def test_facade_signatures_match_captum():
    import inspect

    from captum.attr._utils import visualization as cv

    from whybox.attr import visualization as wv

    names = [
        "visualize_image_attr",
        "visualize_image_attr_multiple",
        "visualize_timeseries_attr",
        "visualize_text",
        "format_word_importances",
        "format_classname",
        "format_special_tokens",
        "format_tooltip",
        "draw_mask_border",
        "draw_mask_legend",
        "VisualizationDataRecord",
    ]
    for name in names:
        ours = inspect.signature(getattr(wv, name)).parameters
        theirs = inspect.signature(getattr(cv, name)).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name
    for enum_name in ["ImageVisualizationMethod", "TimeseriesVisualizationMethod", "VisualizeSign"]:
        ours = {m.name: m.value for m in getattr(wv, enum_name)}
        assert ours == {m.name: m.value for m in getattr(cv, enum_name)}, enum_name
