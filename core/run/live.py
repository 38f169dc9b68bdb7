"""A trial as a run sees it while it happens (or as a finished run is replayed), and the run's progress."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gridwatch.grid.trials import FAILED_STATES, Trial, TrialState
from gridwatch.run.progress import Progress, estimate_eta

LOG_TAIL = 200  # lines of a trial's own output kept in the store


@dataclass
class LiveTrial:
    trial: Trial
    state: TrialState = TrialState.QUEUED
    slot: str | None = None
    kind: str | None = None  # "cpu" | "gpu": the kind of device its slot is
    started: float | None = None
    ended: float | None = None
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    data_wait: float = float("nan")  # rolling data-wait fraction reported by the worker's prefetch loader
    reporting_since: float = float("nan")  # when its first data-wait figure arrived
    peak_mem: float | None = None  # bytes, measured by the worker
    vram_seen: float = float("nan")  # bytes: the most NVML saw its processes hold on the GPU (context included)
    last_progress: float = 0.0  # when the worker last said anything about this trial (hang detection)
    crashes: int = 0  # times its worker died under it
    oom_tries: int = 0  # times it ran out of memory
    steps: list[tuple[str, int, float, float]] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))

    # read like a stored TrialRow, so one run summary serves a live run and a results file
    @property
    def id(self) -> str:
        return self.trial.id

    @property
    def model(self) -> str:
        return self.trial.model

    @property
    def config_key(self) -> str:
        return self.trial.config_key

    @property
    def params(self) -> dict[str, Any]:
        return self.trial.params

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started


def progress_of(live: dict[str, LiveTrial], slots: int, started_at: float, paused: bool,
                predicted_work: float | None, waiting: int = 0, now: float | None = None) -> Progress:
    now = time.time() if now is None else now
    counts: dict[TrialState, int] = {}
    running: dict[str, int] = {}
    elapsed, durations = [], []
    for lt in live.values():
        counts[lt.state] = counts.get(lt.state, 0) + 1
        if lt.state == TrialState.RUNNING:
            running[lt.kind or "cpu"] = running.get(lt.kind or "cpu", 0) + 1
            elapsed.append(now - (lt.started or now))
        elif lt.state == TrialState.FINISHED and (d := lt.duration) is not None:
            durations.append(d)
    queued = counts.get(TrialState.QUEUED, 0)
    failed = sum(counts.get(s, 0) for s in FAILED_STATES)
    return Progress(total=len(live), finished=counts.get(TrialState.FINISHED, 0), failed=failed, queued=queued,
                    running=running, eta_s=estimate_eta(durations, queued, elapsed, slots, predicted_work),
                    elapsed_s=now - started_at, paused=paused, waiting=waiting)
