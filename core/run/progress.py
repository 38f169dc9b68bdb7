"""Progress snapshot and ETA, computed from what has finished so far."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    total: int
    finished: int
    failed: int
    queued: int
    running: dict[str, int] = field(default_factory=dict)  # device kind -> running trials
    eta_s: float | None = None
    elapsed_s: float = 0.0
    paused: bool = False
    waiting: int = 0  # queued trials held back for a reason (memory, a faster device, a probe)

    @property
    def ended(self) -> int:
        return self.finished + self.failed


def estimate_eta(durations: list[float], queued: int, running_elapsed: list[float], slots: int,
                 predicted_work: float | None = None) -> float | None:
    """Remaining work / slots: from the scheduler's learned estimates when it has them for every queued
    trial, else with the mean finished trial as the unit. None until something is known."""
    if predicted_work is not None:
        return predicted_work / max(1, slots)
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    left = queued * mean + sum(max(mean - e, 0.0) for e in running_elapsed)
    return left / max(1, slots)


def format_seconds(s: float | None) -> str:
    if s is None:
        return "--"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
