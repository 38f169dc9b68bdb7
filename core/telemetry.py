"""TelemetrySampler: host, per-trial and per-GPU readings in a background thread, as typed snapshots.

A missing reading is NaN (drawn as a gap), never 0 and never a crash. No Qt: the window bridges the
callback to a signal; the CLI and tests call `sample()` directly.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

NAN = math.nan


@dataclass(frozen=True)
class GpuSample:
    index: int
    util: float = NAN  # % of time a kernel ran
    mem_util: float = NAN
    mem_used: float = NAN  # bytes
    mem_total: float = NAN
    power_w: float = NAN
    temp_c: float = NAN


@dataclass(frozen=True)
class ProcSample:
    cpu: float = NAN  # % of one core, summed over the worker's process tree
    rss: float = NAN  # bytes, summed over the tree


@dataclass(frozen=True)
class Snapshot:
    t: float
    cpu_total: float
    cpu_cores: tuple[float, ...]
    ram_used: float
    ram_available: float
    ram_total: float
    gpus: tuple[GpuSample, ...] = ()
    trials: dict[str, ProcSample] = field(default_factory=dict)


class GpuReader(Protocol):
    note: str

    def count(self) -> int: ...

    def read(self, index: int) -> GpuSample: ...

    def close(self) -> None: ...


class NoGpu:
    def __init__(self, note: str = "no NVIDIA GPU") -> None:
        self.note = note

    def count(self) -> int:
        return 0

    def read(self, index: int) -> GpuSample:
        return GpuSample(index)

    def close(self) -> None:
        pass


class NvmlReader:
    """Real NVML. Each field is read on its own, so one unsupported query leaves only that field NaN."""

    def __init__(self) -> None:
        import pynvml

        self.nvml: Any = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.note = ""

    def count(self) -> int:
        return len(self.handles)

    def read(self, index: int) -> GpuSample:
        n, h = self.nvml, self.handles[index]
        util = self._get(lambda: n.nvmlDeviceGetUtilizationRates(h))
        mem = self._get(lambda: n.nvmlDeviceGetMemoryInfo(h))
        power = self._get(lambda: n.nvmlDeviceGetPowerUsage(h))
        temp = self._get(lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
        return GpuSample(
            index,
            util=float(util.gpu) if util is not None else NAN,
            mem_util=float(util.memory) if util is not None else NAN,
            mem_used=float(mem.used) if mem is not None else NAN,
            mem_total=float(mem.total) if mem is not None else NAN,
            power_w=power / 1000.0 if power is not None else NAN,
            temp_c=float(temp) if temp is not None else NAN,
        )

    def _get(self, query: Callable[[], Any]) -> Any:
        try:
            return query()
        except self.nvml.NVMLError:
            return None

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def open_gpu_reader() -> GpuReader:
    from core.devices import detect_gpus

    gpus, note = detect_gpus()
    if not gpus:
        return NoGpu(note)
    try:
        return NvmlReader()
    except Exception as exc:  # noqa: BLE001 - any NVML failure means: no GPU readings, said plainly
        return NoGpu(f"no NVIDIA GPU readings ({exc})")


class TelemetrySampler:
    def __init__(self, callback: Callable[[Snapshot], None], interval_s: float = 0.25,
                 gpu: GpuReader | None = None) -> None:
        self.callback = callback
        self.interval_s = interval_s
        self.gpu = gpu if gpu is not None else open_gpu_reader()
        self._procs: dict[str, int] = {}
        self._cache: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        psutil.cpu_percent(percpu=True)  # prime: the first call has no interval to measure

    def set_rate(self, hz: float) -> None:
        self.interval_s = 1.0 / min(20.0, max(1.0, hz))

    def watch(self, procs: dict[str, int]) -> None:
        """Which worker pid runs which trial; its whole process tree is attributed to the trial."""
        with self._lock:
            self._procs = dict(procs)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.gpu.close()

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.callback(self.sample())
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def sample(self) -> Snapshot:
        cores = tuple(psutil.cpu_percent(percpu=True))
        vm = psutil.virtual_memory()
        gpus = tuple(self.gpu.read(i) for i in range(self.gpu.count()))
        with self._lock:
            procs = dict(self._procs)
        trials = {tid: self._tree(pid) for tid, pid in procs.items()}
        total = sum(cores) / len(cores) if cores else NAN
        return Snapshot(time.time(), total, cores, float(vm.total - vm.available), float(vm.available),
                        float(vm.total), gpus, trials)

    def _tree(self, pid: int) -> ProcSample:
        try:
            root = self._proc(pid)
            members = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return ProcSample()
        cpu = rss = 0.0
        for p in members:
            try:
                p = self._proc(p.pid)
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return ProcSample(cpu, rss)

    def _proc(self, pid: int) -> psutil.Process:
        p = self._cache.get(pid)
        if p is None or not p.is_running():
            p = self._cache[pid] = psutil.Process(pid)
        return p
