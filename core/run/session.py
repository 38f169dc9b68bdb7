"""RunSession: one run, wired together — the worker pool's messages go to the trial lifecycle, its outcomes
to the recorder (the results file) and out as signals; telemetry goes to the starvation detector.

The CLI and the window only listen to these signals and call the reading methods; neither touches a process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import QObject, QTimer, Signal

from gridwatch.grid.spec import GridSpec, ModelSpec
from gridwatch.grid.trials import RunStatus, Trial, TrialState
from gridwatch.results.store import ResultStore, run_folder
from gridwatch.run.devices import Slot, free_memory, memory_device, memory_low
from gridwatch.run.estimates import Estimates
from gridwatch.run.launcher import SlotWorker
from gridwatch.run.lifecycle import Kept, Outcome, TrialLifecycle
from gridwatch.run.live import LiveTrial, progress_of
from gridwatch.run.pool import STOP_GRACE_MS, WorkerPool
from gridwatch.run.progress import Progress
from gridwatch.run.recorder import Recorder
from gridwatch.run.scheduler import SlotView, TrialScheduler
from gridwatch.telemetry import diagnosis
from gridwatch.telemetry.nvml import GpuSample
from gridwatch.telemetry.pressure import OomWatch
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import StarvationDetector, Verdict

TICK_MS = 1000  # trials waiting for memory retry, and hung trials are looked for, this often
STALE_GPU_S = 5.0  # GPU readings older than this say nothing about free VRAM now
GIB = 2**30

PoolFactory = Callable[[list[Slot], list[tuple[str, str]], QObject], Any]  # slots, preload, parent -> a pool


class RunSession(QObject):
    trial_started = Signal(str)
    trial_ended = Signal(str)  # finished, failed, timeout, stopped or requeued: read trial(id).state
    epoch_reported = Signal(str)
    log_line = Signal(str, str)  # trial id, line
    data_wait_reported = Signal(str)  # trial id: its rolling data-wait fraction changed
    verdict_changed = Signal(object)  # a starvation Verdict opened, changed or closed
    pids_changed = Signal(dict)  # slot id -> worker pid, for the telemetry sampler
    notice = Signal(str)  # something the user should read once
    finished = Signal(str)  # a RunStatus
    snapshot_taken = Signal(object)  # a Ray run's telemetry, sampled on its nodes (a local run's is the sampler's)

    def __init__(self, grid: GridSpec, trials: list[Trial], slots: list[Slot], store: ResultStore,
                 done_ids: set[str] | None = None, parent: QObject | None = None,
                 estimates: Estimates | None = None, budgets: dict[str, float] | None = None,
                 probe_alone: set[str] | None = None, make_pool: PoolFactory | None = None) -> None:
        super().__init__(parent)
        done_ids = done_ids or set()
        models = {m.name: m for m in grid.models}
        stored = {r.id: r for r in store.trials()} if done_ids else {}
        kept = {tid: Kept(r.slot, r.started, r.ended, r.metrics, r.peak_mem) if (r := stored.get(tid)) else
                Kept(None, None, None, {}, None) for tid in done_ids}  # a resumed run shows what it keeps
        scheduler = TrialScheduler([t for t in trials if t.id not in done_ids], estimates or Estimates(),
                                   dict(budgets or {}), probe_alone)
        self.lifecycle = TrialLifecycle(models, trials, scheduler, kept, self._on_log)
        preload = [(m.target, m.base) for m in grid.models if m.kind == "python"]
        self.pool = (make_pool or WorkerPool)(slots, preload, self)
        self.remote: bool = self.pool.remote  # workers on Ray nodes, sampled there
        if self.remote:
            cast(Any, self.pool).snapshot.connect(self._on_remote_snapshot)
        self.pool.message.connect(self._on_message)
        self.pool.stray_line.connect(self._on_stray)
        self.pool.exited.connect(self._on_exited)
        self.pool.pids_changed.connect(self.pids_changed)
        self.pool.gave_up.connect(self.notice)
        self.recorder = Recorder(store, self._on_store_error)
        self.run_folder = run_folder(Path(store.path))  # each trial's own folder is trials/<id> under it
        self.detector = StarvationDetector()
        self._slots = list(slots)
        self._last_gpus: tuple[GpuSample, ...] = ()  # the newest GPU readings, for VRAM admission
        self._last_gpus_at = 0.0
        self._oom_watch = OomWatch()
        self._paused = False
        self._stopping = False
        self.status: RunStatus | None = None  # None while running
        self.started_at = 0.0
        self._hello: dict[str, str | None] = {}  # the newest worker hello's fields

    # -- control ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.time()
        self._tick = QTimer(self)  # free memory changes without any event of ours; hangs make none
        self._tick.timeout.connect(self._dispatch_idle)
        self._tick.timeout.connect(self._check_hangs)
        self._tick.timeout.connect(self.recorder.maybe_write)  # a quiet run's telemetry reaches the file too
        self._tick.start(TICK_MS)
        if self.lifecycle.queued() == 0:
            QTimer.singleShot(0, self._maybe_done)
            return
        self.pool.start()

    def pause(self) -> None:
        """Running trials finish; no new ones start."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._dispatch_idle()

    def stop(self) -> None:
        """Terminate every worker's process group now; finished results are already stored."""
        if self.status is not None or self._stopping:
            return
        self._stopping = True
        if not self.pool.workers:
            self._finalize()
            return
        self.pool.stop()

    def stop_blocking(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """For a closing window or a dying CLI: return only when no worker process is left."""
        self._stopping = True
        self.pool.stop_blocking(timeout_ms)
        if self.status is None:
            self._finalize()

    def close(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """After the run: wait for the workers to exit (they were told to), kill any that do not."""
        self.pool.close(timeout_ms)

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopping(self) -> bool:
        """Stop was asked: workers are being ended, and nothing new starts."""
        return self._stopping

    def trials(self) -> Mapping[str, LiveTrial]:
        """Every trial of the run as it is now (read-only: the lifecycle changes them)."""
        return self.lifecycle.live

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def progress(self) -> Progress:
        """Counts and the ETA: the queue in the scheduler's order on the live slots, each trial's seconds from
        this run's ended trials, else from the estimates an earlier run of the grid stored."""
        lc, est = self.lifecycle, self.lifecycle.scheduler.estimates
        lanes = [w.slot.kind for w in self.pool.workers] or [s.kind for s in self._slots]
        kinds = set(lanes)
        return progress_of(lc.live, len(lanes), self.started_at, self._paused, None, len(lc.waiting()),
                           time.time(), lc.pending(), lambda m, k: est.seconds(m, k) if k else est.fastest(m, kinds),
                           lanes)

    def waiting(self) -> dict[str, str]:
        """Why each queued trial has not started yet, in words."""
        return self.lifecycle.waiting()

    def verdicts(self) -> list[Verdict]:
        return list(self.detector.verdicts)

    def worker_pids(self) -> dict[str, int]:
        """Slot id -> pid of its worker, for per-slot telemetry."""
        return self.pool.pids()

    def worker_info(self) -> dict[str, str | None]:
        """What the newest worker said in its hello (python, torch, cuda, device, ...); {} before any did.
        Kept after the run, when its workers are gone."""
        return dict(self._hello)

    # -- telemetry --------------------------------------------------------------------------------------

    def on_snapshot(self, snap: Snapshot) -> None:
        """A telemetry sample: kept at 1 Hz in the results file, and judged by the starvation detector."""
        if self.status is not None:
            return
        self._last_gpus, self._last_gpus_at = snap.gpus, time.monotonic()
        for w in self.pool.workers:
            proc = snap.trials.get(w.slot.id)
            if proc is not None and w.slot.gpu_index is not None:
                self.lifecycle.saw_vram(w.trial_id, proc.gpu_mem)
        self.recorder.snapshot(snap)
        obs = diagnosis.observation(snap, self._slot_states(), self.lifecycle.pending())
        for v in self.detector.observe(obs):
            self.recorder.verdict(v)
            self.verdict_changed.emit(v)

    def _on_remote_snapshot(self, snap: Snapshot) -> None:
        self.on_snapshot(snap)
        self.snapshot_taken.emit(snap)

    def _slot_states(self) -> list[diagnosis.SlotState]:
        return [diagnosis.slot_state(w.slot, self.lifecycle.get(w.trial_id)) for w in self.pool.workers]

    # -- dispatch ---------------------------------------------------------------------------------------

    def _dispatch(self, w: SlotWorker) -> None:
        if self._paused or self._stopping or w.trial_id is not None or not w.said_hello:
            return
        now = time.time()
        fresh = time.monotonic() - self._last_gpus_at < STALE_GPU_S  # stale VRAM figures: unknown, not free
        free = None if self.remote else free_memory(self._last_gpus if fresh else ())  # the nodes' own RAM
        trial = self.lifecycle.assign(self._view(w, now), [self._view(o, now) for o in self.pool.workers], now, free)
        if trial is None:
            self._maybe_done()
            return
        w.run(trial, self.lifecycle.models[trial.model], str(self.run_folder / "trials" / trial.id))

    def _dispatch_idle(self) -> None:
        for w in list(self.pool.workers):
            self._dispatch(w)

    def _view(self, w: SlotWorker, now: float) -> SlotView:
        return SlotView(w.slot.id, w.slot.kind, memory_device(w.slot),
                        self.lifecycle.busy_until(w.trial_id, w.slot.kind, now))

    # -- worker messages --------------------------------------------------------------------------------

    def _on_message(self, w: SlotWorker, msg: dict[str, Any]) -> None:
        tid = msg.get("trial_id")
        if msg["type"] == "hello":
            self._hello = dict(w.hello)
            self._dispatch(w)
        if tid is None or self.lifecycle.get(tid) is None:
            return
        heard = self.lifecycle.hear(tid, msg, time.time())
        if heard.what == "started":
            self.recorder.trial_started(self.lifecycle.live[tid], w.slot.torch_device)
            self.trial_started.emit(tid)
        elif heard.what == "progress":
            self.recorder.reported(self.lifecycle.live[tid])
            self.epoch_reported.emit(tid)
        elif heard.what == "data_wait":
            self.recorder.reported(self.lifecycle.live[tid])
            self.data_wait_reported.emit(tid)
        elif heard.what == "learned":
            self._dispatch_idle()
        elif heard.outcome is not None:  # ended: finished, failed, or requeued to try again
            w.trial_id = None
            if heard.outcome.state == TrialState.FINISHED:
                self.recorder.estimates(self.lifecycle.learned())
            self._apply(heard.outcome)
            self._maybe_recycle(w, self.lifecycle.models[self.lifecycle.live[tid].trial.model], msg)
            self._dispatch_idle()

    def _on_log(self, trial_id: str, line: str) -> None:
        self.recorder.log(trial_id, line)
        self.log_line.emit(trial_id, line)

    def _on_stray(self, w: SlotWorker, line: str) -> None:
        if w.trial_id is not None:
            self.lifecycle.log(w.trial_id, line)

    def _on_exited(self, w: SlotWorker, description: str) -> None:
        if self.status is not None:  # shut down after the run ended
            return
        if w.trial_id is not None:
            struck = self._oom_watch.struck()  # the OOM killer, by the cgroup's count (or RAM nearly full)
            self._oom_watch = OomWatch()
            oom = not self.remote and (struck or memory_low())  # this machine's memory says nothing of a node's
            self._apply(self.lifecycle.worker_died(w.trial_id, description, time.time(), self._stopping, oom))
        if self._stopping:
            if not self.pool.workers:
                self._finalize()
            return
        if self.lifecycle.queued():
            self.pool.replace(w, description)
        self._maybe_done()

    def _apply(self, outcome: Outcome) -> None:
        """Record what the lifecycle decided and tell the views."""
        lt = self.lifecycle.live[outcome.trial_id]
        if outcome.commit:
            self.recorder.trial_ended(lt)
        elif outcome.requeued:
            self.recorder.requeued(lt)
        self.trial_ended.emit(outcome.trial_id)

    def _maybe_recycle(self, w: SlotWorker, model: ModelSpec, ended: dict[str, Any]) -> None:
        """Between trials, a worker that grew too far over its start-up RSS (a trainable that keeps something
        per trial in a module-level list, a leak) or ran its trials is replaced by a fresh one; said once."""
        if self._stopping or self.status is not None or not self.lifecycle.queued():
            return
        why = recycle_reason(model, w.trials_run, w.baseline_rss, ended.get("worker_rss"))
        if why is not None:
            self.pool.retire(w)
            self.notice.emit(f"{w.slot.id} {why}: restarted")

    def _check_hangs(self) -> None:
        hung = set(self.lifecycle.hung(time.time()))
        for w in self.pool.workers:
            if w.trial_id in hung:
                w.kill()

    def _on_store_error(self, message: str) -> None:
        if not self._stopping:
            self.notice.emit(message)
            QTimer.singleShot(0, self.stop)

    # -- the end ----------------------------------------------------------------------------------------

    def _maybe_done(self) -> None:
        if self.status is not None or self._stopping or self.pool.busy():
            return
        left = self.lifecycle.queued()
        if left and self.lifecycle.runnable_on(self.pool.kinds()):
            return  # idle workers pick it up after their hello, or on resume
        if left:
            self.notice.emit(f"{left} queued trials left: no working slot can run them")
        self.pool.shutdown()
        self._finalize()

    def _finalize(self) -> None:
        if self.status is not None:
            return
        if hasattr(self, "_tick"):
            self._tick.stop()
        p = self.progress()
        if self._stopping:
            self.status = RunStatus.STOPPED
        else:
            self.status = RunStatus.FAILED if p.failed or p.queued else RunStatus.DONE
        for v in self.detector.active():
            v.active = False
            self.recorder.verdict(v)
            self.verdict_changed.emit(v)
        self.recorder.end(self.status)
        self.finished.emit(self.status)


def recycle_reason(model: ModelSpec, trials: int, baseline: float | None, rss: Any) -> str | None:
    """Why a worker that just ended a trial of `model` should be replaced, in words; None to keep it."""
    grew = float(rss) - baseline if baseline is not None and isinstance(rss, (int, float)) else 0.0
    if grew > model.recycle_above_gb * GIB:
        return f"grew {grew / GIB:.1f} GB over {trials} trial{'s' if trials != 1 else ''}"
    if model.recycle_after_trials is not None and trials >= model.recycle_after_trials:
        return f"ran {trials} trials (recycle_after_trials = {model.recycle_after_trials})"
    return None
