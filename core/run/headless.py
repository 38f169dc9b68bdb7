"""Plan and run a grid without a window: the CLI and the benchmarks use this, the GUI uses its parts."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from gridwatch.grid import checks, trials
from gridwatch.grid.checks import SpecError
from gridwatch.grid.spec import GridSpec, load_grid
from gridwatch.grid.trials import Trial
from gridwatch.results import runs
from gridwatch.results.files import private_dir
from gridwatch.results.store import ResultStore, StoreError, previous_estimates, run_folder
from gridwatch.run import devices
from gridwatch.run import resume as resume_
from gridwatch.run.devices import DeviceError, Machine, Slot
from gridwatch.run.estimates import Estimates
from gridwatch.run.scheduler import unplaceable
from gridwatch.run.session import PoolFactory, RunSession
from gridwatch.telemetry.sampler import TelemetrySampler

MAX_TRIALS = 100_000  # a grid bigger than this is refused unless asked for (--max-trials)


class SnapshotBridge(QObject):
    """Carries telemetry snapshots from the sampler thread to the Qt thread (queued by Qt)."""

    snapshot = Signal(object)


class PlanError(ValueError):
    """Bad input found before anything runs (exit code 2)."""


@dataclass
class PlannedRun:
    grid: GridSpec
    trials: list[Trial]
    slots: list[Slot]
    store: ResultStore
    done_ids: set[str]
    machine: Machine
    estimates: Estimates
    budgets: dict[str, float]
    notes: tuple[str, ...] = ()  # what a resume found changed in the grid, and what it keeps, in words
    cluster: Any = None  # gridwatch.cluster.connect.Cluster where the run's slots are Ray actors

    def session(self, parent: QObject | None = None, make_pool: PoolFactory | None = None) -> RunSession:
        if make_pool is None and self.cluster is not None:
            make_pool = self.cluster.pool_factory()
        return RunSession(self.grid, self.trials, self.slots, self.store, self.done_ids, parent,
                          estimates=self.estimates, budgets=self.budgets,
                          probe_alone=devices.probe_alone(self.grid.devices, self.budgets), make_pool=make_pool)

    def release(self) -> None:
        """Leave the Ray cluster, if the run used one (a local head of its own stops)."""
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def parse_gpus(text: str | None) -> tuple[tuple[int, ...] | None, bool]:
    """--gpus value -> (indices or None for all, given?), read as the grid file's `gpus` is."""
    if text is None:
        return None, False
    try:
        return checks.gpus("--gpus", "", checks.gpus_value(text)), True
    except SpecError:
        raise PlanError(f"--gpus: expected 'all', 'none' or indices like 0,1, not {text!r}") from None


def plan_run(grid_path: str | Path, db: str | Path | None = None, resume: bool = False,
             cpu_slots: int | None = None, gpus: str | None = None, machine: Machine | None = None,
             max_trials: int = MAX_TRIALS, force: bool = False, ray: str | None = None) -> PlannedRun:
    """Everything that can be wrong with the input is found here, before a single process starts."""
    return plan_grid(load_grid(grid_path), db, resume, cpu_slots, gpus, machine, max_trials, force, ray)


def plan_grid(grid: GridSpec, db: str | Path | None = None, resume: bool = False,
              cpu_slots: int | None = None, gpus: str | None = None, machine: Machine | None = None,
              max_trials: int = MAX_TRIALS, force: bool = False, ray: str | None = None) -> PlannedRun:
    """With `ray` (an address, 'auto' or 'local') the slots are the Ray cluster's, run as its actors."""
    n = trials.count(grid)
    if n > max_trials:
        raise PlanError(f"{grid.path}: the grid expands to {n:,} trials, more than {max_trials:,}; shrink an "
                        f"axis or the folds, or allow it with --max-trials {n}")
    if ray is None:
        return _plan(grid, db, resume, cpu_slots, gpus, machine or devices.detect(), force)
    from gridwatch.cluster.connect import Cluster, ClusterError

    try:
        cluster = Cluster.join(ray)
    except ClusterError as exc:
        raise PlanError(str(exc)) from None
    try:
        return _plan(grid, db, resume, cpu_slots, gpus, machine or cluster.machine, force, cluster)
    except BaseException:
        cluster.close()
        raise


