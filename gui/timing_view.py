"""Timing: each trial's duration, the serial-equivalent sum, the wall time and the speedup."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from gridwatch.results.store import TrialRow


class TimingView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.summary = QLabel("No trial has ended yet.")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["trial", "slot", "state", "duration"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def show_rows(self, rows: list[TrialRow], wall_s: float) -> None:
        timed = sorted((r for r in rows if r.duration is not None and r.state in ("finished", "failed")),
                       key=lambda r: r.started or 0.0)
        self.table.setRowCount(len(timed))
        for i, r in enumerate(timed):
            for j, text in enumerate((r.id, r.slot or "-", r.state, f"{r.duration or 0.0:.1f} s")):
                self.table.setItem(i, j, QTableWidgetItem(text))
        serial = sum(r.duration or 0.0 for r in timed)
        if timed and wall_s > 0:
            self.summary.setText(f"{len(timed)} trials: serial-equivalent {serial:.1f} s · wall {wall_s:.1f} s · "
                                 f"speedup {serial / wall_s:.2f}x")
        self.table.resizeColumnsToContents()
