"""A fake NVML *driver library* under the real pynvml: pynvml's own wrappers, structs, error classes and
version checks run unchanged, and only the C functions they call are answered here, in Python.

    lib = FakeNvmlLib([FakeGpu(...), ...], missing={"nvmlDeviceGetComputeRunningProcesses_v3"})
    with lib.installed(monkeypatch):
        pynvml.nvmlInit()  # the real function, against this library

A function named in `missing` is absent from the library, as on an older driver (pynvml then raises
NVMLError_FunctionNotFound, or NVMLLibraryMismatchError for its unversioned names). A GPU's `errors` maps a
C function name to the NVML return code it answers with (e.g. NO_PERMISSION).
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from dataclasses import dataclass, field

import pynvml

OK = pynvml.NVML_SUCCESS


@dataclass
class FakeGpu:
    name: str = "NVIDIA Fake 16GB"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    total: int = 16 * 2**30
    used: int = 3 * 2**30
    util: int = 71
    mem_util: int = 30
    power_mw: int = 212_000
    temp_c: int = 64
    sm_clock: int = 1410
    mig: bool = False
    procs: tuple[tuple[int, int | None], ...] = ()  # (pid, bytes or None for "not available")
    samples: tuple[tuple[int, int], ...] = ()  # (pid, smUtil) per-process utilisation samples
    errors: dict[str, int] = field(default_factory=dict)


def _set(ref: object, value: object) -> None:
    """Write through a ctypes byref() argument, as a C out-parameter."""
    target = ref._obj  # type: ignore[attr-defined]
    if isinstance(target, ctypes._Pointer):  # a handle: store the device number as the pointer value
        ctypes.c_void_p.from_buffer(target).value = value  # type: ignore[assignment]
    else:
        target.value = value


def _device(handle: object) -> int:
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0) - 1


class FakeNvmlLib:
    def __init__(self, gpus: list[FakeGpu], missing: set[str] | frozenset[str] = frozenset(),
                 init_error: int = OK) -> None:
        self.gpus, self.missing, self.init_error = gpus, set(missing), init_error
        self.calls: list[str] = []

    @contextmanager
    def installed(self, monkeypatch):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(pynvml, "nvmlLib", self)
        monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
        yield self

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name.startswith("_") or name in self.missing:
            raise AttributeError(name)
        impl = getattr(type(self), "c_" + name, None)
        if impl is None:
            raise AttributeError(name)

        def call(*args):  # type: ignore[no-untyped-def]
            self.calls.append(name)
            gpu = self._gpu_of(args)
            if gpu is not None and name in gpu.errors:
                return gpu.errors[name]
            return impl(self, *args)

        return call

    def _gpu_of(self, args: tuple[object, ...]) -> FakeGpu | None:
        if args and isinstance(args[0], pynvml.c_nvmlDevice_t):
            i = _device(args[0])
            return self.gpus[i] if 0 <= i < len(self.gpus) else None
        return None

    # -- the C functions pynvml calls -------------------------------------------------------------------

    def c_nvmlInitWithFlags(self, flags):  # type: ignore[no-untyped-def]
        return self.init_error

    def c_nvmlShutdown(self):  # type: ignore[no-untyped-def]
        return OK

    def c_nvmlDeviceGetCount_v2(self, count):  # type: ignore[no-untyped-def]
        _set(count, len(self.gpus))
        return OK

    def c_nvmlDeviceGetHandleByIndex_v2(self, index, handle):  # type: ignore[no-untyped-def]
        i = index.value
        if not 0 <= i < len(self.gpus):
            return pynvml.NVML_ERROR_INVALID_ARGUMENT
        if "nvmlDeviceGetHandleByIndex_v2" in self.gpus[i].errors:
            return self.gpus[i].errors["nvmlDeviceGetHandleByIndex_v2"]
        _set(handle, i + 1)
        return OK

    def c_nvmlDeviceGetHandleByUUID(self, uuid, handle):  # type: ignore[no-untyped-def]
        for i, g in enumerate(self.gpus):
            if g.uuid.encode() == uuid.value:
                _set(handle, i + 1)
                return OK
        return pynvml.NVML_ERROR_NOT_FOUND

    def _string(self, buf, text: str):  # type: ignore[no-untyped-def]
        buf.value = text.encode()
        return OK

    def c_nvmlDeviceGetName(self, h, buf, size):  # type: ignore[no-untyped-def]
        return self._string(buf, self.gpus[_device(h)].name)

    def c_nvmlDeviceGetUUID(self, h, buf, size):  # type: ignore[no-untyped-def]
        return self._string(buf, self.gpus[_device(h)].uuid)

    def c_nvmlDeviceGetMemoryInfo(self, h, mem):  # type: ignore[no-untyped-def]
        g = self.gpus[_device(h)]
        m = mem._obj
        m.total, m.used, m.free = g.total, g.used, g.total - g.used
        return OK

    def c_nvmlDeviceGetUtilizationRates(self, h, util):  # type: ignore[no-untyped-def]
        g = self.gpus[_device(h)]
        util._obj.gpu, util._obj.memory = g.util, g.mem_util
        return OK

    def c_nvmlDeviceGetPowerUsage(self, h, out):  # type: ignore[no-untyped-def]
        _set(out, self.gpus[_device(h)].power_mw)
        return OK

    def c_nvmlDeviceGetTemperature(self, h, sensor, out):  # type: ignore[no-untyped-def]
        _set(out, self.gpus[_device(h)].temp_c)
        return OK

    def c_nvmlDeviceGetClockInfo(self, h, kind, out):  # type: ignore[no-untyped-def]
        _set(out, self.gpus[_device(h)].sm_clock)
        return OK

    def c_nvmlDeviceGetPcieThroughput(self, h, counter, out):  # type: ignore[no-untyped-def]
        return pynvml.NVML_ERROR_NOT_SUPPORTED

    def c_nvmlDeviceGetMigMode(self, h, current, pending):  # type: ignore[no-untyped-def]
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if self.gpus[_device(h)].mig else pynvml.NVML_DEVICE_MIG_DISABLE
        _set(current, mode)
        _set(pending, mode)
        return OK

    def _processes(self, h, count, array):  # type: ignore[no-untyped-def]
        procs = self.gpus[_device(h)].procs
        if not procs:
            _set(count, 0)
            return OK
        if array is None or count._obj.value < len(procs):
            _set(count, len(procs))
            return pynvml.NVML_ERROR_INSUFFICIENT_SIZE
        for slot, (pid, used) in zip(array, procs, strict=False):
            slot.pid = pid
            slot.usedGpuMemory = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None else used
        _set(count, len(procs))
        return OK

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, h, count, array):  # type: ignore[no-untyped-def]
        return self._processes(h, count, array)

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, h, count, array):  # type: ignore[no-untyped-def]
        return self._processes(h, count, array)

    def c_nvmlDeviceGetProcessUtilization(self, h, array, count, since):  # type: ignore[no-untyped-def]
        """Sample i was taken at time 1000 + i; only those newer than `since` are returned, as NVML does."""
        samples = [(pid, sm, 1000 + i) for i, (pid, sm) in enumerate(self.gpus[_device(h)].samples)
                   if 1000 + i > since.value]
        if not samples:
            return pynvml.NVML_ERROR_NOT_FOUND
        if array is None:
            _set(count, len(samples))
            return pynvml.NVML_ERROR_INSUFFICIENT_SIZE
        for slot, (pid, sm, ts) in zip(array, samples, strict=False):
            slot.pid, slot.smUtil, slot.timeStamp = pid, sm, ts
        _set(count, len(samples))
        return OK