def _plan(grid: GridSpec, db: str | Path | None, resume: bool, cpu_slots: int | None, gpus: str | None,
          machine: Machine, force: bool, cluster: Any = None) -> PlannedRun:
    indices, given = parse_gpus(gpus)
    if cpu_slots is not None and cpu_slots < 0:
        raise PlanError("--cpu-slots must be 0 or more")
    try:
        slots = devices.plan_slots(machine, grid.devices, cpu_slots, indices, given)
    except devices.DeviceError as exc:
        why = str(exc).replace("this machine's GPUs", "the Ray cluster's GPUs") if cluster is not None else str(exc)
        raise devices.DeviceError(f"--gpus: {why}" if given else f"{grid.path}: devices.gpus: {why}") from None
    if not slots:
        raise PlanError("no slots to run on: cpu_slots is 0 and no GPU is used")
    if cluster is not None:
        short = cluster.shortfall(slots)
        if short:
            raise PlanError(f"{grid.path}: {short}")
    all_trials = trials.expand(grid)
    stuck = unplaceable(all_trials, {s.kind for s in slots})
    if stuck:
        why = machine.gpu_note or "no GPU slot in this run"
        i, model = next((i, m) for i, m in enumerate(grid.models) if m.name == stuck[0].model)
        raise PlanError(f'{grid.path}: model[{i}] ({model.name}).device: "{model.device}", but this run has no '
                        f'{model.device.upper()} slot ({why}); use device = "any" to run it where it can')
    path = _db_path(grid, db, resume)
    other = resume_.other_grid(path, grid) if path.exists() else ""
    if other and not force:
        raise PlanError(f"{other}: pass --force to resume it with this grid anyway, or another --db")
    store = ResultStore(path, create=not resume, write=True)  # one writer: refused while another run holds it
    if not resume and store.trials():
        store.close()
        raise PlanError(f"{path} already holds results: pass --resume to continue it, or another --db")
    private_dir(run_folder(path) / "trials")  # the trials' folders: the user's alone, as the results file
    old_text = _recorded_grid(store) if resume else ""
    done = store.begin(grid, all_trials, [s.id for s in slots])
    notes = _resume_notes(grid, old_text, all_trials, done, store) if resume else ()
    learned = store.estimates() or previous_estimates(runs.files_of(grid.name, path.parent), path)
    budgets = devices.memory_budgets(machine, grid.devices, slots)
    return PlannedRun(grid, all_trials, slots, store, done, machine, Estimates.from_rows(learned), budgets,
                      notes, cluster)


def _recorded_grid(store: ResultStore) -> str:
    try:
        return store.grid_text()
    except StoreError:
        return ""  # a file with no run yet: nothing changed, nothing to compare


def _resume_notes(grid: GridSpec, old_text: str, all_trials: list[Trial], done: set[str], store: ResultStore
                  ) -> tuple[str, ...]:
    """What changed since the file was written, and what that means for its trials."""
    changed = resume_.changes(old_text, grid)
    superseded = store.superseded()
    rerun = len(all_trials) - len(done)
    out = [f"the grid changed since this file was written: {'; '.join(changed)}"] if changed else []
    if superseded:
        out.append(f"{superseded} earlier trials no longer match the grid: kept in the file, not ranked")
    out.append(f"{len(done)} finished trials kept, {rerun} to run")
    return tuple(out)


def _db_path(grid: GridSpec, db: str | Path | None, resume: bool) -> Path:
    if db is not None:
        path = Path(db)
        if resume and not path.exists():
            raise PlanError(f"{path}: nothing to resume (no such file)")
        return path
    if resume:
        found = resume_.latest_of(grid, runs.runs_dir(), runs.SUFFIX)
        if found is None:
            raise PlanError(f"nothing to resume: no results file of {grid.path} in {runs.runs_dir()}; pass --db")
        return found
    return runs.new_db_path(grid.name)


def run_planned(planned: PlannedRun, on_tick: Callable[[RunSession], None] | None = None,
                on_session: Callable[[RunSession], None] | None = None, tick_ms: int = 250) -> RunSession:
    """Run to the end in a Qt event loop (no window). Ctrl-C stops the workers; results stay stored."""
    app = QCoreApplication.instance() or QCoreApplication([])
    session = planned.session()
    if on_session:
        on_session(session)
    session.finished.connect(lambda _status: app.quit())
    timer = QTimer()
    timer.timeout.connect(lambda: on_tick(session) if on_tick else None)  # also lets Python see SIGINT
    timer.start(tick_ms)
    bridge = SnapshotBridge()
    sampler = TelemetrySampler(bridge.snapshot.emit, 0.25)
    bridge.snapshot.connect(session.on_snapshot)
    session.pids_changed.connect(sampler.watch)
    previous = signal.signal(signal.SIGINT, lambda *_: session.stop())
    try:
        if not session.remote:  # a Ray run's telemetry is sampled on its nodes
            sampler.start()
        session.start()
        if session.status is None:
            app.exec()
    finally:
        signal.signal(signal.SIGINT, previous)
        timer.stop()
        sampler.stop()
        if session.status is None:
            session.stop_blocking()
        session.close()
        planned.release()
    return session


__all__ = ["PlanError", "PlannedRun", "plan_run", "run_planned", "DeviceError", "StoreError"]
