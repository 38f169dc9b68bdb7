"""A simulated clock for the scheduler: slots, true durations and true memory peaks, no processes."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from gridwatch.grid.trials import Trial
from gridwatch.run.scheduler import SlotView, TrialScheduler


@dataclass
class SimResult:
    makespan: float
    placed: dict[str, str] = field(default_factory=dict)  # trial id -> slot kind
    max_admitted: dict[str, float] = field(default_factory=dict)  # device -> most true memory at once
    ooms: int = 0
    concurrency_after: list[int] = field(default_factory=list)


def simulate(sched: TrialScheduler, slots: list[SlotView], duration: Callable[[Trial, str], float],
             peak: Callable[[Trial, str], float] | None = None, capacity: dict[str, float] | None = None
             ) -> SimResult:
    """Event-driven: idle slots ask for work, trials end at their true time; an admission whose true memory
    exceeds the device's capacity fails as out-of-memory at once (like a CUDA OOM on the first batch)."""
    now = 0.0
    busy: dict[str, tuple[float, Trial]] = {}
    events: list[tuple[float, str]] = []
    res = SimResult(0.0)
    in_use: dict[str, float] = {}
    guard = 0
    while len(sched) or busy:
        guard += 1
        assert guard < 100_000, "simulation does not terminate"
        views = [SlotView(s.id, s.kind, s.device, busy[s.id][0] if s.id in busy else None) for s in slots]
        started = False
        for s in views:
            if s.id in busy:
                continue
            t = sched.next_for(s, views, now)
            if t is None:
                continue
            mem = peak(t, s.kind) if peak else 0.0
            if capacity is not None and in_use.get(s.device, 0.0) + mem > capacity[s.device]:
                res.ooms += 1
                sched.out_of_memory(t.id, mem)
                res.concurrency_after.append(sum(1 for b in busy.values() if b[1].model == t.model))
                continue
            in_use[s.device] = in_use.get(s.device, 0.0) + mem
            res.max_admitted[s.device] = max(res.max_admitted.get(s.device, 0.0), in_use[s.device])
            end = now + duration(t, s.kind)
            busy[s.id] = (end, t)
            res.placed[t.id] = s.kind
            heapq.heappush(events, (end, s.id))
            started = True
            views = [SlotView(v.id, v.kind, v.device, busy[v.id][0] if v.id in busy else None) for v in slots]
        if not events:
            assert not started and not len(sched), "work left that no slot will take"
            break
        now, sid = heapq.heappop(events)
        end, t = busy.pop(sid)
        slot = next(s for s in slots if s.id == sid)
        in_use[slot.device] -= peak(t, slot.kind) if peak else 0.0
        sched.finished(t.id, duration(t, slot.kind), peak(t, slot.kind) if peak else None)
    res.makespan = now
    return res
