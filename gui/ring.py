"""Preallocated numpy ring buffers: one time axis, many series, NaN where a reading is missing."""

from __future__ import annotations

import numpy as np


class RingSeries:
    def __init__(self, names: list[str], capacity: int) -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.capacity = capacity
        self.t = np.full(capacity, np.nan)
        self.values = np.full((len(self.names), capacity), np.nan)
        self.count = 0  # samples ever written
        self.head = 0  # next write position

    def append(self, t: float, row: dict[str, float]) -> None:
        self.t[self.head] = t
        col = self.values[:, self.head]
        col[:] = np.nan
        for name, v in row.items():
            i = self.index.get(name)
            if i is not None:
                col[i] = v
        self.head = (self.head + 1) % self.capacity
        self.count += 1

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def oldest(self) -> float:
        n = len(self)
        return float(self.t[(self.head - n) % self.capacity]) if n else float("nan")

    def window(self, seconds: float | None, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(times, values[series, n]) in time order, the last `seconds` only (None: everything kept)."""
        n = len(self)
        if n == 0:
            return np.empty(0), np.empty((len(self.names), 0))
        start = (self.head - n) % self.capacity
        order = (np.arange(n) + start) % self.capacity
        t = self.t[order]
        v = self.values[:, order]
        if seconds is not None:
            keep = t >= now - seconds
            first = int(np.argmax(keep)) if keep.any() else n
            t, v = t[first:], v[:, first:]
        return t, v
