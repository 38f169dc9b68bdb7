"""TrialLifecycle: what happens to each trial of a run, and the policies that decide it. Pure: no Qt, no
processes; the caller passes the clock, so it is tested on a simulated one like the scheduler.

queued -> running -> finished | failed | timeout, or back to queued when a retry is allowed:
- the worker died under it (crash, a kill from outside): up to the model's `retries`;
- out of memory (CUDA OOM, MemoryError, or the kernel's OOM killer while RAM was nearly full): up to
  MAX_OOM_RETRIES, with that model's concurrency on that device lowered each time;
- no progress for the model's `timeout`: the session kills the worker, the trial ends as `timeout`;
- the run is stopped under it: `stopped` (it runs again on resume).
Every method that ends or requeues a trial returns an Outcome; the session records it and tells the views.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial, TrialState
from gridwatch.run.live import LiveTrial, progress_of
from gridwatch.run.progress import Progress
from gridwatch.run.scheduler import SlotView, TrialScheduler

MAX_OOM_RETRIES = 3
NODE_LOST = "node lost"  # how a Ray slot's exit begins when its node (or actor) went away under the trial
MAX_LOST = 3  # a trial whose node is lost is run again elsewhere this often, without counting as a crash
# What a worker's CUDA context holds on the GPU beside the caching allocator's reserve (which is all torch
# reports): about 300-600 MB on current GPUs. Counted in a GPU trial's footprint unless NVML saw more;
# `gridwatch doctor` measures it on a given machine.
CUDA_CONTEXT_BYTES = 512 * 2**20
LogSink = Callable[[str, str], None]  # (trial id, line)


@dataclass(frozen=True)
class Outcome:
    trial_id: str
    state: TrialState  # where the trial is now
    commit: bool  # it ended with a result to commit (finished, failed, timeout)
    requeued: bool = False  # it goes back to the queue, with its reason kept


@dataclass(frozen=True)
class Heard:
    """What a worker's message about a trial came to, for the session to record and announce."""

    what: str  # "started" | "progress" | "log" | "data_wait" | "learned" | "ended" | "nothing"
    outcome: Outcome | None = None  # with "ended"


@dataclass(frozen=True)
class Kept:
    """A trial finished by an earlier session of this run: shown, not run again."""

    slot: str | None
    started: float | None
    ended: float | None
    metrics: dict[str, float]
    peak_mem: float | None


