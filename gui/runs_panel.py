"""Runs: every results file of the runs folder (the same listing as `gridwatch runs`), kept fresh off the GUI
thread; open one, or compare two runs of the same grid.

The folder is read in a background thread, and only files whose contents changed since the last look are read
again (the others are only asked whether a process still holds them), so hundreds of runs never freeze the
window. The table updates row by row: selection and sort survive every refresh.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableView, QVBoxLayout, QWidget

from gridwatch.gui.compare_view import CompareView, compare_runs
from gridwatch.results.runs import INTERRUPTED, RUNNING, UNREADABLE, RunListing, list_runs
from gridwatch.run.progress import format_seconds

COLUMNS = ["name", "started", "duration", "state", "done", "best", "file"]
NAME, STARTED, DURATION, STATE, DONE, BEST, FILE = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole
REFRESH_MS = 5000
STATE_COLOURS = {RUNNING: "#1e88e5", INTERRUPTED: "#ef6c00", UNREADABLE: "#c0392b", "failed": "#c0392b"}
Index = QModelIndex | QPersistentModelIndex


class RunsModel(QAbstractTableModel):
    """One row per results file, keyed by path; updated in place so views keep their selection."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunListing] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(r, col)
        if role == SORT_ROLE:
            return sort_key(r, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{r.path}\n{r.best}" if r.best else str(r.path)
        if role == Qt.ItemDataRole.ForegroundRole and col == STATE and r.state in STATE_COLOURS:
            return QBrush(QColor(STATE_COLOURS[r.state]))
        return None

    def listing_at(self, row: int) -> RunListing:
        return self.rows[row]

    def known(self) -> dict[Path, RunListing]:
        return {r.path: r for r in self.rows}

    def update(self, listings: list[RunListing]) -> None:
        """Rows gone are removed, changed ones redrawn, new ones appended (a sorted view places them)."""
        new = {r.path: r for r in listings}
        for i in reversed(range(len(self.rows))):
            if self.rows[i].path not in new:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self.rows[i]
                self.endRemoveRows()
        where = {r.path: i for i, r in enumerate(self.rows)}
        for path, listing in new.items():
            at = where.get(path)
            if at is None:
                self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows))
                self.rows.append(listing)
                self.endInsertRows()
            elif self.rows[at] != listing:
                self.rows[at] = listing
                self.dataChanged.emit(self.index(at, 0), self.index(at, len(COLUMNS) - 1))


def cell_text(r: RunListing, col: int) -> str:
    if col == NAME:
        return r.name
    if col == STARTED:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-"
    if col == DURATION:
        return format_seconds(r.duration) if r.duration is not None else "-"
    if col == STATE:
        return r.state + (f" (pid {r.holder})" if r.state == RUNNING and r.holder else "")
    if col == DONE:
        return f"{r.done}/{r.total}" if r.total >= 0 else "-"
    if col == BEST:
        return r.best or "-"
    return r.path.name


def sort_key(r: RunListing, col: int) -> Any:
    if col == STARTED:
        return r.started if r.started is not None else -1.0
    if col == DURATION:
        return r.duration if r.duration is not None else -1.0
    if col == DONE:
        return r.done / r.total if r.total > 0 else -1.0
    return cell_text(r, col).lower()


class RunsPanel(QWidget):
    """The runs of one runs folder. Emits `open_requested(path)` on double-click, Enter or Open."""

    open_requested = Signal(str)

    def __init__(self, runs_dir: Path, refresh_ms: int = REFRESH_MS) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.model = RunsModel()
        self.sorted = QSortFilterProxyModel()
        self.sorted.setSourceModel(self.model)
        self.sorted.setSortRole(SORT_ROLE)
        self.table = self._table()
        self.refresh_button, self.open_button, self.compare_button = (QPushButton("Refresh"), QPushButton("Open"),
                                                                      QPushButton("Compare"))
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.open_selected)
        self.compare_button.clicked.connect(self.compare_selected)
        self.compare_button.setToolTip("Select two runs of the same grid: their leaderboards and curves side by side")
        self.status = QLabel()
        bar = QHBoxLayout()
        for w in (self.refresh_button, self.open_button, self.compare_button):
            bar.addWidget(w)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        self.compares: list[CompareView] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridwatch-runs")
        self._pending: Future[list[RunListing]] | None = None
        self._again = False
        self._poll = QTimer(self)
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._collect)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._periodic)
        if refresh_ms > 0:
            self.timer.start(refresh_ms)
        pool = self._pool  # not self: the panel's Python side may be gone by then
        self.destroyed.connect(lambda *_: pool.shutdown(wait=False, cancel_futures=True))
        self._update_buttons()
        self.refresh()

    def _table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.sorted)
        table.setSortingEnabled(True)
        table.sortByColumn(STARTED, Qt.SortOrder.DescendingOrder)  # newest first
        table.setWordWrap(False)
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(22)
        table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setStretchLastSection(True)
        table.activated.connect(self._on_activated)  # double-click or Enter
        table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        return table

    # -- listing ---------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the folder again in the background; files unchanged since the last look are not re-read."""
        if self._pending is not None:
            self._again = True  # one more pass once this one is in: it may have missed a change
            return
        self.status.setText(self.status.text() or "reading the runs folder…")
        self._pending = self._pool.submit(list_runs, self.runs_dir, self.model.known())
        self._poll.start()

    def _periodic(self) -> None:
        if self.isVisible():  # a hidden panel is brought up to date when it is shown again
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def _collect(self) -> None:
        future = self._pending
        if future is None or not future.done():
            return
        self._poll.stop()
        self._pending = None
        try:
            listings = future.result()
        except OSError as exc:  # the folder itself cannot be read
            self.status.setText(f"cannot read {self.runs_dir}: {exc.strerror or exc}")
        else:
            first = self.model.rowCount() == 0
            self.model.update(listings)
            if first and listings:  # fit the columns once; after that they are the user's
                self.table.resizeColumnsToContents()
                self.table.setColumnWidth(BEST, min(self.table.columnWidth(BEST), 320))
            self.status.setText(f"{len(listings)} runs in {self.runs_dir}" if listings
                                else f"no runs yet in {self.runs_dir}")
        self._update_buttons()
        if self._again:
            self._again = False
            self.refresh()

    # -- actions ---------------------------------------------------------------------------------------------

    def selected(self) -> list[RunListing]:
        rows = sorted(self.sorted.mapToSource(i).row() for i in self.table.selectionModel().selectedRows())
        return [self.model.listing_at(r) for r in rows]

    def open_selected(self) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            self.open_requested.emit(str(chosen[0].path))

    def compare_selected(self) -> CompareView | None:
        """The two selected runs side by side (a dialog says why, when they are not of the same grid)."""
        chosen = self.selected()
        if len(chosen) != 2:
            return None
        older, newer = sorted(chosen, key=lambda r: r.started or 0.0)
        view = compare_runs(self, older.path, newer.path)
        if view is not None:
            self.compares = [v for v in self.compares if v.isVisible()] + [view]
        return view

    def _on_activated(self, index: QModelIndex) -> None:
        if index.isValid():
            self.open_requested.emit(str(self.model.listing_at(self.sorted.mapToSource(index).row()).path))

    def _update_buttons(self) -> None:
        n = len(self.table.selectionModel().selectedRows())
        self.open_button.setEnabled(n == 1)
        self.compare_button.setEnabled(n == 2)
