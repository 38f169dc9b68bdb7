"""The user guide's screenshots, of the real window under Xvfb, in one command (`make docs-screenshots`):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py [OUT_DIR]   # default docs/img

Everything runs in a temporary runs folder and config folder, so none of your runs or settings is read or
written. In order: the demo grid in the window (first-run.png, input-bound.png); that run opened once it has
finished (past-run.png); a small grid run twice by `gridwatch run` in a child process, the second time followed
by a window opened on its results file (follow.png); the Runs panel with both runs selected (runs-panel.png);
their comparison (compare.png); the About box (about.png). About two minutes on 2 cores.

Each picture is taken once what it shows is on screen (a trial flagged, trials running, a run followed), not
after a fixed time; a step that never gets there stops the script with a one-line message and exit code 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDockWidget, QScrollArea, QWidget

Condition = Callable[[], bool]
Step = tuple[str, Condition, float]  # what is awaited, when it is there, how long to wait for it (s)
Steps = Iterator[Step]
POLL_MS = 200
SMALL_GRID = """\
# A small grid for the guide's pictures: an LSTM, two hidden sizes x two learning rates x 3 folds.
[run]
name = "pose-small"
folds = 3
seed = 0

[[model]]
name = "lstm"
trainable = "gridwatch.demo:lstm"
device = "any"
metric = "val_acc"
[model.grid]
hidden = [32, 64]
lr = [0.003, 0.01]
[model.fixed]
layers = {layers}
epochs = 20
"""
ONE, TWO = 1, 2  # the two runs to compare: does a second LSTM layer help?


def pause(seconds: float) -> Condition:
    until = time.monotonic() + seconds
    return lambda: time.monotonic() >= until


class Driver:
    """Walks `steps` from the event loop: the next step runs once the awaited condition holds."""

    def __init__(self, app: QApplication, steps: Steps) -> None:
        self.app, self.steps = app, steps
        self.what, self.deadline = "the start", time.monotonic()
        self.ready: Condition = lambda: True
        self.timer = QTimer()
        self.timer.timeout.connect(self.poll)
        self.timer.start(POLL_MS)

    def poll(self) -> None:
        try:
            if not self.ready():
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"gave up waiting for {self.what}")
                return
            self.what, self.ready, timeout = next(self.steps)
            self.deadline = time.monotonic() + timeout
        except StopIteration:
            self.finish(0)
        except Exception as exc:  # noqa: BLE001 - any failure ends the script with its message
            print(f"docs/screenshots.py: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.finish(1)

    def finish(self, code: int) -> None:
        self.timer.stop()
        self.app.exit(code)


class Shots:
    """Saves each picture under `out` and says its size."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def take(self, widget: QWidget, name: str) -> None:
        from gridwatch.gui.screenshot import grab, platform_title, save_png, titled

        image = titled(grab(widget), platform_title(widget))
        size = save_png(image, self.out / name)
        print(f"{self.out / name}: {image.width()}x{image.height()}, {size // 1024} KB", flush=True)


# -- the window ----------------------------------------------------------------------------------------------


def dock(window: Any, name: str) -> QDockWidget:
    found = window.findChild(QDockWidget, f"dock_{name}")
    if not isinstance(found, QDockWidget):
        raise LookupError(f"no dock {name!r} in the window")
    return found


def monitor_in_full(window: Any) -> None:
    """Widen the Monitor panel if it scrolls sideways (its newest readings are at its right edge), as a user
    drags the panel's edge; says so, since the default layout should not need it."""
    monitor = dock(window, "monitor")
    area = monitor.widget()
    if isinstance(area, QScrollArea) and area.horizontalScrollBar().maximum() > 0:
        more = area.horizontalScrollBar().maximum() + area.verticalScrollBar().sizeHint().width() + 4
        print(f"note: the Monitor panel scrolls sideways at {monitor.width()} px; widened by {more} px", flush=True)
        window.resizeDocks([monitor], [monitor.width() + more], Qt.Orientation.Horizontal)


def select_trial(window: Any, trial_id: str) -> None:
    """As a click on the trial's row: the table selects it and the detail shows its curves and output."""
    row = window.trials.row_of(trial_id)
    index = window.filter.mapFromSource(window.trials.index(row, 0))
    window.table.setCurrentIndex(index)
    window.table.scrollTo(index)


def trials_where(window: Any, keep: Callable[[Any], bool]) -> list[Any]:
    return [lt for lt in window.live.values() if keep(lt)]


def running_flagged(window: Any, epochs: int = 2) -> str | None:
    """A running trial with a ⚠ badge and a few epochs of curves to show."""
    from gridwatch.grid.trials import TrialState

    found = trials_where(window, lambda lt: lt.trial.id in window.trials.badges and lt.epoch >= epochs
                         and lt.state == TrialState.RUNNING)
    return found[0].trial.id if found else None


def running_plain(window: Any, epochs: int) -> str | None:
    """A running trial without a badge, with at least `epochs` epochs reported (the longest-running first)."""
    from gridwatch.grid.trials import TrialState

    found = trials_where(window, lambda lt: lt.state == TrialState.RUNNING and lt.epoch >= epochs
                         and lt.trial.id not in window.trials.badges)
    return max(found, key=lambda lt: lt.epoch).trial.id if found else None


