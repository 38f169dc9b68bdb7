"""Capture the real window while it runs the demo grid: `python -m gui.screenshot OUT.png [SECONDS]`.

Run under a real X server (`xvfb-run -s "-screen 0 1600x1000x24" python -m gui.screenshot shot.png`), as the
Makefile's `screenshot` target does.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer

from gui.app import get_qapp, make_window


def main(argv: list[str]) -> int:
    out = argv[0] if argv else "screenshot.png"
    seconds = float(argv[1]) if len(argv) > 1 else 30.0
    app = get_qapp()
    window = make_window()
    window.show()
    QTimer.singleShot(1000, window.start_run)

    def select_running() -> None:
        running = [r for r in range(window.trials.rowCount()) if window.trials.trial_at(r).state == "running"]
        index = window.filter.mapFromSource(window.trials.index(running[0] if running else 0, 0))
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
