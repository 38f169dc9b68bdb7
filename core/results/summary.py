"""What a run amounts to, computed once for the CLI, `report` and the window (they only format it):
states and failures by kind, each ended trial's duration, the serial-equivalent sum, the wall time, the
speedup, and the leaderboard (CV mean ± std per config)."""

from __future__ import annotations

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
    shared = len({(c.metric, c.goal) for c in out}) <= 1
    order = {m["name"]: i for i, m in enumerate(models)}

    def rank(c: ConfigResult) -> tuple[int, bool, float]:
        """Within a ranking, configs with a failed fold come after the complete ones: their mean is over
        fewer folds (maybe just the lucky one)."""
        score = -c.mean if c.goal == "max" else c.mean
        return (0 if shared else order[c.model], c.failed > 0, score)

    return sorted(out, key=rank)


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
