"""Timeline: one lane per slot, one bar per trial coloured by state — is every device kept busy?

All bars are one graphics item over numpy arrays: adding or moving a bar is O(1), and a frame draws at most
a few rectangles per pixel column of each lane (bars closer than a pixel merge), however many trials ran.
A bar is at least one pixel wide, so thousands of 2 ms trials still show as busy lanes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QPainter

from gridwatch.grid.trials import TrialState
from gridwatch.gui.trials_model import STATE_COLOURS
from gridwatch.run.live import LiveTrial

BAR_HEIGHT = 0.7
FRAME_MS = 500  # bars are redrawn at most this often (the tick redraws them as often)
STATES = list(STATE_COLOURS)  # a bar's colour is its state's index here
PAINT_ORDER = [TrialState.FINISHED, TrialState.STOPPED, TrialState.FAILED, TrialState.TIMEOUT, TrialState.RUNNING]


class TimelineBars(pg.GraphicsObject):
    """Every trial's bar: start, end, lane and state in growing arrays; painted merged per pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.start = np.zeros(256)
        self.end = np.zeros(256)
        self.lane = np.zeros(256, dtype=np.int32)
        self.state = np.zeros(256, dtype=np.int8)
        self.lanes = 1
        self.setAcceptHoverEvents(True)

    def __len__(self) -> int:
        return len(self.ids)

    def clear(self) -> None:
        self.ids.clear()
        self.index.clear()
        self.changed()

    def set_bar(self, trial_id: str, start: float, end: float, lane: int, state: TrialState) -> None:
        i = self.index.get(trial_id)
        if i is None:
            i = len(self.ids)
            if i == len(self.start):
                for name in ("start", "end", "lane", "state"):
                    a = getattr(self, name)
                    setattr(self, name, np.concatenate([a, np.zeros_like(a)]))
            self.ids.append(trial_id)
            self.index[trial_id] = i
        self.start[i], self.end[i], self.lane[i] = start, max(end, start), lane
        self.state[i] = STATES.index(state) if state in STATES else 0

    def set_end(self, trial_id: str, end: float) -> None:
        i = self.index.get(trial_id)
        if i is not None:
            self.end[i] = max(end, self.start[i])

    def changed(self) -> None:
        self.prepareGeometryChange()
        self.informViewBoundsChanged()
        self.update()

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange: Any = None) -> tuple[float, float] | None:
        n = len(self.ids)
        if ax == 1:
            return (-0.5, self.lanes - 0.5)
        if not n:
            return None
        return float(self.start[:n].min()), float(self.end[:n].max())

    def boundingRect(self) -> QRectF:
        x = self.dataBounds(0) or (0.0, 1.0)
        return QRectF(x[0], -0.5, max(x[1] - x[0], 1e-3), self.lanes)

    def paint(self, painter: QPainter, *args: Any) -> None:
        n = len(self.ids)
        view = self.viewRect()
        px = self.pixelWidth()
        if not n or view is None or not px > 0:
            return
        painter.setPen(Qt.PenStyle.NoPen)
        left = view.left()
        start, end = self.start[:n], self.end[:n]
        shown = (end >= left - px) & (start <= view.right() + px)
        for state in PAINT_ORDER:
            code = STATES.index(state)
            pick = shown & (self.state[:n] == code)
            if not pick.any():
                continue
            painter.setBrush(QBrush(QColor(STATE_COLOURS[state])))
            rects: list[QRectF] = []
            for lane in np.unique(self.lane[:n][pick]):
                on = pick & (self.lane[:n] == lane)
                x0s, x1s = np.floor((start[on] - left) / px), np.floor((end[on] - left) / px) + 1
                # a bar this wide gives up its first and last pixel, so a 1 px gap shows between it and the next
                # trial on the slot (which starts in the pixel this one ends in)
                wide = x1s - x0s >= 4
                x0s, x1s = np.where(wide, x0s + 1, x0s), np.where(wide, x1s - 1, x1s)
                for x0, x1 in _merged(x0s, x1s):
                    rects.append(QRectF(left + x0 * px, lane - BAR_HEIGHT / 2, (x1 - x0) * px, BAR_HEIGHT))
            painter.drawRects(rects)

    def bar_at(self, x: float, y: float) -> int | None:
        n = len(self.ids)
        if not n:
            return None
        slack = max(self.pixelWidth() or 0.0, 0.0)
        hit = np.nonzero((self.lane[:n] == round(y)) & (self.start[:n] - slack <= x) & (self.end[:n] + slack >= x))[0]
        return int(hit[-1]) if len(hit) else None

    def hoverEvent(self, ev: Any) -> None:
        if ev.isExit():
            self.setToolTip("")
            return
        p: QPointF = ev.pos()
        i = self.bar_at(p.x(), p.y())
        if i is None:
            self.setToolTip("")
            return
        state = STATES[int(self.state[i])]
        self.setToolTip(f"{self.ids[i]}\n{state}, {self.end[i] - self.start[i]:.3g} s")


