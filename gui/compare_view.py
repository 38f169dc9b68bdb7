"""Two runs of the same grid side by side: their leaderboards (mean ± sd per config and the difference) and
one config's per-epoch curves overlaid. Runs of different grids are refused: their configs do not pair up.

Configs pair up by model and parameters (not by trial identity), so a run after a change of code, data or a
fixed value still lines up with the run before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gridwatch.grid.trials import TrialState
from gridwatch.gui.monitor import BLUE, GREEN, ORANGE, RED
from gridwatch.results.replay import live_from_store
from gridwatch.results.report import fixed, params_text
from gridwatch.results.store import SUFFIX, ResultStore, StoreError
from gridwatch.results.summary import ConfigResult, summarize
from gridwatch.run.live import LiveTrial

HEADERS = ["model", "params", "metric", "A mean ± sd", "B mean ± sd", "B − A"]
RUN_COLOURS = (BLUE, ORANGE)


class CompareError(ValueError):
    """Two runs that cannot be compared (different grids)."""


@dataclass(frozen=True)
class RunData:
    path: Path
    name: str  # the grid's [run] name
    grid_path: str | None
    board: list[ConfigResult]
    live: dict[str, LiveTrial]

    @property
    def label(self) -> str:
        return self.path.name.removesuffix(SUFFIX)


@dataclass(frozen=True)
class PairedConfig:
    model: str
    params: str
    a: ConfigResult | None
    b: ConfigResult | None

    @property
    def diff(self) -> float:
        return self.b.mean - self.a.mean if self.a is not None and self.b is not None else math.nan


def load_run(path: Path) -> RunData:
    """A results file's leaderboard and trials (with their per-epoch values); StoreError if it cannot be read."""
    store = ResultStore(path, create=False)
    try:
        live, info = live_from_store(store)
    finally:
        store.close()
    live = {k: lt for k, lt in live.items() if lt.state != TrialState.SUPERSEDED}
    board = summarize(live.values(), info["models"], info["folds"]).board
    return RunData(store.path, info["name"], info["grid_path"], board, live)


def check_comparable(a: RunData, b: RunData) -> None:
    """Runs of one grid: the same grid file, or the same [run] name."""
    if (a.grid_path and a.grid_path == b.grid_path) or a.name == b.name:
        return
    raise CompareError(f"{a.path.name} is a run of grid {a.name!r} ({a.grid_path or 'file unknown'}) and "
                       f"{b.path.name} of grid {b.name!r} ({b.grid_path or 'file unknown'}): only runs of the "
                       "same grid (same grid file or same name) can be compared")


def pair_boards(a: list[ConfigResult], b: list[ConfigResult]) -> list[PairedConfig]:
    """A's configs in A's order, then those only B has, in B's."""
    def key(c: ConfigResult) -> tuple[str, str]:
        return c.model, params_text(c.params)

    in_b = {key(c): c for c in b}
    in_a = {key(c) for c in a}
    out = [PairedConfig(c.model, key(c)[1], c, in_b.get(key(c))) for c in a]
    return out + [PairedConfig(c.model, key(c)[1], None, c) for c in b if key(c) not in in_a]


def compare_runs(parent: QWidget, a: Path, b: Path) -> CompareView | None:
    """Open the comparison of two results files, or say in a dialog why not."""
    try:
        runs = load_run(a), load_run(b)
    except StoreError as exc:
        QMessageBox.critical(parent, "Cannot compare runs", str(exc))
        return None
    try:
        check_comparable(*runs)
    except CompareError as exc:
        QMessageBox.warning(parent, "Cannot compare runs", str(exc))
        return None
    view = CompareView(*runs, parent=parent)
    view.show()
    return view


