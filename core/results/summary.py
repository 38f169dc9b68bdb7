"""What a run amounts to, computed once for the CLI, `report` and the window (they only format it):
states and failures by kind, each ended trial's duration, the serial-equivalent sum, the wall time, the
speedup, and the leaderboard (CV mean ± std per config)."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gridwatch.grid.trials import ENDED_STATES, FAILED_STATES, TrialState
from gridwatch.results.store import TrialRow


class TrialLike(Protocol):
    """What a summary reads of a trial: a stored TrialRow and a LiveTrial both are one."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def config_key(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def state(self) -> str: ...
    @property
    def slot(self) -> str | None: ...
    @property
    def started(self) -> float | None: ...
    @property
    def ended(self) -> float | None: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def metrics(self) -> dict[str, float]: ...
    @property
    def reason(self) -> str | None: ...

LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|perplexity|time|cost", re.IGNORECASE)


@dataclass(frozen=True)
class ConfigResult:
    model: str
    config_key: str
    params: dict[str, Any]
    metric: str
    goal: str  # "max" | "min"
    folds_done: int
    folds_total: int
    mean: float
    std: float  # sample standard deviation over folds (0 with a single fold)
    failed: int


def infer_goal(metric: str) -> str:
    return "min" if LOWER_IS_BETTER.search(metric) else "max"


def primary_metric(model: dict[str, Any], rows: Sequence[TrialLike]) -> tuple[str | None, str]:
    """The model's `metric` if set, else the first metric its first finished trial returned."""
    metric = model.get("metric")
    if metric is None:
        for r in rows:
            if r.model == model["name"] and r.state == TrialState.FINISHED and r.metrics:
                metric = next(iter(r.metrics))
                break
    goal = model.get("goal") or (infer_goal(metric) if metric else "max")
    return metric, goal


def leaderboard(rows: Sequence[TrialLike], models: list[dict[str, Any]], folds: int) -> list[ConfigResult]:
    """Best first. One ranking if all models share metric and goal, else best first within each model."""
    out: list[ConfigResult] = []
    for model in models:
        metric, goal = primary_metric(model, rows)
        if metric is None:
            continue
        groups: dict[str, list[TrialLike]] = {}
        for r in rows:
            if r.model == model["name"]:
                groups.setdefault(r.config_key, []).append(r)
        for key, group in groups.items():
            values = [r.metrics[metric] for r in group if r.state == TrialState.FINISHED and metric in r.metrics]
            if not values:
                continue
            failed = sum(r.state in FAILED_STATES for r in group)
            out.append(ConfigResult(model["name"], key, group[0].params, metric, goal, len(values), len(group),
                                    _mean(values), _std(values), failed))
    return ranked(out, {m["name"]: i for i, m in enumerate(models)})


def ranked(configs: list[ConfigResult], order: dict[str, int]) -> list[ConfigResult]:
    """Best first: one ranking when every model is ranked by the same metric, else one per model (in `order`).
    Within a ranking the complete configs come first, then those with folds still to run, then those with a
    failed fold: a mean over fewer folds may be just the lucky one."""
    shared = len({(c.metric, c.goal) for c in configs}) <= 1

    def rank(c: ConfigResult) -> tuple[int, bool, bool, float]:
        score = -c.mean if c.goal == "max" else c.mean
        return (0 if shared else order[c.model], c.failed > 0, c.folds_done < c.folds_total, score)

    return sorted(configs, key=rank)


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass(frozen=True)
class RunSummary:
    total: int
    counts: dict[TrialState, int]
    failures: dict[TrialState, list[TrialLike]]  # failed / timeout: which trials, with their reasons
    timed: list[TrialLike]  # ended trials with a duration, in start order
    serial_s: float  # Σ durations: what one-at-a-time would have taken
    wall_s: float
    board: list[ConfigResult] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.counts.get(TrialState.FINISHED, 0)

    @property
    def failed(self) -> int:
        return sum(len(v) for v in self.failures.values())

    @property
    def ended(self) -> int:
        return self.finished + self.failed

    @property
    def speedup(self) -> float:
        return self.serial_s / self.wall_s if self.wall_s > 0 and self.timed else math.nan

    def failed_rows(self) -> list[TrialLike]:
        return [r for rows in self.failures.values() for r in rows]


