"""Entry points: `gridwatch` (window with no arguments, else the CLI) and `gridwatch-gui` (the window).

Widgets are imported only when the window opens, so the CLI starts fast and works without a display.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gridwatch.resources import DEMO_GRID, ICON


def get_qapp(argv: list[str] | None = None) -> Any:
    """The one QApplication: name, organisation, icon and desktop file name set in one place."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv or [sys.argv[0]])
    app.setApplicationName("gridwatch")
    app.setOrganizationName("gridwatch")
    app.setApplicationDisplayName("gridwatch")
    app.setDesktopFileName("gridwatch")
    import pyqtgraph as pg

    pg.setConfigOptions(background="w", foreground="#37474f", antialias=False)
    if ICON.exists():
        app.setWindowIcon(QIcon(str(ICON)))
    return app


def make_window(grid: str | Path | None = None, results: str | Path | None = None) -> Any:
    import platformdirs

    from gridwatch.gui.main_window import MainWindow
    from gridwatch.results.runs import runs_dir
    from gridwatch.run import devices

    settings = Path(platformdirs.user_config_dir("gridwatch")) / "window.ini"
    window = MainWindow(devices.detect(), runs_dir(), settings_file=settings)
    window.editor.load_file(grid or DEMO_GRID)
    if results:
        window.open_results(results)
    return window


def no_display() -> bool:
    import os

    return (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    """`gridwatch-gui [GRID.toml | RUN.gridwatch.db]`."""
    args = sys.argv[1:] if argv is None else argv
    if no_display():
        print("gridwatch: no display (DISPLAY and WAYLAND_DISPLAY are unset), so no window. "
              "Run a grid headless with: gridwatch run GRID.toml", file=sys.stderr)
        return 2
    grid = next((a for a in args if a.endswith(".toml")), None)
    db = next((a for a in args if a.endswith(".db")), None)
    for given in (grid, db):
        if given is not None and not Path(given).is_file():
            print(f"gridwatch: error: {given}: no such file", file=sys.stderr)
            return 2
    app = get_qapp()
    window = make_window(grid, db)
    window.show()
    return int(app.exec())


def entry(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return main([])
    from gridwatch.cli import exit_after

    exit_after(args)
