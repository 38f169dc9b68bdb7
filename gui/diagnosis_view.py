"""Diagnosis panel: current and past starvation verdicts, each with its evidence and the fix to try."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from gridwatch.telemetry.starvation import Verdict


class DiagnosisView(QTreeWidget):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.setHeaderLabels(["verdict", "for", "evidence"])
        self.setColumnWidth(0, 260)
        self.setColumnWidth(1, 50)
        self.setWordWrap(True)
        self.setUniformRowHeights(False)
        self._active: list[tuple[QTreeWidgetItem, Verdict]] = []  # their "for" column grows while shown
        self._empty()

    def _empty(self) -> None:
        self.clear()
        self._active = []
        item = QTreeWidgetItem(["No starvation seen: every trial gets its data in time."])
        item.setForeground(0, QBrush(QColor("#757575")))
        self.addTopLevelItem(item)

    def show_verdicts(self, verdicts: list[Verdict]) -> None:
        if not verdicts:
            self._empty()
            return
        self.clear()
        self._active = []
        now = self.clock()
        ordered = sorted(verdicts, key=lambda v: (not v.active, -v.started))
        for v in ordered:
            span = (now if v.active else v.ended) - v.started
            item = QTreeWidgetItem([("⚠ " if v.active else "") + v.title, f"{span:.0f} s", v.evidence])
            item.setToolTip(2, v.evidence)
            fix = QTreeWidgetItem(["fix", "", v.fix])
            fix.setToolTip(2, v.fix)
            item.addChild(fix)
            if v.active:
                self._active.append((item, v))
                font = QFont()
                font.setBold(True)
                item.setFont(0, font)
                item.setForeground(0, QBrush(QColor("#e65100")))
            else:
                for col in range(3):
                    item.setForeground(col, QBrush(QColor("#757575")))
            self.addTopLevelItem(item)
            item.setExpanded(v.active)

    def tick(self) -> None:
        """How long each open verdict has lasted, as of now."""
        now = self.clock()
        for item, v in self._active:
            item.setText(1, f"{now - v.started:.0f} s")
