"""TrialScheduler: which queued trial a free slot runs next, and whether it fits. Pure: no Qt, no processes,
driven by a real or a simulated clock.

- Order: configs longest-predicted first (folds of one config together, so its leaderboard row completes
  early); trials nothing is known about yet go first, to learn from them.
- Placement: a slot first takes trials only its kind of device can run; an `any` trial is left for another
  kind of device when it is predicted to *finish* clearly sooner there, waiting included.
- Admission: predicted peak memory x margin must fit the device's budget and its free memory now (for the
  first trial on a device too: another user's job holds memory we never admitted). A model with no known
  footprint is a probe: it runs without other trials of its model on that device (for its first second,
  until it reports its memory so far), counts as a quarter of the device's budget, and starts on an empty
  device only with PROBE_FLOOR free.
  An out-of-memory failure lowers that model's concurrency on that device and requeues it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gridwatch.grid.trials import Trial
from gridwatch.run.estimates import Estimates

MARGIN = 1.2  # predicted peak x this must fit
PROBE_SHARE = 0.25  # an unknown footprint counts as this share of the device's budget
PROBE_FLOOR = 2 * 2**30  # a first trial (footprint unknown) starts only with at least this much free
EMPTY_SHARE = 0.8  # on a GPU running none of our trials, at most this share of its budget must be free
FASTER_BY = 0.85  # leave an `any` trial for another device only if it finishes there in < 85 % of the time
RESORT_SHARE = 50  # the queue is re-ordered by what finished trials taught once 1/50 of it has finished since


@dataclass(frozen=True)
class SlotView:
    id: str
    kind: str  # "cpu" | "gpu"
    device: str  # the memory it draws on: "host" or "gpu0"
    busy_until: float | None = None  # predicted end of its current trial; None when idle


@dataclass
class Running:
    trial: Trial
    slot: SlotView
    started: float
    need: float  # bytes admitted for it


@dataclass
class TrialScheduler:
    trials: Iterable[Trial]
    estimates: Estimates = field(default_factory=Estimates)
    budgets: dict[str, float] = field(default_factory=dict)  # device -> bytes trials may use (absent: no limit)
    probe_alone: set[str] | None = None  # devices where a model's first trial starts alone (None: all budgeted)

    def __post_init__(self) -> None:
        self._queue: list[Trial] = list(self.trials)
        self.running: dict[str, Running] = {}
        self.caps: dict[tuple[str, str], int] = {}  # (model, device) -> most at once, after an OOM
        self.waiting: dict[str, str] = {}  # trial id -> why it has not started
        self._dirty = True
        self._since_sort = 0  # trials finished since the queue was last ordered

    def __len__(self) -> int:
        return len(self._queue)

    def pending(self) -> tuple[Trial, ...]:
        return tuple(self._queue)

    # -- choosing ---------------------------------------------------------------------------------------

    def next_for(self, slot: SlotView, slots: Sequence[SlotView], now: float,
                 free: dict[str, float] | None = None) -> Trial | None:
        """The trial `slot` should start now, or None (see `waiting` for why the others wait)."""
        if self._dirty:
            self._queue = self._ordered(self._queue)
            self._dirty = False
            self._since_sort = 0
        kinds = {s.kind for s in slots}
        for wanted in (slot.kind, "any"):
            ahead = 0  # `any` trials before this one: the other device would take those first
            for i, t in enumerate(self._queue):
                if t.device_pref != wanted:
                    continue
                ahead += wanted == "any"
                if wanted == "any" and self._faster_elsewhere(t, slot, slots, now, ahead - 1):
                    self.waiting[t.id] = f"waiting for a faster {'GPU' if slot.kind == 'cpu' else 'CPU'} slot"
                    continue
                ok, why, need = self._fits(t, slot, free)
                if not ok:
                    self.waiting[t.id] = why
                    continue
                del self._queue[i]
                self.waiting.pop(t.id, None)
                self.running[t.id] = Running(t, slot, now, need)
                return t
        for t in self._queue:
            if t.device_pref not in kinds and t.device_pref != "any":
                self.waiting[t.id] = f"waiting: needs a {t.device_pref.upper()} slot"
        return None

    def _ordered(self, trials: list[Trial]) -> list[Trial]:
        def config_seconds(t: Trial) -> float:
            kinds = ("cpu", "gpu") if t.device_pref == "any" else (t.device_pref,)
            known = [s for k in kinds if (s := self.estimates.config_seconds(t.model, t.config_key, k)) is not None]
            return math.inf if not known else min(known)  # unknown first: learn early

        return sorted(trials, key=lambda t: (-config_seconds(t), t.config_key, t.fold))

    def _faster_elsewhere(self, t: Trial, slot: SlotView, slots: Sequence[SlotView], now: float,
                          ahead: int) -> bool:
        """Would t finish clearly sooner on the other kind of device, counting the `ahead` trials it would
        run first? (Earliest finish time, as list schedulers on mixed machines do.)"""
        here = self.estimates.seconds(t.model, slot.kind)
        others = [s for s in slots if s.kind != slot.kind]
        if here is None or not others:
            return False
        there = self.estimates.seconds(t.model, others[0].kind)
        if there is None:
            return False
        soonest = min(max(now, s.busy_until or now) for s in others)
        rounds = ahead // len(others) + 1
        return (soonest - now) + rounds * there < FASTER_BY * here

    def _fits(self, t: Trial, slot: SlotView, free: dict[str, float] | None) -> tuple[bool, str, float]:
        on_device = [r for r in self.running.values() if r.slot.device == slot.device]
        cap = self.caps.get((t.model, slot.device))
        if cap is not None and sum(r.trial.model == t.model for r in on_device) >= cap:
            why = f"waiting: at most {cap} {t.model} trial(s) at once on {slot.device} after an out-of-memory"
            return False, why, 0
        need = self.need(t.model, slot)
        what = "RAM" if slot.device == "host" else "VRAM"
        alone = self.budgets.keys() if self.probe_alone is None else self.probe_alone
        probing = self.estimates.peak(t.model, slot.kind) is None and slot.device in alone
        if probing and any(r.trial.model == t.model for r in on_device):
            return False, f"waiting: the first {t.model} trial on {slot.device} is measuring its memory", need
        budget = self.budgets.get(slot.device)
        if budget is not None:
            room = budget - sum(r.need for r in on_device)
            if need > room and on_device:
                return False, f"waiting: needs ~{_gb(need)} {what}, {_gb(max(room, 0))} of the budget left", need
        if free is not None and slot.device in free:
            # Free memory now (NVML, psutil). On a GPU it is checked for the first trial too: another user's
            # job and idle workers' CUDA contexts hold VRAM we never admitted. A footprint not yet known is
            # only held to a floor there; in RAM only beside trials of ours, as the OS can page.
            floor = need if on_device else 0.0
            if not on_device and slot.device != "host":
                known = self.estimates.peak(t.model, slot.kind) is not None
                floor = need if known else min(need, PROBE_FLOOR)
                if budget is not None:  # a need the empty GPU could never free (raised by OOMs) must not wait
                    floor = min(floor, EMPTY_SHARE * budget)  # forever: it runs alone, and may OOM for good
            if floor > free[slot.device]:
                return False, f"waiting: needs ~{_gb(floor)} {what}, {_gb(max(free[slot.device], 0))} free", need
        return True, "", need

    def need(self, model: str, slot: SlotView) -> float:
        peak = self.estimates.peak(model, slot.kind)
        if peak is not None:
            return peak * MARGIN
        budget = self.budgets.get(slot.device)
        return PROBE_SHARE * budget if budget is not None else 0.0

    # -- outcomes ---------------------------------------------------------------------------------------

    def finished(self, trial_id: str, seconds: float | None, peak: float | None) -> None:
        r = self.running.pop(trial_id, None)
        if r is not None:
            first = self.estimates.get(r.trial.model, r.slot.kind).n == 0
            self.estimates.learn(r.trial.model, r.slot.kind, seconds, peak)
            if seconds is not None:
                self.estimates.learn_config(r.trial.config_key, r.slot.kind, seconds)
            # Re-ordering the queue costs a pass over it: done for a model's first figure (unknown configs go
            # first), else once a share of the queue has finished since, so a big grid's cost stays linear.
            self._since_sort += 1
            if first or self._since_sort * RESORT_SHARE >= len(self._queue):
                self._dirty = True

    def early_peak(self, trial_id: str, peak: float) -> None:
        """A first trial's memory after a second: enough to pack the next trials of its model beside it."""
        r = self.running.get(trial_id)
        if r is not None and self.estimates.peak(r.trial.model, r.slot.kind) is None:
            self.estimates.provisional[(r.trial.model, r.slot.kind)] = peak

    def failed(self, trial_id: str) -> None:
        self.running.pop(trial_id, None)

    def out_of_memory(self, trial_id: str, peak: float | None = None, retry: bool = True) -> None:
        """Lower the model's concurrency on that device, raise its footprint, and (if `retry`) requeue it.
        How often a trial may retry is the trial lifecycle's policy, not the scheduler's."""
        r = self.running.pop(trial_id, None)
        if r is None:
            return
        model, device = r.trial.model, r.slot.device
        at_once = 1 + sum(o.trial.model == model and o.slot.device == device for o in self.running.values())
        self.caps[(model, device)] = max(1, min(self.caps.get((model, device), at_once), at_once) - 1)
        self.estimates.raise_peak(model, r.slot.kind, max(peak or 0.0, r.need / MARGIN * 1.5))
        if retry:
            self._queue.insert(0, r.trial)
            self._dirty = True

    def requeue(self, trial: Trial) -> None:
        self.running.pop(trial.id, None)
        self._queue.insert(0, trial)
        self._dirty = True

    def runnable_on(self, kinds: set[str]) -> bool:
        """Can a queued trial run on slots of these kinds? Never on none: every slot given up ends the run."""
        return bool(kinds) and any(t.device_pref == "any" or t.device_pref in kinds for t in self._queue)

    def predicted_work(self, now: float, kinds: set[str], running: list[tuple[Trial, str, float]]) -> float | None:
        """Seconds of work left by the learned estimates: every queued trial on its fastest kind, plus what
        the running ones (trial, kind, started) have left. None while a queued trial is unknown."""
        est = self.estimates
        total = 0.0
        for t in self._queue:
            known = [s for k in kinds if (s := est.config_seconds(t.model, t.config_key, k)) is not None]
            if not known:
                return None
            total += min(known)
        for t, kind, started in running:
            total += max((est.config_seconds(t.model, t.config_key, kind) or 0.0) - (now - started), 0.0)
        return total

    def predicted_seconds(self, t: Trial, kind: str) -> float | None:
        return self.estimates.seconds(t.model, kind)

    def learned(self) -> list[tuple[str, str, float, int, float]]:
        """What the estimates hold, as rows for the results file."""
        return self.estimates.rows()

    def why_waiting(self) -> dict[str, str]:
        """A copy of why each queued trial has not started (see `waiting`)."""
        return dict(self.waiting)



def unplaceable(trials: Iterable[Trial], kinds: set[str]) -> list[Trial]:
    """Trials whose device preference no slot of this run can satisfy (e.g. device = "gpu", no GPU)."""
    return [t for t in trials if t.device_pref != "any" and t.device_pref not in kinds]


def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GB"
