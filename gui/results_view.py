"""Leaderboard: CV mean ± std per config, best first and highlighted, updated as folds finish.

A table view over a list model: a new board replaces the list and redraws what is visible (the view asks only
for the rows on screen), so thousands of configs cost the same per refresh as ten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QTableWidgetItem

from gridwatch.results.report import LEADERBOARD_HEADERS as HEADERS
from gridwatch.results.report import leaderboard_cells
from gridwatch.results.summary import ConfigResult

T = TypeVar("T")
Index = QModelIndex | QPersistentModelIndex
BEST = QBrush(QColor(67, 160, 71, 56))  # translucent green: the palette's text stays readable, light or dark


class ListModel(QAbstractTableModel, Generic[T]):
    """Rows of text made on demand from a list of items; `show` swaps the list in place."""

    def __init__(self, headers: Sequence[str], cells: Callable[[int, T], list[str]]) -> None:
        super().__init__()
        self.headers, self.cells = list(headers), cells
        self.items: list[T] = []
        self.bold: set[int] = set()  # rows drawn bold on a light green background

    def show(self, items: list[T], bold: set[int] | None = None) -> None:
        old, new = len(self.items), len(items)
        if new > old:
            self.beginInsertRows(QModelIndex(), old, new - 1)
            self.items, self.bold = items, bold or set()
            self.endInsertRows()
        elif new < old:
            self.beginRemoveRows(QModelIndex(), new, old - 1)
            self.items, self.bold = items, bold or set()
            self.endRemoveRows()
        else:
            self.items, self.bold = items, bold or set()
        if new:
            self.dataChanged.emit(self.index(0, 0), self.index(new - 1, len(self.headers) - 1))

    def text(self, row: int, column: int) -> str:
        return self.cells(row, self.items[row])[column]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.items):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), index.column())
        if index.row() in self.bold:
            if role == Qt.ItemDataRole.FontRole:
                font = QFont()
                font.setBold(True)
                return font
            if role == Qt.ItemDataRole.BackgroundRole:
                return BEST
        return None


class ListTable(QTableView):
    """A read-only table over a ListModel; reads like a QTableWidget (rowCount, item(row, column).text())."""

    def __init__(self, model: ListModel[Any]) -> None:
        super().__init__()
        self.list_model = model
        self.setModel(model)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.horizontalHeader().setResizeContentsPrecision(0)  # widths from the rows on screen only
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)

    def rowCount(self) -> int:
        return self.list_model.rowCount()

    def columnCount(self) -> int:
        return self.list_model.columnCount()

    def item(self, row: int, column: int) -> QTableWidgetItem | None:
        if not (0 <= row < self.rowCount() and 0 <= column < self.columnCount()):
            return None
        return QTableWidgetItem(self.list_model.text(row, column))


class LeaderboardView(ListTable):
    def __init__(self) -> None:
        super().__init__(ListModel(HEADERS, self._cells))
        self.board: list[ConfigResult] = []
        self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)

    def _cells(self, row: int, c: ConfigResult) -> list[str]:
        [cells] = leaderboard_cells([c])
        return [str(row + 1), *cells[1:]]

    def show_board(self, board: list[ConfigResult]) -> None:
        best_of: set[str] = set()
        bold = set()
        for i, c in enumerate(board):
            if c.model not in best_of:  # the best config of each model
                best_of.add(c.model)
                bold.add(i)
        fresh = not self.board and board
        self.board = board
        self.list_model.show(board, bold)
        if fresh:
            self.resizeColumnsToContents()
            self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
