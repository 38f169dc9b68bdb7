"""The centre of the window: the trials table (filter by state and model, follow the running trials) over the
selected trial's detail.

Events only mark their trial; a frame timer applies what changed at the display's pace, so a run of
thousands of short trials costs the window the same per trial as a run of ten.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractSlider,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gridwatch.grid.trials import TrialState
from gridwatch.gui.trial_detail import TrialDetail
from gridwatch.gui.trials_model import PROGRESS_COL, ProgressDelegate, TrialsFilter, TrialsModel
from gridwatch.run.live import LiveTrial

STATES = ["", *TrialState]
COLUMN_WIDTHS = (150, 55, 70, 90, 65, 65, 40, 50, 65)
FRAME_MS = 100  # changes reach the table at most this often
ID_SAMPLE = 2000  # trial ids measured for the trial column's width (they share one format)


class TrialsPanel(QSplitter):
    def __init__(self) -> None:
        super().__init__(Qt.Orientation.Vertical)
        self.model = TrialsModel()
        self.filter = TrialsFilter()
        self.filter.setSourceModel(self.model)
        self.table = self._table()
        self.state_pick, self.model_pick = QComboBox(), QComboBox()
        self.state_pick.addItems([s or "all states" for s in STATES])
        self.state_pick.currentIndexChanged.connect(self._apply_filter)
        self.model_pick.currentIndexChanged.connect(self._apply_filter)
        self.follow = QCheckBox("Follow running")
        self.follow.setToolTip("Keep the rows of running trials in view (scrolling the table, or clicking a row, "
                               "turns it off: rows then stay where they are under the pointer)")
        self.follow.setChecked(True)
        self.follow.toggled.connect(self._follow_toggled)
        self.table.verticalScrollBar().actionTriggered.connect(self._user_scrolled)
        self.table.pressed.connect(lambda _index: self.follow.setChecked(False))
        bar = QHBoxLayout()
        for w in (QLabel("Show"), self.state_pick, self.model_pick, self.follow):
            bar.addWidget(w)
        bar.addStretch()
        top = QWidget()
        layout = QVBoxLayout(top)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        self.detail = TrialDetail()
        self.addWidget(top)
        self.addWidget(self.detail)
        self.setSizes([600, 300])
        self.frame = QTimer(self)
        self.frame.setSingleShot(True)
        self.frame.setInterval(FRAME_MS)
        self.frame.timeout.connect(self.flush)

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.filter)
        table.setSortingEnabled(True)
        table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # grid order until a header is clicked
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.verticalHeader().setDefaultSectionSize(22)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        table.verticalHeader().setVisible(False)
        table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        table.setItemDelegateForColumn(PROGRESS_COL, ProgressDelegate(table))
        table.horizontalHeader().setStretchLastSection(True)
        table.selectionModel().currentRowChanged.connect(lambda *_: self._show_selected())
        return table

    def show_trials(self, live: Mapping[str, LiveTrial], models: list[dict], folds: int = 0) -> None:
        """A new set of trials (a run, a preview, a past run); `models` as the results file describes them."""
        self.frame.stop()
        self.model.reset(live, {m["name"]: m.get("metric") for m in models}, models, folds)
        for col, width in enumerate(COLUMN_WIDTHS):
            self.table.setColumnWidth(col, width)
        self.table.setColumnWidth(0, self.id_width(live))
        self.model_pick.blockSignals(True)
        self.model_pick.clear()
        self.model_pick.addItems(["all models", *[m["name"] for m in models]])
        self.model_pick.blockSignals(False)

    def id_width(self, live: Mapping[str, LiveTrial]) -> int:
        """Wide enough for the longest trial id: an id is never cut short."""
        longest = max((tid for _, tid in zip(range(ID_SAMPLE), live, strict=False)), key=len, default="trial")
        metrics = self.table.fontMetrics()
        return max(COLUMN_WIDTHS[0], metrics.horizontalAdvance(longest + "MM") + 12)

    # -- changes ----------------------------------------------------------------------------------------

    def trial_changed(self, lt: LiveTrial) -> None:
        """O(1): the row is redrawn (and the detail, if it shows this trial) at the next frame."""
        self.model.refresh(lt.trial.id)
        self.schedule()

    def schedule(self) -> None:
        if not self.frame.isActive():
            self.frame.start()

    def flush(self) -> list[str]:
        """Apply what changed since the last frame; returns the trial ids it covered."""
        self.frame.stop()
        ids = self.model.flush()
        if self.detail.trial_id is not None and self.detail.trial_id in set(ids):
            self.detail.show_trial(self.model.live.get(self.detail.trial_id))
        if ids and self.follow.isChecked():
            self.show_running()
        return ids

    def tick(self) -> None:
        """Twice a second: running trials' durations move on."""
        self.model.refresh_running()
        if self.model.pending():
            self.schedule()

    def show_running(self) -> None:
        """Scroll so that the running trials' rows are in view (the first of them, if they cannot all be)."""
        rows = sorted(r for tid in self.model.running if (r := self.model.row_of(tid)) is not None)
        if not rows:
            return
        hint = QTableView.ScrollHint.EnsureVisible
        self.table.scrollTo(self.filter.index(rows[-1], 0), hint)
        self.table.scrollTo(self.filter.index(rows[0], 0), hint)

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self.show_running()

    def _user_scrolled(self, action: int) -> None:
        if action != QAbstractSlider.SliderAction.SliderNoAction.value and self.follow.isChecked():
            self.follow.setChecked(False)

    def _show_selected(self) -> None:
        index = self.table.selectionModel().currentIndex()
        if index.isValid():
            self.detail.show_trial(self.model.trial_at(self.filter.mapToSource(index).row()))

    def _apply_filter(self) -> None:
        state = STATES[self.state_pick.currentIndex()]
        model = self.model_pick.currentText() if self.model_pick.currentIndex() > 0 else ""
        self.flush()
        selected = self.detail.trial_id
        self.filter.set_filter(state, model)
        row = self.model.row_of(selected) if selected is not None else None
        if row is not None:
            self.table.selectRow(row)
            self.table.scrollTo(self.filter.index(row, 0))

