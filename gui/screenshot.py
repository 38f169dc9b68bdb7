"""Capture the real window while it runs the demo grid: `python -m gridwatch.gui.screenshot OUT.png [SECONDS]`.

Run under a real X server (`xvfb-run -s "-screen 0 1600x1000x24" python -m gridwatch.gui.screenshot shot.png`), as the
Makefile's `screenshot` target does.
"""

from __future__ import annotations

import os
import sys
import tempfile

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDockWidget

from gridwatch.grid.trials import TrialState
from gridwatch.gui.app import get_qapp, make_window


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
        screen = window.screen()
        shot = screen.grabWindow(0, window.x(), window.y(), window.frameGeometry().width(),
                                 window.frameGeometry().height())
        shot.save(out)
        print(f"saved {out} ({shot.width()}x{shot.height()}) at {window.progress_label.text()}")
        window.confirm_stop = lambda: True
        window.close()
        app.quit()

    QTimer.singleShot(int(seconds * 1000) - 2500, select_running)
    QTimer.singleShot(int(seconds * 1000), capture)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
