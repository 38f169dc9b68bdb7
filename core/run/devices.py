"""What this machine has (psutil, NVML) and how it is cut into worker slots."""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from gridwatch.grid.spec import DeviceSpec


class DeviceError(ValueError):
    pass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total: int  # bytes
    uuid: str = ""


@dataclass(frozen=True)
class Machine:
    cpu_name: str
    physical_cores: int
    logical_cores: int
    ram_total: int
    gpus: tuple[GpuInfo, ...] = ()
    gpu_note: str = ""  # why there are no GPUs, said once and plainly


@dataclass(frozen=True)
class Slot:
    id: str  # "cpu0", "gpu0", "gpu0.1" (second slot on GPU 0)
    kind: str  # "cpu" | "gpu"
    threads: int
    gpu_index: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def torch_device(self) -> str:
        return "cuda" if self.kind == "gpu" else "cpu"

    def env(self) -> dict[str, str]:
        """Each worker sees only its own device, so processes never fight over GPU memory."""
        n = str(self.threads)
        env = {
            "OMP_NUM_THREADS": n,
            "MKL_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n,
            "GRIDWATCH_THREADS": n,
            "GRIDWATCH_SLOT": self.id,
            "GRIDWATCH_DEVICE": self.torch_device,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA numbers GPUs like NVML does
            "CUDA_VISIBLE_DEVICES": "-1" if self.gpu_index is None else str(self.gpu_index),
        }
        env.update(self.extra_env)
        return env


def detect() -> Machine:
    gpus, note = detect_gpus()
    return Machine(
        cpu_name=_cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        logical_cores=psutil.cpu_count() or 1,
        ram_total=psutil.virtual_memory().total,
        gpus=tuple(gpus),
        gpu_note=note,
    )


def detect_gpus() -> tuple[list[GpuInfo], str]:
    if not _nvml_library_loads():
        return [], "no NVIDIA GPU (NVML: driver library not found)"
    try:
        import pynvml
    except ImportError:
        return [], "no NVIDIA GPU (nvidia-ml-py is not installed)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA GPU (NVML: {_nvml_reason(exc)})"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(GpuInfo(i, name if isinstance(name, str) else name.decode(), int(mem.total),
                                str(pynvml.nvmlDeviceGetUUID(h))))
        return gpus, "" if gpus else "no NVIDIA GPU (NVML found no devices)"
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA GPU (NVML: {_nvml_reason(exc)})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _nvml_library_loads() -> bool:
    """Without NVIDIA's driver library there is nothing for pynvml to find, and importing it costs every run
    ~20 ms of CPU at every start. pynvml loads this same file on Linux."""
    if not sys.platform.startswith("linux") or "pynvml" in sys.modules:
        return True
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def _nvml_reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "driver library not found"
    if "DriverNotLoaded" in name:
        return "driver not loaded"
    return str(exc) or name


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_budgets(machine: Machine, spec: DeviceSpec, slots: list[Slot]) -> dict[str, float]:
    """Bytes that trials may use on each memory device: 'host' (RAM) and 'gpu<i>' (VRAM)."""
    gib = 1024**3
    ram = machine.ram_total - spec.ram_reserve_gb * gib
    if spec.ram_budget_gb is not None:
        ram = min(ram, spec.ram_budget_gb * gib)
    budgets = {"host": max(ram, 0.0)}
    for g in machine.gpus:
        if any(s.gpu_index == g.index for s in slots):
            budgets[f"gpu{g.index}"] = max(g.memory_total - spec.vram_reserve_gb * gib, 0.0)
    return budgets


def probe_alone(spec: DeviceSpec, budgets: dict[str, float]) -> set[str]:
    """Where a model's first trial starts alone until it reports its memory: every GPU (VRAM is tight and
    an OOM costs a trial), and RAM only under an explicit ram_budget_gb (else the free-memory check guards)."""
    return {d for d in budgets if d != "host" or spec.ram_budget_gb is not None}


def free_memory(gpus: Iterable[Any] = ()) -> dict[str, float]:
    """Free RAM now and free VRAM by the newest GPU readings (objects with index, mem_total, mem_used), for
    admission; a GPU whose reading is missing is left out (unknown, not full)."""
    free = {"host": float(psutil.virtual_memory().available)}
    for g in gpus:
        if g.mem_total == g.mem_total and g.mem_used == g.mem_used:
            free[f"gpu{g.index}"] = float(g.mem_total - g.mem_used)
    return free


def memory_low() -> bool:
    """RAM nearly full: a worker killed by SIGKILL now was most likely the kernel's OOM killer's doing."""
    vm = psutil.virtual_memory()
    return vm.available < 0.1 * vm.total


def memory_device(slot: Slot) -> str:
    return "host" if slot.gpu_index is None else f"gpu{slot.gpu_index}"


def default_cpu_slots(physical_cores: int) -> int:
    """One slot per physical core; from 4 cores up keep one free for the app and the desktop."""
    return physical_cores - 1 if physical_cores >= 4 else max(1, physical_cores)


def plan_slots(machine: Machine, spec: DeviceSpec, cpu_slots: int | None = None,
               gpus: tuple[int, ...] | None = None, gpus_given: bool = False) -> list[Slot]:
    """Slots for a run; command-line overrides win over the grid file's [devices]."""
    n_cpu = cpu_slots if cpu_slots is not None else spec.cpu_slots
    if n_cpu is None:
        n_cpu = default_cpu_slots(machine.physical_cores)
    wanted = gpus if gpus_given else spec.gpus
    present = [g.index for g in machine.gpus]
    if wanted is None:
        indices = present
    else:
        missing = [i for i in wanted if i not in present]
        if missing:
            have = ", ".join(map(str, present)) or "none"
            raise DeviceError(f"GPU {missing[0]} not found (this machine's GPUs: {have})")
        indices = list(wanted)
    slots = [Slot(f"cpu{i}", "cpu", spec.threads_per_cpu_slot) for i in range(n_cpu)]
    for g in indices:
        for k in range(spec.gpu_slots_per_gpu):
            sid = f"gpu{g}" if k == 0 else f"gpu{g}.{k}"
            slots.append(Slot(sid, "gpu", spec.threads_per_cpu_slot, gpu_index=g))
    return slots
