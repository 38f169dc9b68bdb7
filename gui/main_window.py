"""The main window: grid editor, run control, trials, monitor, timeline and results.

Widgets only view: the RunSession (core) owns the workers and the store; this window starts and stops it
and redraws from its signals and the results file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QWidget,
)

from gridwatch.grid import trials
from gridwatch.grid.spec import GridSpec, SpecError, parse_grid
from gridwatch.gui.diagnosis_view import DiagnosisView
from gridwatch.gui.grid_editor import GridEditor
from gridwatch.gui.grid_files import open_grid, save_grid, save_grid_as
from gridwatch.gui.monitor import MonitorView
from gridwatch.gui.results_view import LeaderboardView
from gridwatch.gui.run_summary import gpu_spans, status_text
from gridwatch.gui.timeline import TimelineView
from gridwatch.gui.timing_view import TimingView
from gridwatch.gui.trials_panel import TrialsPanel
from gridwatch.gui.window_layout import restore_layout, save_layout
from gridwatch.results import runs
from gridwatch.results.replay import live_from_store
from gridwatch.results.store import ResultStore, StoreError, run_folder
from gridwatch.results.summary import summarize
from gridwatch.run.devices import DeviceError, Machine
from gridwatch.run.headless import MAX_TRIALS, PlanError, SnapshotBridge, plan_grid
from gridwatch.run.live import LiveTrial
from gridwatch.run.session import RunSession
from gridwatch.telemetry.sampler import GpuReader, TelemetrySampler
from gridwatch.telemetry.starvation import Verdict

CONFIRM_TRIALS = 10_000  # bigger grids ask first; MAX_TRIALS (gridwatch.run.headless) and up are refused
PREVIEW_LIMIT = 20_000  # trials listed before a run; bigger grids are only counted


class MainWindow(QMainWindow):
    def __init__(self, machine: Machine, runs_dir: Path, gpu: GpuReader | None = None,
                 settings_file: Path | None = None) -> None:
        super().__init__()
        self.settings_file = settings_file  # window layout; None: not remembered (tests)
        self.machine, self.runs_dir = machine, runs_dir
        self.session: RunSession | None = None
        self.store: ResultStore | None = None
        self.live: Mapping[str, LiveTrial] = {}
        self.models_meta: list[dict] = []
        self.folds = 0
        self._board_dirty = False
        self.setWindowTitle("gridwatch")
        self.resize(1600, 980)
        self._build(machine)
        self.bridge = SnapshotBridge()
        self.bridge.snapshot.connect(self.monitor.on_snapshot)
        self.sampler = TelemetrySampler(self.bridge.snapshot.emit, 0.25, gpu)
        self.monitor.rate.valueChanged.connect(self.sampler.set_rate)
        self.sampler.start()
        self.ticker = QTimer(self)
        self.ticker.timeout.connect(self._tick)
        self.ticker.start(500)
        self._update_actions()
        restore_layout(self, settings_file)

    # -- layout -----------------------------------------------------------------------------------------

    def _build(self, machine: Machine) -> None:
        self.editor = GridEditor()
        self.editor.validity_changed.connect(self._on_grid_validity)
        self.panel = TrialsPanel()
        self.trials, self.filter, self.table, self.detail = (self.panel.model, self.panel.filter, self.panel.table,
                                                             self.panel.detail)
        self.setCentralWidget(self.panel)
        self.monitor = MonitorView(machine.logical_cores, len(machine.gpus), machine.gpu_note)
        self.timeline = TimelineView()
        self.board = LeaderboardView()
        self.diagnosis = DiagnosisView()
        self.timing = TimingView()
        grid_dock = self._dock("Grid", self.editor, Qt.DockWidgetArea.LeftDockWidgetArea)
        monitor = self._dock("Monitor", self.monitor, Qt.DockWidgetArea.RightDockWidgetArea)
        timeline = self._dock("Timeline", self.timeline, Qt.DockWidgetArea.BottomDockWidgetArea)
        board = self._dock("Results", self.board, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(timeline, board, Qt.Orientation.Horizontal)
        diagnosis = self._dock("Diagnosis", self.diagnosis, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(board, diagnosis)
        self.tabifyDockWidget(board, self._dock("Timing", self.timing, Qt.DockWidgetArea.BottomDockWidgetArea))
        board.raise_()
        self.resizeDocks([grid_dock, monitor], [400, 470], Qt.Orientation.Horizontal)
        self.resizeDocks([timeline], [230], Qt.Orientation.Vertical)
        self.resizeDocks([timeline, board], [800, 700], Qt.Orientation.Horizontal)
        self._actions()
        self.progress_label = QLabel()
        self.statusBar().addPermanentWidget(self.progress_label)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _actions(self) -> None:
        tb = self.addToolBar("Run")
        tb.setObjectName("toolbar_run")

        def act(text: str, slot: object, shortcut: str | None = None) -> QAction:
            a = QAction(text, self)
            a.triggered.connect(slot)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            tb.addAction(a)
            return a

        self.open_grid = act("Open grid…", lambda: open_grid(self, self.editor), "Ctrl+O")
        self.save_grid = act("Save grid", lambda: save_grid(self, self.editor), "Ctrl+S")
        self.save_as = act("Save as…", lambda: save_grid_as(self, self.editor))
        tb.addSeparator()
        self.run_act = act("Run", self.start_run, "Ctrl+R")
        self.pause_act = act("Pause", self.pause_run)
        self.resume_act = act("Resume", self.resume_run)
        self.stop_act = act("Stop", self.stop_run)
        tb.addSeparator()
        self.open_run = act("Open run…", self._open_run_dialog)
        self.resume_run_act = act("Resume run", self.resume_opened)
        self.resume_run_act.setToolTip("Run the opened run's unfinished trials, in the same results file")

    # -- run control ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.session is not None and self.session.status is None

    def start_run(self) -> None:
        spec = self.editor.spec
        if spec is None or self.running or not self._confirm_size(spec):
            return
        self._launch(spec, runs.new_db_path(spec.name, self.runs_dir), resume=False)

    def resume_opened(self) -> None:
        """Open run… then Resume: run the opened file's grid again, skipping every finished trial."""
        if self.store is None or self.session is not None or self.running:
            return
        path = self.store.path
        try:
            info = self.store.run_info()
            spec = parse_grid(self.store.grid_text(), info["grid_path"] or path.with_suffix(".toml"))
        except (StoreError, SpecError) as exc:
            QMessageBox.critical(self, "Cannot resume this run", str(exc))
            return
        self._close_store()
        self._launch(spec, path, resume=True)

    def _confirm_size(self, spec: GridSpec) -> bool:
        n = trials.count(spec)
        if n <= CONFIRM_TRIALS:
            return True
        if n > MAX_TRIALS:
            QMessageBox.critical(self, "Grid too large", f"This grid expands to {n:,} trials, more than "
                                 f"{MAX_TRIALS:,}. Shrink an axis or the folds.")
            return False
        answer = QMessageBox.question(self, "Run a large grid?", f"This grid expands to {n:,} trials. Run it?")
        return answer == QMessageBox.StandardButton.Yes

    def _launch(self, spec: GridSpec, db: Path, resume: bool) -> None:
        try:
            planned = plan_grid(spec, db=db, resume=resume, machine=self.machine)
        except (PlanError, DeviceError, StoreError, SpecError) as exc:
            QMessageBox.critical(self, "Cannot start the run", str(exc))
            return
        self._close_store()
        self.store = planned.store
        self.detail.trials_folder = run_folder(planned.store.path) / "trials"
        session = planned.session(self)
        self.session = session
        session.trial_started.connect(self._on_trial_changed)
        session.trial_ended.connect(self._on_trial_ended)
        session.epoch_reported.connect(self._on_epoch)
        session.log_line.connect(self.detail.append_log)
        session.notice.connect(lambda m: self.statusBar().showMessage(m, 15000))
        session.finished.connect(self._on_finished)
        session.data_wait_reported.connect(self.trials.refresh)
        session.verdict_changed.connect(self._on_verdict)
        session.pids_changed.connect(self.sampler.watch)
        self.bridge.snapshot.connect(session.on_snapshot)
        self.monitor.go_live()
        self.trials.set_badges({})
        self.trials.set_waiting({})
        self.diagnosis.show_verdicts([])
        self._show_run(session.trials(), spec, [s.id for s in planned.slots], time.time())
        self.monitor.set_slots([s.id for s in planned.slots])
        session.start()
        self.statusBar().showMessage(f"Running {len(planned.trials)} trials on {len(planned.slots)} slots "
                                     f"-> {planned.store.path}", 8000)
        self._update_actions()

    def pause_run(self) -> None:
        if self.running and self.session is not None:
            self.session.pause()
            self._update_actions()

    def resume_run(self) -> None:
        if self.running and self.session is not None:
            self.session.resume()
            self._update_actions()

    def stop_run(self) -> None:
        if self.running and self.session is not None:
            self.session.stop()

    def open_results(self, path: str | Path) -> None:
        """Show a past run read-only: table, timeline, curves, logs and leaderboard."""
        if self.running:
            QMessageBox.information(self, "Run in progress", "Stop the current run before opening another.")
            return
        try:
            store = ResultStore(Path(path), create=False)
        except StoreError as exc:
            QMessageBox.critical(self, "Cannot open run", str(exc))
            return
        try:  # damage the check on opening could not see shows up here, as the same one line
            live, info = live_from_store(store)
            verdicts, telemetry = store.verdicts(), store.telemetry()
        except StoreError as exc:
            store.close()
            QMessageBox.critical(self, "Cannot open run", str(exc))
            return
        self.detail.trials_folder = run_folder(store.path) / "trials"
        self._close_store()
        self.store, self.session = store, None
        self.trials.set_waiting({})
        slots = sorted({lt.slot for lt in live.values() if lt.slot})
        origin = min((lt.started for lt in live.values() if lt.started), default=time.time())
        self.models_meta, self.folds = info["models"], info["folds"]
        self._show_live(live, slots, origin)
        for lt in live.values():
            self.timeline.update_trial(lt)
        self.trials.set_badges({})
        self.diagnosis.show_verdicts(verdicts)
        self.monitor.replay(telemetry, slots)
        self.setWindowTitle(f"gridwatch — {Path(path).name} (read-only)")
        self._update_actions()

    def _show_run(self, live: Mapping[str, LiveTrial], spec: GridSpec, slots: list[str], origin: float) -> None:
        self.models_meta = [{"name": m.name, "metric": m.metric, "goal": m.goal} for m in spec.models]
        self.folds = spec.folds
        self.setWindowTitle(f"gridwatch — {spec.name}")
        self._show_live(live, slots, origin)

    def _show_live(self, live: Mapping[str, LiveTrial], slots: list[str], origin: float) -> None:
        self.live = live
        self.panel.show_trials(live, self.models_meta)
        self.timeline.reset(slots, origin)
        self._board_dirty = True
        self._refresh_board()

    # -- session events ---------------------------------------------------------------------------------

    def _on_trial_changed(self, trial_id: str) -> None:
        self.panel.trial_changed(self.live[trial_id])
        self.timeline.update_trial(self.live[trial_id])

    def _on_trial_ended(self, trial_id: str) -> None:
        self._on_trial_changed(trial_id)
        self._board_dirty = True

    def _on_epoch(self, trial_id: str) -> None:
        self.panel.trial_changed(self.live[trial_id])

    def _on_verdict(self, v: Verdict) -> None:
        """A badge on the trial's row, a line in the Diagnosis panel, a shaded span on its GPU's plot."""
        verdicts = self.session.verdicts() if self.session is not None else [v]
        if v.subject in self.live:
            self.trials.set_badges({x.subject: x for x in verdicts if x.active and x.subject in self.live})
            self.trials.refresh(v.subject)
        self.diagnosis.show_verdicts(verdicts)
        slots = self.session.slots() if self.session is not None else []
        self.monitor.set_starved(gpu_spans(verdicts, self.live, slots))

    def _on_finished(self, status: str) -> None:
        if self.session is not None:
            self.bridge.snapshot.disconnect(self.session.on_snapshot)
            self.session.pids_changed.disconnect(self.sampler.watch)
            self.session.close()
        self._board_dirty = True
        self._refresh_board()
        self._tick()
        self.statusBar().showMessage(f"Run {status}. Results: {self.store.path if self.store else ''}", 30000)
        self._update_actions()

    def _tick(self) -> None:
        self.trials.refresh_running()
        if self.session is not None and self.session.status is None:
            self.trials.set_waiting(self.session.waiting())
        self.timeline.tick(self.live)
        if self._board_dirty:
            self._refresh_board()
        self.progress_label.setText(status_text(self.live, self.session))

    def _refresh_board(self) -> None:
        self._board_dirty = False
        if self.store is None:
            self.board.show_board([])
            return
        wall = self.session.progress().elapsed_s if self.session is not None else None
        summary = summarize(self.live.values(), self.models_meta, self.folds, wall)  # no re-read of the file
        self.board.show_board(summary.board)
        self.timing.show_summary(summary)

    # -- helpers ----------------------------------------------------------------------------------------

    def _on_grid_validity(self, spec: GridSpec | None) -> None:
        """Before a run, the table previews the trials the grid would run."""
        self._update_actions()
        if spec is None or self.session is not None or self.store is not None:
            return
        if trials.count(spec) <= PREVIEW_LIMIT:
            self._show_run({t.id: LiveTrial(t) for t in trials.expand(spec)}, spec, [], time.time())

    def _update_actions(self) -> None:
        running = self.running
        paused = running and self.session is not None and self.session.paused
        self.run_act.setEnabled(self.editor.spec is not None and not running)
        self.pause_act.setEnabled(running and not paused)
        self.resume_act.setEnabled(bool(paused))
        self.stop_act.setEnabled(running)
        self.open_run.setEnabled(not running)
        self.resume_run_act.setEnabled(self.session is None and self.store is not None and not running)
        self.open_grid.setEnabled(not running)

    def _open_run_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run", str(self.runs_dir),
                                              "gridwatch results (*.gridwatch.db *.db)")
        if path:
            self.open_results(path)

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def confirm_stop(self) -> bool:
        answer = QMessageBox.question(self, "Stop the run?", "Trials are running. Stop every worker and quit? "
                                      "Finished trials are kept.")
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.running and self.session is not None:
            if not self.confirm_stop():
                event.ignore()
                return
            self.session.stop_blocking()
            self.session.close()
        save_layout(self, self.settings_file)
        self.ticker.stop()
        self.monitor.timer.stop()
        self.sampler.stop()
        self._close_store()
        event.accept()
