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
from gridwatch.telemetry.sampler import ProcSample, Snapshot
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
    slots = list(slots)
    trials = []
    idle: dict[int, int] = {}
    busy: dict[int, int] = {}  # GPU -> running trials on it
    for s in slots:
        if s.slot.gpu_index is not None:
            counts = busy if s.trial_id is not None else idle
            counts[s.slot.gpu_index] = counts.get(s.slot.gpu_index, 0) + 1
    for s in slots:
        if s.trial_id is None:
            continue
        proc = snap.trials.get(s.slot.id) or ProcSample()
        cores = max(s.slot.threads, proc.processes if proc.processes == proc.processes else 1)
        gpu = s.slot.gpu_index
        trials.append(TrialObs(s.trial_id, proc.cpu, 100.0 * cores, gpu, s.data_wait, s.reporting_since,
                               gpu_own=proc.gpu_sm, busiest_thread=proc.busiest_thread,
                               alone=gpu is None or busy.get(gpu, 0) <= 1))
    cpu_only = [t for t in queued if t.device_pref == "cpu"]
    return Observation(snap.t, {g.index: g.util for g in snap.gpus}, tuple(trials), idle, len(cpu_only),
                       tuple(sorted({t.model for t in cpu_only})))
