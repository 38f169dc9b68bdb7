"""A trial as a run sees it while it happens (or as a finished run is replayed), and the run's progress."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from gridwatch.grid.trials import Trial
from gridwatch.run.progress import Progress, estimate_eta

LOG_TAIL = 200  # lines of a trial's own output kept in the store


@dataclass
class LiveTrial:
    trial: Trial
    state: str = "queued"  # queued | running | finished | failed | stopped
    slot: str | None = None
    started: float | None = None
    ended: float | None = None
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    data_wait: float = float("nan")  # rolling data-wait fraction reported by the worker's prefetch loader
    peak_mem: float | None = None  # bytes, measured by the worker
    last_progress: float = 0.0  # when the worker last said anything about this trial (hang detection)
    crashes: int = 0  # times its worker died under it
    steps: list[tuple[str, int, float, float]] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))


def progress_of(live: dict[str, LiveTrial], slots: int, started_at: float, paused: bool,
                predicted_work: float | None, waiting: int = 0) -> Progress:
    states = [lt.state for lt in live.values()]
    running: dict[str, int] = {}
    elapsed = []
    now = time.time()
    for lt in live.values():
        if lt.state == "running":
            kind = "gpu" if (lt.slot or "").startswith("gpu") else "cpu"
            running[kind] = running.get(kind, 0) + 1
            elapsed.append(now - (lt.started or now))
    durations = [lt.ended - lt.started for lt in live.values()
                 if lt.state == "finished" and lt.started is not None and lt.ended is not None]
    queued = states.count("queued")
    return Progress(total=len(states), finished=states.count("finished"),
                    failed=states.count("failed") + states.count("timeout"), queued=queued, running=running,
                    eta_s=estimate_eta(durations, queued, elapsed, slots, predicted_work),
                    elapsed_s=now - started_at, paused=paused, waiting=waiting)
