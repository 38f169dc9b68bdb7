"""Between telemetry and the detector: build the detector's observation of a running session.

Pure functions (no Qt); RunSession calls them for each snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gridwatch.grid.trials import Trial, TrialState
from gridwatch.run.devices import Slot
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import Observation, TrialObs


@dataclass(frozen=True)
class SlotState:
    slot: Slot
    trial_id: str | None  # the trial it runs now
    data_wait: float = math.nan
    reporting_since: float = math.nan


def slot_state(slot: Slot, lt: LiveTrial | None) -> SlotState:
    """A slot as the detector sees it: the trial it runs now (if running), and that trial's data-wait."""
    if lt is None:
        return SlotState(slot, None)
    running = lt.trial.id if lt.state == TrialState.RUNNING else None
    return SlotState(slot, running, lt.data_wait, lt.reporting_since)


def observation(snap: Snapshot, slots: Iterable[SlotState], queued: Iterable[Trial]) -> Observation:
    trials = []
    idle: dict[int, int] = {}
    for s in slots:
        if s.slot.gpu_index is not None and s.trial_id is None:
            idle[s.slot.gpu_index] = idle.get(s.slot.gpu_index, 0) + 1
        if s.trial_id is None:
            continue
        proc = snap.trials.get(s.slot.id)
        cpu = proc.cpu if proc is not None else math.nan
        trials.append(TrialObs(s.trial_id, cpu, 100.0 * s.slot.threads, s.slot.gpu_index, s.data_wait,
                               s.reporting_since))
    cpu_only = [t for t in queued if t.device_pref == "cpu"]
    return Observation(snap.t, {g.index: g.util for g in snap.gpus}, tuple(trials), idle, len(cpu_only),
                       tuple(sorted({t.model for t in cpu_only})))
