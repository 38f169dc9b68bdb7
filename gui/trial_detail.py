"""The selected trial: its per-epoch curves and its own output (the log)."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from gridwatch.gui.monitor import PALETTE
from gridwatch.run.live import LiveTrial

LOG_FRAME_MS = 100  # a chatty trial's lines reach the log view at most this often
PICK = "Select a trial to see its curves and log."


class TrialDetail(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel(PICK)
        self.title.setWordWrap(True)
        # a long trial folder path is cut at the panel's edge rather than widening the window past the screen
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.curves = pg.PlotWidget()
        self.curves.setLabel("bottom", "epoch / step")
        self.curves.addLegend(offset=(4, 4), labelTextSize="8pt")
        self.curves.showGrid(x=True, y=True, alpha=0.2)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFont("monospace"))
        self.log.setMaximumBlockCount(5000)
        split = QSplitter()
        split.addWidget(self.curves)
        split.addWidget(self.log)
        split.setSizes([450, 350])
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)
        self.trial_id: str | None = None
        self.trials_folder: Path | None = None  # the run's trials/ folder: each trial's files are in trials/<id>
        self._lines: list[str] = []  # output of the shown trial not yet on screen
        self._frame = QTimer(self)
        self._frame.setSingleShot(True)
        self._frame.setInterval(LOG_FRAME_MS)
        self._frame.timeout.connect(self._flush_log)

    def show_trial(self, lt: LiveTrial | None) -> None:
        self.trial_id = lt.trial.id if lt else None
        self._lines.clear()
        if lt is None:
            self.title.setText(PICK)
            self.curves.clear()
            self.log.clear()
            return
        reason = f" — {lt.reason}" if lt.reason else ""
        folder = self.trials_folder / lt.trial.id if self.trials_folder is not None else None
        files = f"\nits files: {folder}" if folder is not None and folder.is_dir() else ""
        self.title.setText(f"{lt.trial.id}: {lt.state}{reason}{files}")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.curves.clear()
        series: dict[str, tuple[list[int], list[float]]] = {}
        for key, step, value, _t in lt.steps:
            xs, ys = series.setdefault(key, ([], []))
            xs.append(step)
            ys.append(value)
        for i, (key, (xs, ys)) in enumerate(series.items()):
            self.curves.plot(xs, ys, pen=pg.mkPen(PALETTE[i % len(PALETTE)], width=2), symbol="o",
                             symbolSize=4, name=key)
        quiet = "(no output from this trial yet)" if lt.ended is None else "(this trial printed nothing)"
        self.log.setPlainText("\n".join(lt.log) if lt.log else quiet)
        self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def append_log(self, trial_id: str, line: str) -> None:
        """A line of the shown trial's output: on screen at the next frame, with the lines beside it."""
        if trial_id == self.trial_id:
            self._lines.append(line)
            if not self._frame.isActive():
                self._frame.start()

    def _flush_log(self) -> None:
        if self._lines:
            self.log.appendPlainText("\n".join(self._lines))
            self._lines.clear()
