"""Trials table: a Qt model over the run's LiveTrial records, plus a filter proxy and a progress delegate."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

from gridwatch.grid.trials import TrialState
from gridwatch.results.report import params_text
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.starvation import Verdict

COLUMNS = ["trial", "model", "state", "progress", "metric", "data wait", "fold", "slot", "duration", "params"]
PROGRESS_COL = COLUMNS.index("progress")
STATE_COLOURS = {TrialState.QUEUED: "#9aa0a6", TrialState.RUNNING: "#1e88e5", TrialState.FINISHED: "#43a047",
                 TrialState.FAILED: "#e53935", TrialState.STOPPED: "#fb8c00", TrialState.TIMEOUT: "#8e24aa"}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
Index = QModelIndex | QPersistentModelIndex


class TrialsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.live: Mapping[str, LiveTrial] = {}
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metric_of: dict[str, str | None] = {}  # model -> primary metric shown in the table
        self.badges: dict[str, Verdict] = {}  # trial id -> its active starvation verdict (a badge on the row)
        self.waiting: dict[str, str] = {}  # trial id -> why it has not started (the scheduler's words)

    def reset(self, live: Mapping[str, LiveTrial], metric_of: dict[str, str | None]) -> None:
        self.beginResetModel()
        self.live, self.metric_of = live, metric_of
        self.ids = list(live)
        self.rows = {tid: i for i, tid in enumerate(self.ids)}
        self.endResetModel()

    def set_waiting(self, waiting: dict[str, str]) -> None:
        """Why queued trials wait (the session's words): rows whose reason changed are redrawn."""
        old, self.waiting = self.waiting, dict(waiting)
        for tid in old.keys() | self.waiting.keys():
            if old.get(tid) != self.waiting.get(tid):
                self.refresh(tid)

    def set_badges(self, badges: dict[str, Verdict]) -> None:
        """Trial id -> its active starvation verdict."""
        old, self.badges = self.badges, dict(badges)
        for tid in old.keys() | self.badges.keys():
            if old.get(tid) is not self.badges.get(tid):
                self.refresh(tid)

    def refresh(self, trial_id: str) -> None:
        row = self.rows.get(trial_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def refresh_running(self) -> None:
        for tid, lt in self.live.items():
            if lt.state == TrialState.RUNNING:
                self.refresh(tid)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.ids)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def trial_at(self, row: int) -> LiveTrial:
        return self.live[self.ids[row]]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        lt = self.trial_at(index.row())
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(lt, col)
        if role == SORT_ROLE:
            return self._sort_key(lt, col)
        flag = self.badges.get(lt.trial.id)
        if role == Qt.ItemDataRole.ForegroundRole and col in ("state", "data wait"):
            return QBrush(QColor("#e65100" if flag else STATE_COLOURS.get(lt.state, "#000000")))
        if role == Qt.ItemDataRole.ToolTipRole:
            if flag and col in ("state", "data wait"):
                return f"{flag.title}: {flag.evidence}\nfix: {flag.fix}"
            if lt.state == TrialState.QUEUED and lt.trial.id in self.waiting:
                return self.waiting[lt.trial.id]
            return lt.reason
        if role == Qt.ItemDataRole.UserRole:
            return self.progress(lt)
        return None

    def _text(self, lt: LiveTrial, col: str) -> str:
        t = lt.trial
        if col == "trial":
            return t.id
        if col == "model":
            return t.model
        if col == "params":
            return params_text(t.params)
        if col == "fold":
            return str(t.fold)
        if col == "slot":
            return lt.slot or ""
        if col == "state":
            flag = self.badges.get(lt.trial.id)
            if flag:
                return f"{lt.state} ⚠ {flag.kind.replace('_', '-')}"
            return "waiting" if lt.state == TrialState.QUEUED and lt.trial.id in self.waiting else lt.state
        if col == "data wait":
            return "" if lt.data_wait != lt.data_wait else f"{lt.data_wait:.0%}"
        if col == "progress":
            total = self.epochs(lt)
            return f"{lt.epoch}/{total}" if total else (str(lt.epoch) if lt.epoch else "")
        if col == "metric":
            value = self.latest(lt)
            return "" if value is None else f"{value:.4g}"
        if col == "duration":
            d = self.duration(lt)
            return "" if d is None else f"{d:.1f} s"
        return ""

    def _sort_key(self, lt: LiveTrial, col: str) -> Any:
        if col == "fold":
            return lt.trial.fold
        if col == "progress":
            return self.progress(lt)
        if col == "metric":
            v = self.latest(lt)
            return -math.inf if v is None else v
        if col == "duration":
            return self.duration(lt) or 0.0
        if col == "data wait":
            return -1.0 if lt.data_wait != lt.data_wait else lt.data_wait
        return self._text(lt, col)

    def epochs(self, lt: LiveTrial) -> int:
        e = lt.trial.config.get("epochs")
        return e if isinstance(e, int) and e > 0 else 0

    def progress(self, lt: LiveTrial) -> float:
        if lt.state == TrialState.FINISHED:
            return 1.0
        total = self.epochs(lt)
        return min(1.0, lt.epoch / total) if total else 0.0

    def latest(self, lt: LiveTrial) -> float | None:
        metric = self.metric_of.get(lt.trial.model)
        if metric and metric in lt.metrics:
            return lt.metrics[metric]
        for key, _step, value, _t in reversed(lt.steps):
            if metric is None or key == metric:
                return value
        return None

    def duration(self, lt: LiveTrial) -> float | None:
        if lt.started is None:
            return None
        return (lt.ended or time.time()) - lt.started if lt.state != TrialState.QUEUED else None


class TrialsFilter(QSortFilterProxyModel):
    """Filter by state and model; sorts numbers as numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ""
        self.model_name = ""
        self.setSortRole(SORT_ROLE)

    def set_filter(self, state: str, model_name: str) -> None:
        self.state, self.model_name = state, model_name
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: Index) -> bool:
        source = self.sourceModel()
        if not isinstance(source, TrialsModel):
            return True
        lt = source.trial_at(row)
        return (not self.state or lt.state == self.state) and (not self.model_name
                                                               or lt.trial.model == self.model_name)


class ProgressDelegate(QStyledItemDelegate):
    """Draws the epoch column as a progress bar."""

    def paint(self, painter: Any, option: Any, index: Index) -> None:
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(1000 * float(index.data(Qt.ItemDataRole.UserRole) or 0.0))
        bar.text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        bar.textVisible = True
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
