"""Checkable rules: core/ never imports widgets or plots; the pure modules import no Qt at all."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers import REPO

CORE = REPO / "core"
NEVER_IN_CORE = ("PySide6.QtWidgets", "PySide6.QtGui", "pyqtgraph", "gui")
QT_ALLOWED = {"launcher.py", "session.py", "headless.py", "cli.py"}  # the launcher/session layer only


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_core_never_imports_widgets_or_plots():
    for path in CORE.rglob("*.py"):
        for name in _imports(path):
            assert not any(name == n or name.startswith(n + ".") for n in NEVER_IN_CORE), f"{path}: {name}"


def test_only_the_session_layer_uses_qt():
    for path in CORE.rglob("*.py"):
        if path.name in QT_ALLOWED and path.parent == CORE:
            continue
        qt = [n for n in _imports(path) if n.startswith("PySide6")]
        assert not qt, f"{path.relative_to(REPO)} imports {qt}"


def test_worker_and_cli_start_without_torch_or_widgets():
    code = ("import sys, core.worker, core.cli, core.spec; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pyqtgraph') "
            "or m in ('PySide6.QtWidgets', 'PySide6.QtGui')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