def _merged(x0: np.ndarray, x1: np.ndarray) -> list[tuple[float, float]]:
    """Pixel spans [x0, x1) merged where they touch or overlap."""
    order = np.argsort(x0, kind="stable")
    x0, x1 = x0[order], x1[order]
    reach = np.maximum.accumulate(x1)
    starts = np.concatenate([[0], np.nonzero(x0[1:] > reach[:-1])[0] + 1])
    ends = np.concatenate([starts[1:], [len(x0)]]) - 1
    return list(zip(x0[starts].tolist(), reach[ends].tolist(), strict=True))


class TimelineView(pg.PlotWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Timeline (one lane per slot)", size="9pt")
        self.setLabel("bottom", "seconds since start")
        self.showGrid(x=True, alpha=0.2)
        self.setMouseEnabled(y=False)
        self.setMinimumHeight(190)
        self.lanes: dict[str, int] = {}
        self.bars_item = TimelineBars()
        self.addItem(self.bars_item)
        self.origin = time.time()
        self._dirty: dict[str, LiveTrial] = {}
        self.frame = QTimer(self)
        self.frame.setSingleShot(True)
        self.frame.setInterval(FRAME_MS)
        self.frame.timeout.connect(self.flush)

    @property
    def bars(self) -> dict[str, int]:
        """Trial id -> its bar's index in the bars item (changes not yet drawn are applied first)."""
        if self._dirty:
            self.flush()
        return self.bars_item.index

    def reset(self, slot_ids: list[str], origin: float) -> None:
        self._dirty.clear()
        self.bars_item.clear()
        self.origin = origin
        self.lanes = {sid: i for i, sid in enumerate(slot_ids)}
        self._set_ticks()
        self.setYRange(-0.6, max(0.6, len(slot_ids) - 0.4), padding=0)

    def _set_ticks(self) -> None:
        self.getAxis("left").setTicks([[(i, s) for s, i in self.lanes.items()]])
        self.bars_item.lanes = max(1, len(self.lanes))

    def update_trial(self, lt: LiveTrial, now: float | None = None) -> None:
        """O(1): the trial's bar is drawn at the next frame."""
        self._dirty[lt.trial.id] = lt
        if not self.frame.isActive():
            self.frame.start()

    def flush(self) -> None:
        self.frame.stop()
        now = time.time()
        for lt in self._dirty.values():
            self._place(lt, now)
        self._dirty.clear()
        self.bars_item.changed()

    def _place(self, lt: LiveTrial, now: float) -> None:
        if lt.started is None or lt.slot is None or lt.state == TrialState.QUEUED:
            return
        if lt.slot not in self.lanes:
            self.lanes[lt.slot] = len(self.lanes)
            self._set_ticks()
            self.setYRange(-0.6, max(0.6, len(self.lanes) - 0.4), padding=0)
        end = lt.ended if lt.ended is not None else now
        self.bars_item.set_bar(lt.trial.id, lt.started - self.origin, end - self.origin, self.lanes[lt.slot],
                               lt.state)

    def tick(self, running: Iterable[LiveTrial]) -> None:
        """The running trials' bars grow to now (only theirs: O(running))."""
        if self._dirty:
            self.flush()
        now = time.time()
        for lt in running:
            if lt.state == TrialState.RUNNING and lt.started is not None:
                self.bars_item.set_end(lt.trial.id, now - self.origin)
        self.bars_item.changed()
