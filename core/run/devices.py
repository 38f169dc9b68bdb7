"""What this machine has (psutil, NVML) and how it is cut into worker slots."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from gridwatch.grid.spec import DeviceSpec


class DeviceError(ValueError):
    pass


@dataclass(frozen=True)
class GpuInfo:
    index: int  # as CUDA numbers it for this process: 0..n-1 among the GPUs CUDA_VISIBLE_DEVICES allows
    name: str
    memory_total: int  # bytes; 0 where NVML may not say (no permission)
    uuid: str = ""  # "GPU-..." : what each worker's CUDA_VISIBLE_DEVICES names
    nvml_index: int = -1  # NVML's (PCI bus) order over every GPU of the machine; -1: same as index

    @property
    def nvml(self) -> int:
        return self.index if self.nvml_index < 0 else self.nvml_index


@dataclass(frozen=True)
class Machine:
    cpu_name: str
    physical_cores: int
    logical_cores: int
    ram_total: int
    gpus: tuple[GpuInfo, ...] = ()
    gpu_note: str = ""  # why there are no GPUs, or which were left out and why: said once and plainly


@dataclass(frozen=True)
class Slot:
    id: str  # "cpu0", "gpu0", "gpu0.1" (second slot on GPU 0)
    kind: str  # "cpu" | "gpu"
    threads: int
    gpu_index: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    cuda_id: str = ""  # the GPU's UUID (or NVML index) for the worker's CUDA_VISIBLE_DEVICES

    @property
    def torch_device(self) -> str:
        return "cuda" if self.kind == "gpu" else "cpu"

    def env(self) -> dict[str, str]:
        """Each worker sees only its own device, named by UUID: whatever order CUDA would number GPUs in, and
        whatever CUDA_VISIBLE_DEVICES the user set, the worker's one visible GPU is the slot's."""
        n = str(self.threads)
        env = {
            "OMP_NUM_THREADS": n,
            "MKL_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n,
            "GRIDWATCH_THREADS": n,
            "GRIDWATCH_SLOT": self.id,
            "GRIDWATCH_DEVICE": self.torch_device,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA numbers GPUs like NVML does (for an index fallback)
            "CUDA_VISIBLE_DEVICES": "-1" if self.gpu_index is None else self.cuda_id or str(self.gpu_index),
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


def detect_gpus(environ: Mapping[str, str] | None = None, nvml: Any = None) -> tuple[list[GpuInfo], str]:
    """The GPUs this process may use: NVML's list, narrowed and renumbered by CUDA_VISIBLE_DEVICES as CUDA
    would. Each GPU is read on its own: one that refuses a query (no permission, a MIG parent) is listed
    with what could be read, or left out with a note, and never hides the others."""
    env = os.environ if environ is None else environ
    if nvml is None:
        if not _nvml_library_loads():
            return [], "no NVIDIA GPU (NVML: driver library not found)"
        try:
            import pynvml
        except ImportError:
            return [], "no NVIDIA GPU (nvidia-ml-py is not installed)"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError, or a library mismatch (a plain Exception)
        return [], f"no NVIDIA GPU (NVML: {_nvml_reason(exc)})"
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            return [], f"no NVIDIA GPU (NVML: {_nvml_reason(exc)})"
        found, notes = [], []
        for i in range(count):
            info, note = _read_gpu(nvml, i)
            if info is not None:
                found.append(info)
            if note:
                notes.append(note)
        gpus, note = visible_gpus(found, env.get("CUDA_VISIBLE_DEVICES"), env.get("CUDA_DEVICE_ORDER"))
        if note:
            notes.append(note)
        if not gpus and not notes:
            notes.append("no NVIDIA GPU (NVML found no devices)")
        return gpus, "; ".join(notes)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - nothing to do about a failed shutdown
            pass


def _read_gpu(nvml: Any, i: int) -> tuple[GpuInfo | None, str]:
    try:
        h = nvml.nvmlDeviceGetHandleByIndex(i)
    except Exception as exc:  # noqa: BLE001
        return None, f"GPU {i} left out (NVML: {_nvml_reason(exc)})"
    name, uuid, total, note = f"GPU {i}", "", 0, ""
    try:
        if nvml.nvmlDeviceGetMigMode(h)[0] == nvml.NVML_DEVICE_MIG_ENABLE:
            return None, f"GPU {i} left out (MIG is enabled: its MIG devices are not supported as slots)"
    except Exception:  # noqa: BLE001, S110 - no MIG on this GPU or driver
        pass
    try:
        raw = nvml.nvmlDeviceGetName(h)
        name = raw if isinstance(raw, str) else raw.decode()
    except Exception:  # noqa: BLE001, S110 - the generic name stays
        pass
    try:
        raw = nvml.nvmlDeviceGetUUID(h)
        uuid = raw if isinstance(raw, str) else raw.decode()
    except Exception:  # noqa: BLE001, S110 - workers then name it by index, in PCI order
        pass
    try:
        total = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
    except Exception as exc:  # noqa: BLE001
        note = f"GPU {i}: memory size unknown (NVML: {_nvml_reason(exc)}), so no VRAM budget"
    return GpuInfo(i, name, total, uuid, nvml_index=i), note


def visible_gpus(gpus: list[GpuInfo], cuda_visible: str | None, order: str | None = None
                 ) -> tuple[list[GpuInfo], str]:
    """Narrow the GPUs this process can open (`gpus`, in NVML's PCI bus order) to those CUDA_VISIBLE_DEVICES
    allows, numbered as CUDA numbers them. Entries are UUIDs (or unique prefixes) or indices; like CUDA, the
    first entry that names no GPU ends the list, and a repeated one leaves no GPU at all. Indices count the
    GPUs CUDA can use (those NVML could open) in CUDA_DEVICE_ORDER: PCI bus order, or CUDA's default
    "fastest first", which is the same order only where every GPU is the same model."""
    if cuda_visible is None:
        return [replace(g, index=i) for i, g in enumerate(gpus)], ""
    entries = [e.strip() for e in cuda_visible.split(",")]
    if (any(e.isdigit() for e in entries) and (order or "FASTEST_FIRST") != "PCI_BUS_ID"
            and len({g.name for g in gpus}) > 1):
        return [], (f"CUDA_VISIBLE_DEVICES={cuda_visible!r} numbers GPUs in CUDA's fastest-first order, which "
                    "for different GPU models is not known here: name them by UUID (`gridwatch devices` lists "
                    "them) or set CUDA_DEVICE_ORDER=PCI_BUS_ID")
    chosen: list[GpuInfo] = []
    stopped = ""
    for entry in entries:
        match: list[GpuInfo] = []
        if entry.isdigit():
            match = gpus[int(entry):int(entry) + 1]
        elif entry.startswith("GPU-"):
            match = [g for g in gpus if g.uuid.startswith(entry)]
        if len(match) != 1:
            stopped = entry
            break
        if match[0] in chosen:
            return [], f"CUDA_VISIBLE_DEVICES={cuda_visible!r} names a GPU twice: CUDA then uses no GPU"
        chosen.append(match[0])
    out = [replace(g, index=i) for i, g in enumerate(chosen)]
    if not out:
        return out, f"no NVIDIA GPU allowed (CUDA_VISIBLE_DEVICES={cuda_visible!r})"
    if stopped:
        why = "a MIG device (not supported as a slot)" if stopped.startswith("MIG-") else "no GPU here"
        return out, f"CUDA_VISIBLE_DEVICES entry {stopped!r} is {why}: it and the entries after it are ignored"
    return out, ""


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


def _nvml_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "driver library not found"
    if "DriverNotLoaded" in name:
        return "driver not loaded"
    if "NoPermission" in name:
        return "no permission"
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
        if g.memory_total > 0 and any(s.gpu_index == g.index for s in slots):
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
    cuda_ids = {g.index: g.uuid or str(g.nvml) for g in machine.gpus}
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
            slots.append(Slot(sid, "gpu", spec.threads_per_cpu_slot, gpu_index=g, cuda_id=cuda_ids[g]))
    return slots
