"""A finished (or interrupted) run read back from its results file, in the same shape as a live one."""

from __future__ import annotations

from collections import deque
from typing import Any

from gridwatch.grid.trials import Trial, TrialState
from gridwatch.results.store import ResultStore, TrialRow
from gridwatch.run.live import LOG_TAIL, LiveTrial


def live_from_store(store: ResultStore, following: bool = False) -> tuple[dict[str, LiveTrial], dict[str, Any]]:
    """Every trial of the file. `following`: another process is running it now, so its running trials are
    running (and their log so far is read); otherwise they were cut short by a run that ended."""
    info = store.run_info()
    steps = store.all_steps()
    live: dict[str, LiveTrial] = {}
    for r in store.trials():
        if r.state == TrialState.SUPERSEDED:
            continue  # an earlier version of the grid's: kept in the file, not part of this run
        lt = live_trial(r, info, steps.get(r.id, []))
        if lt.state == TrialState.RUNNING:
            if following:
                lt.log.extend(store.logs(r.id))
            else:
                cut_short(lt)
        live[r.id] = lt
    return live, info


def live_trial(r: TrialRow, info: dict[str, Any], steps: list[tuple[str, int, float, float]]) -> LiveTrial:
    fixed: dict[str, Any] = next((m.get("fixed", {}) for m in info["models"] if m["name"] == r.model), {})
    config = {**fixed, **r.params, "fold": r.fold, "n_folds": info["folds"]}
    trial = Trial(r.id, r.model, r.config_key, r.params, r.fold, r.device_pref, config)
    lt = LiveTrial(trial, log=deque(maxlen=LOG_TAIL))
    update(lt, r, steps)
    return lt


def update(lt: LiveTrial, r: TrialRow, steps: list[tuple[str, int, float, float]] | None) -> None:
    """A stored row's news onto the trial; `steps` replace its per-epoch values when given."""
    lt.state, lt.slot, lt.started, lt.ended = TrialState(r.state), r.slot, r.started, r.ended
    lt.kind = None if r.device is None else ("cpu" if r.device == "cpu" else "gpu")
    lt.metrics, lt.reason, lt.peak_mem = r.metrics, r.reason, r.peak_mem
    if steps is not None:
        lt.set_steps(steps)
    if r.log_tail:
        lt.log.clear()
        lt.log.extend(r.log_tail.splitlines())


def cut_short(lt: LiveTrial) -> None:
    """A trial whose run ended (or died) under it: stopped, ended at the last sign of it (its last reported value,
    else its start), so its bar does not grow to the moment the file is read."""
    lt.state = TrialState.STOPPED
    if lt.ended is None:
        last = max((t for _k, _s, _v, t in lt.steps if t), default=0.0)
        lt.ended = max(last, lt.started or 0.0) or None