class TrialLifecycle:
    def __init__(self, models: Mapping[str, ModelSpec], trials: Sequence[Trial], scheduler: TrialScheduler,
                 kept: Mapping[str, Kept] | None = None, on_log: LogSink | None = None) -> None:
        self.models = dict(models)
        self.live = {t.id: LiveTrial(t) for t in trials}
        self.scheduler = scheduler
        self.on_log = on_log
        self._hung: set[str] = set()
        self._points: dict[str, dict[tuple[str, int], int]] = {}  # running trial -> (key, step) -> index in steps
        for tid, k in (kept or {}).items():
            lt = self.live.get(tid)
            if lt is not None:
                lt.state, lt.slot, lt.started, lt.ended = TrialState.FINISHED, k.slot, k.started, k.ended
                lt.metrics, lt.peak_mem = dict(k.metrics), k.peak_mem
        self.skipped = sum(1 for tid in kept or {} if tid in self.live)

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, trial_id: str | None) -> LiveTrial | None:
        return self.live.get(trial_id or "")

    def queued(self) -> int:
        """Trials the scheduler still holds."""
        return len(self.scheduler)

    def pending(self) -> tuple[Trial, ...]:
        return self.scheduler.pending()

    def runnable_on(self, kinds: set[str]) -> bool:
        return self.scheduler.runnable_on(kinds)

    def waiting(self) -> dict[str, str]:
        """Why each queued trial has not started yet, in words (only trials still queued)."""
        return {tid: why for tid, why in self.scheduler.why_waiting().items()
                if (lt := self.live.get(tid)) is not None and lt.state == TrialState.QUEUED}

    def progress(self, slots: int, started_at: float, paused: bool, now: float) -> Progress:
        running = [(lt.trial, lt.kind or "cpu", lt.started) for lt in self.live.values()
                   if lt.state == TrialState.RUNNING and lt.started is not None]
        kinds = {k for _t, k, _s in running} | {"cpu"}
        work = self.scheduler.predicted_work(now, kinds, running)
        return progress_of(self.live, slots, started_at, paused, work, len(self.waiting()), now)

    def busy_until(self, trial_id: str | None, kind: str, now: float) -> float | None:
        """Predicted end of the trial a slot runs, for placement; None when the slot is idle."""
        lt = self.get(trial_id)
        if lt is None:
            return None
        return (lt.started or now) + (self.scheduler.predicted_seconds(lt.trial, kind) or 0.0)

    def learned(self) -> list[tuple[str, str, float, int, float]]:
        return self.scheduler.learned()

    # -- starting ---------------------------------------------------------------------------------------

    def assign(self, slot: SlotView, slots: Sequence[SlotView], now: float, free: dict[str, float] | None
               ) -> Trial | None:
        """The trial `slot` starts now, marked running there; None when nothing fits."""
        trial = self.scheduler.next_for(slot, slots, now, free)
        if trial is None:
            return None
        lt = self.live[trial.id]
        lt.state, lt.slot, lt.kind = TrialState.RUNNING, slot.id, slot.kind
        lt.started, lt.ended, lt.epoch, lt.epochs_total, lt.data_wait = now, None, 0, 0, math.nan
        lt.reporting_since = lt.vram_seen = math.nan
        lt.last_progress = now
        lt.steps.clear()  # a retry's log goes on after the failed attempt's: the reason stays readable
        self._points.pop(trial.id, None)
        return trial

    def started(self, trial_id: str, t: float) -> None:
        lt = self.live[trial_id]
        lt.started = t

    # -- progress reports -------------------------------------------------------------------------------

    def hear(self, trial_id: str, msg: dict[str, Any], now: float) -> Heard:
        """One protocol message about a running trial (see gridwatch.worker.protocol)."""
        kind = msg["type"]
        self.heard_from(trial_id, now)
        t = float(msg.get("t", now))
        if kind == "trial_started":
            self.started(trial_id, t)
            return Heard("started")
        if kind == "epoch":
            self.epoch(trial_id, int(msg["step"]), msg["metrics"], t, msg.get("epochs_total"))
            return Heard("progress")
        if kind == "metric":
            self.metric(trial_id, msg["key"], int(msg["step"]), msg["value"], t, msg.get("epochs_total"))
            return Heard("progress")
        if kind == "log":
            self.log(trial_id, str(msg.get("line", "")))
            return Heard("log")
        if kind == "telemetry":
            self.data_wait(trial_id, msg.get("data_wait"), t, msg.get("epoch_data_wait"), int(msg.get("epoch", 0)))
            return Heard("data_wait")
        if kind == "memory_probe":
            return Heard("learned" if self.memory_probe(trial_id, msg.get("rss"), msg.get("vram")) else "nothing")
        if kind in ("trial_finished", "trial_failed"):
            lt = self.live[trial_id]
            peak = self.gpu_footprint(lt, msg.get("peak_vram")) if lt.kind == "gpu" else msg.get("peak_rss")
            if kind == "trial_finished":
                return Heard("ended", self.finished(trial_id, t, msg.get("metrics", {}), peak))
            return Heard("ended", self.failed(trial_id, t, msg.get("reason"), bool(msg.get("oom")), peak))
        return Heard("nothing")

    def heard_from(self, trial_id: str | None, now: float) -> None:
        lt = self.get(trial_id)
        if lt is not None:
            lt.last_progress = now

    def epoch(self, trial_id: str, step: int, metrics: dict[str, Any], t: float, total: Any = None) -> None:
        lt = self.live[trial_id]
        for key, value in metrics.items():
            self._point(lt, key, step, value, t)
        self._progress(lt, step, total)

    def metric(self, trial_id: str, key: str, step: int, value: Any, t: float, total: Any = None) -> None:
        lt = self.live[trial_id]
        self._point(lt, key, step, value, t)
        self._progress(lt, step, total)

    def _point(self, lt: LiveTrial, key: str, step: int, value: Any, t: float) -> None:
        """One value per key and step: a later value for a step (the same epoch) replaces the earlier one."""
        index = self._points.setdefault(lt.trial.id, {})
        point = (key, step, _float(value), t)
        i = index.get((key, step))
        if i is not None and i < len(lt.steps) and lt.steps[i][:2] == (key, step):
            lt.steps[i] = point
        else:
            index[(key, step)] = len(lt.steps)
            lt.steps.append(point)

    @staticmethod
    def _progress(lt: LiveTrial, step: int, total: Any) -> None:
        lt.epoch = max(lt.epoch, step)
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            lt.epochs_total = total

    def data_wait(self, trial_id: str, fraction: Any, t: float, epoch_fraction: Any = None, epoch: int = 0
                  ) -> None:
        lt = self.live[trial_id]
        lt.data_wait = _float(fraction)
        if lt.reporting_since != lt.reporting_since:
            lt.reporting_since = t
        if epoch_fraction is not None:
            lt.steps.append(("data_wait", epoch, _float(epoch_fraction), t))

    def memory_probe(self, trial_id: str, rss: float | None, vram: float | None) -> bool:
        """A first trial's memory after a second, on the memory its slot draws on: RAM on a CPU slot, VRAM on
        a GPU slot (never one for the other). True when the scheduler learned from it."""
        lt = self.live[trial_id]
        value = self.gpu_footprint(lt, vram) if lt.kind == "gpu" else rss
        if value is None or not value > 0:
            return False
        self.scheduler.early_peak(trial_id, float(value))
        return True

    def saw_vram(self, trial_id: str | None, used: float) -> None:
        """NVML's reading of what a running trial's processes hold on the GPU (the telemetry sampler's)."""
        lt = self.get(trial_id)
        if lt is not None and lt.state == TrialState.RUNNING and used == used:
            lt.vram_seen = used if lt.vram_seen != lt.vram_seen else max(lt.vram_seen, used)

    @staticmethod
    def gpu_footprint(lt: LiveTrial, reserved: float | None) -> float | None:
        """What a GPU trial holds on its GPU: the allocator's peak plus a CUDA context, or more if NVML saw
        more; None where neither is known (a command trial without NVML process figures), never 0."""
        known = [v for v in (reserved + CUDA_CONTEXT_BYTES if reserved is not None and reserved > 0 else None,
                             lt.vram_seen if lt.vram_seen > 0 else None) if v is not None]
        return max(known) if known else None

    def log(self, trial_id: str, line: str) -> None:
        self.live[trial_id].log.append(line)
        if self.on_log is not None:
            self.on_log(trial_id, line)

    # -- endings ----------------------------------------------------------------------------------------

    def finished(self, trial_id: str, t: float, metrics: dict[str, Any], peak: float | None) -> Outcome:
        lt = self.live[trial_id]
        lt.peak_mem = peak
        self.scheduler.finished(trial_id, t - (lt.started or t), peak)
        return self._end(lt, TrialState.FINISHED, t, None, metrics)

    def failed(self, trial_id: str, t: float, reason: str | None, oom: bool, peak: float | None) -> Outcome:
        lt = self.live[trial_id]
        lt.peak_mem = peak
        if oom:
            return self._out_of_memory(lt, reason or "out of memory", peak, t)
        self.scheduler.failed(trial_id)
        return self._end(lt, TrialState.FAILED, t, reason)

    def hung(self, now: float) -> list[str]:
        """Running trials silent for longer than their model's timeout (each named once): kill their worker."""
        out = []
        for lt in self.live.values():
            timeout = self.models[lt.trial.model].timeout
            if (lt.state == TrialState.RUNNING and timeout is not None and lt.trial.id not in self._hung
                    and now - lt.last_progress > timeout):
                self._hung.add(lt.trial.id)
                self.log(lt.trial.id, f"[gridwatch] no progress for {timeout:g} s: killing the worker")
                out.append(lt.trial.id)
        return out

    def worker_died(self, trial_id: str, description: str, now: float, stopping: bool, memory_low: bool
                    ) -> Outcome:
        """Its worker exited under it: stopped by the user, killed for a timeout, the OOM killer, or a crash."""
        lt = self.live[trial_id]
        if stopping:
            lt.state, lt.ended = TrialState.STOPPED, now
            return Outcome(trial_id, lt.state, commit=False)
        if trial_id in self._hung:
            self._hung.discard(trial_id)
            self.scheduler.failed(trial_id)
            timeout = self.models[lt.trial.model].timeout or 0.0
            return self._end(lt, TrialState.TIMEOUT, now, f"no progress for {timeout:g} s: worker killed")
        if description.startswith(NODE_LOST) and lt.lost < MAX_LOST:  # no fault of the trial's: not a crash
            lt.lost += 1
            self.log(trial_id, f"[gridwatch] {description}; run again on another slot")
            self.scheduler.requeue(lt.trial)
            return self._requeue(lt, f"{description}; run again ({lt.lost} of {MAX_LOST})")
        if description.endswith("SIGKILL") and memory_low:
            self.log(trial_id, f"[gridwatch] {description}")
            why = f"{description} (the kernel's out-of-memory killer, RAM was nearly full)"
            return self._out_of_memory(lt, why, None, now)
        return self._crashed(lt, description, now)

    def _crashed(self, lt: LiveTrial, description: str, now: float) -> Outcome:
        """Say how, with its last words, and run it again if the model allows."""
        last = next((ln for ln in reversed(lt.log) if ln.strip() and not ln.startswith("[gridwatch]")), "")
        reason = description + (f"; last output: {last.strip()[:200]}" if last else "")
        self.log(lt.trial.id, f"[gridwatch] {description}")
        lt.crashes += 1
        retries = self.models[lt.trial.model].retries
        if lt.crashes <= retries:
            self.scheduler.requeue(lt.trial)
            return self._requeue(lt, f"{reason}; retry {lt.crashes} of {retries}")
        self.scheduler.failed(lt.trial.id)
        return self._end(lt, TrialState.FAILED, now, reason)

    def _out_of_memory(self, lt: LiveTrial, reason: str, peak: float | None, now: float) -> Outcome:
        lt.oom_tries += 1
        retry = lt.oom_tries <= MAX_OOM_RETRIES
        self.scheduler.out_of_memory(lt.trial.id, peak, retry)
        if not retry:
            return self._end(lt, TrialState.FAILED, now, f"out of memory after {MAX_OOM_RETRIES} retries: {reason}")
        self.log(lt.trial.id, f"[gridwatch] out of memory ({reason}); retry {lt.oom_tries} of {MAX_OOM_RETRIES} "
                              "with fewer trials at once")
        return self._requeue(lt, f"out of memory, retrying ({lt.oom_tries}/{MAX_OOM_RETRIES})")

    def _requeue(self, lt: LiveTrial, reason: str) -> Outcome:
        lt.state, lt.reason, lt.ended = TrialState.QUEUED, reason, None
        return Outcome(lt.trial.id, lt.state, commit=False, requeued=True)

    def _end(self, lt: LiveTrial, state: TrialState, ended: float, reason: str | None,
             metrics: dict[str, Any] | None = None) -> Outcome:
        self._points.pop(lt.trial.id, None)
        lt.state, lt.ended, lt.reason = state, ended, reason
        lt.metrics = {k: _float(v) for k, v in (metrics or {}).items()}
        return Outcome(lt.trial.id, state, commit=True)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
