"""Peak memory of one trial, measured inside its worker: what it added to the worker's RSS, its child
processes' RSS, and VRAM.

The scheduler learns each model's footprint from these figures, so it can pack trials by memory. A trial's
figure is what *it* added: the worker's peak RSS during the trial less its RSS when the trial started (what a
long-lived worker already holds — torch, a module-level cache, an earlier trial's leak — is in use already,
and is seen as such in the free memory admission checks), plus the peak of its child processes. The
meter must cost next to nothing while every core trains: the worker's own peak comes from the kernel's
high-water mark (VmHWM, reset per trial through /proc/self/clear_refs), which sees even a short spike, and
from one read of its RSS twice a second (VmHWM is taken from the kernel's approximate per-CPU counters, so it
may fall short of the exact RSS by a counter batch per CPU; the read is exact for what is held half a
second). The trial's child processes (DataLoader workers, a command's script) are polled as often, through
the cheap per-task children lists (gridwatch.telemetry.proctree).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from gridwatch.telemetry.proctree import descendants

CHILDREN_EVERY_S = 0.5
EARLY_S = 1.0  # the peak so far is reported once, this long into a trial
FALLBACK_EVERY_S = 0.1  # where the kernel's high-water mark cannot be reset: poll our own RSS

Probe = Callable[[float, float | None], None]  # (peak RSS so far, VRAM reserved now or None)


class PeakMeter:
    """`early(rss, vram)` is called once after EARLY_S: the scheduler need not wait for the end of a
    model's first trial to pack others beside it."""

    def __init__(self, early: Probe | None = None) -> None:
        self.early = early
        self.peak_children = 0.0
        self._own_peak = 0.0  # polled: exact where VmHWM is not, and all there is where it cannot be reset
        self._base = 0.0  # the worker's RSS as the trial started
        self._hwm = False  # the kernel's high-water mark was reset for this trial (set by start)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._hwm = _reset_high_water_mark()
        self._base = self._own_peak = own_rss()
        self.peak_children = 0.0
        torch = _torch_with_cuda()
        if torch is not None:
            # The peak restarts from what is reserved now: the previous trial's cache was given back when
            # it ended (release_gpu_memory), so this trial's peak is its own, not its predecessor's.
            try:
                torch.cuda.reset_peak_memory_stats()
            except Exception:  # noqa: BLE001, S110 - a broken context: the trial meets it and fails with it
                pass
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()

    def stop(self, vram: bool = True) -> dict[str, float]:
        """The trial's peaks. `vram=False` for a command trial: its GPU memory is its script's, which only
        NVML sees; this worker's own CUDA figures (0 or a predecessor's) would be taken for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        out = {"peak_rss": self.peak_rss()}
        peak = _vram(peak=True) if vram else None
        if peak is not None:
            out["peak_vram"] = peak
        return out

    def peak_rss(self) -> float:
        """What the trial added to the worker's RSS at its peak, plus its child processes' peak."""
        own = _high_water_mark() if self._hwm else None
        own = max(own if own is not None else 0.0, self._own_peak, own_rss())
        return max(0.0, own - self._base) + self.peak_children

    def _run(self) -> None:
        started = time.monotonic()
        early = self.early
        every = CHILDREN_EVERY_S if self._hwm else FALLBACK_EVERY_S
        next_children = started
        while not self._stop.wait(every):
            now = time.monotonic()
            self._own_peak = max(self._own_peak, own_rss())
            if now >= next_children:
                next_children = now + CHILDREN_EVERY_S
                self.peak_children = max(self.peak_children, _children_rss())
            if early is not None and now - started >= EARLY_S:
                early(self.peak_rss(), _vram(peak=True))
                early = None


def _reset_high_water_mark() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _high_water_mark() is not None
    except OSError:
        return False


def _high_water_mark() -> float | None:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def own_rss() -> float:
    """This process's resident memory now, in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil  # only where /proc is missing: every worker would pay its import at start

        return float(psutil.Process().memory_info().rss)


def _children_rss() -> float:
    pids = descendants(os.getpid())
    if pids is None:  # no per-task children lists: ask psutil (slower, but only twice a second)
        import psutil

        pids = [c.pid for c in psutil.Process().children(recursive=True)]
    total, page = 0.0, os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += float(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def _torch_with_cuda() -> Any:
    """torch, if a trial of this worker already initialised CUDA; else None. Never initialises it: a CUDA
    context costs VRAM, and a worker whose trials never touch the GPU must not hold one."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return torch if cuda is not None and cuda.is_initialized() else None


def _vram(peak: bool) -> float | None:
    """CUDA's reserved memory (the caching allocator's; NVML sees it plus the context), if CUDA is in use."""
    torch = _torch_with_cuda()
    if torch is None:
        return None
    return float(torch.cuda.max_memory_reserved() if peak else torch.cuda.memory_reserved())


def release_gpu_memory() -> None:
    """After each trial, once nothing refers to its tensors any more (call it outside any `except` block: a
    traceback keeps the failed trial's frames and their tensors alive): give the cached blocks back, so an
    idle worker does not keep VRAM that trials sharing the GPU need, and the next trial's peak is its own."""
    torch = _torch_with_cuda()
    if torch is None:
        return
    gc.collect()  # frames and tensors in reference cycles (an exception's traceback makes them) go now
    torch.cuda.empty_cache()


OOM_MARKERS = ("out of memory", "outofmemoryerror", "memoryerror", "cublas_status_alloc_failed",
               "cudnn_status_alloc_failed", "cudnn_status_not_enough_workspace", "cufft_alloc_failed",
               "cusolver_status_alloc_failed", "cudaerrormemoryallocation", "failed to allocate memory")


def is_oom(exc: BaseException) -> bool:
    """Out of memory, host or CUDA, whatever the framework calls it (cuBLAS and cuDNN allocation failures
    surface as RuntimeErrors naming their status)."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ == "OutOfMemoryError" or says_oom(str(exc))


def says_oom(text: str) -> bool:
    """Does this text (an exception, a command's last lines) report running out of memory? Lines that say
    it was "not a failure" (TensorFlow's allocator warnings) do not count."""
    lines = (ln for ln in text.lower().splitlines() if "not a failure" not in ln)
    return any(m in ln for ln in lines for m in OOM_MARKERS)
