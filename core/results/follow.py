"""Following a results file that another process (`gridwatch run` in a terminal, over ssh) is writing.

The run writes each trial's start and end at once, and its running trials' per-epoch values, log lines and the
machine's telemetry about once a second (WAL: this reader never blocks it). `Follower.poll()` reads only what
is new since the last poll — trial rows by their change counter, the other tables by rowid — inside one read
transaction, so what it returns is one consistent moment of the run, and a poll costs the same whatever the
grid's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gridwatch.grid.trials import TrialState
from gridwatch.results.files import lock_holder
from gridwatch.results.replay import cut_short, live_from_store, live_trial, update
from gridwatch.results.store import ResultStore
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.starvation import Verdict


def is_live(store: ResultStore) -> bool:
    """Another process is running this file now: its newest session is open and a live process holds its lock
    (and it writes what a follower reads: a file of an older gridwatch has no change counter)."""
    return store.has_rev and store.last_status() == "running" and lock_holder(store.path) is not None


@dataclass
class Changes:
    trials: list[str] = field(default_factory=list)  # rows whose state, slot, times or results changed
    epochs: set[str] = field(default_factory=set)  # running trials with new per-epoch values
    logs: list[tuple[str, str]] = field(default_factory=list)  # (trial id, line) of running trials
    telemetry: list[tuple[float, str, float]] = field(default_factory=list)
    verdicts: list[Verdict] | None = None  # all of them, when any changed
    ended: bool = False  # the run is over (ended, or its process is gone)


class Follower:
    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self.live: dict[str, LiveTrial] = {}
        self.info: dict[str, Any] = {}
        self.rev = 0
        self.rows = {"steps": 0, "logs": 0, "telemetry": 0}
        self.version = -1
        self.session = 0
        self._verdicts: list[tuple[Any, ...]] = []
        self._points: dict[str, dict[tuple[str, int], int]] = {}  # trial id -> (key, step) -> index in its steps

    def load(self, following: bool = True) -> tuple[dict[str, LiveTrial], dict[str, Any],
                                                     list[tuple[float, str, float]]]:
        """The run so far: its trials, its info and its telemetry; later polls bring what is new. Not
        `following` (a run that ended, or died): its running trials are shown stopped."""
        with self._moment():
            self.version = self.store.data_version()
            self.session = self.store.newest_session()
            _, self.rev = self.store.trials_changed(0)
            self.live, self.info = live_from_store(self.store, following=following)
            for table in ("steps", "logs"):
                self.rows[table] = self._last_rowid(table)
            telemetry, self.rows["telemetry"] = self.store.rows_after("telemetry", 0)
            self._verdicts = [_key(v) for v in self.store.verdicts()]
        return self.live, self.info, telemetry

    def _last_rowid(self, table: str) -> int:
        if table not in self.store.tables:
            return 0
        return int(self.store.db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0])

    def poll(self) -> Changes:
        # Asked first: a run seen ended has written its last. A new session is another run of the file (a resume
        # of a run that died): this follower's run has ended.
        changes = Changes(ended=not is_live(self.store) or self.store.newest_session() != self.session)
        version = self.store.data_version()
        if version != self.version:
            self.version = version
            with self._moment():
                self._read(changes)
        if changes.ended:  # a run that ended requeued its running trials; one whose process died did not
            for lt in self.live.values():
                if lt.state == TrialState.RUNNING:
                    cut_short(lt)
                    changes.trials.append(lt.id)
        return changes

    def _read(self, changes: Changes) -> None:
        rows, self.rev = self.store.trials_changed(self.rev)
        for r in rows:
            if r.state == TrialState.SUPERSEDED:
                continue
            lt = self.live.get(r.id)
            ended = r.state not in (TrialState.QUEUED, TrialState.RUNNING)
            restarted = False
            if lt is None:
                self.live[r.id] = live_trial(r, self.info, self.store.steps_with_time(r.id))
            else:  # a new attempt: it was not running, or it started again between two polls
                restarted = r.state == TrialState.RUNNING and (lt.state != TrialState.RUNNING
                                                               or r.started != lt.started)
                update(lt, r, self.store.steps_with_time(r.id) if ended else [] if restarted else None)
                if restarted:
                    lt.log.clear()
            if ended or lt is None or restarted:
                self._points.pop(r.id, None)
            changes.trials.append(r.id)
        new_steps, self.rows["steps"] = self.store.rows_after("steps", self.rows["steps"])
        for tid, key, step, value, t in new_steps:
            lt = self.live.get(tid)
            if lt is not None and lt.state == TrialState.RUNNING:
                self._put(lt, (key, step, value, t or 0.0))
                if key != "data_wait":
                    lt.epoch = max(lt.epoch, step)
                changes.epochs.add(tid)
        new_logs, self.rows["logs"] = self.store.rows_after("logs", self.rows["logs"])
        for tid, _t, line in new_logs:
            lt = self.live.get(tid)
            if lt is not None and lt.state == TrialState.RUNNING:
                lt.log.append(line)
                changes.logs.append((tid, line))
        changes.telemetry, self.rows["telemetry"] = self.store.rows_after("telemetry", self.rows["telemetry"])
        verdicts = self.store.verdicts()
        keys = [_key(v) for v in verdicts]
        if keys != self._verdicts:
            self._verdicts = keys
            changes.verdicts = verdicts

    def _put(self, lt: LiveTrial, point: tuple[str, int, float, float]) -> None:
        """One value per key and step, as the run keeps them: a value sent again for a step replaces it."""
        index = self._points.get(lt.id)
        if index is None:
            index = self._points[lt.id] = {(k, s): i for i, (k, s, _v, _t) in enumerate(lt.steps)}
        i = index.get(point[:2])
        if i is not None and i < len(lt.steps):
            lt.steps[i] = point
        else:
            index[point[:2]] = len(lt.steps)
            lt.steps.append(point)

    @contextmanager
    def _moment(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed state of the file."""
        db = self.store.db
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")


def _key(v: Verdict) -> tuple[Any, ...]:
    return (v.kind, v.subject, v.started, v.ended, v.evidence)
