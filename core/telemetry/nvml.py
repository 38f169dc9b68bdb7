"""GPU readers behind one interface: NVML for real, NoGpu when there is none (tests add fakes).

Every field is read on its own, so one unsupported query leaves that field NaN and the rest intact.
Per-process figures are the fragile part: NVML answers NOT_FOUND to a process-utilisation query with no
samples yet, MIG hides them, and in a container NVML's process ids are the host's. Each case gives NaN
and a note that says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
    sm_clock_mhz: float = NAN
    pcie_rx_kbs: float = NAN
    pcie_tx_kbs: float = NAN


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    memory: float = NAN  # bytes
    sm: float = NAN  # % SM utilisation over NVML's last sample period


class GpuReader(Protocol):
    note: str

    def count(self) -> int: ...

    def read(self, index: int) -> GpuSample: ...

    def processes(self, index: int) -> tuple[dict[int, GpuProcess], str]: ...

    def close(self) -> None: ...


class NoGpu:
    def __init__(self, note: str = "no NVIDIA GPU") -> None:
        self.note = note

    def count(self) -> int:
        return 0

    def read(self, index: int) -> GpuSample:
        return GpuSample(index)

    def processes(self, index: int) -> tuple[dict[int, GpuProcess], str]:
        return {}, self.note

    def close(self) -> None:
        pass


class NvmlReader:
    """Reads the GPUs this process may use (`gpus`: (NVML index, UUID) in CUDA's order), each by UUID where
    known; reading i is the GPU CUDA calls i. Without `gpus`, every GPU NVML lists."""

    def __init__(self, nvml: Any = None, gpus: list[tuple[int, str]] | None = None) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml: Any = nvml
        nvml.nvmlInit()
        if gpus is None:
            gpus = [(i, "") for i in range(nvml.nvmlDeviceGetCount())]
        self.handles = [self._handle(i, uuid) for i, uuid in gpus]
        self.note = ""
        self._last_ts = [0] * len(self.handles)
        self._running = "nvmlDeviceGetComputeRunningProcesses"  # falls back to _v2 on drivers before R510

    def _handle(self, index: int, uuid: str) -> Any:
        if uuid:
            try:
                return self.nvml.nvmlDeviceGetHandleByUUID(uuid)
            except Exception:  # noqa: BLE001, S110 - by index then, which NVML numbers the same way
                pass
        return self.nvml.nvmlDeviceGetHandleByIndex(index)

    def count(self) -> int:
        return len(self.handles)

    def read(self, index: int) -> GpuSample:
        n, h = self.nvml, self.handles[index]
        util = self._get(lambda: n.nvmlDeviceGetUtilizationRates(h))
        mem = self._get(lambda: n.nvmlDeviceGetMemoryInfo(h))
        power = self._get(lambda: n.nvmlDeviceGetPowerUsage(h))
        return GpuSample(
            index,
            util=_num(util, "gpu"),
            mem_util=_num(util, "memory"),
            mem_used=_num(mem, "used"),
            mem_total=_num(mem, "total"),
            power_w=power / 1000.0 if isinstance(power, (int, float)) else NAN,
            temp_c=_num(self._get(lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))),
            sm_clock_mhz=_num(self._get(lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM))),
            pcie_rx_kbs=_num(self._get(lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_RX_BYTES))),
            pcie_tx_kbs=_num(self._get(lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES))),
        )

    def processes(self, index: int) -> tuple[dict[int, GpuProcess], str]:
        n, h = self.nvml, self.handles[index]
        mig = self._get(lambda: n.nvmlDeviceGetMigMode(h))
        if isinstance(mig, (list, tuple)) and mig and mig[0] == n.NVML_DEVICE_MIG_ENABLE:
            return {}, "MIG is enabled: NVML gives no per-process figures"
        running, why = self._running_processes(h)
        if running is None:
            return {}, f"NVML cannot list the processes on this GPU ({why})"
        memory = {int(p.pid): _bytes(getattr(p, "usedGpuMemory", None)) for p in running}
        try:
            samples = n.nvmlDeviceGetProcessUtilization(h, self._last_ts[index])
        except Exception as exc:  # noqa: BLE001
            if not _is(n, exc, "NVMLError_NotFound"):  # NOT_FOUND: no samples since last time, not an error
                return _procs(memory, {}), f"no per-process utilisation ({exc})"
            samples = []
        # A process on the GPU without a sample since the last read ran no kernel: 0 %, a real reading.
        seen: dict[int, list[float]] = {}
        for s in samples:  # several samples of one process since the last read: their mean
            seen.setdefault(int(s.pid), []).append(float(s.smUtil))
            self._last_ts[index] = max(self._last_ts[index], int(s.timeStamp))
        sm = {**dict.fromkeys(memory, 0.0), **{pid: sum(v) / len(v) for pid, v in seen.items()}}
        return _procs(memory, sm), ""

    def _running_processes(self, h: Any) -> tuple[list[Any] | None, str]:
        """NVML's compute processes. pynvml calls the _v3 symbol, which drivers before R510 lack: it then
        raises NVMLLibraryMismatchError (a plain Exception); the _v2 symbol answers on those drivers."""
        try:
            return getattr(self.nvml, self._running)(h), ""
        except Exception as exc:  # noqa: BLE001
            older = "nvmlDeviceGetComputeRunningProcesses_v2"
            if self._running != older and hasattr(self.nvml, older) and _missing_function(self.nvml, exc):
                self._running = older
                return self._running_processes(h)
            return None, str(exc).split(". ")[0] or type(exc).__name__

    def _get(self, query: Callable[[], Any]) -> Any:
        """One field: any failure (an NVMLError, or pynvml's plain-Exception library mismatch) is a gap."""
        try:
            return query()
        except Exception:  # noqa: BLE001
            return None

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - nothing to do about a failed shutdown
            pass


def _procs(memory: dict[int, float], sm: dict[int, float]) -> dict[int, GpuProcess]:
    return {pid: GpuProcess(pid, memory.get(pid, NAN), sm.get(pid, NAN)) for pid in memory.keys() | sm.keys()}


def _num(obj: Any, attr: str | None = None) -> float:
    value = getattr(obj, attr, None) if attr else obj
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else NAN


def _bytes(value: Any) -> float:
    # NVML reports "not available" (e.g. under WDDM or without permission) as None or a huge sentinel
    return float(value) if isinstance(value, int) and 0 <= value < 2**63 else NAN


def _is(nvml: Any, exc: Exception, name: str) -> bool:
    cls = getattr(nvml, name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _missing_function(nvml: Any, exc: Exception) -> bool:
    return _is(nvml, exc, "NVMLLibraryMismatchError") or _is(nvml, exc, "NVMLError_FunctionNotFound")


def open_gpu_reader() -> GpuReader:
    from gridwatch.run.devices import detect_gpus

    gpus, note = detect_gpus()
    if not gpus:
        return NoGpu(note)
    try:
        return NvmlReader(gpus=[(g.nvml, g.uuid) for g in gpus])
    except Exception as exc:  # noqa: BLE001 - any NVML failure means: no GPU readings, said plainly
        return NoGpu(f"no NVIDIA GPU readings ({exc})")
