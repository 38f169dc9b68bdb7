"""The window, offscreen, with real workers: edit, validate, run, pause, close."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QLabel

from gridwatch.grid.spec import SpecError, parse_grid
from gridwatch.gui.app import DEMO_GRID, get_qapp
from gridwatch.gui.main_window import MainWindow
from gridwatch.run.devices import detect

from helpers import REPO, alive, gated_grid, grid, running_workers, worker_processes, write

QUICK = """
import time
def fit(config):
    time.sleep(config.get("sleep", 0.05))
    return {"score": config["x"] + config["fold"]}
"""


@pytest.fixture
def window(qtbot, tmp_path):
    get_qapp()
    w = MainWindow(detect(), tmp_path / "runs")
    qtbot.addWidget(w)
    w.confirm_stop = lambda: True
    w.editor.load_file(DEMO_GRID)
    yield w
    w.close()


def _param_row(editor, name):
    table = editor.model_form.params
    return next(r for r in range(table.rowCount()) if table.item(r, 0).text() == name)


def test_editing_an_axis_updates_the_trial_count(window):
    ed = window.editor
    assert ed.message.startswith("54 trials") and window.run_act.isEnabled()
    assert window.trials.rowCount() == 54, "the table previews the grid's trials"
    row = _param_row(ed, "lr")
    ed.model_form.params.item(row, 2).setText("0.001, 0.003, 0.01")
    assert ed.message.startswith("72 trials"), ed.message


def test_saved_grid_runs_unchanged_in_the_cli(window, tmp_path):
    ed = window.editor
    ed.model_form.params.item(_param_row(ed, "lr"), 2).setText("0.002")
    out = ed.save_file(tmp_path / "edited.toml")
    spec = parse_grid(out.read_text(), out)
    assert spec.models[0].grid["lr"] == [0.002] and ed.message.startswith("36 trials")


def test_invalid_value_disables_run_and_shows_the_cli_message(window):
    ed = window.editor
    ed.model_form.params.item(_param_row(ed, "lr"), 2).setText("")
    assert not window.run_act.isEnabled()
    with pytest.raises(SpecError) as err:
        parse_grid(ed.text.toPlainText(), ed.path)
    assert ed.status.text() == str(err.value) and "grid.lr: axis is empty" in ed.status.text()
    ed.model_form.params.item(_param_row(ed, "lr"), 2).setText("0.001, oops")
    assert not window.run_act.isEnabled() and "grid.lr" in ed.status.text()
    ed.text.setPlainText(ed.text.toPlainText().replace("folds = 3", "folds = 1"))
    assert "run.folds: must be at least 2" in ed.status.text() and not window.run_act.isEnabled()


def _start(window, outside, params):
    write(outside / "quick.py", QUICK)
    window.editor.load_file(grid(outside, '[[model]]\nname = "q"\ntrainable = "quick.py:fit"\n' + params))
    window.start_run()


def test_run_a_tiny_grid_to_completion(window, qtbot, outside):
    _start(window, outside, "[model.grid]\nx = [1, 2, 3]\n")
    qtbot.waitUntil(lambda: window.session.status is not None, timeout=60_000)
    assert window.session.status == "done"
    states = {window.trials.trial_at(r).state for r in range(window.trials.rowCount())}
    assert window.trials.rowCount() == 6 and states == {"finished"}
    assert window.board.rowCount() == 3 and window.board.item(0, 4).text() == "3.5000"
    assert len(window.timeline.bars) == 6
    assert "6/6 done" in window.progress_label.text()
    assert window.timing.table.rowCount() == 6 and "speedup" in window.timing.summary.text()
    window.table.selectRow(0)
    assert window.detail.trial_id is not None and "finished" in window.detail.title.text()


def test_open_run_shows_a_past_run(window, qtbot, outside):
    _start(window, outside, "[model.fixed]\nx = 1\n")
    qtbot.waitUntil(lambda: window.session.status is not None, timeout=60_000)
    db = window.store.path
    window.open_results(db)
    assert window.session is None and window.trials.rowCount() == 2 and len(window.timeline.bars) == 2
    assert "read-only" in window.windowTitle() and window.board.rowCount() == 1


def _start_gated(window, outside, axes, free=0):
    window.editor.load_file(gated_grid(outside, axes, free=free))
    window.start_run()


def test_pause_stops_new_dispatch(window, qtbot, outside):
    _start_gated(window, outside, "x = [1, 2, 3, 4]")
    # both slots' first trials are held at the gate: pause while they run, with six more queued
    qtbot.waitUntil(lambda: len(running_workers(outside)) == 2, timeout=60_000)
    window.pause_act.trigger()
    assert window.resume_act.isEnabled() and not window.pause_act.isEnabled()
    session = window.session
    assert session.progress().paused and session.progress().queued == 6
    (outside / "gate").touch()

    def held_trials_ended():
        p = session.progress()
        assert p.ended == 2 and not p.running and p.queued == 6, p

    qtbot.waitUntil(held_trials_ended, timeout=60_000)
    # absence of a dispatch can only be watched for: longer than the session's 1 s retry tick
    with qtbot.assertNotEmitted(session.trial_started, wait=2500):
        pass
    held_trials_ended()
    assert session.status is None
    window.resume_act.trigger()
    qtbot.waitUntil(lambda: session.status is not None, timeout=60_000)
    assert session.status == "done" and session.progress().finished == 8


def test_closing_mid_run_leaves_no_processes(window, qtbot, outside):
    _start_gated(window, outside, "x = [1, 2, 3, 4]")  # held at the gate, which never opens
    qtbot.waitUntil(lambda: len(running_workers(outside)) == 2, timeout=60_000)
    pids = set(window.session.worker_pids().values())
    workers = [p for p in worker_processes(os.getpid()) if p.pid in pids]
    assert len(workers) == 2 and pids == running_workers(outside), "found the two slot workers, mid-trial"
    window.close()

    def workers_gone():
        assert not alive(workers), f"worker processes left after closing the window: {alive(workers)}"

    qtbot.waitUntil(workers_gone, timeout=5_000)


def test_gui_process_never_imports_torch(outside):
    """A whole demo-trainable run from the window, in a fresh process: torch only in the workers."""
    script = f"""
