"""Entry points: `gridwatch` (window with no arguments, else the CLI) and `gridwatch-gui` (the window).

Widgets are imported only when the window opens, so the CLI starts fast and works without a display.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gridwatch.resources import DEMO_GRID, ICON, ICON_PNGS


def get_qapp(argv: list[str] | None = None) -> Any:
    """The one QApplication: name, organisation, icon and desktop file name set in one place."""
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv or [sys.argv[0]])
    app.setApplicationName("gridwatch")
    app.setOrganizationName("gridwatch")
    app.setApplicationDisplayName("gridwatch")
    app.setDesktopFileName("gridwatch")
    import pyqtgraph as pg

    pg.setConfigOptions(background="w", foreground="#37474f", antialias=False)
    from gridwatch.gui.theme import follow_system

    follow_system(app)  # plots follow the system's light/dark scheme
    app.setWindowIcon(app_icon())
    return app


def app_icon() -> Any:
    """The icon at every packaged size (crisp in title bars and docks alike), the SVG for the rest."""
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for size, png in ICON_PNGS.items():
        if png.exists():
            icon.addFile(str(png), QSize(size, size))
    if ICON.exists():
        icon.addFile(str(ICON))
    return icon


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


def unreachable_display() -> str | None:
    """Why the X display Qt would use cannot be reached, or None. Qt aborts on an X server it cannot reach, with
    a hint about xcb libraries that misleads; a local display is a socket in /tmp/.X11-unix, a remote one a TCP
    port (6000 + its number)."""
    import os
    import re
    import socket

    display = os.environ.get("DISPLAY", "")
    m = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if not display or not will_use_xcb() or m is None:
        return None
    host, num = m.group("host"), int(m.group("num"))
    if host in ("", "unix"):
        if os.path.exists(f"/tmp/.X11-unix/X{num}"):
            return None
        if host == "unix":
            return f"DISPLAY={display}: no X server socket /tmp/.X11-unix/X{num}"
        host = "localhost"  # ":N" may also be a local TCP server
    try:
        socket.create_connection((host, 6000 + num), timeout=1.0).close()
        return None
    except OSError as exc:
        return f"DISPLAY={display}: no X server answers at {host}:{6000 + num} ({exc.strerror or exc})"


def will_use_xcb() -> bool:
    """Qt's platform will be X11 (xcb): asked for by QT_QPA_PLATFORM, or Linux with an X display and no
    Wayland session (under Wayland, Qt tries its wayland plugin first)."""
    import os

    chosen = os.environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    wayland = bool(os.environ.get("WAYLAND_DISPLAY")) and os.environ.get("XDG_SESSION_TYPE") == "wayland"
    return sys.platform.startswith("linux") and bool(os.environ.get("DISPLAY")) and not wayland


def missing_window_libraries() -> list[str]:
    """The system libraries Qt's xcb plugin lacks: Qt would abort on creating the QApplication."""
    if not will_use_xcb():
        return []
    from PySide6.QtCore import QLibraryInfo

    from gridwatch.desktop import missing_libraries

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    return missing_libraries(plugins / "platforms" / "libqxcb.so")


def main(argv: list[str] | None = None) -> int:
    """`gridwatch-gui [GRID.toml | RUN.gridwatch.db]`."""
    args = sys.argv[1:] if argv is None else argv
    if no_display():
        print("gridwatch: no display (DISPLAY and WAYLAND_DISPLAY are unset), so no window. "
              "Run a grid headless with: gridwatch run GRID.toml", file=sys.stderr)
        return 2
    missing = missing_window_libraries()
    if missing:
        from gridwatch.desktop import install_hint

        print(install_hint(missing), file=sys.stderr)
        return 2
    unreachable = unreachable_display()
    if unreachable:
        print(f"gridwatch: {unreachable}, so no window. Check DISPLAY (over ssh: ssh -X), or run a grid headless "
              "with: gridwatch run GRID.toml", file=sys.stderr)
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
