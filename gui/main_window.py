"""The main window: grid editor, run control, trials, monitor, timeline and results.

Widgets only view: the RunSession (core) owns the workers and the store; this window starts and stops it
and redraws from its signals and the results file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QStyle,
    QWidget,
)

from gridwatch.grid import trials
from gridwatch.grid.spec import GridSpec, SpecError, parse_grid
from gridwatch.grid.trials import TrialState
from gridwatch.gui.about import show_about
from gridwatch.gui.diagnosis_view import DiagnosisView
from gridwatch.gui.export import add_export_menu
from gridwatch.gui.grid_editor import GridEditor
from gridwatch.gui.grid_files import open_grid, save_grid, save_grid_as, show_run_grid
from gridwatch.gui.monitor import MonitorView
from gridwatch.gui.results_view import LeaderboardView
from gridwatch.gui.run_summary import gpu_spans, status_of
from gridwatch.gui.runs_panel import RunsPanel
from gridwatch.gui.timeline import TimelineView
from gridwatch.gui.timing_view import TimingView
from gridwatch.gui.trials_panel import TrialsPanel
from gridwatch.gui.window_layout import restore_layout, save_layout
from gridwatch.results import runs
from gridwatch.results.follow import Follower, is_live
from gridwatch.results.store import ResultStore, StoreError, run_folder
from gridwatch.run.devices import DeviceError, Machine
from gridwatch.run.headless import MAX_TRIALS, PlanError, PlannedRun, SnapshotBridge, plan_grid
from gridwatch.run.live import LiveTrial
from gridwatch.run.progress import Progress
from gridwatch.run.session import RunSession
from gridwatch.telemetry.sampler import GpuReader, Snapshot, TelemetrySampler
from gridwatch.telemetry.starvation import Verdict

CONFIRM_TRIALS = 10_000  # bigger grids ask first; MAX_TRIALS (gridwatch.run.headless) and up are refused
PREVIEW_LIMIT = 20_000  # trials listed before a run; bigger grids are only counted
SLOW_TICK_S = 1.0  # the session's progress (ETA) and waiting reasons are read this often
BOARD_S = 1.0  # the leaderboard and timing table are re-ranked at most this often during a run
FOLLOW_MS = 1000  # a run another process writes is read this often (it writes about once a second)


class MainWindow(QMainWindow):
    def __init__(self, machine: Machine, runs_dir: Path, gpu: GpuReader | None = None,
                 settings_file: Path | None = None) -> None:
        super().__init__()
        self.settings_file = settings_file  # window layout; None: not remembered (tests)
        self.machine, self.runs_dir = machine, runs_dir
        self.session: RunSession | None = None
        self._planned: PlannedRun | None = None  # the last run started here, while it holds a Ray cluster
        self.store: ResultStore | None = None
        self.live: Mapping[str, LiveTrial] = {}
        self.models_meta: list[dict] = []
        self.folds = 0
        self._board_dirty = False
        self.setWindowTitle("gridwatch")
        self._fit_screen()
        self._build(machine)
        self.export_menu = add_export_menu(self)
        self.bridge = SnapshotBridge()
        self.bridge.snapshot.connect(self.monitor.on_snapshot)
        self.sampler = TelemetrySampler(self.bridge.snapshot.emit, 0.25, gpu)
        self.monitor.rate.valueChanged.connect(self.sampler.set_rate)
        self.sampler.start()
        self.ticker = QTimer(self)
        self.ticker.timeout.connect(self._tick)
        self.ticker.start(500)
        self.follower: Follower | None = None  # a run another process is writing, followed from its file
        self.follow_timer = QTimer(self)
        self.follow_timer.setInterval(FOLLOW_MS)
        self.follow_timer.timeout.connect(self._follow)
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
        self.runs_panel = RunsPanel(self.runs_dir)
        self.runs_panel.open_requested.connect(self.open_results)
        self.editor.resume_requested.connect(lambda _path: self.resume_opened())
        self.editor.run_again_requested.connect(self._run_again)
        grid_dock = self._dock("Grid", self.editor, Qt.DockWidgetArea.LeftDockWidgetArea, scroll=True)
        self.tabifyDockWidget(grid_dock, self._dock("Runs", self.runs_panel, Qt.DockWidgetArea.LeftDockWidgetArea,
                                                    scroll=True))
        grid_dock.raise_()
        monitor = self._dock("Monitor", self.monitor, Qt.DockWidgetArea.RightDockWidgetArea, scroll=True)
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

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, scroll: bool = False) -> QDockWidget:
        """`scroll`: the panel scrolls rather than forcing its full size on the window (small screens)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        if scroll:
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setWidget(widget)
            widget = area_widget
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _fit_screen(self) -> None:
        """1600 x 980 where the screen has room, else the screen's free area (a laptop's 1366 x 768)."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        free = screen.availableGeometry() if screen is not None else None
        width, height = 1600, 980
        if free is not None and free.width() > 0 and free.height() > 0:
            width, height = min(width, free.width()), min(height, free.height())
        self.resize(width, height)

    def _actions(self) -> None:
        """The toolbar and the menus share one set of actions; each tooltip names its shortcut. Menus added
        later go before Help: `menuBar().insertMenu(window.help_menu.menuAction(), menu)`."""
        tb = self.addToolBar("Run")
        tb.setObjectName("toolbar_run")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.file_menu = self.menuBar().addMenu("&File")
        self.run_menu = self.menuBar().addMenu("&Run")
        self.help_menu = self.menuBar().addMenu("&Help")
        sp = QStyle.StandardPixmap

        def act(text: str, slot: object, icon: QStyle.StandardPixmap, keys: str, tip: str, menu: QMenu,
                toolbar: bool = True) -> QAction:
            a = QAction(self.style().standardIcon(icon), text, self)
            a.triggered.connect(slot)
            a.setShortcut(QKeySequence(keys))
            shown = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            a.setToolTip(f"{tip} ({shown})" if shown else tip)
            menu.addAction(a)
            if toolbar:
                tb.addAction(a)
            return a

        f, r = self.file_menu, self.run_menu
        self.open_grid = act("Open grid…", lambda: open_grid(self, self.editor), sp.SP_DialogOpenButton, "Ctrl+O",
                             "Open a grid file (TOML)", f)
        self.save_grid = act("Save grid", lambda: save_grid(self, self.editor), sp.SP_DialogSaveButton, "Ctrl+S",
                             "Save the grid", f)
        self.save_as = act("Save as…", lambda: save_grid_as(self, self.editor), sp.SP_DriveFDIcon, "Ctrl+Shift+S",
                           "Save the grid to a new file", f)
        tb.addSeparator()
        self.run_act = act("Run", self.start_run, sp.SP_MediaPlay, "Ctrl+R", "Run every trial of the grid", r)
        self.pause_act = act("Pause", self.pause_run, sp.SP_MediaPause, "Ctrl+P",
                             "Let running trials finish and start no new ones", r)
        self.resume_act = act("Resume", self.resume_run, sp.SP_MediaSeekForward, "Ctrl+Shift+P",
                              "Start queued trials again after Pause", r)
        self.stop_act = act("Stop", self.stop_run, sp.SP_MediaStop, "Ctrl+.",
                            "Stop every worker now; finished trials are kept", r)
        tb.addSeparator()
        f.addSeparator()
        r.addSeparator()
        self.open_run = act("Open run…", self._open_run_dialog, sp.SP_DirOpenIcon, "Ctrl+Shift+O",
                            "Show a past run's results file, read-only", f)
        self.resume_run_act = act("Resume run", self.resume_opened, sp.SP_BrowserReload, "",
                                  "Run the opened run's unfinished trials, in the same results file", r)
        f.addSeparator()
        self.quit_act = act("Quit", self.close, sp.SP_DialogCloseButton, "Ctrl+Q", "Quit gridwatch", f, False)

        def about() -> None:  # torch and CUDA as this window's run's workers reported them
            show_about(self, self.session.worker_info() if self.session is not None else {})

        self.about_act = act("About gridwatch", about, sp.SP_MessageBoxInformation, "",
                             "Versions of gridwatch, Qt, torch and CUDA", self.help_menu, False)

    # -- run control ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.session is not None and self.session.status is None

    def start_run(self) -> None:
        spec = self.editor.spec
        if spec is None or self.running or not self._confirm_size(spec):
            return
        self._launch(spec, runs.new_db_path(spec.name, self.runs_dir), resume=False)

    def _run_again(self, spec: GridSpec) -> None:
        """An opened run's grid, run anew into a new results file."""
        if not self.running and self._confirm_size(spec):
            self._launch(spec, runs.new_db_path(spec.name, self.runs_dir), resume=False)

    def resume_opened(self) -> None:
        """Resume an opened run, or the one that just stopped here: run its grid again in the same results file,
        skipping every finished trial."""
        if self.store is None or self.running:
            return  # a run another process holds is refused by its lock, in a dialog naming that process
        path = self.store.path
        try:
            info = self.store.run_info()
            spec = parse_grid(self.store.grid_text(), info["grid_path"] or path.with_suffix(".toml"))
        except (StoreError, SpecError) as exc:
            QMessageBox.critical(self, "Cannot resume this run", str(exc))
            return
        self._launch(spec, path, resume=True)  # the opened file stays shown if the run cannot start

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
        ray = self.editor.ray_address()
        if ray is not None:  # joining (or starting) a cluster takes seconds: say so while the window waits
            self.statusBar().showMessage(f"Connecting to the Ray cluster ({ray}) ...")
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            QApplication.processEvents()
        try:
            planned = plan_grid(spec, db=db, resume=resume, machine=None if ray else self.machine, ray=ray)
        except (PlanError, DeviceError, StoreError, SpecError) as exc:
            QMessageBox.critical(self, "Cannot start the run", str(exc))
            return
        finally:
            if ray is not None:
                QApplication.restoreOverrideCursor()
                self.statusBar().clearMessage()
        self._release_cluster()
        self._planned = planned  # kept to leave its Ray cluster when the run is over
        self._close_store()
        self.store = planned.store
        self.detail.trials_folder = run_folder(planned.store.path) / "trials"
        session = planned.session(self)
        self.session = session
        if self.editor.read_only:  # Run again of a shown run: the banner names the run now running
            show_run_grid(self, self.editor, planned.store, can_resume=False)
        session.trial_started.connect(self._on_trial_changed)
        session.trial_ended.connect(self._on_trial_ended)
        session.epoch_reported.connect(self._on_epoch)
        session.log_line.connect(self.detail.append_log)
        session.notice.connect(lambda m: self.statusBar().showMessage(m, 15000))
        session.finished.connect(self._on_finished)
        session.data_wait_reported.connect(self.trials.refresh)
        session.verdict_changed.connect(self._on_verdict)
        session.pids_changed.connect(self.sampler.watch)
        self.monitor.go_live()
        if session.remote:  # the monitor shows the cluster's nodes, sampled there, instead of this machine
            self.bridge.snapshot.disconnect(self.monitor.on_snapshot)
            session.snapshot_taken.connect(self._on_remote_snapshot)
            self.monitor.rate.setEnabled(False)  # the nodes are read once a second, whatever this says
        else:
            self.bridge.snapshot.connect(session.on_snapshot)
        self.trials.set_badges({})
        self.trials.set_waiting({})
        live = session.trials()
        try:  # a resumed run shows what it keeps: its trials' curves, its verdicts, its time so far
            self._earlier_wall = planned.store.sessions_time()
            self._earlier_verdicts = planned.store.verdicts() if resume else []
            kept = planned.store.all_steps() if resume else {}
        except StoreError:
            self._earlier_wall, self._earlier_verdicts, kept = 0.0, [], {}
        for tid, steps in kept.items():
            lt = live.get(tid)
            if lt is not None and lt.state == TrialState.FINISHED and not lt.steps:
                lt.set_steps(steps)
        self.diagnosis.show_verdicts(self._earlier_verdicts)
        origin = min((lt.started for lt in live.values() if lt.started), default=time.time())
        lanes = [] if session.remote else [s.id for s in planned.slots]  # a Ray slot is named once placed
        self._show_run(live, spec, lanes, origin)
        self.monitor.set_slots(lanes)
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
            self.statusBar().showMessage("Stopping: ending every worker; finished trials are kept")
            self._tick()  # no ETA from now on

    def open_results(self, path: str | Path) -> None:
        """Show a run from its results file, read-only: table, timeline, curves, logs, telemetry, verdicts and
        leaderboard. A run another process is writing now (`gridwatch run` in a terminal) is followed live
        until it ends; closing the window leaves it alone."""
        if self.running:
            QMessageBox.information(self, "Run in progress", "Stop the current run before opening another.")
            return
        try:
            store = ResultStore(Path(path), create=False)
        except StoreError as exc:
            QMessageBox.critical(self, "Cannot open run", str(exc))
            return
        follower = Follower(store)
        try:  # damage the check on opening could not see shows up here, as the same one line
            following = is_live(store)
            live, info, telemetry = follower.load(following)
            verdicts, slots = store.verdicts(), store.slots()
        except StoreError as exc:
            store.close()
            QMessageBox.critical(self, "Cannot open run", str(exc))
            return
        self.detail.trials_folder = run_folder(store.path) / "trials"
        self.detail.show_trial(None)  # the last run's trial is not this one's
        self._close_store()
        self.store, self.session = store, None
        self.follower = follower if following else None
        self._read_wall()
        self.trials.set_waiting({})
        slots += sorted({lt.slot for lt in live.values() if lt.slot and lt.slot not in slots})
        origin = min((lt.started for lt in live.values() if lt.started), default=time.time())
        self.models_meta, self.folds = info["models"], info["folds"]
        self._show_live(live, slots, origin)
        for lt in live.values():
            self.timeline.update_trial(lt)
        self._show_verdicts(verdicts)
        self.monitor.replay(telemetry, slots)
        show_run_grid(self, self.editor, store, can_resume=not following)
        self.setWindowTitle(f"{Path(path).name} (" + ("following a live run, " if following else "")
                            + "read-only)")
        if following:
            self.statusBar().showMessage(f"Following {store.path}: another process is running it", 15000)
            self.follow_timer.start()
        self._update_actions()

    def _read_wall(self) -> None:
        try:
            ran = self.store.sessions_time(time.time() if self.follower is not None else None) if self.store else 0
        except StoreError:
            ran = 0.0
        self._stored_wall = ran or None

    def _follow(self) -> None:
        """What the run another process is writing did since the last look."""
        if self.follower is None:
            self.follow_timer.stop()
            return
        try:
            changes = self.follower.poll()
            self._read_wall()
        except StoreError as exc:
            self._stop_following(f"Stopped following: {exc}")
            return
        for tid in changes.trials:
            self._on_trial_ended(tid)
        for tid in changes.epochs - set(changes.trials):
            self._on_epoch(tid)
        for tid, line in changes.logs:
            self.detail.append_log(tid, line)
        if changes.telemetry:
            self.monitor.replay_more(changes.telemetry)
        if changes.verdicts is not None:
            self._show_verdicts(changes.verdicts)
        if changes.ended:
            status = self.store.last_status() if self.store is not None else ""
            # still "running" with nobody holding the file: its process died (kill -9, a lost ssh session)
            self._stop_following("The run's process is gone: the run was interrupted." if status == "running"
                                 else f"The run ended ({status}).")

    def _stop_following(self, message: str) -> None:
        self.follow_timer.stop()
        self.follower = None
        self._read_wall()
        if self.store is not None:
            self.setWindowTitle(f"{self.store.path.name} (read-only)")
            if self.editor.read_only:
                show_run_grid(self, self.editor, self.store)  # now it can be resumed
        self._board_dirty = True
        self.statusBar().showMessage(message, 30000)
        self._update_actions()

    def _show_verdicts(self, verdicts: list[Verdict]) -> None:
        """A stored run's verdicts: badges on the rows of those still open, the Diagnosis list, shaded spans."""
        self.trials.set_badges({v.subject: v for v in verdicts if v.ended is None and v.subject in self.live})
        self.diagnosis.show_verdicts(verdicts)

    def _show_run(self, live: Mapping[str, LiveTrial], spec: GridSpec, slots: list[str], origin: float) -> None:
        self.models_meta = [{"name": m.name, "metric": m.metric, "goal": m.goal} for m in spec.models]
        self.folds = spec.folds
        self.setWindowTitle(spec.name)  # the platform adds "— gridwatch" (the display name)
        self._show_live(live, slots, origin)

    def _show_live(self, live: Mapping[str, LiveTrial], slots: list[str], origin: float) -> None:
        self.live = live
        self.panel.show_trials(live, self.models_meta, self.folds)
        self.timeline.reset(slots, origin)
        self._progress, self._slow_at, self._verdict, self._ended_read = None, 0.0, None, None
        self._board_dirty = True
        self._refresh_board()

    # -- session events ---------------------------------------------------------------------------------
    # Each event only marks what it changed (O(1)); the table and the timeline apply the marks at the
    # display's pace, and the tick does the rest, so the session's dispatch never waits on a redraw.

    _progress: Progress | None = None  # the session's progress, read at most once a second (it walks every trial)
    _slow_at = 0.0  # when the tick last did its once-a-second work
    _board_at = 0.0  # when the leaderboard was last re-ranked
    _verdict: Verdict | None = None  # the newest verdict not yet shown
    _ended_read: RunSession | None = None  # the ended session whose final progress has been read
    _earlier_wall = 0.0  # a resumed run's earlier sessions' time
    _stored_wall: float | None = None  # a run read back (or followed): the time its sessions ran, read per poll
    _earlier_verdicts: list[Verdict] = []  # a resumed run's earlier sessions' verdicts (never mutated: replaced)

    def _on_trial_changed(self, trial_id: str) -> None:
        self.panel.trial_changed(self.live[trial_id])
        self.timeline.update_trial(self.live[trial_id])

    def _on_trial_ended(self, trial_id: str) -> None:
        self._on_trial_changed(trial_id)
        self._board_dirty = True

    def _on_epoch(self, trial_id: str) -> None:
        self.panel.trial_changed(self.live[trial_id])

    def _on_verdict(self, v: Verdict) -> None:
        """Shown at the tick's pace: a badge on the trial's row, a line in the Diagnosis panel, a shaded span
        on its GPU's plot."""
        self._verdict = v

    def _show_verdict(self, v: Verdict) -> None:
        self._verdict = None
        verdicts = self._earlier_verdicts + (self.session.verdicts() if self.session is not None else [v])
        self.trials.set_badges({x.subject: x for x in verdicts if x.active and x.subject in self.live})
        self.diagnosis.show_verdicts(verdicts)
        slots = self.session.slots() if self.session is not None else []
        self.monitor.set_starved(gpu_spans(verdicts, self.live, slots))

    def _on_remote_snapshot(self, snap: Snapshot) -> None:
        """A Ray run's telemetry: the slots' memory lines follow the slots as Ray places them."""
        if sorted(snap.trials) != sorted(self.monitor.slots.names):
            self.monitor.set_slots(sorted(snap.trials))
        self.monitor.on_snapshot(snap)

    def _release_cluster(self) -> None:
        """Leave the last run's Ray cluster (a local head of its own stops)."""
        if self._planned is not None:
            self._planned.release()
            self._planned = None

    def _on_finished(self, status: str) -> None:
        if self.session is not None:
            if self.session.remote:
                self.session.snapshot_taken.disconnect(self._on_remote_snapshot)
                self.bridge.snapshot.connect(self.monitor.on_snapshot)
                self.monitor.rate.setEnabled(not self.monitor.replaying)
            else:
                self.bridge.snapshot.disconnect(self.session.on_snapshot)
            self.session.pids_changed.disconnect(self.sampler.watch)
            self.session.close()
            self._release_cluster()
        self._board_dirty = True
        self._ended_read = None  # the ended run's figures are read once more, as they are now
        self._refresh_board()
        self._tick()
        self.statusBar().showMessage(f"Run {status}. Results: {self.store.path if self.store else ''}", 30000)
        self._update_actions()

    def _tick(self) -> None:
        """Twice a second; nothing here walks every trial more than once a second."""
        self.panel.tick()
        self.diagnosis.tick()
        self.panel.flush()
        self.timeline.tick(self.live[tid] for tid in self.trials.running)
        if self._verdict is not None:
            self._show_verdict(self._verdict)
        now = time.monotonic()
        live_run = self.session is not None and self.session.status is None and not self.session.stopping
        if self.session is not None and ((live_run and now - self._slow_at >= SLOW_TICK_S)
                                         or (not live_run and self._ended_read is not self.session)):
            self._slow_at = now
            self._progress = self.session.progress()
            self._ended_read = None if live_run else self.session  # an ended run's progress is read once
            if live_run:
                self.trials.set_waiting(self.session.waiting())
        if self._board_dirty and (now - self._board_at >= BOARD_S or not live_run):
            self._refresh_board()
        self.progress_label.setText(status_of(self.trials.tally, self._progress, live_run, self._wall()))

    def _wall(self) -> float | None:
        """The time the run has run: this session's, plus its earlier sessions' for a resumed one (not the gap
        between them); for a run read back, its sessions' (None if the file cannot say)."""
        if self.session is None:
            return self._stored_wall if self.store is not None else None
        if self.session.status is None:
            return self._earlier_wall + time.time() - self.session.started_at
        return self._earlier_wall + self._progress.elapsed_s if self._progress is not None else None

    def _refresh_board(self) -> None:
        self._board_dirty = False
        self._board_at = time.monotonic()
        if self.store is None:
            self.board.show_board([])
            return
        self.panel.flush()
        summary = self.trials.tally.summary(self._wall())  # kept up to date trial by trial: no walk, no re-read
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
        self.resume_run_act.setEnabled(self.store is not None and not running and self.follower is None)
        self.open_grid.setEnabled(not running)
        self.editor.set_busy(running)

    def _open_run_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run", str(self.runs_dir),
                                              "gridwatch results (*.gridwatch.db *.db)")
        if path:
            self.open_results(path)

    def _close_store(self) -> None:
        self.follow_timer.stop()
        self.follower = None
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
        self._release_cluster()
        save_layout(self, self.settings_file)
        self.ticker.stop()
        self.monitor.timer.stop()
        self.sampler.stop()
        self._close_store()
        event.accept()