def best_finished(window: Any) -> str | None:
    """The finished trial with the best primary metric (every demo model maximises val_acc)."""
    done = trials_where(window, lambda lt: "val_acc" in lt.metrics)
    return max(done, key=lambda lt: lt.metrics["val_acc"]).trial.id if done else None


def show_diagnosis(window: Any) -> None:
    """The Diagnosis panel up front and wide, and the state column wide enough for the badge's words: what a
    user does by dragging the panel's edge and the column's border."""
    from gridwatch.gui.trials_model import COLUMNS

    dock(window, "diagnosis").raise_()
    window.resizeDocks([dock(window, "timeline"), dock(window, "diagnosis")], [560, 1040], Qt.Orientation.Horizontal)
    window.table.resizeColumnToContents(COLUMNS.index("state"))
    window.diagnosis.resizeColumnToContents(0)


# -- the scenarios -------------------------------------------------------------------------------------------


def demo_run(window: Any, shots: Shots) -> Steps:
    """First run: the demo grid live (a flagged input-bound trial, then the window busy), until it ends."""
    yield "the window to show the demo grid", pause(1.0), 10
    monitor_in_full(window)
    window.start_run()
    session = window.session
    if session is None:
        raise RuntimeError("the demo run did not start")
    started = time.monotonic()

    def flagged_later() -> bool:  # not the very first trials: a few bars on the timeline, a row on the board
        return running_flagged(window) is not None and (window.trials.tally.ended >= 2
                                                        or time.monotonic() - started > 30)

    for _ in range(5):  # a flagged trial may end (and lose its badge) while the picture is being set up
        yield "a running trial flagged input-bound (⚠)", flagged_later, 120
        flagged = running_flagged(window)
        if flagged is None:
            continue
        select_trial(window, flagged)
        show_diagnosis(window)
        yield "its curves and the Diagnosis panel", pause(1.5), 5
        if flagged in window.trials.badges:
            shots.take(window, "input-bound.png")
            break
    else:
        raise RuntimeError("no flagged trial stayed flagged long enough for a picture")
    dock(window, "results").raise_()
    window.resizeDocks([dock(window, "timeline"), dock(window, "results")], [800, 700], Qt.Orientation.Horizontal)
    total = len(window.live)
    yield ("a fifth of the demo done, two trials running",
           lambda: window.trials.tally.ended >= total // 5 and len(window.trials.running) >= 2, 150)
    yield "a running trial with a few epochs", lambda: running_plain(window, 3) is not None, 60
    select_trial(window, running_plain(window, 3) or "")
    yield "its curves", pause(2.0), 5
    shots.take(window, "first-run.png")
    yield "the demo run to end", lambda: session.status is not None, 300


def past_run(window: Any, shots: Shots) -> Steps:
    """The finished demo run opened from its results file: its own grid read-only, the whole run replayed."""
    if window.store is None:
        raise RuntimeError("the demo run left no results file")
    path = window.store.path
    window.open_results(path)
    dock(window, "grid").raise_()
    dock(window, "results").raise_()
    best = best_finished(window)
    if best is not None:
        select_trial(window, best)
    yield "the opened run to draw", pause(2.0), 5
    shots.take(window, "past-run.png")


def headless_runs(app: QApplication, shots: Shots, work: Path, runs_dir: Path) -> Generator[Step, None, Any]:
    """`gridwatch run` in child processes: one quick run, then a longer one followed by a window on its file
    (returned)."""
    from gridwatch.gui.app import make_window

    grid = work / "pose-small.toml"
    grid.write_text(SMALL_GRID.format(layers=ONE))
    quick = subprocess.Popen([sys.executable, "-m", "gridwatch", "run", str(grid), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    yield "the quick headless run to end", lambda: quick.poll() is not None, 180
    if quick.returncode != 0:
        raise RuntimeError(f"gridwatch run {grid} (layers = {ONE}) exited with {quick.returncode}")
    grid.write_text(SMALL_GRID.format(layers=TWO))
    db = runs_dir / f"pose-small-{TWO}-layers.gridwatch.db"
    log = work / "terminal.txt"
    with log.open("w") as out:
        live = subprocess.Popen([sys.executable, "-m", "gridwatch", "run", str(grid), "--db", str(db)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        window = yield from follow(app, shots, live, log, db, make_window)
    finally:
        if live.poll() is None:
            live.terminate()
            live.wait(10)
    print(f"--- terminal output of `gridwatch run {grid.name} --db {db.name}` ---\n{log.read_text()}", flush=True)
    return window


def done_in(log: Path) -> int:
    counts = re.findall(r"(\d+)/\d+ done", log.read_text(errors="replace"))
    return int(counts[-1]) if counts else 0


def follow(app: QApplication, shots: Shots, live: subprocess.Popen[bytes], log: Path, db: Path,
           make_window: Callable[..., Any]) -> Generator[Step, None, Any]:
    yield "the followed run to finish 3 trials", lambda: done_in(log) >= 3 or live.poll() is not None, 120
    if live.poll() is not None:
        raise RuntimeError(f"the headless run ended before the window opened it:\n{log.read_text()}")
    window = make_window(results=db)  # what `gridwatch-gui RUN.gridwatch.db` does
    window.show()
    yield "the window to show the run", pause(0.5), 5
    monitor_in_full(window)
    yield "a running trial with a few epochs in the followed run", lambda: running_plain(window, 4) is not None, 60
    select_trial(window, running_plain(window, 4) or "")
    yield "its curves", pause(2.0), 5
    if window.follower is None:
        raise RuntimeError("the window did not follow the live run")
    shots.take(window, "follow.png")
    yield "the followed run to end", lambda: live.poll() is not None and window.follower is None, 300
    return window


def runs_and_compare(window: Any, shots: Shots, runs_dir: Path) -> Steps:
    """The Runs panel, floated wide enough for every column, with the two small runs selected; then Compare."""
    panel = window.runs_panel
    runs = dock(window, "runs")
    runs.raise_()
    runs.setFloating(True)
    runs.resize(1240, 170)
    panel.refresh()
    yield "the Runs panel to list three runs", lambda: not panel.busy and panel.model.rowCount() >= 3, 30
    panel.table.resizeColumnsToContents()
    panel.table.clearSelection()
    for row, listing in enumerate(panel.model.rows):
        if listing.name == "pose-small":
            index = panel.sorted.mapFromSource(panel.model.index(row, 0))
            flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            panel.table.selectionModel().select(index, flags)
    yield "two runs selected", lambda: panel.compare_button.isEnabled(), 5
    yield "the panel to draw", pause(0.5), 5
    shots.take(runs, "runs-panel.png")
    panel.compare_button.click()
    if not panel.compares:
        raise RuntimeError("Compare opened nothing")
    view = panel.compares[-1]
    yield "the comparison to draw", pause(1.5), 5
    shots.take(view, "compare.png")
    view.close()
    runs.setFloating(False)


def about_box(window: Any, shots: Shots) -> Steps:
    from gridwatch.gui.about import show_about

    dialog = show_about(window, {})
    yield "the About box", pause(0.8), 5
    shots.take(dialog, "about.png")
    dialog.close()


def ray_run(shots: Shots) -> Steps:
    """The demo grid on a Ray head of its own (Run on: local): slots named by node, the node's CPU line."""
    from gridwatch.gui.app import make_window

    window = make_window()
    window.show()
    window.confirm_stop = lambda: True
    window.editor.ray.setText("local")
    yield "the window to show the demo grid", pause(1.0), 10
    window.start_run()  # the head starts first: a few seconds
    session = window.session
    if session is None or not session.remote:
        raise RuntimeError("the Ray run did not start")
    yield ("a few trials done on the Ray slots, two running",
           lambda: window.trials.tally.ended >= 4 and len(window.trials.running) >= 2, 180)
    yield "the node's telemetry in the monitor", lambda: len(window.monitor.nodes) >= 5, 30
    yield "a running trial with a few epochs", lambda: running_plain(window, 3) is not None, 60
    select_trial(window, running_plain(window, 3) or "")
    yield "its curves", pause(2.0), 5
    shots.take(window, "ray.png")
    session.stop()
    yield "the Ray run to stop", lambda: session.status is not None, 30
    window.close()


def scenario(app: QApplication, shots: Shots, work: Path, runs_dir: Path) -> Steps:
    from gridwatch.gui.app import make_window

    window = make_window()
    window.show()
    yield from demo_run(window, shots)
    yield from past_run(window, shots)
    window.close()
    followed = yield from headless_runs(app, shots, work, runs_dir)
    yield from runs_and_compare(followed, shots, runs_dir)
    yield from about_box(followed, shots)
    followed.close()
    yield from ray_run(shots)


def short_dir() -> Path:
    """A new folder with a short path (/tmp/gw1): the window shows a trial's folder in full above its curves, and
    a long path would widen the window past the 1600-pixel screen."""
    for n in range(1, 10_000):
        path = Path(tempfile.gettempdir()) / f"gw{n}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{tempfile.gettempdir()}/gw1 ... gw9999 all exist")


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else Path(__file__).parent / "img").resolve()
    work = Path(tempfile.mkdtemp(prefix="gridwatch-docs-"))
    runs_dir = short_dir()
    os.environ["GRIDWATCH_RUNS"] = str(runs_dir)  # the CLI's children inherit both
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # the default window layout, not yours
    from gridwatch.gui.app import get_qapp

    app = get_qapp()
    app.setQuitOnLastWindowClosed(False)  # one window closes before the next opens
    try:
        driver = Driver(app, scenario(app, Shots(out), work, runs_dir))
        code = int(app.exec())
        driver.timer.stop()
        for widget in app.topLevelWidgets():  # after a failure: no worker left behind
            session = getattr(widget, "session", None)
            if session is not None and session.status is None:
                session.stop_blocking()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(runs_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
