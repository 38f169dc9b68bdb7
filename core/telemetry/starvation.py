"""StarvationDetector: rolling-window verdicts on what keeps a GPU (or a trial) waiting. Pure, no Qt.

Three rules, each verdict with its evidence in numbers and a fix in words a user acts on:
- input-bound: the worker's data-wait fraction (time blocked on the next batch / step time) is >= 20 %
  (highly) or >= 5 % (moderately) — the TF-profiler thresholds;
- CPU-starved GPU, seen from outside (command trainables, no reports): the trial's *own* GPU utilisation
  (its processes' SM share from NVML; the whole device's only while it is the GPU's one trial) below 40 %
  while its CPU side is saturated, for >= 10 s. Saturated: its busiest thread >= 90 % of a core (a Python
  loop, whatever threads_per_cpu_slot allows), or its processes at >= 90 % of max(threads, processes) cores
  (DataLoader workers are processes of their own). CUDA's spin-wait shows as a busy thread, but only while
  the trial's kernels run, i.e. while its GPU share is high;
- GPU unused: a GPU nearly idle with a free slot while CPU-only trials wait in the queue.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

Found = tuple[tuple[str, str], tuple[str, str, str]] | None  # (kind, subject), (severity, evidence, fix)

HIGH, MODERATE = 0.20, 0.05
GPU_LOW, CPU_SATURATED, GPU_IDLE = 40.0, 0.90, 10.0
SPAN_S = 10.0  # a condition must hold this long before it is a verdict
WARMUP_S = 3.0  # first reports of a trial include start-up; ignore them

INPUT_FIX = ("Overlap loading with training: wrap the loader in gridwatch.prefetch (depth 2-4) or use "
             "DataLoader(num_workers=N, pin_memory=True, persistent_workers=True); raise batch_size; "
             "or move per-batch preprocessing to the GPU.")
CPU_FIX = ("The GPU waits on CPU-side work: give the loader more workers (num_workers) or this slot more "
           "threads (threads_per_cpu_slot), prefetch batches with pinned memory, or move preprocessing "
           "to the GPU.")
UNUSED_FIX = 'Let those models use the GPU: set device = "any" (or "gpu") for {models}.'


def gpu_subject(index: int) -> str:
    """A verdict about a whole GPU names it like this (others name a trial id)."""
    return f"gpu{index}"


@dataclass
class Verdict:
    kind: str  # "input_bound" | "cpu_starved_gpu" | "gpu_unused"
    subject: str  # a trial id, or "gpu0"
    severity: str  # "high" | "moderate"
    evidence: str
    fix: str
    started: float
    ended: float
    active: bool = True

    @property
    def gpu(self) -> int | None:
        """The GPU a GPU verdict is about; None for a trial's verdict."""
        if self.kind == "gpu_unused" and self.subject.startswith("gpu") and self.subject[3:].isdigit():
            return int(self.subject[3:])
        return None

    @property
    def title(self) -> str:
        what = {"input_bound": f"input-bound ({self.severity})", "cpu_starved_gpu": "GPU starved by CPU",
                "gpu_unused": "GPU unused"}[self.kind]
        return f"{self.subject}: {what}"


@dataclass(frozen=True)
class TrialObs:
    trial_id: str
    cpu_pct: float  # its worker's process tree, % of one core
    cpu_budget_pct: float  # cores it may keep busy x 100: max(its threads, its processes)
    gpu: int | None = None  # the GPU it runs on
    data_wait: float = math.nan  # rolling data-wait fraction from the worker, NaN without reports
    reporting_since: float = math.nan  # when its first data-wait report arrived
    gpu_own: float = math.nan  # % SM its own processes used (NVML per process); NaN where unknown
    busiest_thread: float = math.nan  # % of one core used by its busiest thread
    alone: bool = True  # the only running trial on its GPU (so the device's figure is its own)

    def own_gpu_util(self, device_util: float) -> float:
        """This trial's GPU utilisation: its own processes' where known, the device's only while alone."""
        if self.gpu_own == self.gpu_own:
            return self.gpu_own
        return device_util if self.alone else math.nan

    def cpu_saturated(self) -> tuple[bool, str]:
        """Is its CPU side the limit? With the evidence in words."""
        b = self.busiest_thread
        if b == b and b >= 100 * CPU_SATURATED:
            return True, f"its busiest thread ran at {min(b, 100):.0f} % of a core"
        share = self.cpu_pct / self.cpu_budget_pct if self.cpu_budget_pct > 0 else math.nan
        if share == share and share >= CPU_SATURATED:
            n = self.cpu_budget_pct / 100
            return True, f"its processes used {min(share, 1):.0%} of {n:.0f} core{'s' if n != 1 else ''}"
        return False, ""


@dataclass(frozen=True)
class Observation:
    t: float
    gpu_util: dict[int, float] = field(default_factory=dict)
    trials: tuple[TrialObs, ...] = ()
    idle_gpu_slots: dict[int, int] = field(default_factory=dict)
    queued_cpu_only: int = 0
    queued_cpu_models: tuple[str, ...] = ()