import sys
from PySide6.QtCore import QTimer
from gridwatch.gui.app import get_qapp
from gridwatch.gui.main_window import MainWindow
from gridwatch.run.devices import detect
app = get_qapp()
w = MainWindow(detect(), __import__("pathlib").Path({str(outside)!r}) / "runs")
w.editor.set_text(open({str(DEMO_GRID)!r}).read().replace("folds = 3", "folds = 2")
                  .replace("[1, 2, 3]", "[1]").replace("[32, 128]", "[128]").replace("epochs = 15", "epochs = 1")
                  .replace("epochs = 20", "epochs = 1").replace("epochs = 8", "epochs = 1")
                  .replace("[0.003, 0.01]", "[0.01]"))
w.start_run()
w.session.finished.connect(lambda s: (print("status", s), print("torch", "torch" in sys.modules), app.quit()))
QTimer.singleShot(120000, app.quit)
app.exec()
w.close()
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", script], cwd=outside, env=env, capture_output=True, text=True,
                       timeout=180)
    assert "status done" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "torch False" in r.stdout


class FakeGpus:
    """Behind the same interface as NvmlReader: one GPU whose power reading is unsupported."""

    note = ""

    def count(self):
        return 1

    def read(self, index):
        from gridwatch.telemetry.nvml import GpuSample

        return GpuSample(index, util=37.0, mem_util=10.0, mem_used=2e9, mem_total=8e9, temp_c=55.0)

    def processes(self, index):
        return {}, "no processes"

    def close(self):
        pass


def test_gpu_plots_with_a_missing_reading(qtbot, tmp_path):
    from gridwatch.gui.monitor import MonitorView
    from gridwatch.run.devices import GpuInfo, Machine

    get_qapp()
    machine = Machine("cpu", 2, 2, 8 * 2**30, (GpuInfo(0, "Fake GPU", 8 * 2**30),))
    w = MainWindow(machine, tmp_path / "runs", gpu=FakeGpus())
    qtbot.addWidget(w)
    monitor: MonitorView = w.monitor
    assert not monitor.findChildren(QLabel, "gpu_note") and len(monitor.plots()) == 5
    qtbot.waitUntil(lambda: len(monitor.gpu) >= 3, timeout=10_000)
    _, values = monitor.gpu.window(None, monitor.last_t)
    row = {n: values[i] for n, i in monitor.gpu.index.items()}
    assert (row["util0"] == 37.0).all() and (row["mem0"] == 25.0).all()
    assert np.isnan(row["power0"]).all(), "an unsupported reading is a gap, never 0"
    assert (row["temp0"] == 55.0).all()
    power_plot = monitor.plots()[4].getPlotItem()
    temp_curve = next(c for c, ring, col, _ in monitor.curves if ring is monitor.gpu and col == ring.index["temp0"])
    assert temp_curve.getViewBox() is not power_plot.vb, "°C has its own axis, not the watts' scale"
    assert power_plot.getAxis("right").isVisible() and "°C" in power_plot.getAxis("right").labelText
    monitor.redraw(force=True)
    monitor.set_starved({0: [(monitor.last_t - 5, None)]})
    [region] = monitor.regions[0]
    assert region.isVisible() and region.getRegion() == (-5.0, 0.0), "a starved span is shaded on the GPU plot"
    w.close()


def test_no_gpu_says_so(window):
    if window.machine.gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    notes = window.monitor.findChildren(QLabel, "gpu_note")
    assert notes and "no NVIDIA GPU" in notes[0].text()


