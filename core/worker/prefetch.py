"""Prefetching loader: batch N+1 is loaded while the step on batch N runs, and the wait is measured.

    from gridwatch import prefetch
    for x, y in prefetch(loader, depth=2):   # any iterable of batches
        ...

`depth` batches are kept ready by a background thread; on CUDA they are pinned and copied on a side
stream with non_blocking=True, so the copy overlaps the step too. `depth=0` loads inline (no overlap) but
still measures. Per step, the time the loop was *blocked waiting* for its batch is divided by the step's
wall time: the data-wait fraction (the TF-profiler/Lightning definition; >= 20 % means input-bound). Inside
a gridwatch worker it is reported per epoch and over a rolling window; elsewhere read `.stats`.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

WINDOW_S = 10.0
REPORT_EVERY_S = 1.0
MIN_STEPS = 5  # a rolling figure from fewer steps is mostly start-up
_END = object()
JOIN_S = 1.0  # how long a loop that stops waits for the loader thread (it may be inside a slow loader)

Sink = Callable[[dict[str, Any]], None]
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """The worker installs a sink per trial; data-wait figures flow to it as dicts."""
    global _sink
    _sink = sink
    _recent.clear()  # a new trial starts a new rolling window


@dataclass
class WaitStats:
    steps: int = 0
    wait_s: float = 0.0
    wall_s: float = 0.0

    @property
    def fraction(self) -> float:
        return self.wait_s / self.wall_s if self.wall_s > 0 else float("nan")


# (t, wait, wall) of the process's recent steps: shared by every pass, so a trainable that wraps its loader
# anew each epoch still gets a rolling window that spans epochs.
_recent: deque[tuple[float, float, float]] = deque()
_last_report = [0.0]


class DataWaitMeter:
    """Blocked-waiting time vs step wall time, for the epoch and for the last WINDOW_S seconds."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.epoch = WaitStats()
        self.recent = _recent

    def step(self, t: float, wait: float, wall: float) -> None:
        self.epoch.steps += 1
        self.epoch.wait_s += wait
        self.epoch.wall_s += wall
        self.recent.append((t, wait, wall))
        while self.recent and self.recent[0][0] < t - self.window_s:
            self.recent.popleft()
        if _sink is not None and len(self.recent) >= MIN_STEPS and t - _last_report[0] >= REPORT_EVERY_S:
            _last_report[0] = t
            _sink({"data_wait": self.window_fraction(), "window_s": self.window_s, "steps": len(self.recent)})

    def window_fraction(self) -> float:
        wall = sum(w for _, _, w in self.recent)
        return sum(w for _, w, _ in self.recent) / wall if wall > 0 else float("nan")

    def end_epoch(self) -> WaitStats:
        done, self.epoch = self.epoch, WaitStats()
        if _sink is not None and done.steps:
            _sink({"epoch_data_wait": done.fraction, "data_wait": self.window_fraction(),
                   "window_s": self.window_s, "steps": done.steps})
        return done


class Prefetcher:
    def __init__(self, batches: Iterable[Any], depth: int = 2, device: Any = None) -> None:
        if depth < 0:
            raise ValueError("depth must be 0 (no prefetch) or more")
        self.batches, self.depth = batches, depth
        self.device = _cuda_device(device)
        self.meter = DataWaitMeter()
        self.stats = WaitStats()  # the last finished pass

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        source = self._inline() if self.depth == 0 else self._threaded()
        last = time.perf_counter()
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    batch = next(source)
                except StopIteration:
                    break
                now = time.perf_counter()
                self.meter.step(now, now - t0, now - last)
                last = now
                yield batch
        finally:
            self.stats = self.meter.end_epoch()
            close = getattr(source, "close", None)
            if close:
                close()

    def _inline(self) -> Iterator[Any]:
        for batch in self.batches:
            yield self._to_device(batch, None)[0]

    def _threaded(self) -> Iterator[Any]:
        q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        torch = _torch()
        stream = torch.cuda.Stream(device=self.device) if torch is not None and self.device is not None else None

        def produce() -> None:
            try:
                batches = iter(self.batches)
                while not stop.is_set():  # a loop that left early gets no further (slow) load
                    batch = next(batches, _END)
                    if batch is _END:
                        _put(q, ("end", None), stop)
                        return
                    if not _put(q, ("batch", self._to_device(batch, stream)), stop):
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the training loop, raised there
                _put(q, ("error", exc), stop)

        thread = threading.Thread(target=produce, name="gridwatch-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, item = q.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                batch, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    # The allocator ties a block to the stream it was allocated on (the side stream): without
                    # this, the next copy may reuse the batch's memory while this stream's kernels still read it.
                    for tensor in _tensors(batch, torch.Tensor):
                        tensor.record_stream(current)
                yield batch
        finally:
            stop.set()
            _drain(q)  # the queued batches (GPU memory) go now, not when the thread notices
            thread.join(timeout=JOIN_S)
            _drain(q)  # what the producer put while it stopped

    def _to_device(self, batch: Any, stream: Any) -> tuple[Any, Any]:
        """(batch, CUDA event or None): pinned memory and a non-blocking copy on the side stream."""
        if self.device is None:
            return batch, None
        torch = _torch()

        def move(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.pin_memory().to(self.device, non_blocking=True)
            if isinstance(x, (list, tuple)):
                return type(x)(move(v) for v in x)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        if stream is None:
            return move(batch), None
        with torch.cuda.stream(stream):
            moved = move(batch)
            event = torch.cuda.Event()
            event.record(stream)
        return moved, event


def _put(q: queue.Queue[tuple[str, Any]], item: tuple[str, Any], stop: threading.Event) -> bool:
    """Put unless the loop has stopped: a loop that left early reads nothing more, so a plain put would block."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue[tuple[str, Any]]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _tensors(x: Any, tensor_type: type) -> Iterator[Any]:
    """The tensors in a batch, through the lists, tuples and dicts that _to_device moves."""
    if isinstance(x, tensor_type):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v, tensor_type)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v, tensor_type)


def _torch() -> Any:
    """torch if the training code imported it: this module never imports it (and a test can put a fake there)."""
    return sys.modules.get("torch")


def _cuda_device(device: Any) -> Any:
    torch = _torch()
    if device is None or torch is None:
        return None
    d = torch.device(device)
    return d if d.type == "cuda" and torch.cuda.is_available() else None


def prefetch(batches: Iterable[Any], depth: int = 2, device: Any = None) -> Prefetcher:
    """Wrap any iterable of batches (a DataLoader, a generator, a list)."""
    return Prefetcher(batches, depth, device)
