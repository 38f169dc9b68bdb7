"""The centre of the window: the trials table (filter by state and model) over the selected trial's detail."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QTableView, QVBoxLayout, QWidget

from gridwatch.grid.trials import TrialState
from gridwatch.gui.trial_detail import TrialDetail
from gridwatch.gui.trials_model import PROGRESS_COL, ProgressDelegate, TrialsFilter, TrialsModel
from gridwatch.run.live import LiveTrial

STATES = ["", *TrialState]
COLUMN_WIDTHS = (150, 55, 70, 90, 65, 65, 40, 50, 65)


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
        bar = QHBoxLayout()
        for w in (QLabel("Show"), self.state_pick, self.model_pick):
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

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.filter)
        table.setSortingEnabled(True)
        table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # grid order until a header is clicked
        table.setWordWrap(False)
        table.verticalHeader().setDefaultSectionSize(22)
        table.verticalHeader().setVisible(False)
        table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        table.setItemDelegateForColumn(PROGRESS_COL, ProgressDelegate(table))
        table.horizontalHeader().setStretchLastSection(True)
        table.selectionModel().currentRowChanged.connect(lambda *_: self._show_selected())
        return table

    def show_trials(self, live: Mapping[str, LiveTrial], models: list[dict]) -> None:
        """A new set of trials (a run, a preview, a past run); `models` as the results file describes them."""
        self.model.reset(live, {m["name"]: m.get("metric") for m in models})
        for col, width in enumerate(COLUMN_WIDTHS):
            self.table.setColumnWidth(col, width)
        self.model_pick.blockSignals(True)
        self.model_pick.clear()
        self.model_pick.addItems(["all models", *[m["name"] for m in models]])
        self.model_pick.blockSignals(False)

    def trial_changed(self, lt: LiveTrial) -> None:
        self.model.refresh(lt.trial.id)
        if lt.trial.id == self.detail.trial_id:
            self.detail.show_trial(lt)

    def _show_selected(self) -> None:
        index = self.table.selectionModel().currentIndex()
        if index.isValid():
            self.detail.show_trial(self.model.trial_at(self.filter.mapToSource(index).row()))

    def _apply_filter(self) -> None:
        state = STATES[self.state_pick.currentIndex()]
        model = self.model_pick.currentText() if self.model_pick.currentIndex() > 0 else ""
        self.filter.set_filter(state, model)
