"""Expand a GridSpec into trials: model x grid product x folds, each with a stable id."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gridwatch.grid.spec import GridSpec, ModelSpec


class TrialState(StrEnum):
    """Where a trial is. The values are what the results file stores."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # raised, crashed its worker (retries spent), bad metrics, out of memory (retries spent)
    TIMEOUT = "timeout"  # reported nothing for the model's `timeout`: killed
    STOPPED = "stopped"  # the user stopped the run under it; runs again on resume

    @property
    def failed(self) -> bool:
        return self in FAILED_STATES

    @property
    def ended(self) -> bool:
        return self in ENDED_STATES


class RunStatus(StrEnum):
    """How a session of a run ended (what the results file and the CLI's exit code say)."""

    DONE = "done"  # every trial finished
    FAILED = "failed"  # some failed, timed out, or could not be placed
    STOPPED = "stopped"  # the user stopped it (Ctrl-C, Stop): resume runs the rest


FAILED_STATES = frozenset({TrialState.FAILED, TrialState.TIMEOUT})  # count as failures: exit code 1, named
ENDED_STATES = frozenset({TrialState.FINISHED, *FAILED_STATES})  # a result is committed: "done" in progress


@dataclass(frozen=True)
class Trial:
    id: str  # stable across runs of the same grid: model, params and fold only
    model: str
    config_key: str  # same for every fold of one config: the leaderboard's row
    params: dict[str, Any]  # the grid values of this trial, in the file's axis order
    fold: int
    device_pref: str  # "cpu" | "gpu" | "any"
    config: dict[str, Any]  # fixed | params | fold, n_folds, seed ("device" is added by the worker's slot)


def config_key(model: str, params: dict[str, Any]) -> str:
    blob = json.dumps([model, params], sort_keys=True, separators=(",", ":"))
    return f"{model}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def expand(grid: GridSpec) -> list[Trial]:
    """All trials, folds of one config next to each other (its leaderboard row completes early)."""
    return [t for m in grid.models for t in _model_trials(grid, m)]


def runs_per_config(grid: GridSpec, m: ModelSpec) -> int:
    """k folds, where the trainable sees the fold; else one run per config (or its `repeats`): k copies of a
    command that cannot tell folds apart would be k identical runs, at k times the cost."""
    return grid.folds if m.sees_folds else (m.repeats or 1)


def count(grid: GridSpec) -> int:
    total = 0
    for m in grid.models:
        n = 1
        for values in m.grid.values():
            n *= len(values)
        total += n * runs_per_config(grid, m)
    return total


def _model_trials(grid: GridSpec, m: ModelSpec) -> list[Trial]:
    axes = list(m.grid)
    out = []
    runs = runs_per_config(grid, m)
    for combo in itertools.product(*(m.grid[a] for a in axes)):
        params = dict(zip(axes, combo, strict=True))
        key = config_key(m.name, params)
        for i in range(runs):
            if m.sees_folds:
                config = {**m.fixed, **params, "fold": i, "n_folds": grid.folds, "seed": grid.seed}
                tid = f"{key}-f{i}"
            else:  # repeats: each its own seed, so they differ
                config = {**m.fixed, **params, "fold": 0, "n_folds": 1, "repeat": i, "seed": grid.seed + i}
                tid = f"{key}-r{i}" if m.repeats else f"{key}-f0"
            out.append(Trial(tid, m.name, key, params, i, m.device, config))
    return out
