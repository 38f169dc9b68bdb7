"""Leaderboard: CV mean ± std per config, best first and highlighted, updated as folds finish."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from gridwatch.results.report import fixed, params_text
from gridwatch.results.summary import ConfigResult

HEADERS = ["#", "model", "params", "metric", "CV mean", "± std", "folds"]


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
        for i, c in enumerate(board):
            arrow = "↑" if c.goal == "max" else "↓"
            folds = f"{c.folds_done}/{c.folds_total}" + (f" ({c.failed} failed)" if c.failed else "")
            cells = [str(i + 1), c.model, params_text(c.params), f"{c.metric} {arrow}", fixed(c.mean),
                     fixed(c.std) if c.folds_done > 1 else "-", folds]
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
