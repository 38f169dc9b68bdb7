"""Peak memory of one trial, measured inside its worker: RSS of the worker's process tree, and VRAM.

The scheduler learns each model's footprint from these figures, so it can pack trials by memory.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import psutil

INTERVAL_S = 0.05


EARLY_S = 1.0  # the peak so far is reported once, this long into a trial


class PeakMeter:
    """`early` is called once with the peak so far after EARLY_S: the scheduler need not wait for the
    end of a model's first trial to pack others beside it."""

    def __init__(self, early: Callable[[float], None] | None = None) -> None:
        self.early = early
        self.proc = psutil.Process()
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.peak_rss = self._rss()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.peak_rss = max(self.peak_rss, self._rss())
        out = {"peak_rss": self.peak_rss}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            out["peak_vram"] = float(torch.cuda.max_memory_reserved())
        return out

    def _run(self) -> None:
        started = time.monotonic()
        early = self.early
        while not self._stop.wait(INTERVAL_S):
            self.peak_rss = max(self.peak_rss, self._rss())
            if early is not None and time.monotonic() - started >= EARLY_S:
                early(self.peak_rss)
                early = None

    def _rss(self) -> float:
        total = 0.0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return self.peak_rss
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total


def is_oom(exc: BaseException) -> bool:
    """Out of memory, host or CUDA, whatever the framework calls it."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or "out of memory" in text
