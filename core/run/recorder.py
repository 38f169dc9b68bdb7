"""Recorder: everything a run writes to its results file, and the one policy for a write that fails.

A write that fails (disk full, folder gone, file locked) calls `on_error` once; the session stops the run
and every trial committed before stays. No Qt: the session passes a callback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from gridwatch.results.store import ResultStore
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.records import TelemetryRecorder
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import Verdict

FLUSH_EVERY_S = 5.0  # telemetry rows reach the file in batches


class Recorder:
    def __init__(self, store: ResultStore, on_error: Callable[[str], None]) -> None:
        self.store = store
        self.on_error = on_error
        self.failed = False
        self.telemetry = TelemetryRecorder()
        self._flushed = 0.0

    def _write(self, write: Callable[..., Any], *args: Any) -> bool:
        if self.failed:
            return False
        try:
            write(*args)
            return True
        except sqlite3.Error as exc:
            self.failed = True
            self.on_error(f"cannot write results to {self.store.path} ({exc}): stopping the run; "
                          "every trial committed before is kept")
            return False

    def trial_started(self, lt: LiveTrial, device: str) -> None:
        self._write(self.store.mark_running, lt.trial.id, lt.slot or "", device, lt.started or 0.0)

    def trial_ended(self, lt: LiveTrial) -> None:
        """One transaction: its state, final metrics, every per-epoch value and its log tail."""
        self._write(self.store.finish_trial, lt.trial.id, str(lt.state), lt.ended or 0.0, lt.metrics, lt.reason,
                    lt.steps, "\n".join(lt.log), lt.peak_mem)

    def requeued(self, lt: LiveTrial) -> None:
        self._write(self.store.requeue, lt.trial.id, lt.reason or "")

    def estimates(self, rows: list[tuple[str, str, float, int, float]]) -> None:
        self._write(self.store.save_estimates, rows)

    def verdict(self, v: Verdict) -> None:
        self._write(self.store.save_verdict, v)

    def snapshot(self, snap: Snapshot) -> None:
        """Kept at 1 Hz; written every few seconds."""
        self.telemetry.add(snap)
        if snap.t - self._flushed >= FLUSH_EVERY_S:
            self._flushed = snap.t
            self._write(self.store.add_telemetry, self.telemetry.take())

    def end(self, status: str) -> None:
        self._write(self.store.add_telemetry, self.telemetry.take())
        self._write(self.store.end_session, status)