def test_starved_trial_gets_a_badge_a_diagnosis_and_replays(window, qtbot, outside):
    g = grid(outside, """
        [[model]]
        name = "pose"
        trainable = "gridwatch.demo:input_bound"
        [model.fixed]
        prefetch = false
        heatmap_size = 64
        epochs = 30
        n_per_class = 400
        """, folds=2)
    window.editor.load_file(g)
    window.start_run()
    qtbot.waitUntil(lambda: bool(window.trials.badges), timeout=90_000)
    tid, verdict = next(iter(window.trials.badges.items()))
    assert verdict.kind == "input_bound" and verdict.active
    row = window.trials.rows[tid]
    state = window.trials.index(row, 2).data()
    assert "⚠ input-bound" in state
    assert window.trials.index(row, 5).data().endswith("%"), "the data-wait column is filled"
    assert "input-bound" in window.diagnosis.topLevelItem(0).text(0)
    qtbot.waitUntil(lambda: window.session.status is not None, timeout=120_000)
    lt = window.live[tid]
    assert any(key == "data_wait" for key, *_ in lt.steps), "a per-epoch data-wait curve"
    db = window.store.path
    window.open_results(db)
    assert window.diagnosis.topLevelItemCount() >= 1 and "input-bound" in window.diagnosis.topLevelItem(0).text(0)
    assert window.monitor.replaying and len(window.monitor.host) > 3, "the run's telemetry replays"


def test_queued_trial_says_why_it_waits(window, qtbot, outside):
    write(outside / "hog.py", """
        import os, time
        def fit(config):
            block = bytearray(300 * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            # hold the memory until the test has seen the others wait (the cap only stops a broken test)
            deadline = time.monotonic() + 120
            while not os.path.exists(config["gate"]) and time.monotonic() < deadline:
                time.sleep(0.02)
            return {"ok": 1.0}
        """)
    window.editor.load_file(grid(outside, '[[model]]\nname = "hog"\ntrainable = "hog.py:fit"\n[model.grid]\n'
                                          f'x = [1, 2]\n[model.fixed]\ngate = "{outside / "gate"}"\n',
                                 devices="cpu_slots = 2\nram_budget_gb = 0.75\nram_reserve_gb = 0"))
    window.start_run()
    states = lambda: [window.trials.index(r, 2).data() for r in range(window.trials.rowCount())]  # noqa: E731
    qtbot.waitUntil(lambda: "waiting" in states(), timeout=30_000)
    row = states().index("waiting")
    tip = window.trials.index(row, 2).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("waiting: ") and ("memory" in tip or "RAM" in tip), tip
    (outside / "gate").touch()
    qtbot.waitUntil(lambda: window.session.status is not None, timeout=60_000)
    assert window.session.status == "done"


def test_open_run_then_resume_runs_only_the_unfinished(window, qtbot, outside):
    _start_gated(window, outside, "x = [1, 2, 3, 4]", free=4)  # four finish at once, the rest are held
    qtbot.waitUntil(lambda: window.session.progress().finished == 4 and len(running_workers(outside)) == 2,
                    timeout=60_000)
    qtbot.waitUntil(lambda: "ETA" in window.progress_label.text(), timeout=10_000)
    window.stop_run()
    assert "ETA" not in window.progress_label.text(), "no ETA once Stop is pressed"
    qtbot.waitUntil(lambda: window.session.status is not None, timeout=30_000)
    assert "ETA" not in window.progress_label.text() and window.resume_run_act.isEnabled(), \
        "the run just stopped here can be resumed"
    db = window.store.path
    window.open_results(db)
    done = {tid for tid, lt in window.live.items() if lt.state == "finished"}
    assert len(done) == 4 and window.resume_run_act.isEnabled()
    (outside / "gate").touch()
    window.resume_opened()
    qtbot.waitUntil(lambda: window.session is not None and window.session.status is not None, timeout=60_000)
    rows = {r.id: r for r in window.store.trials()}
    assert window.session.status == "done" and all(r.state == "finished" for r in rows.values())
    spans = [e - s for s, e in window.store.db.execute("SELECT started, ended FROM sessions ORDER BY id")]
    assert len(spans) == 2 and spans[0] > 0.05
    window._tick()
    wall = window.trials.tally.summary(window._wall()).wall_s
    this_session = window.session.progress().elapsed_s
    assert wall - this_session >= spans[0] - 0.01, "a resumed run's time counts its first session too"
    assert all(rows[t].attempts == 1 for t in done), "zero finished trials repeated"
    assert window.store.path == db


def test_the_layout_is_remembered_in_the_given_file_only(qtbot, tmp_path):
    get_qapp()
    ini = tmp_path / "window.ini"
    w = MainWindow(detect(), tmp_path / "runs", settings_file=ini)
    qtbot.addWidget(w)
    w.show()
    w.findChild(QDockWidget, "dock_timeline").hide()
    w.close()
    assert "geometry=" in ini.read_text() and "state=" in ini.read_text()
    again = MainWindow(detect(), tmp_path / "runs", settings_file=ini)
    qtbot.addWidget(again)
    assert not again.findChild(QDockWidget, "dock_timeline").isVisibleTo(again), "the hidden dock stays hidden"
    fresh = MainWindow(detect(), tmp_path / "runs")
    qtbot.addWidget(fresh)
    assert fresh.findChild(QDockWidget, "dock_timeline").isVisibleTo(fresh), "no settings file: defaults"
    fresh.close()
    again.close()
