"""Live monitor: CPU per core and total, RAM with each slot's worker RSS, and per-GPU readings.

Samples arrive from the TelemetrySampler thread through a signal; plots redraw from ring buffers on a
timer, one setData per curve per frame, so a burst of samples never floods the GUI thread.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from gridwatch.gui import theme
from gridwatch.gui.ring import RingSeries
from gridwatch.telemetry import records
from gridwatch.telemetry.sampler import Snapshot

GIB = 1024**3
HOUR_AT_MAX_RATE = 3600 * 20  # ring capacity: at least 1 h at the fastest sampling rate
WINDOWS = [("1 min", 60.0), ("5 min", 300.0), ("15 min", 900.0), ("1 h", 3600.0), ("whole run", None)]
# Mid-tones: each has a contrast of 3:1 or more on both the light and the dark plot background.
PALETTE = ["#1e88e5", "#e53935", "#43a047", "#ef6c00", "#ab47bc", "#0097a7", "#8d6e63", "#827717"]
BLUE, RED, GREEN, ORANGE, PURPLE, TEAL, BROWN, OLIVE = PALETTE

CPU_TIP = ("CPU, all cores: the busy share of every logical core since the last sample, averaged over all {n} "
           "cores. 100 % means every core was busy; one fully busy core alone shows {one:.0f} %.")
CORES_TIP = ("CPU per core: one row per logical core, the share of that core's time spent busy since the last "
             "sample (0–100 %). Dark = idle, bright = busy.")
RAM_TIP = ("RAM of the whole machine, every process included.\n"
           "used: total − available.\n"
           "available: what new allocations can get without swapping (free memory plus cache the kernel can "
           "drop).")
SLOT_TIP = ("{slots}: resident memory (RSS) of that slot's worker and every process it started, summed; pages "
            "shared between those processes count once per process.")
UTIL_TIP = ("utilisation: NVML utilisation: share of the last sample period during which a kernel ran on the "
            "GPU — not how much of the GPU it used (one small kernel at a time can read 100 %).\n"
            "memory used: VRAM in use on this GPU by every process, as a share of its total.\n"
            "Red shading: spans when this GPU was judged starved (see the Diagnosis panel).")
POWER_TIP = ("power: the board's power draw in watts, as NVML reports it (left axis).\n"
             "temperature: the GPU's core temperature in °C (right axis).")


LIVE_RATE_TIP = "Readings per second (1–20 Hz); an hour of history is kept"


class AgoAxis(pg.AxisItem):
    """Time as "how long ago": a rolling window's axis never changes, so it is never redrawn."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            s = int(round(-v))
            out.append("now" if s == 0 else (f"-{s // 60}m{s % 60:02d}" if s >= 60 else f"-{s}s"))
        return out


def _plot(unit: str, y_max: float | None = None) -> pg.PlotWidget:
    w = pg.PlotWidget(axisItems={"bottom": AgoAxis("bottom")})
    w.setLabel("left", unit)
    # No axis grid: its alpha-blended lines cost more than all the curves together (~20 ms a frame).
    if y_max is not None:
        for y in (y_max * 0.25, y_max * 0.5, y_max * 0.75):
            guide = pg.InfiniteLine(pos=y, angle=0, pen=pg.mkPen(theme.current().guide, width=1))
            guide.setObjectName(theme.GUIDE)  # recoloured when the light/dark scheme changes
            w.addItem(guide, ignoreBounds=True)
    w.setMouseEnabled(x=False, y=False)
    w.addLegend(offset=(4, 4), labelTextSize="8pt")
    if y_max is not None:
        w.setYRange(0, y_max, padding=0.02)
    w.getPlotItem().setClipToView(True)
    w.getPlotItem().setDownsampling(auto=True, mode="peak")
    return w


