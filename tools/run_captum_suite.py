#!/usr/bin/env python3
"""Run Captum's own test suite against Captum or against whybox.

The judge of whybox's drop-in promise is Captum 0.9's public test suite, run unchanged
against ``whybox.attr`` by redirecting imports. This script does that; it fetches nothing.

Producing the test directory
----------------------------
Copy Captum's repository tests (``tests/{attr,metrics,robust,concept,influence,module,
utils}/**.py``, from a checkout of the Captum tag or commit you want to measure against)
into a directory OUTSIDE this repository, keeping their paths, e.g.
``/tmp/captum_tests/tests/attr/test_saliency.py``. Without a checkout, the search tool's
stored copy of ``pytorch/captum`` serves: it holds several versions of each file, and the
commit ``find_files(repo="pytorch/captum", path=...)`` lists is the newest one to read
(``read_file(..., commit=...)``); files older than 0.9 fail on Captum too and do not count. Nothing else is
needed: the helpers the tests import (``tests.helpers.*``, ``tests.attr.helpers.*``) are
mapped onto the ones Captum installs (``captum.testing.helpers.*``,
``captum.testing.attr.helpers.*``) and missing ``__init__.py`` files are created.

Running
-------
::

    .venv/bin/python tools/run_captum_suite.py /tmp/captum_tests            # both, compared
    .venv/bin/python tools/run_captum_suite.py /tmp/captum_tests --target whybox -k lime
    .venv/bin/python tools/run_captum_suite.py /tmp/captum_tests --fallback  # see below

How the redirection works
-------------------------
Test modules are loaded through an import hook that rewrites their import statements
(an AST transform, the files on disk are untouched):

* ``tests.helpers...`` / ``tests.attr.helpers...`` -> Captum's installed ``captum.testing``;
* with ``--target whybox``: ``captum.X...`` -> ``whybox.X...`` for X in ``attr``,
  ``_utils``, ``metrics``, ``robust``, ``concept``, ``influence``, ``module``. ``captum.testing`` stays Captum's, except
  its two helper modules that BUILD attribution objects (``test_config``,
  ``gen_test_utils``), which are loaded with the same rewrite so config-driven tests
  exercise whybox's classes. Reference implementations Captum's helpers use as oracles
  (``conductance_reference``, ``compute_gradients`` in ``get_config_util``) stay Captum's.

``--own-helpers`` is the plain rename ``captum`` -> ``whybox`` of everything, the helpers
included: ``tests.helpers`` / ``captum.testing`` resolve to ``whybox.testing`` (whybox's own
re-statement of Captum's test helpers, models and oracles) and ``captum.log`` to
``whybox.log``; nothing of Captum is imported on the whybox side.

``--fallback`` resolves names whose Captum module path has no whybox alias yet from
``whybox.attr`` itself, and private helpers (``_name``) or ``captum._utils`` utilities whybox
does not provide from Captum: it measures behaviour while alias modules are missing. The
strict mode (default) is what a user's mechanical rename sees.

The ratio reported is ``passes on whybox / passes on Captum`` over the tests that pass on
Captum, excluding tests of Captum's private helpers (:data:`PRIVATE_HELPER_TESTS`).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.abc
import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

#: test files / test ids (``path::Class::name`` suffixes) that test Captum's private helpers;
#: they are run and reported but left out of the ratio
PRIVATE_HELPER_TESTS: tuple[str, ...] = (
    "tests/attr/test_common.py",
    "tests/attr/test_approximation_methods.py",
    "tests/attr/test_utils_batching.py",
    "tests/attr/test_feature_permutation.py::Test::test_perm_fn_single_feature",
    "tests/attr/test_feature_permutation.py::Test::test_perm_fn_broadcastable_masks",
)

_HELPER_PREFIXES = (
    ("tests.influence._utils.common", "captum.testing.helpers.influence.common"),
    ("tests.utils.evaluate_linear_model", "captum.testing.helpers.evaluate_linear_model"),
    ("tests.attr.helpers", "captum.testing.attr.helpers"),
    ("tests.helpers", "captum.testing.helpers"),
)
#: captum.testing modules that construct attribution objects: rewritten like test modules
_BUILDING_HELPERS = (
    "captum.testing.attr.helpers.test_config",
    "captum.testing.attr.helpers.gen_test_utils",
    "captum.testing.helpers.influence.common",
    "captum.testing.helpers.evaluate_linear_model",
)
#: Captum's public namespaces, each redirected to whybox's namespace of the same name
_NAMESPACES = ("attr", "_utils", "metrics", "robust", "concept", "influence", "module")
_REDIRECTED = tuple((f"captum.{name}", f"whybox.{name}") for name in _NAMESPACES)
#: ``--own-helpers`` (the whole rename): Captum's test helpers and logging are whybox's too
_OWN_HELPERS_REDIRECTED = (
    *_REDIRECTED,
    ("captum.testing", "whybox.testing"),
    ("captum.log", "whybox.log"),
)
#: private Captum helpers older test files import from where Captum 0.9 no longer has them:
#: (module, name) -> (Captum 0.9's module, name)
_MOVED_IN_CAPTUM = {
    ("captum.attr._utils.common", "_format_input"): (
        "captum._utils.common",
        "_format_tensor_into_tuples",
    ),
}


# -- the import hook (runs inside pytest, see the plugin hooks at the end) -----------------
def _swap_prefix(name: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in pairs:
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class _Rewriter(ast.NodeTransformer):
    """Rewrites import statements of one test module."""

    def __init__(self, target: str, fallback: bool, package: str = "") -> None:
        self.target = target
        self.fallback = fallback
        #: ``--own-helpers``: helpers and oracles are whybox.testing's, nothing is Captum's
        self.own_helpers = target == "whybox" and os.environ.get("CAPTUM_SUITE_OWN") == "1"
        #: the package of the module being rewritten (resolves relative imports)
        self.package = package

    def _module(self, name: str) -> str:
        helper = _swap_prefix(name, _HELPER_PREFIXES)
        if helper is not None:
            name = helper
        if self.own_helpers:
            return _swap_prefix(name, _OWN_HELPERS_REDIRECTED) or name
        if self.target == "whybox":
            if name in _BUILDING_HELPERS:
                return "_captum_suite_rewritten." + name
            redirected = _swap_prefix(name, _REDIRECTED)
            if redirected is not None:
                return redirected
        return name

    def visit_Import(self, node: ast.Import) -> Any:
        # ``import captum.attr.x`` (no ``as``) binds ``captum``: keep such (rare) imports
        # as they are except for the helper mapping; ``import captum.x as y`` is redirected
        for alias in node.names:
            helper = _swap_prefix(alias.name, _HELPER_PREFIXES)
            if helper is not None:
                alias.name = helper
            if self.own_helpers and alias.asname:
                alias.name = _swap_prefix(alias.name, _OWN_HELPERS_REDIRECTED) or alias.name
            elif helper is None and alias.asname and self.target == "whybox":
                alias.name = _swap_prefix(alias.name, _REDIRECTED) or alias.name
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if node.level and self.package:
            # older test files import helpers relatively (``from ..helpers.basic``):
            # resolve to the absolute name so the helper mapping applies
            parts = self.package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
            absolute = ".".join(base + ([node.module] if node.module else []))
            if _swap_prefix(absolute, _HELPER_PREFIXES) is not None:
                node = ast.ImportFrom(module=absolute, names=node.names, level=0)
        if node.level or node.module is None:
            return node
        moved = [a for a in node.names if (node.module, a.name) in _MOVED_IN_CAPTUM]
        if moved:
            # split off the names Captum 0.9 moved; the rest is rewritten as usual
            kept = [a for a in node.names if a not in moved]
            statements = []
            for alias in moved:
                module, name = _MOVED_IN_CAPTUM[(node.module, alias.name)]
                renamed = ast.alias(name=name, asname=alias.asname or alias.name)
                statements.append(ast.ImportFrom(module=module, names=[renamed], level=0))
            if kept:
                rest = self.visit_ImportFrom(
                    ast.ImportFrom(module=node.module, names=kept, level=0)
                )
                statements += rest if isinstance(rest, list) else [rest]
            return [ast.copy_location(st, node) for st in statements]
        original = _swap_prefix(node.module, _HELPER_PREFIXES) or node.module
        module = self._module(node.module)
        if not (self.fallback and module != original and module.startswith("whybox")):
            node.module = module
            return node
        # --fallback: resolve each name where whybox has it, else from Captum
        statements = []
        for alias in node.names:
            source = self._fallback_source(original, module, alias.name)
            statements.append(
                ast.copy_location(ast.ImportFrom(module=source, names=[alias], level=0), node)
            )
        return statements

    @staticmethod
    def _fallback_source(original: str, module: str, name: str) -> str:
        if _module_exists(module):
            mod = importlib.import_module(module)
            if hasattr(mod, name) or _module_exists(f"{module}.{name}"):
                return module
        if original.startswith("captum.attr") and not name.startswith("_"):
            import whybox.attr

            if hasattr(whybox.attr, name):
                return "whybox.attr"
        return original


def _rewrite(source: str, filename: str, target: str, fallback: bool, package: str = "") -> Any:
    tree = ast.parse(source, filename)
    tree = ast.fix_missing_locations(_Rewriter(target, fallback, package).visit(tree))
    return compile(tree, filename, "exec")


class _Loader(importlib.abc.SourceLoader):
    def __init__(self, fullname: str, path: str, target: str, fallback: bool) -> None:
        self.fullname = fullname
        self.path = path
        self.target = target
        self.fallback = fallback

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def source_to_code(self, data: Any, path: Any, *, _optimize: int = -1) -> Any:  # type: ignore[override]
        package = (
            self.fullname if path.endswith("__init__.py") else self.fullname.rpartition(".")[0]
        )
        return _rewrite(data.decode("utf-8"), path, self.target, self.fallback, package)


class _Finder(importlib.abc.MetaPathFinder):
    """Loads the suite's test modules (files under ``root``) and, for whybox, the rewritten
    copies of Captum's object-building helpers, through :class:`_Rewriter`."""

    def __init__(self, root: Path, target: str, fallback: bool) -> None:
        self.root = root.resolve()
        self.target = target
        self.fallback = fallback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == "_captum_suite_rewritten" or fullname.startswith("_captum_suite_rewritten."):
            return self._rewritten_helper_spec(fullname)
        if not fullname.startswith("tests"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        if not Path(spec.origin).resolve().is_relative_to(self.root):
            return None
        loader = _Loader(fullname, spec.origin, self.target, self.fallback)
        is_package = spec.origin.endswith("__init__.py")
        return importlib.util.spec_from_file_location(
            fullname,
            spec.origin,
            loader=loader,
            submodule_search_locations=spec.submodule_search_locations if is_package else None,
        )

    def _rewritten_helper_spec(self, fullname: str) -> Any:
        real = fullname[len("_captum_suite_rewritten.") :] if "." in fullname else ""
        if real not in _BUILDING_HELPERS:
            # the package levels: empty namespace packages
            return importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        origin = importlib.util.find_spec(real).origin
        loader = _Loader(fullname, origin, self.target, self.fallback)
        return importlib.util.spec_from_file_location(fullname, origin, loader=loader)


# -- pytest plugin hooks (this file is loaded with ``-p run_captum_suite``) ----------------
_RESULTS: dict[str, str] = {}


def pytest_configure(config: Any) -> None:
    root = Path(os.environ["CAPTUM_SUITE_ROOT"])
    target = os.environ.get("CAPTUM_SUITE_TARGET", "captum")
    fallback = os.environ.get("CAPTUM_SUITE_FALLBACK") == "1"
    sys.meta_path.insert(0, _Finder(root, target, fallback))


def pytest_runtest_logreport(report: Any) -> None:
    # one outcome per test: the first failure (setup / call / teardown) wins
    if report.when == "call" or report.outcome != "passed":
        previous = _RESULTS.get(report.nodeid)
        if previous in (None, "passed"):
            outcome = "skipped" if report.skipped else report.outcome
            _RESULTS[report.nodeid] = outcome


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _RESULTS[report.nodeid + "::<collection>"] = "failed"


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get("CAPTUM_SUITE_OUT")
    if out and not hasattr(session.config, "workerinput"):
        Path(out).write_text(json.dumps(_RESULTS, indent=1, sort_keys=True))


# -- the command line ----------------------------------------------------------------------
def _prepare(root: Path) -> None:
    """Make the test tree importable as the ``tests`` package (missing ``__init__.py``)."""
    for directory in [root / "tests", *(p for p in (root / "tests").rglob("*") if p.is_dir())]:
        if directory.name == "__pycache__":
            continue
        init = directory / "__init__.py"
        if not init.exists():
            init.write_text("")


def _run(root: Path, target: str, args: argparse.Namespace) -> dict[str, str]:
    own = args.own_helpers and target == "whybox"
    mode = ("_fallback" if args.fallback else "") + ("_own" if own else "")
    out = root / f".results_{target}{mode}.json"
    env = dict(os.environ)
    env.update(
        CAPTUM_SUITE_ROOT=str(root),
        CAPTUM_SUITE_TARGET=target,
        CAPTUM_SUITE_FALLBACK="1" if args.fallback else "0",
        CAPTUM_SUITE_OWN="1" if args.own_helpers else "0",
        CAPTUM_SUITE_OUT=str(out),
        # a PYTHONPATH of the caller's goes first (e.g. another copy of whybox to measure)
        PYTHONPATH=os.pathsep.join(
            [p for p in (os.environ.get("PYTHONPATH"),) if p]
            + [str(Path(__file__).resolve().parent), str(root)]
        ),
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        *[str(root / "tests" / part) for part in args.parts],
        "-p",
        "run_captum_suite",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
        "--rootdir",
        str(root),
        "-c",
        os.devnull,
        "-q",
        "--tb=line" if not args.verbose else "--tb=short",
        "--import-mode=prepend",
    ]
    if args.jobs > 1:
        command += ["-n", str(args.jobs)]
    if args.k:
        command += ["-k", args.k]
    if out.exists():
        out.unlink()
    result = subprocess.run(
        command, cwd=root, env=env, capture_output=not args.verbose, text=True, check=False
    )
    if not out.exists():
        sys.stderr.write(result.stdout[-5000:] if result.stdout else "")
        sys.stderr.write(result.stderr[-5000:] if result.stderr else "")
        raise SystemExit(f"pytest produced no results for target {target}")
    return json.loads(out.read_text())


def _is_private(nodeid: str) -> bool:
    return any(nodeid == p or nodeid.startswith(p + "::") for p in PRIVATE_HELPER_TESTS)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def compare(captum: dict[str, str], whybox: dict[str, str]) -> dict[str, Any]:
    """Per file: tests passing on Captum, of those passing on whybox, and the ratio."""
    files: dict[str, dict[str, Any]] = defaultdict(lambda: {"captum": 0, "whybox": 0, "lost": []})
    for nodeid, outcome in captum.items():
        if outcome != "passed" or _is_private(nodeid):
            continue
        entry = files[_file_of(nodeid)]
        entry["captum"] += 1
        if whybox.get(nodeid) == "passed":
            entry["whybox"] += 1
        else:
            entry["lost"].append(nodeid.split("::", 1)[1])
    total_c = sum(e["captum"] for e in files.values())
    total_w = sum(e["whybox"] for e in files.values())
    return {
        "files": dict(sorted(files.items())),
        "captum_passes": total_c,
        "whybox_passes": total_w,
        "ratio": total_w / total_c if total_c else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests_dir", type=Path, help="directory holding tests/attr/...")
    parser.add_argument("--target", choices=("captum", "whybox", "both"), default="both")
    parser.add_argument("--fallback", action="store_true", help="see the module docstring")
    parser.add_argument(
        "--own-helpers",
        action="store_true",
        help="whybox target: Captum's test helpers come from whybox.testing (the plain rename)",
    )
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["attr", "metrics", "robust", "concept", "influence", "module", "utils"],
        help="folders under tests/ to run (those missing are skipped)",
    )
    parser.add_argument("-n", "--jobs", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--json", type=Path, default=None, help="write the comparison here")
    parser.add_argument("--lost", action="store_true", help="list tests lost on whybox")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    root = args.tests_dir.resolve()
    args.parts = [part for part in args.parts if (root / "tests" / part).is_dir()]
    _prepare(root)
    targets = ("captum", "whybox") if args.target == "both" else (args.target,)
    results = {target: _run(root, target, args) for target in targets}
    if len(results) == 1:
        (target, outcomes), *_ = results.items()
        counts: dict[str, int] = defaultdict(int)
        for outcome in outcomes.values():
            counts[outcome] += 1
        print(f"{target}: {dict(counts)}")
        return 0
    report = compare(results["captum"], results["whybox"])
    width = max((len(name) for name in report["files"]), default=10)
    for name, entry in report["files"].items():
        ratio = entry["whybox"] / entry["captum"] if entry["captum"] else 0.0
        print(f"{name:<{width}}  {entry['whybox']:>4} / {entry['captum']:<4}  {ratio:6.1%}")
        if args.lost:
            for test in entry["lost"]:
                print(f"    lost: {test}")
    print(
        f"{'TOTAL':<{width}}  {report['whybox_passes']:>4} / {report['captum_passes']:<4}  "
        f"{report['ratio']:6.1%}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
