"""What the window costs: its CPU while monitoring an idle machine, and how fast the monitor redraws.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_overhead.py [--seconds 30] [--frames 60]

1. The GUI process's CPU over --seconds with the sampler at 4 Hz and the demo grid loaded (target <= 5 % of
   one core), next to an empty QMainWindow measured the same way in the same run.
2. Monitor redraw rate with 1 h of history (4 Hz) in 16 series, whole hour visible and a 1 min window
   (target >= 30 fps). Each frame is a full redraw and repaint.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QMainWindow  # noqa: E402

from gridwatch.gui.app import DEMO_GRID, get_qapp  # noqa: E402
from gridwatch.gui.main_window import MainWindow  # noqa: E402
from gridwatch.gui.monitor import MonitorView  # noqa: E402
from gridwatch.run.devices import detect  # noqa: E402
from gridwatch.telemetry.nvml import GpuSample  # noqa: E402
from gridwatch.telemetry.sampler import ProcSample, Snapshot  # noqa: E402


def cpu_percent_while(app, seconds: float) -> float:
    """Process CPU time (all threads, the sampler's too) over `seconds` of the real event loop, % of one core."""
    proc = psutil.Process()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    start_cpu = sum(proc.cpu_times()[:2])
    start = time.perf_counter()
    loop.exec()
    return 100.0 * (sum(proc.cpu_times()[:2]) - start_cpu) / (time.perf_counter() - start)


def idle_cost(app, seconds: float, tmp: Path) -> tuple[float, float]:
    empty = QMainWindow()
    empty.show()
    baseline = cpu_percent_while(app, seconds)
    empty.close()
    window = MainWindow(detect(), tmp)
    window.editor.load_file(DEMO_GRID)
    window.show()
    cpu_percent_while(app, 2.0)  # let the first layout and plots settle
    ours = cpu_percent_while(app, seconds)
    window.close()
    return ours, baseline


def filled_monitor(cores: int, hz: float = 4.0, hours: float = 1.0, gpus: int = 0) -> MonitorView:
    monitor = MonitorView(cores, gpus, "no NVIDIA GPU")
    monitor.set_slots(["cpu0"])
    n = int(3600 * hours * hz)
    t0 = time.time() - n / hz
    rng = np.random.default_rng(0)
    for i in range(n):
        cpu = tuple(rng.uniform(0, 100, cores))
        monitor.on_snapshot(Snapshot(t0 + i / hz, float(np.mean(cpu)), cpu, 8e9, 16e9, 24e9,
                                     tuple(GpuSample(g, 50.0, 20.0, 4e9, 8e9, 150.0, 60.0) for g in range(gpus)),
                                     {"cpu0": ProcSample(100.0, 1e9)}))
    return monitor


def fps(app, monitor: MonitorView, frames: int) -> float:
    monitor.timer.stop()
    monitor.resize(900, 700)
    monitor.show()
    app.processEvents()
    start = time.perf_counter()
    for _ in range(frames):
        monitor.redraw(force=True)
        monitor.repaint()  # paints every plot now, once
        app.processEvents()
    return frames / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    app = get_qapp()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gridwatch-bench-runs"
    ours, baseline = idle_cost(app, args.seconds, tmp)
    print(f"idle monitoring at 4 Hz for {args.seconds:.0f} s: gridwatch window {ours:.2f} % of one core "
          f"(target <= 5 %); empty QMainWindow {baseline:.2f} %; difference {ours - baseline:.2f} points")
    series = 16
    cores = series - 3  # total + cores + RAM used/available = 16 host series
    monitor = filled_monitor(cores)
    points = len(monitor.host) * series
    for label, window in (("whole hour visible", None), ("1 min window", 60.0)):
        monitor.window_s = window
        rate = fps(app, monitor, args.frames)
        print(f"redraw, 1 h x {series} series ({points:,} points), {label}: {rate:.1f} fps (target >= 30)")
    return 0 if ours <= 5.0 or math.isnan(ours) else 1


if __name__ == "__main__":
    sys.exit(main())