def _right_axis(plot: pg.PlotWidget, unit: str) -> pg.ViewBox:
    """A second y axis on the right with its own scale (watts and degrees must not share one), sharing the
    plot's time axis: pyqtgraph's linked-ViewBox pattern."""
    item = plot.getPlotItem()
    view = pg.ViewBox()
    view.setMouseEnabled(x=False, y=False)
    item.showAxis("right")
    item.scene().addItem(view)
    item.getAxis("right").linkToView(view)
    item.getAxis("right").setLabel(unit)
    view.setXLink(item)

    def follow() -> None:
        view.setGeometry(item.vb.sceneBoundingRect())
        view.linkedViewChanged(item.vb, view.XAxis)

    item.vb.sigResized.connect(follow)
    return view


class MonitorView(QWidget):
    def __init__(self, cores: int, gpu_count: int, gpu_note: str) -> None:
        super().__init__()
        self.cores, self.gpu_count = cores, gpu_count
        self.window_s: float | None = 60.0
        self.started = time.time()
        self.last_t = math.nan
        self.drawn_t = math.nan
        self.span = math.nan
        self.host = RingSeries(["total", *[f"core{i}" for i in range(cores)], "ram_used", "ram_available"],
                               HOUR_AT_MAX_RATE)
        self.gpu = RingSeries([f"{k}{i}" for i in range(gpu_count)
                               for k in ("util", "mem", "power", "temp")], HOUR_AT_MAX_RATE)
        self.slots = RingSeries([], HOUR_AT_MAX_RATE)
        self.nodes = RingSeries([], HOUR_AT_MAX_RATE)  # a Ray run's machines: CPU % of each
        self.replaying = False  # showing a finished run's stored telemetry; live samples wait
        self.util_plots: dict[int, pg.PlotWidget] = {}
        self.starved: dict[int, list[tuple[float, float | None]]] = {}  # GPU -> spans (end None: ongoing)
        self.regions: dict[int, list[pg.LinearRegionItem]] = {}
        self.curves: list[tuple[pg.PlotDataItem, RingSeries, int, float]] = []  # item, ring, row, scale
        self._build(gpu_note)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.redraw)
        self.timer.start(250)
        self.rate.valueChanged.connect(lambda hz: self.timer.setInterval(max(50, int(1000 / hz))))

    # -- layout -----------------------------------------------------------------------------------------

    def _build(self, gpu_note: str) -> None:
        self.window_pick = QComboBox()
        self.window_pick.addItems([w for w, _ in WINDOWS])
        self.window_pick.currentIndexChanged.connect(lambda i: setattr(self, "window_s", WINDOWS[i][1]))
        self.rate = QSpinBox()
        self.rate.setRange(1, 20)
        self.rate.setValue(4)
        self.rate.setSuffix(" Hz")
        self.window_pick.setToolTip("How much history the plots show")
        self.rate.setToolTip(LIVE_RATE_TIP)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Window"))
        bar.addWidget(self.window_pick)
        bar.addWidget(QLabel("Sampling"))
        bar.addWidget(self.rate)
        bar.addStretch()
        self.cpu_plot = _plot("%", 100)
        self._curve(self.cpu_plot, self.host, "total", "total", pg.mkPen(BLUE, width=2))
        self.cores_plot, self.strip = self._heat_strip()
        self.ram_plot = _plot("GiB")
        self._curve(self.ram_plot, self.host, "ram_used", "used", pg.mkPen(RED, width=2), 1 / GIB)
        self._curve(self.ram_plot, self.host, "ram_available", "available", pg.mkPen(GREEN, width=2), 1 / GIB)
        layout = QVBoxLayout(self)
        layout.setSpacing(2)
        layout.addLayout(bar)
        cpu_tip = CPU_TIP.format(n=self.cores, one=100 / max(1, self.cores))
        self._add(layout, "CPU, all cores (%)", self.cpu_plot, 1, cpu_tip)
        self._add(layout, "CPU per core (dark = idle, bright = busy)", self.cores_plot, 0, CORES_TIP)
        self.ram_label = self._add(layout, "RAM (GiB): used, available, and each slot's worker", self.ram_plot, 1,
                                   RAM_TIP)
        if self.gpu_count == 0:
            note = QLabel(f"{gpu_note or 'no NVIDIA GPU'}.\nGPU utilisation, memory, power and temperature "
                          "plots appear here when an NVIDIA GPU is present.")
            note.setAlignment(Qt.AlignmentFlag.AlignCenter)
            note.setWordWrap(True)  # a long note must not widen the panel past the plots' own width
            note.setObjectName("gpu_note")
            note.setStyleSheet("border: 1px dashed palette(mid); padding: 12px;")  # readable light or dark
            layout.addWidget(note)
        for i in range(self.gpu_count):
            self._gpu_plots(layout, i)
        self._share_time_axis()

    def _gpu_plots(self, layout: QVBoxLayout, i: int) -> None:
        util = _plot("%", 100)
        self.util_plots[i] = util
        self._curve(util, self.gpu, f"util{i}", "utilisation", pg.mkPen(PURPLE, width=2))
        self._curve(util, self.gpu, f"mem{i}", "memory used", pg.mkPen(ORANGE, width=2))
        power = _plot("power (W)")
        self._curve(power, self.gpu, f"power{i}", "power W", pg.mkPen(BROWN, width=1))
        temp = self._curve(_right_axis(power, "temperature (°C)"), self.gpu, f"temp{i}", None,
                           pg.mkPen(TEAL, width=1))
        power.getPlotItem().legend.addItem(temp, "temp °C")
        self._add(layout, f"GPU {i}: utilisation and memory used (%)", util, 1, UTIL_TIP)
        self._add(layout, f"GPU {i}: power (W, left axis) and temperature (°C, right axis)", power, 1,
                  POWER_TIP)

    def ensure_gpus(self, count: int) -> None:
        """A Ray run's GPUs, numbered for the run, may outnumber this machine's: plots for the ones beyond."""
        layout = self.layout()
        if count <= self.gpu_count or not isinstance(layout, QVBoxLayout):
            return
        old = self.gpu
        ring = RingSeries([f"{k}{i}" for i in range(count) for k in ("util", "mem", "power", "temp")],
                          HOUR_AT_MAX_RATE)
        ring.values[: len(old.names)] = old.values  # the GPUs already shown keep their rows and their history
        ring.t[:], ring.count, ring.head = old.t, old.count, old.head
        self.curves = [(item, ring if r is old else r, row, scale) for item, r, row, scale in self.curves]
        self.gpu = ring
        note = self.findChild(QLabel, "gpu_note")
        if note is not None:
            note.hide()
        for i in range(self.gpu_count, count):
            self._gpu_plots(layout, i)
        self.gpu_count = count
        self._share_time_axis()

    @staticmethod
    def _add(layout: QVBoxLayout, title: str, plot: pg.PlotWidget, stretch: int, tip: str) -> QLabel:
        """Titles are plain labels: text inside the plot scene would be re-rendered every frame. The label
        and the plot both say what the reading means when hovered."""
        label = QLabel(title)
        label.setStyleSheet("font-size: 9pt;")  # the palette's text colour: readable light or dark
        label.setToolTip(tip)
        plot.setToolTip(tip)
        layout.addWidget(label)
        layout.addWidget(plot, stretch)
        return label

    def _share_time_axis(self) -> None:
        """All plots scroll together; only the bottom one draws the time axis (one tick layout per frame)."""
        plots = self.plots()
        for p in plots:
            if p is not self.cpu_plot:
                p.setXLink(self.cpu_plot)
            p.getPlotItem().hideAxis("bottom")
        plots[-1].getPlotItem().showAxis("bottom")

    def _heat_strip(self) -> tuple[pg.PlotWidget, pg.ImageItem]:
        """Per-core CPU as a heat strip: one row per core, one image draw however many cores there are."""
        w = pg.PlotWidget(axisItems={"bottom": AgoAxis("bottom")})
        w.setMouseEnabled(x=False, y=False)
        w.setFixedHeight(max(90, min(200, 60 + 6 * self.cores)))
        w.getAxis("left").setTicks([[(i + 0.5, str(i)) for i in range(0, self.cores, max(1, self.cores // 4))]])
        w.setLabel("left", "core")
        w.setXLink(self.cpu_plot)
        strip = pg.ImageItem(axisOrder="row-major")
        strip.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256))
        strip.setLevels((0, 100))
        w.addItem(strip)
        w.setYRange(0, self.cores, padding=0)
        return w, strip

    def _curve(self, plot: pg.PlotWidget | pg.ViewBox, ring: RingSeries, name: str, label: str | None,
               pen: object, scale: float = 1.0) -> pg.PlotDataItem:
        if isinstance(plot, pg.ViewBox):  # a second y axis: the item goes into that axis's view
            item = pg.PlotDataItem([], [], pen=pen, connect="finite")
            plot.addItem(item)
        else:
            item = plot.plot([], [], pen=pen, name=label, connect="finite")
        self.curves.append((item, ring, ring.index[name], scale))
        return item

    def set_slots(self, slot_ids: list[str]) -> None:
        """One RSS line per worker slot of the current run (its running trial's memory)."""
        self.curves = [c for c in self.curves if c[1] is not self.slots]
        for item in list(self.ram_plot.listDataItems()):
            if getattr(item, "_gw_slot", False):
                self.ram_plot.removeItem(item)
        self.slots = RingSeries(slot_ids, HOUR_AT_MAX_RATE)
        tip = RAM_TIP + ("\n" + SLOT_TIP.format(slots=", ".join(f"{s} RSS" for s in slot_ids)) if slot_ids else "")
        self.ram_plot.setToolTip(tip)
        self.ram_label.setToolTip(tip)
        for i, sid in enumerate(slot_ids):
            item = self._curve(self.ram_plot, self.slots, sid, f"{sid} RSS",
                               pg.mkPen(PALETTE[(i + 3) % len(PALETTE)], width=1), 1 / GIB)
            item._gw_slot = True

    def set_nodes(self, names: list[str]) -> None:
        """One dashed CPU line per machine of a Ray run, beside the total of them all; none for a local run."""
        self.curves = [c for c in self.curves if c[1] is not self.nodes]
        for item in list(self.cpu_plot.listDataItems()):
            if getattr(item, "_gw_node", False):
                self.cpu_plot.removeItem(item)
        self.nodes = RingSeries([f"cpu@{n}" for n in names], HOUR_AT_MAX_RATE)
        for i, name in enumerate(names):
            pen = pg.mkPen(PALETTE[(i + 1) % len(PALETTE)], width=1, style=Qt.PenStyle.DashLine)
            item = self._curve(self.cpu_plot, self.nodes, f"cpu@{name}", f"node {name}", pen)
            item._gw_node = True

    # -- data -------------------------------------------------------------------------------------------

    def on_snapshot(self, s: Snapshot) -> None:
        if self.replaying:
            return
        self._append(s)

    def _append(self, s: Snapshot) -> None:
        row = {"total": s.cpu_total, "ram_used": s.ram_used, "ram_available": s.ram_available}
        row.update({f"core{i}": v for i, v in enumerate(s.cpu_cores)})
        self.host.append(s.t, row)
        g: dict[str, float] = {}
        for gs in s.gpus:
            mem = 100.0 * gs.mem_used / gs.mem_total if gs.mem_total == gs.mem_total and gs.mem_total else math.nan
            g.update({f"util{gs.index}": gs.util, f"mem{gs.index}": mem, f"power{gs.index}": gs.power_w,
                      f"temp{gs.index}": gs.temp_c})
        if s.nodes and s.gpus:  # a Ray run: its nodes' GPUs
            self.ensure_gpus(max(gs.index for gs in s.gpus) + 1)
        if self.gpu_count:
            self.gpu.append(s.t, g)
        if self.slots.names:
            self.slots.append(s.t, {k: p.rss for k, p in s.trials.items()})
        if s.nodes or self.nodes.names:
            names = [f"cpu@{n.name}" for n in s.nodes]
            if names != self.nodes.names:
                self.set_nodes([n.name for n in s.nodes])
            self.nodes.append(s.t, {f"cpu@{n.name}": n.cpu_total for n in s.nodes})
        self.last_t = s.t

    def redraw(self, force: bool = False) -> None:
        """One frame: skipped when no sample arrived since the last one (idle costs nothing)."""
        if not force and self.drawn_t == self.last_t:
            return
        self.drawn_t = self.last_t
        now = self.last_t if self.last_t == self.last_t else time.time()
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for item, ring, row, scale in self.curves:
            if id(ring) not in cache:
                cache[id(ring)] = ring.window(self.window_s, now)
            t, v = cache[id(ring)]
            item.setData(t - now, v[row] * scale if scale != 1.0 else v[row])
        t, v = cache.get(id(self.host)) or self.host.window(self.window_s, now)
        self._draw_strip(t - now, v)
        self._draw_starved(now)
        span = self.window_s if self.window_s is not None else self._whole_span(now)
        if span != self.span:  # the others are x-linked; a fixed range keeps the axes' pictures cached
            self.span = span
            self.cpu_plot.setXRange(-span, 0, padding=0)

    # -- starved spans and replay ------------------------------------------------------------------------

    def set_starved(self, spans: dict[int, list[tuple[float, float | None]]]) -> None:
        """Shade the spans when a GPU's work was judged starved (see the Diagnosis panel for why)."""
        self.starved = spans
        self._draw_starved(self.last_t if self.last_t == self.last_t else time.time())

    def _draw_starved(self, now: float) -> None:
        for gpu, plot in self.util_plots.items():
            spans = self.starved.get(gpu, [])
            pool = self.regions.setdefault(gpu, [])
            while len(pool) < len(spans):
                region = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(229, 57, 53, 50),
                                             pen=pg.mkPen(None))
                region.setToolTip("starved: see the Diagnosis panel")
                plot.addItem(region, ignoreBounds=True)
                pool.append(region)
            for i, region in enumerate(pool):
                if i < len(spans):
                    t0, t1 = spans[i]
                    region.setRegion((t0 - now, (now if t1 is None else t1) - now))
                region.setVisible(i < len(spans))

    def go_live(self) -> None:
        """Back to live samples after showing a finished run."""
        if self.replaying:
            self.replaying = False
            self.rate.setEnabled(True)
            self.rate.setToolTip(LIVE_RATE_TIP)
            self._reset_rings(self.slots.names)
        self.starved = {}

    def _reset_rings(self, slot_ids: list[str]) -> None:
        for ring in (self.host, self.gpu):
            ring.count = ring.head = 0
        self.set_slots(slot_ids)
        self.set_nodes([])
        self.last_t = self.drawn_t = math.nan

    def replay(self, rows: list[tuple[float, str, float]], slot_ids: list[str]) -> None:
        """Show a finished run's stored telemetry (1 Hz) instead of the live machine."""
        self.replaying = True
        self.rate.setEnabled(False)  # the stored readings are 1 Hz; the rate is the live sampler's
        self.rate.setToolTip("A run read from its results file: its telemetry was stored at 1 Hz")
        self._reset_rings(slot_ids)
        for snap in records.decode(rows):
            self._append(snap)
        self.window_pick.setCurrentIndex(len(WINDOWS) - 1)  # the whole run
        self.redraw(force=True)

    def replay_more(self, rows: list[tuple[float, str, float]]) -> None:
        """More stored telemetry of a run another process is writing, as it reaches the file."""
        for snap in records.decode(rows):
            self._append(snap)

    def _whole_span(self, now: float) -> float:
        """Whole run: the span grows in steps, so the axis is redrawn now and then, not every frame."""
        elapsed = now - self.host.oldest() if len(self.host) else 0.0
        step = 30.0 if elapsed < 600 else 300.0
        return max(step, math.ceil(elapsed / step) * step)

    def _draw_strip(self, t: np.ndarray, v: np.ndarray) -> None:
        if len(t) < 2:
            return
        first = self.host.index["core0"] if self.cores else 0
        self.strip.setImage(v[first:first + self.cores], autoLevels=False)
        self.strip.setRect(float(t[0]), 0.0, float(t[-1] - t[0]) or 1.0, float(self.cores))

    def plots(self) -> list[pg.PlotWidget]:
        """In layout order, top to bottom."""
        layout = self.layout()
        if layout is None:
            return []
        items = [layout.itemAt(i) for i in range(layout.count())]
        return [w for it in items if it is not None and isinstance(w := it.widget(), pg.PlotWidget)]
