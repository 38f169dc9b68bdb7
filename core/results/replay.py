"""A finished (or interrupted) run read back from its results file, in the same shape as a live one."""

from __future__ import annotations

from collections import deque
from typing import Any

from gridwatch.grid.trials import Trial, TrialState
from gridwatch.results.store import ResultStore
from gridwatch.run.live import LOG_TAIL, LiveTrial


def live_from_store(store: ResultStore) -> tuple[dict[str, LiveTrial], dict[str, Any]]:
    info = store.run_info()
    fixed = {m["name"]: m.get("fixed", {}) for m in info["models"]}
    live: dict[str, LiveTrial] = {}
    for r in store.trials():
        config = {**fixed.get(r.model, {}), **r.params, "fold": r.fold, "n_folds": info["folds"]}
        trial = Trial(r.id, r.model, r.config_key, r.params, r.fold, r.device_pref, config)
        steps = [(key, step, value, 0.0) for key, step, value in store.steps(r.id)]
        state = TrialState.STOPPED if r.state == TrialState.RUNNING else TrialState(r.state)
        live[r.id] = LiveTrial(trial, state=state, slot=r.slot, started=r.started, ended=r.ended,
                               epoch=max((s for _k, s, _v, _t in steps), default=0), metrics=r.metrics,
                               reason=r.reason, steps=steps,
                               log=deque(r.log_tail.splitlines(), maxlen=LOG_TAIL))
    return live, info