class CompareView(QDialog):
    def __init__(self, a: RunData, b: RunData, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.a, self.b = a, b
        self.pairs = pair_boards(a.board, b.board)
        self.setWindowTitle(f"Compare {a.label} and {b.label}")
        self.resize(1100, 700)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        legend = QLabel(f"<b>A</b> = {a.label} &nbsp; <b>B</b> = {b.label} &nbsp; (grid {a.name!r})")
        self.board = self._board()
        self.config_pick, self.metric_pick = QComboBox(), QComboBox()
        self.config_pick.addItems([f"{p.model} {p.params}" for p in self.pairs])
        self.config_pick.currentIndexChanged.connect(self._on_config)
        self.metric_pick.currentIndexChanged.connect(lambda *_: self.plot_curves())
        self.curves = pg.PlotWidget()
        self.curves.setLabel("bottom", "epoch / step")
        self.curves.addLegend(offset=(4, 4), labelTextSize="8pt")
        self.curves.showGrid(x=True, y=True, alpha=0.2)
        picks = QHBoxLayout()
        for w in (QLabel("Curves of"), self.config_pick, QLabel("metric"), self.metric_pick):
            picks.addWidget(w)
        picks.addStretch()
        below = QWidget()
        blay = QVBoxLayout(below)
        blay.setContentsMargins(0, 0, 0, 0)
        blay.addLayout(picks)
        blay.addWidget(self.curves, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.board)
        split.addWidget(below)
        layout = QVBoxLayout(self)
        layout.addWidget(legend)
        layout.addWidget(split, 1)
        self.board.currentCellChanged.connect(lambda row, *_: self.config_pick.setCurrentIndex(row))
        self.plotted = 0  # fold curves drawn
        self._on_config()

    def _board(self) -> QTableWidget:
        t = QTableWidget(len(self.pairs), len(HEADERS))
        t.setHorizontalHeaderLabels(HEADERS)
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for i, p in enumerate(self.pairs):
            one = p.a or p.b
            metric = f"{one.metric} {'↑' if one.goal == 'max' else '↓'}" if one else "-"
            cells = [p.model, p.params, metric, _mean_sd(p.a), _mean_sd(p.b), _signed(p.diff)]
            items = [QTableWidgetItem(text) for text in cells]
            if one is not None and not math.isnan(p.diff) and p.diff != 0:
                better = (p.diff > 0) == (one.goal == "max")
                items[-1].setForeground(QBrush(QColor(GREEN if better else RED)))
            for j, item in enumerate(items):
                t.setItem(i, j, item)
        t.resizeColumnsToContents()
        t.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        return t

    def _trials_of(self, run: RunData, pair: PairedConfig) -> list[LiveTrial]:
        return sorted((lt for lt in run.live.values()
                       if lt.model == pair.model and params_text(lt.params) == pair.params),
                      key=lambda lt: lt.trial.fold)

    def _on_config(self) -> None:
        i = self.config_pick.currentIndex()
        keys: list[str] = []
        if 0 <= i < len(self.pairs):
            pair = self.pairs[i]
            for run in (self.a, self.b):
                for lt in self._trials_of(run, pair):
                    keys += [k for k, _s, _v, _t in lt.steps if k not in keys]
            one = pair.a or pair.b
            if one is not None and one.metric in keys:  # the ranked metric first
                keys.remove(one.metric)
                keys.insert(0, one.metric)
        self.metric_pick.blockSignals(True)
        self.metric_pick.clear()
        self.metric_pick.addItems(keys)
        self.metric_pick.blockSignals(False)
        self.plot_curves()

    def plot_curves(self) -> None:
        """Each fold thin, the mean over folds thick: A in blue, B in orange."""
        self.curves.clear()
        self.plotted = 0
        i, key = self.config_pick.currentIndex(), self.metric_pick.currentText()
        if not 0 <= i < len(self.pairs) or not key:
            return
        for run, tag, colour in zip((self.a, self.b), "AB", RUN_COLOURS, strict=True):
            by_step: dict[int, list[float]] = {}
            for lt in self._trials_of(run, self.pairs[i]):
                xs = [s for k, s, _v, _t in lt.steps if k == key]
                ys = [v for k, _s, v, _t in lt.steps if k == key]
                if xs:
                    self.curves.plot(xs, ys, pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DotLine))
                    self.plotted += 1
                for x, y in zip(xs, ys, strict=True):
                    by_step.setdefault(x, []).append(y)
            if by_step:
                xs = sorted(by_step)
                self.curves.plot(xs, [sum(by_step[x]) / len(by_step[x]) for x in xs],
                                 pen=pg.mkPen(colour, width=2), name=f"{tag}: {run.label} (mean over folds)")


def _mean_sd(c: ConfigResult | None) -> str:
    if c is None:
        return "-"
    sd = f" ± {fixed(c.std)}" if c.folds_done > 1 else ""
    return f"{fixed(c.mean)}{sd} ({c.folds_done}/{c.folds_total})"


def _signed(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:+.4f}"
