"""A trial as a run sees it while it happens (or as a finished run is replayed), and the run's progress."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gridwatch.grid.trials import ENDED_STATES, FAILED_STATES, Trial, TrialState
from gridwatch.run.progress import Progress, Stored, TrialTime, estimate_eta

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
    epochs_total: int = 0  # the epochs it says it runs (a command's `epoch 3/6`); 0 when it has not said
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    data_wait: float = float("nan")  # rolling data-wait fraction reported by the worker's prefetch loader
    reporting_since: float = float("nan")  # when its first data-wait figure arrived
    peak_mem: float | None = None  # bytes, measured by the worker
    vram_seen: float = float("nan")  # bytes: the most NVML saw its processes hold on the GPU (context included)
    last_progress: float = 0.0  # when the worker last said anything about this trial (hang detection)
    crashes: int = 0  # times its worker died under it
    lost: int = 0  # times the Ray node it ran on went away under it
    oom_tries: int = 0  # times it ran out of memory
    steps: list[tuple[str, int, float, float]] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))

    @property
    def epochs_planned(self) -> int:
        """The epochs it runs: as it said (a command's `epoch 3/6`), else its config's `epochs`; 0 if unknown."""
        if self.epochs_total > 0:
            return self.epochs_total
        e = self.trial.config.get("epochs")
        return e if isinstance(e, int) and not isinstance(e, bool) and e > 0 else 0

    def set_steps(self, steps: list[tuple[str, int, float, float]]) -> None:
        """Its per-epoch values as a results file keeps them, and the epoch they reached."""
        self.steps = list(steps)
        self.epoch = max((s for k, s, _v, _t in steps if k != "data_wait"), default=0)

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
                predicted_work: float | None, waiting: int = 0, now: float | None = None,
                order: Sequence[Trial] | None = None, stored: Stored | None = None,
                slot_kinds: Sequence[str] | None = None) -> Progress:
    """`order`: the queued trials in the order they will start (else the grid's); `stored`: a model's seconds
    on a kind of slot by an earlier run's estimates; `slot_kinds`: each slot's kind (else any trial runs
    anywhere as fast). While nothing has ended and nothing is stored, `predicted_work` (seconds of work left by
    the scheduler's estimates) / slots stands in."""
    now = time.time() if now is None else now
    counts: dict[TrialState, int] = {}
    running: dict[str, int] = {}
    ended: list[TrialTime] = []
    busy: list[TrialTime] = []
    for lt in live.values():
        counts[lt.state] = counts.get(lt.state, 0) + 1
        if lt.state == TrialState.RUNNING:
            running[lt.kind or "cpu"] = running.get(lt.kind or "cpu", 0) + 1
            busy.append(_running_time(lt, now))
        elif lt.state in ENDED_STATES and lt.started is not None and lt.ended is not None:
            t = lt.trial  # a trial kept from an earlier session of a resumed run knows only its slot's id
            kind = lt.kind or ("gpu" if (lt.slot or "").startswith("gpu") else "cpu" if lt.slot else None)
            ended.append(TrialTime(t.model, t.config_key, t.params, kind, seconds=lt.ended - lt.started))
    queued = counts.get(TrialState.QUEUED, 0)
    failed = sum(counts.get(s, 0) for s in FAILED_STATES)
    if order is None:
        order = [lt.trial for lt in live.values() if lt.state == TrialState.QUEUED]
    lanes: list[str | None] = list(slot_kinds) if slot_kinds else [None] * max(1, slots)
    eta = None if paused and order else estimate_eta(ended, busy, order, lanes, stored)
    if eta is None and not paused and not ended and predicted_work is not None:
        eta = predicted_work / max(1, slots)
    return Progress(total=len(live), finished=counts.get(TrialState.FINISHED, 0), failed=failed, queued=queued,
                    running=running, eta_s=eta, elapsed_s=now - started_at, paused=paused, waiting=waiting)


def _running_time(lt: LiveTrial, now: float) -> TrialTime:
    """A running trial, with its whole duration projected from the pace of the epochs it reported, when it
    said how many epochs it runs (`epoch 3/6`) or its config does."""
    started = lt.started if lt.started is not None else now
    total = lt.epochs_planned
    epoch_at = lt.steps[-1][3] if lt.steps else None
    projected, done = None, 0.0
    if 0 < lt.epoch <= total and epoch_at is not None:
        done = lt.epoch / total
        projected = (epoch_at - started) / done
    return TrialTime(lt.model, lt.config_key, lt.params, lt.kind, elapsed=now - started, projected=projected,
                     done=done)
