"""Leaderboard (CV mean ± std per config) and speedup, computed from stored trial rows."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gridwatch.results.store import TrialRow

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


def primary_metric(model: dict[str, Any], rows: list[TrialRow]) -> tuple[str | None, str]:
    """The model's `metric` if set, else the first metric its first finished trial returned."""
    metric = model.get("metric")
    if metric is None:
        for r in rows:
            if r.model == model["name"] and r.state == "finished" and r.metrics:
                metric = next(iter(r.metrics))
                break
    goal = model.get("goal") or (infer_goal(metric) if metric else "max")
    return metric, goal


def leaderboard(rows: list[TrialRow], models: list[dict[str, Any]], folds: int) -> list[ConfigResult]:
    """Best first. One ranking if all models share metric and goal, else best first within each model."""
    out: list[ConfigResult] = []
    for model in models:
        metric, goal = primary_metric(model, rows)
        if metric is None:
            continue
        groups: dict[str, list[TrialRow]] = {}
        for r in rows:
            if r.model == model["name"]:
                groups.setdefault(r.config_key, []).append(r)
        for key, group in groups.items():
            values = [r.metrics[metric] for r in group if r.state == "finished" and metric in r.metrics]
            if not values:
                continue
            failed = sum(r.state == "failed" for r in group)
            out.append(ConfigResult(model["name"], key, group[0].params, metric, goal, len(values), folds,
                                    _mean(values), _std(values), failed))
    shared = len({(c.metric, c.goal) for c in out}) <= 1
    order = {m["name"]: i for i, m in enumerate(models)}

    def rank(c: ConfigResult) -> tuple[int, float]:
        score = -c.mean if c.goal == "max" else c.mean
        return (0 if shared else order[c.model], score)

    return sorted(out, key=rank)


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass(frozen=True)
class Speedup:
    trials: int
    serial_s: float  # Σ trial durations: what one-at-a-time would have taken
    wall_s: float
    ratio: float


def speedup(rows: list[TrialRow], wall_s: float) -> Speedup:
    durations = [d for r in rows if r.state in ("finished", "failed") and (d := r.duration) is not None]
    serial = sum(durations)
    return Speedup(len(durations), serial, wall_s, serial / wall_s if wall_s > 0 else float("nan"))


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
