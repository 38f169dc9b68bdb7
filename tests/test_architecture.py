"""Checkable layering rules, for direct *and* indirect imports: each module is imported alone in a fresh
interpreter and the modules it pulled in are inspected.

- the engine never loads widgets, plots or the window (QtWidgets, QtGui, pyqtgraph, gridwatch.gui);
- only the launcher/session layer loads Qt at all (QtCore);
- the worker side and the public API load neither Qt nor torch (workers start fast; torch only if a trainable
  uses it); the window never loads torch.
"""

import ast
import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import gridwatch

from helpers import REPO

WIDGETS = ("PySide6.QtWidgets", "PySide6.QtGui", "pyqtgraph", "gridwatch.gui")
QT_LAYER = {"gridwatch.run.launcher", "gridwatch.run.pool", "gridwatch.cluster.pool", "gridwatch.run.session",
            "gridwatch.run.headless", "gridwatch.cli", "gridwatch.__main__"}
NOT_IMPORTABLE = {"gridwatch.__main__", "gridwatch.worker.__main__"}  # they run, not import


def _engine_modules() -> list[str]:
    found = [m.name for m in pkgutil.walk_packages(gridwatch.__path__, "gridwatch.")]
    return sorted(["gridwatch", *(m for m in found if not m.startswith("gridwatch.gui"))])


@cache
def _loaded_by_each() -> dict[str, list[str]]:
    """module -> every module in sys.modules after importing it alone."""
    code = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"

    def load(name: str) -> tuple[str, list[str]]:
        out = subprocess.run([sys.executable, "-P", "-c", code, name], capture_output=True, text=True, check=True,
                             cwd=REPO / "tests")
        return name, json.loads(out.stdout)

    names = [m for m in _engine_modules() if m not in NOT_IMPORTABLE] + ["gridwatch.gui.main_window"]
    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(load, names))


def _hits(loaded: list[str], banned: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == b or m.startswith(b + ".") for b in banned)]


def test_the_engine_modules_are_found():
    names = _engine_modules()
    assert {"gridwatch.run.session", "gridwatch.worker.main", "gridwatch.grid.spec", "gridwatch.cli"} <= set(names)
    assert len(names) > 30


def test_engine_never_loads_widgets_plots_or_the_window():
    for name, loaded in _loaded_by_each().items():
        if name.startswith("gridwatch.gui"):
            continue
        assert not _hits(loaded, WIDGETS), f"{name} loads {_hits(loaded, WIDGETS)}"


def test_only_the_session_layer_loads_qt():
    qt_free = [n for n in _loaded_by_each() if n not in QT_LAYER and not n.startswith("gridwatch.gui")]
    assert "gridwatch.run.scheduler" in qt_free and "gridwatch.run.lifecycle" in qt_free
    for name in qt_free:
        loaded = _loaded_by_each()[name]
        assert not _hits(loaded, ("PySide6",)), f"{name} loads {_hits(loaded, ('PySide6',))}"


def test_worker_side_and_public_api_load_no_torch():
    for name, loaded in _loaded_by_each().items():
        if name == "gridwatch" or name.startswith(("gridwatch.worker", "gridwatch.grid", "gridwatch.cli")):
            assert not _hits(loaded, ("torch",)), f"{name} loads torch"


def test_the_window_never_loads_torch():
    loaded = _loaded_by_each()["gridwatch.gui.main_window"]
    assert "PySide6.QtWidgets" in loaded  # it did load the window
    assert not _hits(loaded, ("torch",))


def test_static_imports_agree():
    """The same rule read from the source: catches a banned import on a code path the imports above skip."""
    for path in (REPO / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not any(n == b or n.startswith(b + ".") for b in WIDGETS), f"{path}: {n}"
