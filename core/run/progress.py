"""Progress snapshot and ETA.

The ETA is the wall time until the last trial ends, found by handing the queued trials, in the order the
scheduler will start them, each to the slot where it would end first, every slot first finishing what it
runs now. So the tail is counted (fewer trials left than slots: the longest one decides), one slot busy with a
long trial does not hold the others back, and a trial goes to the kind of slot that runs it sooner. Each
trial's seconds come from this run's ended trials: its own config's folds, else its model's ended configs
rescaled by their grid values (see estimates.DurationModel), else the stored estimates of an earlier run.
Those durations were measured beside the other slots' trials, so they already carry what the slots cost each
other: the queue's seconds are spread over the slots, never divided by a parallelism again. Nor is any rate
taken from the elapsed time: a phase where slots idled (the start, a first trial measuring its memory alone)
does not stretch the rest. A running trial's own epochs, as they arrive, say how long it takes.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from gridwatch.run.estimates import DurationModel

TAIL = 2000  # the last trials of the queue are placed one by one; the work of any before them is spread evenly


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


class TrialTime(NamedTuple):
    """What the ETA needs of an ended trial (seconds) or a running one (elapsed, maybe projected). (A named
    tuple: a big grid makes thousands of these a few times a second.)"""

    model: str
    config_key: str
    params: dict[str, Any]
    kind: str | None = None  # the kind of slot it ran on
    seconds: float | None = None  # ended: its duration
    elapsed: float | None = None  # running: seconds so far
    projected: float | None = None  # running: its whole duration by the epochs it reported so far (with `done`)
    done: float = 0.0  # running: the share of its epochs reported


class Queued(Protocol):
    """A queued trial (a grid.trials.Trial)."""

    @property
    def model(self) -> str: ...
    @property
    def config_key(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def device_pref(self) -> str: ...  # "cpu", "gpu" or "any"


Stored = Callable[[str, "str | None"], "float | None"]  # (model, slot kind): an earlier run's seconds, or None


def estimate_eta(ended: Sequence[TrialTime], running: Sequence[TrialTime], queued: Sequence[Queued],
                 slots: Sequence[str | None], stored: Stored | None = None) -> float | None:
    """Seconds until the last of `running` and `queued` (in start order) ends on `slots` (each slot's kind, or
    None where unknown); None while some trial's cost is unknown (no trial of its model has ended, nothing
    stored): a made-up figure would be off by the ratio of two models' costs."""
    if not running and not queued:
        return 0.0
    guess = _Guess(ended, running, stored)
    lanes: list[tuple[str | None, float]] = []
    free = list(slots)
    for t in running:
        left = guess.left(t)
        if left is None:
            return None
        kind = t.kind if t.kind in free else None if None in free else t.kind  # else: one slot more than planned
        if kind in free:
            free.remove(kind)
        lanes.append((kind, left))
    lanes += [(k, 0.0) for k in free]
    kinds = {k for k, _l in lanes}
    each: dict[tuple[str, str], dict[str | None, float] | None] = {}  # (config, device) -> seconds on each kind

    def on(t: Queued) -> dict[str | None, float] | None:
        key = (t.config_key, t.device_pref)
        if key not in each:
            known = {k: s for k in kinds if _may_run(t.device_pref, k) and (s := guess.seconds(t, k)) is not None}
            unknown = not known and any(_may_run(t.device_pref, k) for k in kinds)
            each[key] = None if unknown else known
        return each[key]

    bulk, tail = (queued[:-TAIL], queued[-TAIL:]) if len(queued) > TAIL else ((), queued)
    spread = 0.0
    counts = Counter((q.config_key, q.device_pref) for q in bulk)
    for key, first in {(q.config_key, q.device_pref): q for q in bulk}.items():
        if (o := on(first)) is None:
            return None
        spread += counts[key] * min(o.values(), default=0.0)
    ahead = [on(q) for q in tail]
    if any(o is None for o in ahead):
        return None
    return makespan(lanes, [o for o in ahead if o], spread)


def makespan(lanes: Sequence[tuple[str | None, float]], queued: Sequence[dict[str | None, float]],
             spread: float = 0.0) -> float:
    """List scheduling: each queued trial, in order, starts on the slot where it would end first (its seconds
    on each kind of slot it may run on); lanes are (slot kind, seconds until it is free). `spread`: seconds of
    work queued before these (the bulk of a huge queue), shared evenly by the slots first."""
    heaps: dict[str | None, list[float]] = {}
    for kind, free_in in lanes:
        heaps.setdefault(kind, []).append(max(free_in, 0.0) + spread / len(lanes))
    if not heaps:
        return 0.0
    for h in heaps.values():
        heapq.heapify(h)
    for secs in queued:
        kind = min(secs, key=lambda k: heaps[k][0] + secs[k])
        heapq.heappush(heaps[kind], heapq.heappop(heaps[kind]) + max(secs[kind], 0.0))
    return max(max(h) for h in heaps.values())


def _may_run(device: str, kind: str | None) -> bool:
    return kind is None or device == "any" or device == kind


class _Guess:
    """Each trial's seconds: this run's ended trials first, a running fold's time so far as the least for its
    config's other folds, the stored estimates for a model none of whose trials has ended yet."""

    def __init__(self, ended: Sequence[TrialTime], running: Sequence[TrialTime], stored: Stored | None) -> None:
        self.model = DurationModel.of([(t.model, t.config_key, t.params, t.kind, t.seconds) for t in ended
                                       if t.seconds is not None])
        self.stored = stored
        self.at_least: dict[str, float] = {}  # config -> the longest a running fold of it has taken
        for t in running:
            self.at_least[t.config_key] = max(self.at_least.get(t.config_key, 0.0), t.elapsed or 0.0)

    def _seconds(self, t: TrialTime | Queued, kind: str | None) -> float | None:
        s = self.model.seconds(t.model, t.config_key, t.params, kind)
        if s is None and self.stored is not None:
            s = self.stored(t.model, kind)
        return s

    def seconds(self, t: Queued, kind: str | None) -> float | None:
        s = self._seconds(t, kind)
        return None if s is None else max(s, self.at_least.get(t.config_key, 0.0))

    def left(self, t: TrialTime) -> float | None:
        s = self._seconds(t, t.kind)
        if t.projected is not None:  # its own pace counts more the further it got
            s = t.projected if s is None else (1 - t.done) * s + t.done * t.projected
        return None if s is None else max(s - (t.elapsed or 0.0), 0.0)


def format_seconds(s: float | None) -> str:
    if s is None:
        return "--"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
