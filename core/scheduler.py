"""Which queued trial a free slot runs next. Pure policy: no Qt, no processes, testable by hand.

FIFO with device preference: a slot first takes the oldest trial that can run only on its kind of device,
then the oldest `any` trial, so `any` work does not crowd out trials that have nowhere else to go.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.trials import Trial


class TrialScheduler:
    def __init__(self, trials: Iterable[Trial]) -> None:
        self._queue: list[Trial] = list(trials)

    def __len__(self) -> int:
        return len(self._queue)

    def next_for(self, slot_kind: str) -> Trial | None:
        for wanted in (slot_kind, "any"):
            for i, t in enumerate(self._queue):
                if t.device_pref == wanted:
                    return self._queue.pop(i)
        return None

    def pending(self) -> tuple[Trial, ...]:
        return tuple(self._queue)

    def requeue(self, trial: Trial) -> None:
        """A trial that lost its worker goes back to the front: it was next once already."""
        self._queue.insert(0, trial)

    def runnable_on(self, kinds: set[str]) -> bool:
        return any(t.device_pref == "any" or t.device_pref in kinds for t in self._queue)

    def drain(self) -> list[Trial]:
        rest, self._queue = self._queue, []
        return rest


def unplaceable(trials: Iterable[Trial], kinds: set[str]) -> list[Trial]:
    """Trials whose device preference no slot of this run can satisfy (e.g. device = "gpu", no GPU)."""
    return [t for t in trials if t.device_pref != "any" and t.device_pref not in kinds]
