"""Trials table: a Qt model over the run's LiveTrial records (its own filter and sort order), a pass-through
proxy for the view, and a progress delegate.

Every per-event cost is independent of the grid's size: an event only marks its trial; `flush()` (at the
display's pace) re-counts the marked trials, moves each to its sorted place by bisection, and redraws them
as ranges of rows. Sorting by a column computes each key once (a Python sort, not Qt comparing cells).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QIdentityProxyModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

from gridwatch.grid.trials import TrialState
from gridwatch.results.report import params_text
from gridwatch.results.summary import RunTally
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.starvation import Verdict

COLUMNS = ["trial", "model", "state", "progress", "metric", "data wait", "fold", "slot", "duration", "params"]
PROGRESS_COL = COLUMNS.index("progress")
STATE_COLOURS = {TrialState.QUEUED: "#9aa0a6", TrialState.RUNNING: "#1e88e5", TrialState.FINISHED: "#43a047",
                 TrialState.FAILED: "#e53935", TrialState.STOPPED: "#fb8c00", TrialState.TIMEOUT: "#ab47bc"}
HEADER_TIPS = {
    "trial": "The trial's id: model, a hash of its parameters, and its fold",
    "model": "The [[model]] of the grid this trial trains",
    "state": "queued (waiting: the scheduler's reason in the row's tooltip), running, finished, failed, stopped "
             "or timeout; ⚠ marks a diagnosis (hover the cell)",
    "progress": "Epochs reported so far, of those it said it runs (a script's 'epoch 3/6') or its config's epochs",
    "metric": "The latest value of the model's primary metric",
    "data wait": "data wait: share of step time spent waiting for the next batch over the last 10 s "
                 "(≥ 20 % = input-bound, 5–20 % = moderately); reported by loaders wrapped in gridwatch.prefetch",
    "fold": "The cross-validation fold this trial holds out",
    "slot": "The device slot (CPU core group or GPU) its worker runs on",
    "duration": "Wall time since the trial started, or from start to end once it ended",
    "params": "This trial's values of the grid's axes",
}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
Index = QModelIndex | QPersistentModelIndex
Entry = tuple[Any, int]  # (sort key, grid position): a shown row


class TrialsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.live: Mapping[str, LiveTrial] = {}
        self.metric_of: dict[str, str | None] = {}  # model -> primary metric shown in the table
        self.badges: dict[str, Verdict] = {}  # trial id -> its active starvation verdict (a badge on the row)
        self.waiting: dict[str, str] = {}  # trial id -> why it has not started (the scheduler's words)
        self.tally = RunTally([], [], 0)  # counts, durations and the leaderboard, kept up to date per trial
        self.running: set[str] = set()  # ids of running trials, kept from the changes flushed
        self.sort_column, self.descending = -1, False
        self.state_filter, self.model_filter = "", ""
        self._all: list[str] = []  # every trial id, grid order
        self._pos: dict[str, int] = {}  # id -> grid position
        self._shown: list[Entry] = []  # the rows that pass the filter, ascending by (key, grid position)
        self._key: dict[str, Any] = {}  # id -> the key its entry in _shown was placed with
        self._dirty: dict[str, None] = {}  # ids changed since the last flush, in order

    # -- rows and ids -----------------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """The shown trial ids in row order (a new list: for reading, not per event)."""
        return [self._all[p] for _k, p in self._entries()]

    @property
    def rows(self) -> _RowOf:
        """Trial id -> its row now (absent when filtered out)."""
        return _RowOf(self)

    def row_of(self, trial_id: str) -> int | None:
        key = self._key.get(trial_id)
        if key is None:
            return None
        i = bisect.bisect_left(self._shown, (key, self._pos[trial_id]))
        return i if not self.descending else len(self._shown) - 1 - i

    def trial_at(self, row: int) -> LiveTrial:
        i = row if not self.descending else len(self._shown) - 1 - row
        return self.live[self._all[self._shown[i][1]]]

    def _entries(self) -> Iterable[Entry]:
        return reversed(self._shown) if self.descending else self._shown

    # -- whole-table changes (a new run, the user's sort or filter) --------------------------------------

    def reset(self, live: Mapping[str, LiveTrial], metric_of: dict[str, str | None],
              models: list[dict[str, Any]] | None = None, folds: int = 0) -> None:
        self.beginResetModel()
        self.live, self.metric_of = live, metric_of
        self._all = list(live)
        self._pos = {tid: i for i, tid in enumerate(self._all)}
        self.tally = RunTally(live.values(), models or [], folds)
        self.running = {tid for tid, lt in live.items() if lt.state == TrialState.RUNNING}
        self._dirty.clear()
        self._rebuild()
        self.endResetModel()

    def set_filter(self, state: str, model_name: str) -> None:
        self.beginResetModel()
        self.state_filter, self.model_filter = state, model_name
        self._rebuild()
        self.endResetModel()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Keys computed once per trial, one Python sort; selection and current row follow their trials."""
        self.layoutAboutToBeChanged.emit()
        kept = [(i, self.trial_at(i.row()).trial.id) for i in self.persistentIndexList() if i.isValid()]
        self.sort_column, self.descending = column, order == Qt.SortOrder.DescendingOrder and column >= 0
        self._rebuild()
        for index, tid in kept:
            row = self.row_of(tid)
            self.changePersistentIndex(index, QModelIndex() if row is None else self.index(row, index.column()))
        self.layoutChanged.emit()

    def _rebuild(self) -> None:
        self._key = {tid: self._sort_key(lt) for tid, lt in self.live.items() if self._accepts(lt)}
        self._shown = sorted((k, self._pos[tid]) for tid, k in self._key.items())

    def _accepts(self, lt: LiveTrial) -> bool:
        return ((not self.state_filter or lt.state == self.state_filter)
                and (not self.model_filter or lt.trial.model == self.model_filter))

    # -- per event: mark; at the display's pace: flush ----------------------------------------------------

    def refresh(self, trial_id: str) -> None:
        """Trial `trial_id` changed: its row is redrawn (and re-placed) at the next flush. O(1)."""
        if trial_id in self._pos:
            self._dirty[trial_id] = None

    def pending(self) -> bool:
        return bool(self._dirty)

    def flush(self) -> list[str]:
        """Apply the marked changes: counts, order, filter, then one dataChanged per run of adjacent rows.
        Returns the ids flushed."""
        ids = list(self._dirty)
        self._dirty.clear()
        redraw: list[int] = []
        for tid in ids:
            lt = self.live[tid]
            self.tally.update(lt)
            if lt.state == TrialState.RUNNING:
                self.running.add(tid)
            else:
                self.running.discard(tid)
            row = self._place(tid, lt)
            if row is not None:
                redraw.append(row)
        self._redraw_rows(redraw)
        return ids

    def refresh_running(self) -> None:
        """The running trials' durations and progress (their keys too, when sorted by one of them)."""
        for tid in self.running:
            self._dirty[tid] = None

    def _place(self, tid: str, lt: LiveTrial) -> int | None:
        """Move, insert or remove the trial's row as its key and the filter now say; its row if it stays."""
        old = self._key.get(tid)
        new = self._sort_key(lt) if self._accepts(lt) else None
        pos, n = self._pos[tid], len(self._shown)
        if old is not None and new is not None and old == new:
            return self.row_of(tid)
        if old is not None:
            i = bisect.bisect_left(self._shown, (old, pos))
            if new is not None:
                b = bisect.bisect_left(self._shown, (new, pos))
                j = b - 1 if b > i else b  # its place once taken out
                if j == i:
                    self._shown[i] = (new, pos)
                    self._key[tid] = new
                    return self._display(i, n)
                src, dst = self._display(i, n), self._display(j, n)
                self.beginMoveRows(QModelIndex(), src, src, QModelIndex(), dst + 1 if dst > src else dst)
                del self._shown[i]
                self._shown.insert(j, (new, pos))
                self._key[tid] = new
                self.endMoveRows()
                return dst
            row = self._display(i, n)
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._shown[i]
            del self._key[tid]
            self.endRemoveRows()
            return None
        if new is None:
            return None
        j = bisect.bisect_left(self._shown, (new, pos))
        row = self._display(j, n + 1)
        self.beginInsertRows(QModelIndex(), row, row)
        self._shown.insert(j, (new, pos))
        self._key[tid] = new
        self.endInsertRows()
        return row

    def _display(self, i: int, n: int) -> int:
        return i if not self.descending else n - 1 - i

    def _redraw_rows(self, rows: list[int]) -> None:
        last = len(COLUMNS) - 1
        for first, end in _runs(rows):
            self.dataChanged.emit(self.index(first, 0), self.index(end, last))

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

    # -- Qt ---------------------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._shown)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS.get(COLUMNS[section])
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._shown):
            return None
        lt = self.trial_at(index.row())
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(lt, col)
        if role == SORT_ROLE:
            return self._column_key(lt, col)
        flag = self.badges.get(lt.trial.id)
        if role == Qt.ItemDataRole.ForegroundRole and col in ("state", "data wait"):
            colour = "#e65100" if flag else STATE_COLOURS.get(lt.state)
            return QBrush(QColor(colour)) if colour else None  # none: the palette's text colour
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

    def _sort_key(self, lt: LiveTrial) -> Any:
        return 0 if self.sort_column < 0 else self._column_key(lt, COLUMNS[self.sort_column])

    def _column_key(self, lt: LiveTrial, col: str) -> Any:
        if col == "fold":
            return lt.trial.fold
        if col == "progress":
            return self.progress(lt)
        if col == "metric":
            v = self.latest(lt)
            return -math.inf if v is None or v != v else v
        if col == "duration":
            return self.duration(lt) or 0.0
        if col == "data wait":
            return -1.0 if lt.data_wait != lt.data_wait else lt.data_wait
        return self._text(lt, col)

    def epochs(self, lt: LiveTrial) -> int:
        return lt.epochs_planned

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
            if (metric is None and key != "data_wait") or key == metric:
                return value
        if metric is None and lt.metrics:  # no metric named and only final values: the first, as the leaderboard
            return next(iter(lt.metrics.values()))
        return None

    def duration(self, lt: LiveTrial) -> float | None:
        if lt.started is None:
            return None
        return (lt.ended or time.time()) - lt.started if lt.state != TrialState.QUEUED else None


class _RowOf(Mapping[str, int]):
    """`model.rows[trial_id]`: the row a trial is shown in, looked up by bisection."""

    def __init__(self, model: TrialsModel) -> None:
        self.model = model

    def __getitem__(self, trial_id: str) -> int:
        row = self.model.row_of(trial_id)
        if row is None:
            raise KeyError(trial_id)
        return row

    def __iter__(self) -> Iterator[str]:
        return iter(self.model.ids)

    def __len__(self) -> int:
        return self.model.rowCount()


def _runs(rows: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted runs of adjacent row numbers: [5, 3, 4, 9] -> (3, 5), (9, 9)."""
    ordered = sorted(set(rows))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        yield ordered[i], ordered[j]
        i = j + 1


class TrialsFilter(QIdentityProxyModel):
    """The view's model: row for row the TrialsModel, which filters and sorts itself (a Qt sort of 10,000
    rows would call back into Python for every comparison)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ""
        self.model_name = ""

    def set_filter(self, state: str, model_name: str) -> None:
        self.state, self.model_name = state, model_name
        source = self.sourceModel()
        if isinstance(source, TrialsModel):
            source.set_filter(state, model_name)


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
