"""Dependencies point one way: the engine (whybox.core) imports no family and no view.

Every module under src/whybox/core is parsed and every import statement in it --
module level or inside a function, absolute or relative -- must stay out of the method
families and the views. A run-time ``importlib.import_module`` dispatch (as in
``Explanation.plot``) is not an import edge and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = SRC / "whybox" / "core"
FORBIDDEN = ("whybox.methods", "whybox.attr", "whybox.viz", "whybox.text", "whybox.image")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``source``, relative imports resolved."""
    # A package's relative imports start from the package itself, a module's from its parent.
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from whybox import viz`` imports whybox.viz too
            found += [(node.lineno, target)]
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _imported_by(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    return _imported(source, _module_name(path), is_package=path.name == "__init__.py")


def _is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_the_walk_sees_the_core_packages():
    names = {_module_name(p) for p in CORE_FILES}
    assert {"whybox.core.result", "whybox.core.masks", "whybox.core.surrogate.fit"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_family_and_no_view(path):
    bad = sorted(
        {f"line {line}: {name}" for line, name in _imported_by(path) if _is_forbidden(name)}
    )
    assert not bad, f"{_module_name(path)} imports outside the engine: {bad}"


def test_imports_inside_functions_and_relative_ones_are_seen():
    source = (
        "import torch\n"
        "def plot():\n"
        "    from whybox import viz\n"
        "    import whybox.methods  # noqa\n"
        "    from ..text import x\n"
        "    from . import inputs\n"
    )
    names = [name for _, name in _imported(source, "whybox.core.result")]
    assert [n for n in names if _is_forbidden(n)] == [
        "whybox.viz",
        "whybox.methods",
        "whybox.text",
        "whybox.text.x",
    ]
    assert "whybox.core.inputs" in names
    in_package = _imported("from ...image import y\n", "whybox.core.masks", is_package=True)
    assert [name for _, name in in_package] == ["whybox.image", "whybox.image.y"]
