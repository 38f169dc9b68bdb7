"""Between telemetry and the detector: build observations of a running session, and keep telemetry.

Pure functions and plain classes (no Qt); RunSession calls them for each snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gridwatch.grid.trials import Trial
from gridwatch.run.devices import Slot
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import Observation, TrialObs

STORE_EVERY_S = 1.0  # telemetry kept in the results file at 1 Hz: an hour is ~40k rows, replayable


@dataclass(frozen=True)
class SlotState:
    slot: Slot
    trial_id: str | None  # the trial it runs now
    data_wait: float = math.nan
    reporting_since: float = math.nan


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


def telemetry_rows(snap: Snapshot) -> list[tuple[float, str, float]]:
    """The figures a finished run replays: host, per core, per GPU, per slot."""
    t = snap.t
    rows = [(t, "cpu_total", snap.cpu_total), (t, "ram_used", snap.ram_used),
            (t, "ram_available", snap.ram_available), (t, "swap_used", snap.swap_used)]
    rows += [(t, f"core{i}", v) for i, v in enumerate(snap.cpu_cores)]
    for g in snap.gpus:
        rows += [(t, f"gpu{g.index}.util", g.util), (t, f"gpu{g.index}.mem_used", g.mem_used),
                 (t, f"gpu{g.index}.mem_total", g.mem_total), (t, f"gpu{g.index}.power", g.power_w),
                 (t, f"gpu{g.index}.temp", g.temp_c)]
    for slot, p in snap.trials.items():
        rows += [(t, f"slot.{slot}.rss", p.rss), (t, f"slot.{slot}.cpu", p.cpu)]
    return [(t, k, v) for t, k, v in rows if v == v]  # NaN is simply absent: a gap on replay


class TelemetryRecorder:
    """Downsamples snapshots to STORE_EVERY_S and hands rows out in batches."""

    def __init__(self, every_s: float = STORE_EVERY_S) -> None:
        self.every_s = every_s
        self.last = -math.inf
        self.pending: list[tuple[float, str, float]] = []

    def add(self, snap: Snapshot) -> None:
        if snap.t - self.last >= self.every_s:
            self.last = snap.t
            self.pending += telemetry_rows(snap)

    def take(self) -> list[tuple[float, str, float]]:
        rows, self.pending = self.pending, []
        return rows