def summarize(rows: Iterable[TrialLike], models: list[dict[str, Any]], folds: int, wall_s: float | None = None
              ) -> RunSummary:
    """`wall_s` defaults to first start -> last end of the rows (a finished run read back)."""
    rows = list(rows)
    counts: dict[TrialState, int] = {}
    failures: dict[TrialState, list[TrialLike]] = {}
    for r in rows:
        state = TrialState(r.state)
        counts[state] = counts.get(state, 0) + 1
        if state in FAILED_STATES:
            failures.setdefault(state, []).append(r)
    timed = sorted((r for r in rows if r.state in ENDED_STATES and r.duration is not None),
                   key=lambda r: r.started or 0.0)
    if wall_s is None:
        starts = [r.started for r in rows if r.started is not None]
        ends = [r.ended for r in rows if r.ended is not None]
        wall_s = max(ends) - min(starts) if starts and ends else 0.0
    serial = sum(r.duration or 0.0 for r in timed)
    board = leaderboard(rows, models, folds) if models else []
    return RunSummary(len(rows), counts, failures, timed, serial, wall_s, board)


def dispatch_gaps(rows: list[TrialRow]) -> list[float]:
    """Per slot, seconds from one trial's end to the next trial's start: time a warm slot sat idle."""
    by_slot: dict[str, list[TrialRow]] = {}
    for r in rows:
        if r.slot and r.started is not None and r.ended is not None:
            by_slot.setdefault(r.slot, []).append(r)
    gaps = []
    for slot_rows in by_slot.values():
        slot_rows.sort(key=lambda r: r.started or 0.0)
        for a, b in zip(slot_rows, slot_rows[1:], strict=False):
            gaps.append((b.started or 0.0) - (a.ended or 0.0))
    return gaps


