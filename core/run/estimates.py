"""What the scheduler has learned per (model, device kind): seconds per trial and peak memory.

Learned from finished trials (and raised by out-of-memory failures), stored in the results file so a
resumed run, or the next run of the same grid, starts informed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("cpu", "gpu")


@dataclass
class Estimate:
    seconds: float = math.nan  # mean duration of finished trials
    n: int = 0
    peak_mem: float = math.nan  # bytes: the largest peak seen (RAM on CPU slots, VRAM on GPU slots)

    def learn(self, seconds: float | None, peak: float | None) -> None:
        if seconds is not None and seconds == seconds and seconds >= 0:
            self.seconds = seconds if self.n == 0 else (self.seconds * self.n + seconds) / (self.n + 1)
            self.n += 1
        if peak is not None and peak == peak and peak > 0:
            self.peak_mem = peak if self.peak_mem != self.peak_mem else max(self.peak_mem, peak)


class Estimates:
    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Estimate] = {}
        self.configs: dict[tuple[str, str], float] = {}  # (config key, kind) -> seconds of its last fold
        self.provisional: dict[tuple[str, str], float] = {}  # (model, kind) -> peak seen early in a first trial

    def get(self, model: str, kind: str) -> Estimate:
        return self.table.setdefault((model, kind), Estimate())

    def learn(self, model: str, kind: str, seconds: float | None, peak: float | None) -> None:
        self.get(model, kind).learn(seconds, peak)

    def raise_peak(self, model: str, kind: str, at_least: float) -> None:
        """After an out-of-memory failure: the footprint is bigger than we thought."""
        e = self.get(model, kind)
        e.peak_mem = max(e.peak_mem, at_least) if e.peak_mem == e.peak_mem else at_least

    def learn_config(self, config_key: str, kind: str, seconds: float) -> None:
        """Folds of one config take about as long as each other: a sharper figure than the model's mean."""
        self.configs[(config_key, kind)] = seconds

    def config_seconds(self, model: str, config_key: str, kind: str) -> float | None:
        own = self.configs.get((config_key, kind))
        return own if own is not None else self.seconds(model, kind)

    def seconds(self, model: str, kind: str) -> float | None:
        """This kind's figure; else the other kind's (same work, unknown speed); else the mean of all."""
        own = self.table.get((model, kind))
        if own is not None and own.n:
            return own.seconds
        other = [e.seconds for (m, _k), e in self.table.items() if m == model and e.n]
        if other:
            return sum(other) / len(other)
        return None

    def peak(self, model: str, kind: str) -> float | None:
        """The measured peak; while a first trial runs, twice what it used in its first second."""
        e = self.table.get((model, kind))
        if e is not None and e.peak_mem == e.peak_mem:
            return e.peak_mem
        early = self.provisional.get((model, kind))
        return 2 * early if early is not None else None

    def rows(self) -> list[tuple[str, str, float, int, float]]:
        return [(m, k, e.seconds, e.n, e.peak_mem) for (m, k), e in self.table.items()]

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, float, int, float]]) -> Estimates:
        est = cls()
        for m, k, seconds, n, peak in rows:
            est.table[(m, k)] = Estimate(_nan(seconds), int(n), _nan(peak))
        return est


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)
