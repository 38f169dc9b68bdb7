"""What the window costs: its CPU while monitoring an idle machine, and how fast the monitor redraws.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_overhead.py [--seconds 30] [--frames 60] [--scale-only]

1. The GUI process's CPU over --seconds with the sampler at 4 Hz and the demo grid loaded (target <= 5 % of
   one core), next to an empty QMainWindow measured the same way in the same run.
2. Monitor redraw rate with 1 h of history (4 Hz) in 16 series, whole hour visible and a 1 min window
   (target >= 30 fps). Each frame is a full redraw and repaint.
3. The window never slows the run (--scale-only runs just this): a 4,000-trial grid (2,000 configs x 2 folds
   of ~2 ms python trials, 2 CPU slots) run from a real MainWindow (start_run(), as the Run button does) and
   by `gridwatch run` in a subprocess: both wall times and their ratio (target <= 1.2), and trials ended per
   second in the first and last tenth of the window's run (flat, not falling). Then a 10,000-trial table:
   sorting by a column, filtering, selecting a row (ms each).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QMainWindow  # noqa: E402
from scale_grid import write_grid  # noqa: E402  (benchmarks/, beside this file)

from gridwatch.grid import trials as grid_trials  # noqa: E402
from gridwatch.grid.spec import parse_grid  # noqa: E402
from gridwatch.grid.trials import TrialState  # noqa: E402
from gridwatch.gui.app import DEMO_GRID, get_qapp  # noqa: E402
from gridwatch.gui.main_window import MainWindow  # noqa: E402
from gridwatch.gui.monitor import MonitorView  # noqa: E402
from gridwatch.gui.trials_model import COLUMNS  # noqa: E402
from gridwatch.gui.trials_panel import TrialsPanel  # noqa: E402
from gridwatch.run.devices import detect  # noqa: E402
from gridwatch.run.live import LiveTrial  # noqa: E402
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


def window_run(app, grid: Path, runs_dir: Path, limit_s: float) -> tuple[float, list[float], int]:
    """Run `grid` from a real window, as the Run button does: (wall s, each trial's end time from the start,
    trials in the run)."""
    window = MainWindow(detect(), runs_dir)
    window.confirm_stop = lambda: True
    window.show()
    window.editor.load_file(grid)
    loop = QEventLoop()
    ends: list[float] = []
    start = time.perf_counter()
    window.start_run()
    session = window.session
    assert session is not None, "the window did not start the run"
    session.trial_ended.connect(lambda _tid: ends.append(time.perf_counter() - start))
    session.finished.connect(lambda _status: loop.quit())
    QTimer.singleShot(int(limit_s * 1000), loop.quit)
    loop.exec()
    wall = time.perf_counter() - start
    total = len(session.trials())
    window.close()
    return wall, ends, total


def cli_run(grid: Path, runs_dir: Path) -> float:
    env = dict(os.environ, GRIDWATCH_RUNS=str(runs_dir))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gridwatch", "run", str(grid), "--quiet"], cwd=grid.parent, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - start


def tenth_rates(ends: list[float], wall: float) -> tuple[float, float]:
    """Trials ended per second in the first and the last tenth of the run."""
    tenth = wall / 10
    first = sum(1 for t in ends if t < tenth) / tenth
    last = sum(1 for t in ends if t >= wall - tenth) / tenth
    return first, last


def timed_ms(app, action) -> float:
    start = time.perf_counter()
    action()
    app.processEvents()
    return 1000 * (time.perf_counter() - start)


def table_timings(app, folder: Path, configs: int = 5000) -> dict[str, float]:
    """A 10,000-trial table (6,000 finished, 2 running): sort, filter and select, in ms."""
    grid = write_grid(folder, configs)
    live = {t.id: LiveTrial(t) for t in grid_trials.expand(parse_grid(grid.read_text(), grid))}
    now = time.time()
    for i, lt in enumerate(live.values()):
        if i < 6000:
            lt.state, lt.slot, lt.started, lt.ended = TrialState.FINISHED, f"cpu{i % 2}", now + i, now + i + 0.002
            lt.metrics = {"score": (i * 7919 % 1000) / 1000}
        elif i < 6002:
            lt.state, lt.slot, lt.started = TrialState.RUNNING, f"cpu{i % 2}", now
    panel = TrialsPanel()
    panel.resize(1200, 800)
    panel.show()
    out = {"load": timed_ms(app, lambda: panel.show_trials(live, [{"name": "tiny", "metric": "score"}], 2))}
    order = Qt.SortOrder.DescendingOrder
    for col in ("metric", "state", "duration", "trial"):
        out[f"sort by {col}"] = timed_ms(app, lambda c=col: panel.table.sortByColumn(COLUMNS.index(c), order))
    out["filter running"] = timed_ms(app, lambda: panel.state_pick.setCurrentIndex(2))
    out["filter finished"] = timed_ms(app, lambda: panel.state_pick.setCurrentIndex(3))
    out["clear filter"] = timed_ms(app, lambda: panel.state_pick.setCurrentIndex(0))
    out["select a row"] = timed_ms(app, lambda: panel.table.selectRow(5000))
    lt = next(iter(live.values()))
    out["one trial changed (flush)"] = timed_ms(app, lambda: (panel.trial_changed(lt), panel.flush()))
    panel.close()
    return out


def scale_case(app, tmp: Path, configs: int, limit_s: float) -> bool:
    grid = write_grid(tmp / "scale", configs)
    n = configs * 2
    cli = cli_run(grid, tmp / "scale-runs-cli")
    wall, ends, total = window_run(app, grid, tmp / "scale-runs-window", limit_s)
    first, last = tenth_rates(ends, wall)
    print(f"{n:,}-trial grid ({configs:,} configs x 2 folds, ~2 ms trials, 2 CPU slots):")
    print(f"  gridwatch run (CLI):   {cli:.1f} s")
    print(f"  window (start_run):    {wall:.1f} s, {len(ends):,}/{total:,} trials ended  ->  ratio {wall / cli:.2f} "
          f"(target <= 1.2)")
    print(f"  window trials ended per s: first tenth {first:.0f}, last tenth {last:.0f} (flat, not falling)")
    for name, ms in table_timings(app, tmp / "table").items():
        print(f"  10,000-trial table, {name}: {ms:.1f} ms")
    return len(ends) >= n and wall / cli <= 1.2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--scale-only", action="store_true", help="only the 4,000-trial window-vs-CLI case")
    ap.add_argument("--configs", type=int, default=2000, help="configs in the scale case's grid (x 2 folds)")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds the window's run may take at most")
    args = ap.parse_args()
    app = get_qapp()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "gridwatch-bench-runs"
    if args.scale_only:
        return 0 if scale_case(app, tmp, args.configs, args.limit) else 1
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
    scaled = scale_case(app, tmp, args.configs, args.limit)
    return 0 if (ours <= 5.0 or math.isnan(ours)) and scaled else 1


if __name__ == "__main__":
    sys.exit(main())