class RunTally:
    """A RunSummary kept up to date trial by trial, for a live window: `update` costs O(folds of the trial's
    config), never O(trials); `summary()` then equals `summarize()` over the same rows (the leaderboard is
    re-ranked there, O(configs log configs), at the caller's pace)."""

    def __init__(self, rows: Iterable[TrialLike], models: list[dict[str, Any]], folds: int) -> None:
        self.models, self.folds = models, folds
        self.rows: dict[str, TrialLike] = {}
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._state: dict[str, TrialState] = {}
        self.counts: dict[TrialState, int] = {}
        self._failed: dict[TrialState, dict[str, TrialLike]] = {}
        self._timed: list[tuple[float, int]] = []  # (started, row index) of ended trials with a duration
        self._timed_key: dict[str, tuple[float, int, float]] = {}  # id -> (started, index, duration counted)
        self.serial_s = 0.0
        self._groups: dict[tuple[str, str], list[TrialLike]] = {}  # (model, config) -> its rows, in row order
        self._configs: dict[tuple[str, str], ConfigResult | None] = {}
        self._metric: dict[str, tuple[str | None, str]] = {}
        self._first_done: dict[str, int] = {}  # model -> row index of its first finished trial with metrics
        self._order = {m["name"]: i for i, m in enumerate(models)}
        self._meta = {m["name"]: m for m in models}
        self._span: tuple[float, float] | None = None  # (first start, last end); None: to be recomputed
        for r in rows:
            self._index[r.id] = len(self._ids)
            self._ids.append(r.id)
            self.rows[r.id] = r
            self._groups.setdefault((r.model, r.config_key), []).append(r)
        for m in models:
            self._metric[m["name"]] = primary_metric(m, [])
        for r in self.rows.values():
            self.update(r)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def ended(self) -> int:
        return self.counts.get(TrialState.FINISHED, 0) + self.failed

    @property
    def failed(self) -> int:
        return sum(len(v) for v in self._failed.values())

    @property
    def timed_count(self) -> int:
        return len(self._timed)

    def update(self, r: TrialLike) -> None:
        """Trial `r` (one of the rows given at the start) changed: re-count what it adds."""
        tid, state = r.id, TrialState(r.state)
        old = self._state.get(tid)
        if old != state:
            if old is not None:
                self.counts[old] -= 1
                self._failed.get(old, {}).pop(tid, None)
            self.counts[state] = self.counts.get(state, 0) + 1
            if state in FAILED_STATES:
                self._failed.setdefault(state, {})[tid] = r
            self._state[tid] = state
        self._update_timed(r, state)
        requeued = state == TrialState.QUEUED and old not in (None, TrialState.QUEUED)
        self._span = None if self._span is None or requeued else self._widen(self._span, r)
        if r.model in self._meta:
            self._update_metric(r, state)
            self._configs[(r.model, r.config_key)] = self._config(r.model, r.config_key)

    def _update_timed(self, r: TrialLike, state: TrialState) -> None:
        before = self._timed_key.pop(r.id, None)
        if before is not None:
            self.serial_s -= before[2]
            del self._timed[bisect.bisect_left(self._timed, before[:2])]
        if state in ENDED_STATES and r.duration is not None:
            key = (r.started or 0.0, self._index[r.id])
            bisect.insort(self._timed, key)
            self._timed_key[r.id] = (*key, r.duration or 0.0)
            self.serial_s += r.duration or 0.0

    def _update_metric(self, r: TrialLike, state: TrialState) -> None:
        model = self._meta[r.model]
        if model.get("metric") is not None or state != TrialState.FINISHED or not r.metrics:
            return
        first = self._first_done.get(r.model)
        if first is not None and first <= self._index[r.id]:
            return
        self._first_done[r.model] = self._index[r.id]
        metric = primary_metric(model, [r])
        if metric != self._metric[r.model]:
            self._metric[r.model] = metric
            for key in self._groups:
                if key[0] == r.model:
                    self._configs[key] = self._config(*key)

    def _config(self, model: str, config_key: str) -> ConfigResult | None:
        metric, goal = self._metric[model]
        if metric is None:
            return None
        group = self._groups[(model, config_key)]
        values = [r.metrics[metric] for r in group if r.state == TrialState.FINISHED and metric in r.metrics]
        if not values:
            return None
        failed = sum(r.state in FAILED_STATES for r in group)
        return ConfigResult(model, config_key, group[0].params, metric, goal, len(values), len(group),
                            _mean(values), _std(values), failed)

    def board(self) -> list[ConfigResult]:
        out = [c for c in self._configs.values() if c is not None]
        out.sort(key=lambda c: self._order[c.model])  # models in order, each one's configs in row order
        return ranked(out, self._order)

    def timed(self) -> list[TrialLike]:
        return [self.rows[self._ids[i]] for _s, i in self._timed]

    def summary(self, wall_s: float | None = None, board: bool = True) -> RunSummary:
        """As `summarize(rows, models, folds, wall_s)`; `board=False` leaves the leaderboard out (cheaper)."""
        if wall_s is None:
            wall_s = self.wall()
        failures = {s: sorted(rows.values(), key=lambda r: self._index[r.id])
                    for s, rows in self._failed.items() if rows}
        counts = {s: n for s, n in self.counts.items() if n}
        return RunSummary(self.total, counts, failures, self.timed(), self.serial_s, wall_s,
                          self.board() if board and self.models else [])

    def wall(self) -> float:
        """First start to last end (a finished run read back); O(trials) only after a requeue."""
        if self._span is None:
            self._span = (math.inf, -math.inf)
            for r in self.rows.values():
                self._span = self._widen(self._span, r)
        first, last = self._span
        return last - first if first != math.inf and last != -math.inf else 0.0

    @staticmethod
    def _widen(span: tuple[float, float], r: TrialLike) -> tuple[float, float]:
        first, last = span
        if r.started is not None:
            first = min(first, r.started)
        if r.ended is not None:
            last = max(last, r.ended)
        return first, last
