"""Which step of its curves each value a script prints belongs to: the epoch, once the script counts them.

- Until the output shows an epoch counter, each value of a key is that key's next step (1, 2, 3, ...).
- From the first epoch counter on (`epoch 3/6`, `Epoch 3`, `Epoch [3/6]`, `epoch=3`, a line that starts with
  `[3/6]`), a value's step is the last epoch printed, on its line or before it; a key printed again within
  one epoch replaces its earlier value there (an epoch's point is its last value). `e/N` gives the total, N.
- Per-batch values stay out of the curves: a tqdm bar caught mid-way, and a finished tqdm bar with no epoch of
  its own after an epoch's summary line (`epoch 3/6 - loss: 0.4`: the bar is the next epoch's, printed before
  that epoch's summary, so it cannot be placed). After a header line (`Epoch 3/6` alone, as Keras prints it)
  a finished bar is that epoch's.
- The result is each key's last value; a bar's value never replaces one printed on another line, so a key
  printed only on bars still has its last value as the result, and `loss` is the last epoch line's.
"""

from __future__ import annotations

import math

from gridwatch.worker.metrics import epoch_index
from gridwatch.worker.parse import Parsed


class EpochSteps:
    def __init__(self) -> None:
        self.epoch: int | None = None  # the last epoch counter printed
        self.total: int | None = None  # the epochs it said it runs (`epoch 3/6` -> 6)
        self.header = False  # the last epoch counter came alone on its line: the epoch's lines follow it
        self.final: dict[str, float] = {}  # each key's last value: the trial's result
        self._counts: dict[str, int] = {}
        self._anchored: set[str] = set()  # keys printed on a line that is no tqdm bar, or on an epoch's own bar

    def points(self, found: Parsed) -> list[tuple[str, int, float]]:
        """The curve points (key, step, value) of one parsed line."""
        counter = found.counters.get("epoch")
        own = None if counter is None else epoch_index(counter)
        if own is not None:
            self.epoch, self.header = own, not found.metrics
            total = found.totals.get("epoch", math.nan)
            if math.isfinite(total) and total >= 1:
                self.total = int(total)
        plain_bar = found.bar is not None and own is None
        after_summary = self.epoch is not None and not self.header
        per_batch = found.bar is not None and (found.bar < 1.0 or (plain_bar and after_summary))
        out = []
        for key, value in found.metrics.items():
            if not plain_bar:
                self._anchored.add(key)
            if not (per_batch and key in self._anchored):  # a bar's value never overrides an epoch line's
                self.final[key] = value
            if per_batch:
                continue
            if self.epoch is None:
                step = self._counts[key] = self._counts.get(key, 0) + 1
            else:
                step = self.epoch
            out.append((key, step, value))
        return out
