"""RunSession: drives one run — slot workers, dispatch, results into the store — and emits what happens.

The CLI and the window both only listen to these signals and read the store; neither touches a process.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from typing import Any

import psutil
from PySide6.QtCore import QObject, QTimer, Signal

from gridwatch.grid.spec import GridSpec
from gridwatch.grid.trials import Trial
from gridwatch.results.store import ResultStore
from gridwatch.run.devices import Slot, memory_device
from gridwatch.run.estimates import Estimates
from gridwatch.run.launcher import SlotWorker
from gridwatch.run.live import LiveTrial, progress_of
from gridwatch.run.progress import Progress
from gridwatch.run.scheduler import MAX_OOM_RETRIES, SlotView, TrialScheduler
from gridwatch.telemetry import diagnosis
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import StarvationDetector, Verdict

MAX_BAD_STARTS = 3  # a slot whose worker dies before saying hello this often is given up
STOP_GRACE_MS = 3000


class RunSession(QObject):
    trial_started = Signal(str)
    trial_ended = Signal(str)  # finished, failed or stopped: read live[id].state
    epoch_reported = Signal(str)
    log_line = Signal(str, str)  # trial id, line
    data_wait_reported = Signal(str)  # trial id: its rolling data-wait fraction changed
    verdict_changed = Signal(object)  # a starvation Verdict opened, changed or closed
    pids_changed = Signal(dict)  # slot id -> worker pid, for the telemetry sampler
    notice = Signal(str)  # something the user should read once
    finished = Signal(str)  # "done" | "failed" | "stopped"

    def __init__(self, grid: GridSpec, trials: list[Trial], slots: list[Slot], store: ResultStore,
                 done_ids: set[str] | None = None, parent: QObject | None = None,
                 estimates: Estimates | None = None, budgets: dict[str, float] | None = None,
                 probe_alone: set[str] | None = None) -> None:
        super().__init__(parent)
        done_ids = done_ids or set()
        self.models = {m.name: m for m in grid.models}
        self.slots = slots
        self.store = store
        self.live = {t.id: LiveTrial(t) for t in trials}
        stored = {r.id: r for r in store.trials()} if done_ids else {}
        for tid in done_ids & self.live.keys():
            lt, r = self.live[tid], stored.get(tid)
            lt.state = "finished"
            if r is not None:  # a resumed run shows what it keeps
                lt.slot, lt.started, lt.ended = r.slot, r.started, r.ended
                lt.metrics, lt.peak_mem = r.metrics, r.peak_mem
        self.skipped = len(done_ids & self.live.keys())
        self.scheduler = TrialScheduler([t for t in trials if t.id not in done_ids], estimates or Estimates(),
                                        dict(budgets or {}), probe_alone)
        self._last_snapshot: Snapshot | None = None
        self.workers: list[SlotWorker] = []
        self.paused = False
        self.stopping = False
        self.status: str | None = None
        self.started_at = 0.0
        self._bad_starts: dict[str, int] = {}
        self.detector = StarvationDetector()
        self.recorder = diagnosis.TelemetryRecorder()
        self._wait_since: dict[str, float] = {}
        self._flushed = 0.0
        self._stray: dict[str, deque[str]] = {}

    # -- control ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.time()
        self._retry = QTimer(self)  # trials waiting for memory: free memory changes without any event of ours
        self._retry.timeout.connect(self._dispatch_idle)
        self._retry.timeout.connect(self._check_hangs)
        self._retry.start(1000)
        if len(self.scheduler) == 0:
            QTimer.singleShot(0, self._maybe_done)
            return
        for slot in self.slots:
            self._spawn(slot)

    def pause(self) -> None:
        """Running trials finish; no new ones start."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        for w in list(self.workers):
            self._dispatch(w)

    def stop(self) -> None:
        """Terminate every worker's process group now; finished results are already stored."""
        if self.status is not None:
            return
        self.stopping = True
        if not self.workers:
            self._finalize()
            return
        for w in self.workers:
            w.terminate()
        QTimer.singleShot(STOP_GRACE_MS, self._kill_stragglers)

    def stop_blocking(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """For a closing window or a dying CLI: return only when no worker process is left."""
        self.stopping = True
        for w in list(self.workers):
            w.terminate()
        for w in list(self.workers):
            if not w.proc.waitForFinished(timeout_ms):
                w.kill()
                w.proc.waitForFinished(1000)
        if self.status is None:
            self._finalize()

    def _kill_stragglers(self) -> None:
        for w in self.workers:
            w.kill()

    # -- reading ----------------------------------------------------------------------------------------

    def progress(self) -> Progress:
        waiting = sum(1 for tid in list(self.scheduler.waiting)
                      if (lt := self.live.get(tid)) is not None and lt.state == "queued")
        return progress_of(self.live, max(1, len(self.workers)), self.started_at, self.paused,
                           self._predicted_work(time.time()), waiting)

    def on_snapshot(self, snap: Snapshot) -> None:
        """A telemetry sample: kept at 1 Hz in the results file, and judged by the starvation detector."""
        if self.status is not None:
            return
        self._last_snapshot = snap
        self.recorder.add(snap)
        if snap.t - self._flushed >= 5.0:
            self._flushed = snap.t
            self._write(self.store.add_telemetry, self.recorder.take())
        obs = diagnosis.observation(snap, self._slot_states(), self.scheduler.pending())
        for v in self.detector.observe(obs):
            self._write(self.store.save_verdict, v)
            self.verdict_changed.emit(v)

    def _slot_states(self) -> list[diagnosis.SlotState]:
        out = []
        for w in self.workers:
            lt = self.live.get(w.trial_id or "")
            running = lt is not None and lt.state == "running"
            out.append(diagnosis.SlotState(w.slot, w.trial_id if running else None,
                                           lt.data_wait if lt else float("nan"),
                                           self._wait_since.get(w.trial_id or "", float("nan"))))
        return out

    def verdicts(self) -> list[Verdict]:
        return list(self.detector.verdicts)

    def _predicted_work(self, now: float) -> float | None:
        running = []
        for w in self.workers:
            lt = self.live.get(w.trial_id or "")
            if lt is not None and lt.started is not None:
                running.append((lt.trial, w.slot.kind, lt.started))
        return self.scheduler.predicted_work(now, {w.slot.kind for w in self.workers} or {"cpu"}, running)

    def worker_pids(self) -> dict[str, int]:
        """Slot id -> pid of its worker, for per-slot telemetry."""
        return {w.slot.id: w.pid for w in self.workers if w.pid is not None}

    # -- workers ----------------------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        preload = [(m.target, m.base) for m in self.models.values() if m.kind == "python"]
        w = SlotWorker(slot, self, preload)
        w.message.connect(self._on_message)
        w.stray_line.connect(self._on_stray)
        w.exited.connect(self._on_exited)
        self.workers.append(w)
        self._stray[slot.id] = deque(maxlen=20)
        w.start()

    def _dispatch(self, w: SlotWorker) -> None:
        if self.paused or self.stopping or w.trial_id is not None or not w.said_hello:
            return
        trial = self.scheduler.next_for(self._view(w), [self._view(o) for o in self.workers], time.time(),
                                        self._free_memory())
        if trial is None:
            self._maybe_done()
            return
        lt = self.live[trial.id]
        lt.slot, lt.state = w.slot.id, "running"
        lt.started, lt.ended, lt.epoch, lt.data_wait = time.time(), None, 0, float("nan")
        lt.last_progress = lt.started
        lt.steps.clear()  # a retry's log goes on after the failed attempt's: the reason stays readable
        w.trial_id = trial.id
        w.send("run", trial=self._payload(trial, w.slot))

    def _view(self, w: SlotWorker) -> SlotView:
        busy_until = None
        lt = self.live.get(w.trial_id or "")
        if lt is not None:
            predicted = self.scheduler.predicted_seconds(lt.trial, w.slot.kind)
            busy_until = (lt.started or time.time()) + (predicted or 0.0)
        return SlotView(w.slot.id, w.slot.kind, memory_device(w.slot), busy_until)

    def _free_memory(self) -> dict[str, float]:
        """Free RAM (and VRAM, from the last telemetry sample) now, for admission."""
        free = {"host": float(psutil.virtual_memory().available)}
        snap = self._last_snapshot
        for g in snap.gpus if snap is not None else ():
            if g.mem_total == g.mem_total and g.mem_used == g.mem_used:
                free[f"gpu{g.index}"] = g.mem_total - g.mem_used
        return free

    def waiting(self) -> dict[str, str]:
        """Why each queued trial has not started yet, in words."""
        return dict(self.scheduler.waiting)

    def _dispatch_idle(self) -> None:
        for w in list(self.workers):
            self._dispatch(w)

    def _payload(self, trial: Trial, slot: Slot) -> dict[str, Any]:
        m = self.models[trial.model]
        return {"id": trial.id, "kind": m.kind, "target": m.target, "cwd": m.cwd, "base": m.base,
                "metrics_regex": m.metrics_regex, "config": {**trial.config, "device": slot.torch_device}}

    def _on_message(self, w: SlotWorker, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        lt = self.live.get(msg.get("trial_id") or "")
        if lt is not None:
            lt.last_progress = time.time()
        if kind == "hello":
            self.pids_changed.emit(self.worker_pids())
            self._dispatch(w)
        elif lt is None:
            if kind == "log":
                self._stray[w.slot.id].append(msg.get("line", ""))
        elif kind == "trial_started":
            lt.started = float(msg["t"])
            self._write(self.store.mark_running, lt.trial.id, w.slot.id, w.slot.torch_device, lt.started)
            self.trial_started.emit(lt.trial.id)
        elif kind == "epoch":
            for key, value in msg["metrics"].items():
                lt.steps.append((key, int(msg["step"]), _float(value), float(msg["t"])))
            lt.epoch = int(msg["step"])
            self.epoch_reported.emit(lt.trial.id)
        elif kind == "metric":
            lt.steps.append((msg["key"], int(msg["step"]), _float(msg["value"]), float(msg["t"])))
            lt.epoch = max(lt.epoch, int(msg["step"]))
            self.epoch_reported.emit(lt.trial.id)
        elif kind == "log":
            self._log(lt, msg.get("line", ""))
        elif kind == "telemetry":
            self._on_data_wait(lt, msg)
        elif kind in ("trial_finished", "trial_failed"):
            w.trial_id = None
            peak = msg.get("peak_vram" if w.slot.kind == "gpu" else "peak_rss")
            lt.peak_mem = peak
            if kind == "trial_finished":
                self.scheduler.finished(lt.trial.id, float(msg["t"]) - (lt.started or float(msg["t"])), peak)
                self._write(self.store.save_estimates, self.scheduler.estimates.rows())
                self._end_trial(lt, "finished", msg.get("metrics", {}), None, float(msg["t"]))
            elif msg.get("oom"):
                self._out_of_memory(lt, msg.get("reason") or "out of memory", peak)
            else:
                self.scheduler.failed(lt.trial.id)
                self._end_trial(lt, "failed", {}, msg.get("reason"), float(msg["t"]))
            self._dispatch_idle()

    def _on_data_wait(self, lt: LiveTrial, msg: dict[str, Any]) -> None:
        if "peak_rss_so_far" in msg:
            self.scheduler.early_peak(lt.trial.id, float(msg["peak_rss_so_far"]))
            self._dispatch_idle()
            return
        lt.data_wait = _float(msg.get("data_wait"))
        self._wait_since.setdefault(lt.trial.id, float(msg["t"]))
        if "epoch_data_wait" in msg:
            lt.steps.append(("data_wait", int(msg.get("epoch", 0)), _float(msg["epoch_data_wait"]), float(msg["t"])))
        self.data_wait_reported.emit(lt.trial.id)

    def _log(self, lt: LiveTrial, line: str) -> None:
        lt.log.append(line)
        self.log_line.emit(lt.trial.id, line)

    def _on_stray(self, w: SlotWorker, line: str) -> None:
        if w.trial_id is not None:
            self._log(self.live[w.trial_id], line)
        else:
            self._stray[w.slot.id].append(line)

    def _end_trial(self, lt: LiveTrial, state: str, metrics: dict[str, Any], reason: str | None,
                   ended: float) -> None:
        lt.state, lt.ended, lt.reason = state, ended, reason
        lt.metrics = {k: _float(v) for k, v in metrics.items()}
        if state in ("finished", "failed", "timeout"):
            self._write(self.store.finish_trial, lt.trial.id, state, ended, lt.metrics, reason, lt.steps,
                        "\n".join(lt.log), lt.peak_mem)
        self.trial_ended.emit(lt.trial.id)

    def _out_of_memory(self, lt: LiveTrial, reason: str, peak: float | None) -> None:
        """Requeue with that model's concurrency lowered on that device; fail once the retries are spent."""
        tries = self.scheduler.oom_tries.get(lt.trial.id, 0) + 1
        if self.scheduler.out_of_memory(lt.trial.id, peak):
            self._log(lt, f"[gridwatch] out of memory ({reason}); retry {tries} of {MAX_OOM_RETRIES} "
                          "with fewer trials at once")
            lt.state, lt.reason, lt.ended = "queued", f"out of memory, retrying ({tries}/{MAX_OOM_RETRIES})", None
            self._write(self.store.requeue, lt.trial.id, lt.reason)
            self.trial_ended.emit(lt.trial.id)
        else:
            self._end_trial(lt, "failed", {}, f"out of memory after {MAX_OOM_RETRIES} retries: {reason}",
                            time.time())

    def _on_exited(self, w: SlotWorker, description: str) -> None:
        if w not in self.workers:
            return
        self.workers.remove(w)
        w.deleteLater()
        if self.status is not None:  # shut down after the run ended
            return
        self.pids_changed.emit(self.worker_pids())
        if w.trial_id is not None:
            lt = self.live[w.trial_id]
            if self.stopping:
                lt.state, lt.ended = "stopped", time.time()
                self.trial_ended.emit(lt.trial.id)
            elif w.timed_out:
                timeout = self.models[lt.trial.model].timeout
                self.scheduler.failed(lt.trial.id)
                self._end_trial(lt, "timeout", {}, f"no progress for {timeout:g} s: worker killed", time.time())
            elif description.endswith("SIGKILL") and self._memory_low():
                self._log(lt, f"[gridwatch] {description}")
                self._out_of_memory(lt, f"{description} (the kernel's out-of-memory killer, RAM was nearly full)",
                                    None)
            else:
                self._crashed(lt, description)
        if self.stopping:
            if not self.workers:
                self._finalize()
            return
        if len(self.scheduler):
            self._replace(w, description)
        self._maybe_done()

    def _crashed(self, lt: LiveTrial, description: str) -> None:
        """The worker died under the trial: say how, with its last words, and run it again if allowed."""
        last = next((line for line in reversed(lt.log) if line.strip() and not line.startswith("[gridwatch]")), "")
        reason = description + (f"; last output: {last.strip()[:200]}" if last else "")
        self._log(lt, f"[gridwatch] {description}")
        lt.crashes += 1
        retries = self.models[lt.trial.model].retries
        if lt.crashes <= retries:
            self.scheduler.requeue(lt.trial)
            lt.state, lt.ended, lt.reason = "queued", None, f"{reason}; retry {lt.crashes} of {retries}"
            self._write(self.store.requeue, lt.trial.id, lt.reason)
            self.trial_ended.emit(lt.trial.id)
        else:
            self.scheduler.failed(lt.trial.id)
            self._end_trial(lt, "failed", {}, reason, time.time())

    def _memory_low(self) -> bool:
        vm = psutil.virtual_memory()
        return vm.available < 0.1 * vm.total

    def _check_hangs(self) -> None:
        now = time.time()
        for w in self.workers:
            lt = self.live.get(w.trial_id or "")
            timeout = self.models[lt.trial.model].timeout if lt is not None else None
            if lt is not None and timeout is not None and not w.timed_out and now - lt.last_progress > timeout:
                self._log(lt, f"[gridwatch] no progress for {timeout:g} s: killing the worker")
                w.timed_out = True
                w.kill()

    def _write(self, write: Any, *args: Any) -> bool:
        """Store writes that fail (disk full, folder gone) stop the run; what was committed stays."""
        try:
            write(*args)
            return True
        except sqlite3.Error as exc:
            if not self.stopping:
                self.notice.emit(f"cannot write results to {self.store.path} ({exc}): stopping the run; "
                                 "every trial committed before is kept")
                QTimer.singleShot(0, self.stop)
            return False

    def _replace(self, w: SlotWorker, description: str) -> None:
        slot = w.slot
        if not w.said_hello:
            self._bad_starts[slot.id] = self._bad_starts.get(slot.id, 0) + 1
            if self._bad_starts[slot.id] >= MAX_BAD_STARTS:
                last = " | ".join(list(self._stray[slot.id])[-3:])
                self.notice.emit(f"slot {slot.id} given up: {description}" + (f": {last}" if last else ""))
                return
        self._spawn(slot)

    def _maybe_done(self) -> None:
        if self.status is not None or self.stopping:
            return
        if any(w.trial_id is not None for w in self.workers):
            return
        if len(self.scheduler) and self.scheduler.runnable_on({w.slot.kind for w in self.workers}):
            return  # idle workers pick it up after their hello, or on resume
        if len(self.scheduler):
            self.notice.emit(f"{len(self.scheduler)} queued trials left: no working slot can run them")
        for w in self.workers:
            w.send("shutdown")
            w.proc.closeWriteChannel()
        self._finalize()

    def close(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """After the run: wait for the workers to exit (they were told to), kill any that do not."""
        for w in list(self.workers):
            if not w.proc.waitForFinished(timeout_ms):
                w.kill()
                w.proc.waitForFinished(1000)

    def _finalize(self) -> None:
        if self.status is not None:
            return
        if hasattr(self, "_retry"):
            self._retry.stop()
        p = self.progress()
        if self.stopping:
            self.status = "stopped"
        elif p.failed or p.queued:
            self.status = "failed"
        else:
            self.status = "done"
        self._write(self.store.add_telemetry, self.recorder.take())
        for v in self.detector.active():
            v.active = False
            self._write(self.store.save_verdict, v)
            self.verdict_changed.emit(v)
        self._write(self.store.end_session, self.status)
        self.finished.emit(self.status)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