class StarvationDetector:
    def __init__(self, span_s: float = SPAN_S) -> None:
        self.span_s = span_s
        self.verdicts: list[Verdict] = []
        self._open: dict[tuple[str, str], Verdict] = {}
        self._outside: dict[str, deque[tuple[float, bool, float, float]]] = {}
        self._idle: dict[int, deque[tuple[float, bool, float]]] = {}

    def active(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.active]

    def observe(self, obs: Observation) -> list[Verdict]:
        """Feed one sample; returns the verdicts opened or changed by it."""
        holding: dict[tuple[str, str], tuple[str, str, str]] = {}
        for tr in obs.trials:
            found = self._input_bound(obs, tr) or self._cpu_starved(obs, tr)
            if found:
                holding[found[0]] = found[1]
        for gpu, util in obs.gpu_util.items():
            found_gpu = self._gpu_unused(obs, gpu, util)
            if found_gpu:
                holding[found_gpu[0]] = found_gpu[1]
        live = {t.trial_id for t in obs.trials}
        self._outside = {k: v for k, v in self._outside.items() if k in live}
        return self._update(obs.t, holding)

    def _input_bound(self, obs: Observation, tr: TrialObs) -> Found:
        w = tr.data_wait
        if not w == w or w < MODERATE or not obs.t - tr.reporting_since >= WARMUP_S:
            return None
        severity = "high" if w >= HIGH else "moderate"
        gpu = ""
        if tr.gpu is not None and obs.gpu_util.get(tr.gpu, math.nan) == obs.gpu_util.get(tr.gpu, math.nan):
            gpu = f"; GPU {tr.gpu} at {obs.gpu_util[tr.gpu]:.0f} %"
        evidence = f"waits for data {w:.0%} of each step (rolling {self.span_s:.0f} s){gpu}"
        return ("input_bound", tr.trial_id), (severity, evidence, INPUT_FIX)

    def _cpu_starved(self, obs: Observation, tr: TrialObs) -> Found:
        if tr.gpu is None or tr.data_wait == tr.data_wait:
            return None  # CPU trials have no GPU to starve; reporting trials are judged by their own figures
        util = tr.own_gpu_util(obs.gpu_util.get(tr.gpu, math.nan))
        saturated, how = tr.cpu_saturated()
        bad = util == util and util < GPU_LOW and saturated
        hist = self._outside.setdefault(tr.trial_id, deque())
        hist.append((obs.t, bad, util, 0.0))
        if not self._held(hist, obs.t):
            return None
        recent = [h for h in hist if h[0] >= obs.t - self.span_s]
        u = sum(h[2] for h in recent) / len(recent)
        whose = "its kernels ran" if tr.gpu_own == tr.gpu_own else "it was busy"
        evidence = f"GPU {tr.gpu}: {whose} {u:.0f} % of the time while {how}, for {self.span_s:.0f} s"
        return ("cpu_starved_gpu", tr.trial_id), ("high", evidence, CPU_FIX)

    def _gpu_unused(self, obs: Observation, gpu: int, util: float) -> Found:
        idle = obs.idle_gpu_slots.get(gpu, 0)
        bad = util == util and util < GPU_IDLE and idle > 0 and obs.queued_cpu_only > 0
        hist = self._idle.setdefault(gpu, deque())
        hist.append((obs.t, bad, util))
        if not self._held(hist, obs.t):
            return None
        models = ", ".join(f'"{m}"' for m in obs.queued_cpu_models) or "the queued models"
        evidence = (f"GPU {gpu} at {util:.0f} % with {idle} free slot(s) while {obs.queued_cpu_only} "
                    f"CPU-only trials wait for a CPU slot")
        return ("gpu_unused", gpu_subject(gpu)), ("moderate", evidence, UNUSED_FIX.format(models=models))

    def _held(self, hist: deque[tuple[float, bool, float, float]] | deque[tuple[float, bool, float]], now: float
              ) -> bool:
        """True when the condition held in every sample of the last span_s seconds, and we saw all of it."""
        while hist and hist[0][0] < now - 2 * self.span_s:
            hist.popleft()
        recent = [h for h in hist if h[0] >= now - self.span_s]
        covered = bool(hist) and hist[0][0] <= now - self.span_s
        return covered and bool(recent) and all(h[1] for h in recent)

    def _update(self, now: float, holding: dict[tuple[str, str], tuple[str, str, str]]) -> list[Verdict]:
        changed = []
        for key, (severity, evidence, fix) in holding.items():
            v = self._open.get(key)
            if v is None:
                v = Verdict(key[0], key[1], severity, evidence, fix, now, now)
                self._open[key] = v
                self.verdicts.append(v)
                changed.append(v)
            else:
                if v.severity != severity:
                    changed.append(v)
                v.severity, v.evidence, v.ended = severity, evidence, now
        for key in [k for k in self._open if k not in holding]:
            v = self._open.pop(key)
            v.active = False
            changed.append(v)
        return changed
