"""Recorder: everything a run writes to its results file, and the one policy for a write that fails.

Besides each trial's start and end, what running trials report (per-epoch values, log lines) and the machine's
telemetry reach the file about once a second, so another process (the window, `gridwatch report`) can follow
the run while it happens.

A write that fails (disk full, folder gone, file locked) calls `on_error` once; the session stops the run
and every trial committed before stays. No Qt: the session passes a callback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from gridwatch.results.store import ResultStore
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.records import TelemetryRecorder
from gridwatch.telemetry.sampler import Snapshot
from gridwatch.telemetry.starvation import Verdict

LIVE_EVERY_S = 1.0  # running trials' values, log lines and telemetry reach the file this often
RESENT = 8  # points of a trial written again each time: its last epoch's, which a later value may replace
LOG_LINES_PER_WRITE = 50  # per trial; a chattier trial's whole output is in its trial folder's log file


class Recorder:
    def __init__(self, store: ResultStore, on_error: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.on_error = on_error
        self.clock = clock
        self.failed = False
        self.ended = False
        self.telemetry = TelemetryRecorder()
        self._written = clock()
        self._reported: dict[str, LiveTrial] = {}  # running trials with per-epoch values not yet written
        self._sent: dict[str, int] = {}  # trial id -> how many of its steps are in the file
        self._logs: list[tuple[str, float, str]] = []
        self._log_count: dict[str, int] = {}  # lines kept (and, past the limit, dropped) per trial this round

    def _write(self, write: Callable[..., Any], *args: Any) -> bool:
        if self.failed or self.ended:  # after its end the file may be another run's
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
        self._forget(lt.trial.id)
        self._sent[lt.trial.id] = 0
        self._write(self.store.mark_running, lt.trial.id, lt.slot or "", device, lt.started or 0.0)

    def trial_ended(self, lt: LiveTrial) -> None:
        """One transaction: its state, final metrics, every per-epoch value and its log tail."""
        self._forget(lt.trial.id)
        self._write(self.store.finish_trial, lt.trial.id, str(lt.state), lt.ended or 0.0, lt.metrics, lt.reason,
                    lt.steps, "\n".join(lt.log), lt.peak_mem)

    def requeued(self, lt: LiveTrial) -> None:
        self._forget(lt.trial.id)
        self._write(self.store.requeue, lt.trial.id, lt.reason or "")

    def _forget(self, trial_id: str) -> None:
        """Its live values give way to what its start or end writes."""
        self._reported.pop(trial_id, None)
        self._sent.pop(trial_id, None)
        if self._log_count.pop(trial_id, None):
            self._logs = [row for row in self._logs if row[0] != trial_id]

    def reported(self, lt: LiveTrial) -> None:
        """A running trial reported per-epoch values."""
        self._reported[lt.trial.id] = lt
        self.maybe_write()

    def log(self, trial_id: str, line: str) -> None:
        n = self._log_count.get(trial_id, 0) + 1
        self._log_count[trial_id] = n
        if n <= LOG_LINES_PER_WRITE:
            self._logs.append((trial_id, time.time(), line))
        self.maybe_write()

    def estimates(self, rows: list[tuple[str, str, float, int, float]]) -> None:
        self._write(self.store.save_estimates, rows)

    def verdict(self, v: Verdict) -> None:
        self._write(self.store.save_verdict, v)

    def snapshot(self, snap: Snapshot) -> None:
        """Telemetry is kept at 1 Hz and written with the rest."""
        self.telemetry.add(snap)
        self.maybe_write()

    def maybe_write(self) -> None:
        if self.clock() - self._written >= LIVE_EVERY_S:
            self.write_live()

    def write_live(self) -> None:
        """One transaction with everything reported since the last."""
        self._written = self.clock()
        steps = []
        for tid, lt in self._reported.items():
            # The last few points again: a later value for the same epoch replaces one in place (the file keeps
            # one per key and step, and so does a reader following it).
            sent = max(0, self._sent.get(tid, 0) - RESENT)
            steps += [(tid, *s) for s in lt.steps[sent:]]
            self._sent[tid] = len(lt.steps)
        self._reported = {}
        logs = self._logs
        for tid, n in self._log_count.items():
            if n > LOG_LINES_PER_WRITE:
                logs.append((tid, time.time(), f"[gridwatch] {n - LOG_LINES_PER_WRITE} more lines in the trial's "
                                               "log file"))
        self._logs, self._log_count = [], {}
        self._write(self.store.add_live, steps, logs, self.telemetry.take())

    def end(self, status: str) -> None:
        self.write_live()
        self._write(self.store.end_session, status)
        self.ended = True
