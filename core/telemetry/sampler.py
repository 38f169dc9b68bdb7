"""TelemetrySampler: host, per-trial and per-GPU readings in a background thread, as typed snapshots.

A missing reading is NaN (drawn as a gap), never 0 and never a crash. No Qt: the window bridges the
callback to a signal; the CLI and tests call `sample()` directly.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from gridwatch.telemetry.nvml import GpuProcess, GpuReader, GpuSample, open_gpu_reader
from gridwatch.telemetry.proctree import descendants

NAN = math.nan


@dataclass(frozen=True)
class ProcSample:
    cpu: float = NAN  # % of one core, summed over the worker's process tree
    rss: float = NAN  # bytes, summed over the tree
    threads: float = NAN
    gpu_mem: float = NAN  # bytes on the GPU held by the tree's processes (NVML)
    gpu_sm: float = NAN  # % SM utilisation attributed to the tree (NVML process samples)
    busiest_thread: float = NAN  # % of one core used by the tree's busiest thread (a saturated Python loop)
    processes: float = NAN  # how many processes the tree has (DataLoader workers, a command's script)


@dataclass(frozen=True)
class NodeLoad:
    """One machine of a Ray cluster, as its own sampler read it."""

    name: str
    cpu_total: float  # % of all its cores
    cores: int
    ram_used: float
    ram_total: float


@dataclass(frozen=True)
class Snapshot:
    t: float
    cpu_total: float
    cpu_cores: tuple[float, ...]
    ram_used: float
    ram_available: float
    ram_total: float
    gpus: tuple[GpuSample, ...] = ()
    trials: dict[str, ProcSample] = field(default_factory=dict)  # keyed as given to watch() (slot ids)
    swap_used: float = NAN
    disk_read_bps: float = NAN
    disk_write_bps: float = NAN
    gpu_process_note: str = ""  # why per-process GPU figures are missing, if they are
    nodes: tuple[NodeLoad, ...] = ()  # a Ray run's machines, each on its own (host figures are their sums)


class TelemetrySampler:
    def __init__(self, callback: Callable[[Snapshot], None], interval_s: float = 0.25,
                 gpu: GpuReader | None = None) -> None:
        self.callback = callback
        self.interval_s = interval_s
        self.gpu = gpu if gpu is not None else open_gpu_reader()
        self._procs: dict[str, int] = {}
        self._cache: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._last_io: tuple[float, float, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_cpu: dict[int, tuple[float, float]] = {}  # thread id -> (when, CPU seconds so far)
        self.error = ""  # the last failed sample's exception, if any: sampling goes on
        self.nested_pids = pid_namespace_nested()
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
            try:
                snap = self.sample()
            except Exception as exc:  # noqa: BLE001 - one bad reading must not end telemetry for the run
                error = f"{type(exc).__name__}: {exc}"
                if error != self.error:  # said once; admission meanwhile treats GPU free memory as unknown
                    print(f"gridwatch: telemetry: a reading failed ({error}); sampling goes on", file=sys.stderr)
                self.error = error
            else:
                self.callback(snap)
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def sample(self) -> Snapshot:
        cores = tuple(psutil.cpu_percent(percpu=True))
        vm = psutil.virtual_memory()
        now = time.time()
        gpus = tuple(self.gpu.read(i) for i in range(self.gpu.count()))
        on_gpu: dict[int, GpuProcess] = {}
        notes = []
        for i in range(self.gpu.count()):
            found, note = self.gpu.processes(i)  # a note alone (no utilisation samples) keeps the memory
            if found and (self.nested_pids or not any(psutil.pid_exists(p) for p in found)):
                found, note = {}, "NVML's process ids are the host's, not this container's: no per-process figures"
            if note:
                notes.append(f"GPU {i}: {note}")
            on_gpu.update(found)
        with self._lock:
            procs = dict(self._procs)
        trials = {key: self._tree(pid, on_gpu, bool(notes)) for key, pid in procs.items()}
        total = sum(cores) / len(cores) if cores else NAN
        read, write = self._disk_rates(now)
        return Snapshot(now, total, cores, float(vm.total - vm.available), float(vm.available), float(vm.total),
                        gpus, trials, float(psutil.swap_memory().used), read, write, "; ".join(notes))

    def _disk_rates(self, now: float) -> tuple[float, float]:
        try:
            io = psutil.disk_io_counters()
        except (OSError, RuntimeError):
            io = None
        if io is None:
            return NAN, NAN
        last, self._last_io = self._last_io, (now, float(io.read_bytes), float(io.write_bytes))
        if last is None or now <= last[0]:
            return NAN, NAN
        dt = now - last[0]
        return (self._last_io[1] - last[1]) / dt, (self._last_io[2] - last[2]) / dt

    def _tree(self, pid: int, on_gpu: dict[int, GpuProcess], gpu_unknown: bool) -> ProcSample:
        try:
            root = self._proc(pid)
            under = descendants(pid)
            if under is None:  # no per-task children lists on this system
                under = [c.pid for c in root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return ProcSample()
        members = [root]
        for child in under:
            try:
                members.append(self._proc(child))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended between the listing and now
        cpu = rss = threads = 0.0
        busiest = NAN
        read = 0
        now = time.monotonic()
        for p in members:
            try:
                with p.oneshot():
                    if p.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped: nothing to read
                        continue
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                    threads += p.num_threads()
                    busiest = _max(busiest, self._busiest_thread(p, now))
                read += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not read:  # every process of the tree ended or refused its figures: unknown, not zero
            return ProcSample()
        mine = [on_gpu[p.pid] for p in members if p.pid in on_gpu]
        gpu_mem = _sum(g.memory for g in mine) if mine else (NAN if gpu_unknown or not on_gpu else 0.0)
        gpu_sm = _sum(g.sm for g in mine)
        return ProcSample(cpu, rss, threads, gpu_mem, gpu_sm, busiest, float(read))

    def _busiest_thread(self, p: psutil.Process, now: float) -> float:
        """% of one core used by p's busiest thread since the last sample (NaN on the first)."""
        out = NAN
        for th in p.threads():
            spent = th.user_time + th.system_time
            last = self._thread_cpu.get(th.id)
            self._thread_cpu[th.id] = (now, spent)
            if last is not None and now > last[0]:
                out = _max(out, 100.0 * (spent - last[1]) / (now - last[0]))
        if len(self._thread_cpu) > 4096:  # forget threads not seen for a while
            self._thread_cpu = {k: v for k, v in self._thread_cpu.items() if v[0] >= now - 10.0}
        return out

    def _proc(self, pid: int) -> psutil.Process:
        p = self._cache.get(pid)
        if p is None or not p.is_running():
            if len(self._cache) > 256:  # forget the dead: DataLoader workers come and go
                self._cache = {k: v for k, v in self._cache.items() if v.is_running()}
            p = self._cache[pid] = psutil.Process(pid)
        return p


def _sum(values: Iterable[float]) -> float:
    """The sum of the known values; NaN when none is known."""
    known = [v for v in values if v == v]
    return sum(known) if known else NAN


def _max(a: float, b: float) -> float:
    return b if a != a else a if b != b else max(a, b)


def pid_namespace_nested(status: str | None = None) -> bool:
    """True in a child PID namespace (most containers): NVML then reports the host's process ids, which do not
    name this namespace's processes (even where one of them happens to exist here)."""
    if status is None:
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                status = f.read()
        except OSError:
            return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) > 2  # "NSpid: <pid here> <pid in the parent namespace> ..."
    return False
