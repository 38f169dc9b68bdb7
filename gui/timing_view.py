"""Timing: each trial's duration, the serial-equivalent sum, the wall time and the speedup."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gridwatch.gui.results_view import ListModel, ListTable
from gridwatch.results.report import TIMING_HEADERS, timing_totals
from gridwatch.results.summary import RunSummary, TrialLike


def _cells(_row: int, r: TrialLike) -> list[str]:
    return [r.id, r.slot or "-", r.state, f"{r.duration or 0.0:.1f} s"]  # as report.timing_cells


class TimingView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel("No trial has ended yet.")
        self.table = ListTable(ListModel(TIMING_HEADERS, _cells))
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def show_summary(self, summary: RunSummary) -> None:
        fresh = not self.table.rowCount() and summary.timed
        self.table.list_model.show(list(summary.timed))
        if summary.timed and summary.wall_s > 0:
            self.summary.setText(timing_totals(summary))
        if fresh:
            self.table.resizeColumnsToContents()
