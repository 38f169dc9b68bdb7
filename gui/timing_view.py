"""Timing: each trial's duration, the serial-equivalent sum, the wall time and the speedup."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from gridwatch.results.report import TIMING_HEADERS, timing_cells, timing_totals
from gridwatch.results.summary import RunSummary


class TimingView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel("No trial has ended yet.")
        self.table = QTableWidget(0, len(TIMING_HEADERS))
        self.table.setHorizontalHeaderLabels(TIMING_HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def show_summary(self, summary: RunSummary) -> None:
        cells = timing_cells(summary)
        self.table.setRowCount(len(cells))
        for i, row in enumerate(cells):
            for j, text in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(text))
        if cells and summary.wall_s > 0:
            self.summary.setText(timing_totals(summary))
        self.table.resizeColumnsToContents()
