"""Capture the real window while it runs the demo grid: `python -m gridwatch.gui.screenshot OUT.png [SECONDS]`.

Run under a real X server (`xvfb-run -s "-screen 0 1600x1000x24" python -m gridwatch.gui.screenshot shot.png`), as the
Makefile's `screenshot` target does. `docs/screenshots.py` uses the helpers below for the user guide's pictures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, QRect, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QImage, QImageWriter, QPainter
from PySide6.QtWidgets import QApplication, QDockWidget, QWidget

from gridwatch.grid.trials import TrialState
from gridwatch.gui.app import get_qapp, make_window

TITLE_BAR_PX = 30


def grab(widget: QWidget) -> QImage:
    """A window as it paints itself, whole: the screen would cut off what lies past its edge (the window may be
    taller than a small virtual screen), and an X server without a window manager has nothing else to show."""
    return widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)


def platform_title(widget: QWidget) -> str:
    """The title the X server holds for the window (`_NET_WM_NAME`, as a window manager would show it: Qt adds
    the application's name); without xprop, Qt's own rule for it."""
    if shutil.which("xprop") and widget.windowHandle() is not None:
        try:
            out = subprocess.run(["xprop", "-id", str(int(widget.winId())), "_NET_WM_NAME"], capture_output=True,
                                 text=True, timeout=5, env={**os.environ, "LC_ALL": "C.UTF-8"}).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = re.search(r'= "(.*)"$', out.strip())
        if found:
            return found.group(1).replace('\\"', '"').replace("\\\\", "\\")
    title, app = widget.windowTitle(), QApplication.applicationDisplayName()
    return title if not app or title == app or not title else f"{title} — {app}"


def titled(image: QImage, title: str) -> QImage:
    """`image` under a plain bar with the window's title: Xvfb runs no window manager to draw one."""
    out = QImage(image.width(), image.height() + TITLE_BAR_PX, QImage.Format.Format_RGB32)
    out.fill(QColor("#3c3f41"))
    painter = QPainter(out)
    font = QFont()
    font.setPointSize(10)
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor("#eeeeee"))
    painter.drawText(QRect(0, 0, image.width(), TITLE_BAR_PX), Qt.AlignmentFlag.AlignCenter, title)
    painter.drawImage(0, TITLE_BAR_PX, image)
    painter.end()
    return out


def save_png(image: QImage, path: str | Path) -> int:
    """Saved with the most compression (PNG stays lossless); returns the file's size in bytes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = QImageWriter(str(path), QByteArray(b"png"))
    writer.setQuality(0)  # for PNG: the most compression
    if not writer.write(image):
        raise OSError(f"{path}: {writer.errorString()}")
    return Path(path).stat().st_size


def main(argv: list[str]) -> int:
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp()  # the default layout, not the user's saved one
    out = argv[0] if argv else "screenshot.png"
    seconds = float(argv[1]) if len(argv) > 1 else 30.0
    app = get_qapp()
    window = make_window()
    window.show()
    QTimer.singleShot(1000, window.start_run)

    def select_running() -> None:
        rows = range(window.trials.rowCount())
        running = [r for r in rows if window.trials.trial_at(r).state == TrialState.RUNNING]
        flagged = [r for r in running if window.trials.trial_at(r).trial.id in window.trials.badges]
        index = window.filter.mapFromSource(window.trials.index((flagged or running or [0])[0], 0))
        if flagged:
            window.findChild(QDockWidget, "dock_diagnosis").raise_()
        window.table.setCurrentIndex(index)
        window.table.scrollTo(index)

    def capture() -> None:
        shot = grab(window)
        save_png(shot, out)
        print(f"saved {out} ({shot.width()}x{shot.height()}) at {window.progress_label.text()}")
        window.confirm_stop = lambda: True
        window.close()
        app.quit()

    QTimer.singleShot(int(seconds * 1000) - 2500, select_running)
    QTimer.singleShot(int(seconds * 1000), capture)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
