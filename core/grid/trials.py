"""Expand a GridSpec into trials: model x grid product x folds, each with a stable id."""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gridwatch.grid import locate
from gridwatch.grid.spec import GridSpec, ModelSpec


class TrialState(StrEnum):
    """Where a trial is. The values are what the results file stores."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # raised, crashed its worker (retries spent), bad metrics, out of memory (retries spent)
    TIMEOUT = "timeout"  # reported nothing for the model's `timeout`: killed
    STOPPED = "stopped"  # the user stopped the run under it; runs again on resume
    SUPERSEDED = "superseded"  # of an earlier version of the grid: kept in the file, never run or ranked

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
    id: str  # its identity: everything that decides its result (see config_key), and its fold
    model: str
    config_key: str  # same for every fold of one config: the leaderboard's row
    params: dict[str, Any]  # the grid values of this trial, in the file's axis order
    fold: int
    device_pref: str  # "cpu" | "gpu" | "any"
    config: dict[str, Any]  # fixed | params | fold, n_folds, seed ("device" is added by the worker's slot)


def config_key(model: str, params: dict[str, Any], identity: Any = None) -> str:
    """A config's identity: its model, its params, and what else decides its result (`identity`: the
    trainable or command and its source, the fixed values, the folds and the seed). Change any of it and
    it is another config, with other trial ids: a resumed run reruns it instead of keeping a stale result."""
    blob = json.dumps([model, params, identity], sort_keys=True, separators=(",", ":"), default=str)
    return f"{model}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def model_identity(grid: GridSpec, m: ModelSpec) -> list[Any]:
    """What decides a model's results besides its params (the order of `fixed` keys does not)."""
    return [m.kind, _portable(m), source_fingerprint(m), sorted(m.fixed.items()), runs_per_config(grid, m),
            grid.folds if m.sees_folds else None, grid.seed]


def _portable(m: ModelSpec) -> str:
    """The trainable as written relative to the grid's folder: moving the project keeps its trials' ids."""
    where, _, func = m.target.rpartition(":")
    if m.kind == "python" and locate.is_file_ref(where) and m.base:
        try:
            return f"{Path(where).relative_to(m.base)}:{func}"
        except ValueError:
            return m.target
    return m.target


def source_fingerprint(m: ModelSpec) -> str:
    """A hash of the trainable's source file (a Python trainable's module, a command's script), where one is
    found cheaply; "" otherwise. Editing the training code reruns its trials on resume."""
    files: list[Path] = []
    if m.kind == "python":
        where = m.target.rsplit(":", 1)[0]
        if locate.is_file_ref(where):
            files.append(Path(where))
        else:
            try:
                found = locate.module_file(where, m.base or m.cwd)
            except locate.LocateError:
                found = None
            if found is not None:
                files.append(found)
    else:
        for token in shlex.split(m.target):
            if "{" not in token and (path := Path(m.cwd) / token).is_file():
                files.append(path)
    digest = hashlib.sha1()
    for f in files:
        try:
            digest.update(f.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:12] if files else ""


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
    identity = model_identity(grid, m)
    for combo in itertools.product(*(m.grid[a] for a in axes)):
        params = dict(zip(axes, combo, strict=True))
        key = config_key(m.name, params, identity)
        for i in range(runs):
            if m.sees_folds:
                config = {**m.fixed, **params, "fold": i, "n_folds": grid.folds, "seed": grid.seed}
                tid = f"{key}-f{i}"
            else:  # repeats: each its own seed, so they differ
                config = {**m.fixed, **params, "fold": 0, "n_folds": 1, "repeat": i, "seed": grid.seed + i}
                tid = f"{key}-r{i}" if m.repeats else f"{key}-f0"
            out.append(Trial(tid, m.name, key, params, i, m.device, config))
    return out
