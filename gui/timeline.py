"""Timeline: one lane per slot, one bar per trial coloured by state — is every device kept busy?"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from gridwatch.grid.trials import TrialState
from gridwatch.gui.trials_model import STATE_COLOURS
from gridwatch.run.live import LiveTrial

BAR_HEIGHT = 0.7


class TimelineView(pg.PlotWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Timeline (one lane per slot)", size="9pt")
        self.setLabel("bottom", "seconds since start")
        self.showGrid(x=True, alpha=0.2)
        self.setMouseEnabled(y=False)
        self.setMinimumHeight(190)
        self.lanes: dict[str, int] = {}
        self.bars: dict[str, QGraphicsRectItem] = {}
        self.origin = time.time()

    def reset(self, slot_ids: list[str], origin: float) -> None:
        for bar in self.bars.values():
            self.removeItem(bar)
        self.bars.clear()
        self.origin = origin
        self.lanes = {sid: i for i, sid in enumerate(slot_ids)}
        ticks = [(i, sid) for sid, i in self.lanes.items()]
        self.getAxis("left").setTicks([ticks])
        self.setYRange(-0.6, max(0.6, len(slot_ids) - 0.4), padding=0)

    def update_trial(self, lt: LiveTrial, now: float | None = None) -> None:
        if lt.started is None or lt.slot is None or lt.state == TrialState.QUEUED:
            return
        if lt.slot not in self.lanes:
            self.lanes[lt.slot] = len(self.lanes)
            self.getAxis("left").setTicks([[(i, s) for s, i in self.lanes.items()]])
        bar = self.bars.get(lt.trial.id)
        if bar is None:
            bar = QGraphicsRectItem()
            bar.setPen(QPen(QColor("#ffffff"), 0))
            self.addItem(bar)
            self.bars[lt.trial.id] = bar
        end = lt.ended if lt.ended is not None else (now or time.time())
        y = self.lanes[lt.slot] - BAR_HEIGHT / 2
        bar.setRect(lt.started - self.origin, y, max(end - lt.started, 0.01), BAR_HEIGHT)
        bar.setBrush(QBrush(QColor(STATE_COLOURS.get(lt.state, "#9e9e9e"))))
        bar.setToolTip(f"{lt.trial.id}\n{lt.state} on {lt.slot}, {end - lt.started:.1f} s")

    def tick(self, live: Mapping[str, LiveTrial]) -> None:
        now = time.time()
        for lt in live.values():
            if lt.state == TrialState.RUNNING:
                self.update_trial(lt, now)
