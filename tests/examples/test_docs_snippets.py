"""Every snippet of the README and of docs/ runs as written.

Per page, in order, in one namespace and a fresh folder: each ```python block (after the
code of a preceding ``<!-- setup ... -->`` comment, where there is one), and the ``whybox``
lines of each ```bash block through the command line. ``<!-- requires: a b -->`` skips the
rest of the page (at the top) or the next block (elsewhere) when a module is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = {"demo", "serve", "benchmark"}  # long or blocking; tested in tests/cli


def blocks(text: str) -> list[tuple[int, str, str, list[str], str]]:
    """``(line, language, code, required modules, setup code)`` for each fenced block."""
    found, lines, i = [], text.splitlines(), 0
    requires: list[str] = []
    setup = ""
    page_requires: list[str] = []
    while i < len(lines):
        line = lines[i]
        match = re.match(r"<!--\s*requires:\s*(.*?)\s*-->", line)
        if match:
            names = match.group(1).split()
            if (
                not found
                and not requires
                and i < 5 + next((k for k, text in enumerate(lines) if text.startswith("# ")), 0)
            ):
                page_requires = names  # near the page's title: the whole page
            else:
                requires = names
        elif line.startswith("<!-- setup"):
            end = next(k for k in range(i, len(lines)) if lines[k].strip() == "-->")
            setup = "\n".join(lines[i + 1 : end])
            i = end
        else:
            fence = FENCE.match(line)
            if fence:
                end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
                code = "\n".join(lines[i + 1 : end])
                found.append((i + 1, fence.group(1), code, page_requires + requires, setup))
                requires, setup, i = [], "", end
        i += 1
    return found


def missing(modules: list[str]) -> list[str]:
    out = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ModuleNotFoundError:
            out.append(name)
    return out


def run_bash(code: str, page: Path, line: int) -> None:
    from whybox import cli

    for offset, command in enumerate(code.splitlines()):
        words = shlex.split(command, comments=True)
        if not words or words[0] != "whybox" or (len(words) > 1 and words[1] in NOT_RUN):
            continue
        status = cli.main(words[1:])
        assert status == 0, f"{page.name}:{line + offset + 1}: {command!r} exited {status}"


@pytest.mark.parametrize(
    "page", PAGES, ids=lambda p: p.name if p.parent == ROOT else f"docs/{p.name}"
)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # module:factory paths written by a page
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    namespace: dict = {"__name__": f"snippets_{page.stem}"}
    ran = 0
    for line, language, code, requires, setup in blocks(page.read_text(encoding="utf-8")):
        if language not in ("python", "bash"):
            continue
        absent = missing(requires)
        if absent:
            continue  # needs a module this install lacks (e.g. whybox.viz.attention)
        if setup:
            exec(compile(setup, f"{page.name}:{line} (setup)", "exec"), namespace)
        if language == "python":
            # line numbers in tracebacks point into the page
            exec(compile("\n" * line + code, str(page), "exec"), namespace)
        else:
            run_bash(code, page, line)
        ran += 1
    if ran == 0:
        pytest.skip(f"{page.relative_to(ROOT)}: no snippet this install can run")


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = blocks(text)[0]
    commands = [line.split("#")[0].strip() for line in first[2].splitlines()]
    assert first[1] == "bash" and commands == ["make demo", "make test"]
    assert text.index("```bash") < text.index("\n## ")  # before any section


def test_readme_method_table_matches_the_registry():
    from whybox import cli

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, family, captum, cost in cli.method_rows():
        row = f"| {family} | `{name}` | {captum} | {cost} |"
        assert row in text, f"README's method table lacks (or differs for) {name}: {row}"
