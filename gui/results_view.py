"""Leaderboard: CV mean ± std per config, best first and highlighted, updated as folds finish."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from gridwatch.results.report import LEADERBOARD_HEADERS as HEADERS
from gridwatch.results.report import leaderboard_cells
from gridwatch.results.summary import ConfigResult


class LeaderboardView(QTableWidget):
    def __init__(self) -> None:
        super().__init__(0, len(HEADERS))
        self.setHorizontalHeaderLabels(HEADERS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)

    def show_board(self, board: list[ConfigResult]) -> None:
        self.setRowCount(len(board))
        best_of: set[str] = set()
        for i, (c, cells) in enumerate(zip(board, leaderboard_cells(board), strict=True)):
            first = c.model not in best_of
            best_of.add(c.model)
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if first:  # the best config of each model
                    font = QFont()
                    font.setBold(True)
                    item.setFont(font)
                    item.setBackground(QBrush(QColor("#e8f5e9")))
                self.setItem(i, j, item)
        self.resizeColumnsToContents()
        self.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
