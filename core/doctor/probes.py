"""The doctor's measurements, each run alone in a child process: `python -P -m gridwatch.doctor.probes NAME
ARGS-JSON` prints one JSON object (or {"skip": why}) as its last line. Importing this module runs nothing
and loads neither torch nor NVML: each probe loads what it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

SMI_QUERY = "--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total"
Answer = dict[str, Any]


def nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def running_processes(n: Any, handle: Any) -> list[Any]:
    """NVML's compute processes; drivers before R510 lack the _v3 symbol pynvml calls, and answer to _v2."""
    try:
        return list(n.nvmlDeviceGetComputeRunningProcesses(handle))
    except n.NVMLError:
        raise
    except Exception:  # noqa: BLE001 - NVMLLibraryMismatchError is a plain Exception
        return list(n.nvmlDeviceGetComputeRunningProcesses_v2(handle))


def torch_info(args: Answer) -> Answer:
    """Which torch the workers will import, and whether it sees CUDA (with the environment as it is)."""
    import torch

    available = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "available": available,
            "count": torch.cuda.device_count() if available else 0}


def identity(args: Answer) -> Answer:
    """Every CUDA device this process sees (CUDA_VISIBLE_DEVICES as the doctor set it), by UUID."""
    import torch

    if not torch.cuda.is_available():
        return {"count": 0, "uuids": []}
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return {"count": len(props), "uuids": [str(getattr(p, "uuid", "")) for p in props],
            "names": [p.name for p in props]}


class Load:
    """About half-busy CUDA work on every visible device: bursts of matmuls, then as long asleep."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        import torch

        for i in range(torch.cuda.device_count()):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, device: int) -> None:
        import torch

        x = torch.randn(2048, 2048, device=f"cuda:{device}")
        while not self.stop.is_set():
            t0 = time.perf_counter()
            for _ in range(4):
                x = torch.tanh(x @ x)
            torch.cuda.synchronize(device)
            self.stop.wait(max(time.perf_counter() - t0, 0.002))

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def smi(args: Answer) -> Answer:
    """nvidia-smi against the engine's own NVML reader, read over and over while nvidia-smi runs, under a
    small CUDA load: per GPU the lowest and highest (utilisation, memory used) NVML gave meanwhile."""
    from gridwatch.telemetry.nvml import NvmlReader

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"skip": "nvidia-smi is not on PATH"}
    uuids = [str(u) for _, u in args["gpus"]]
    reader = NvmlReader(gpus=[(int(i), str(u)) for i, u in args["gpus"]])
    n = nvml()
    indices = {i: str(n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(i))) for i in range(n.nvmlDeviceGetCount())}
    load = Load()
    if args.get("load", True):
        load.start()
        time.sleep(1.5)  # NVML's utilisation covers its last sample period: let it see the load
    samples = []
    try:
        for _ in range(int(args.get("samples", 10))):
            readings, text = _smi_once(exe, reader, len(uuids))
            util = {u: _span([r[k][0] for r in readings]) for k, u in enumerate(uuids)}
            used = {u: _span([r[k][1] for r in readings]) for k, u in enumerate(uuids)}
            ranges = {u: [[util[u][0], used[u][0]], [util[u][1], used[u][1]]] for u in uuids}
            samples.append({"smi": text, "nvml": ranges, "v2": {u: _used_v2(n, u) for u in uuids}})
            time.sleep(0.3)
    finally:
        load.end()
        reader.close()
    return {"samples": samples, "nvml_indices": indices, "loaded": bool(load.threads)}


def _smi_once(exe: str, reader: Any, count: int) -> tuple[list[list[tuple[float, float]]], str]:
    """One nvidia-smi query, with the engine's NVML readings from just before it started to just after."""

    def read() -> list[tuple[float, float]]:
        return [(g.util, g.mem_used) for g in (reader.read(k) for k in range(count))]

    readings = [read()]
    proc = subprocess.Popen([exe, SMI_QUERY, "--format=csv,noheader,nounits"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        readings.append(read())
        time.sleep(0.02)
    readings.append(read())
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"nvidia-smi exit code {proc.returncode}: {err.strip()[:300]}")
    return readings, out


def _span(values: list[float]) -> tuple[float, float]:
    """(lowest, highest); NaN for both if NVML missed any reading (said as such, never guessed)."""
    if any(v != v for v in values):
        return float("nan"), float("nan")
    return min(values), max(values)


def _used_v2(n: Any, uuid: str) -> float | None:
    """Memory used as NVML's v2 query counts it (without the driver's reserved memory), where it answers."""
    try:
        m = n.nvmlDeviceGetMemoryInfo(n.nvmlDeviceGetHandleByUUID(uuid), version=n.nvmlMemory_v2)
        return float(m.used)
    except Exception:  # noqa: BLE001 - an older driver or pynvml: no second opinion
        return None


def context(args: Answer) -> Answer:
    """VRAM one process's CUDA context costs: NVML's figure for this process less torch's reserved memory."""
    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    n = nvml()
    h = n.nvmlDeviceGetHandleByUUID(args["uuid"])
    try:
        if n.nvmlDeviceGetMigMode(h)[0] == n.NVML_DEVICE_MIG_ENABLE:
            return {"skip": "MIG is enabled: NVML gives no per-process memory"}
    except n.NVMLError:
        pass  # no MIG on this GPU
    procs = running_processes(n, h)
    mine = [p for p in procs if int(p.pid) == os.getpid()]
    if not mine:
        return {"skip": f"NVML lists {len(procs)} process(es) on this GPU, not this one (a container's PID "
                        "namespace?)"}
    used = mine[0].usedGpuMemory
    if not isinstance(used, int) or not 0 <= used < 2**63:
        return {"skip": "NVML gives no per-process memory here (permissions or WDDM)"}
    reserved = int(torch.cuda.memory_reserved())
    return {"used": used, "reserved": reserved, "context": used - reserved}


def memory(args: Answer) -> Answer:
    n = nvml()
    out = {}
    for u in args["uuids"]:
        m = n.nvmlDeviceGetMemoryInfo(n.nvmlDeviceGetHandleByUUID(u))
        out[u] = {"free": int(m.free), "used": int(m.used), "total": int(m.total)}
    return out


def sample(args: Answer) -> Answer:
    """NVML readings until SIGTERM (or max_s): lowest free memory, highest used, utilisation per UUID."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    n = nvml()
    handles = {u: n.nvmlDeviceGetHandleByUUID(u) for u in args["uuids"]}
    seen: dict[str, dict[str, float]] = {u: {"min_free": float("inf"), "max_used": 0.0, "util_sum": 0.0,
                                             "util_max": 0.0, "n": 0} for u in handles}
    deadline = time.monotonic() + float(args.get("max_s", 600))
    while not stop.is_set() and time.monotonic() < deadline:
        for u, h in handles.items():
            m = n.nvmlDeviceGetMemoryInfo(h)
            util = float(n.nvmlDeviceGetUtilizationRates(h).gpu)
            s = seen[u]
            s["min_free"], s["max_used"] = min(s["min_free"], float(m.free)), max(s["max_used"], float(m.used))
            s["util_sum"], s["util_max"], s["n"] = s["util_sum"] + util, max(s["util_max"], util), s["n"] + 1
        stop.wait(float(args.get("interval_s", 0.1)))
    nan = float("nan")  # no reading at all is unknown, never "plenty free"
    return {u: {**s, "min_free": s["min_free"] if s["n"] else nan, "util_mean": s["util_sum"] / s["n"] if s["n"]
                else nan} for u, s in seen.items()}


def dataset(args: Answer) -> Answer:
    """Generate the demo dataset once before any timed run uses it."""
    from gridwatch.demo import data

    return {"samples": int(data.load().labels.shape[0])}


def prefetch(args: Answer) -> Answer:
    from gridwatch.doctor.prefetch_probe import measure

    return measure(args)


PROBES: dict[str, Callable[[Answer], Answer]] = {
    "torch": torch_info, "identity": identity, "smi": smi, "context": context, "memory": memory,
    "sample": sample, "dataset": dataset, "prefetch": prefetch,
}


def main(argv: list[str]) -> int:
    name, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    answer = PROBES[name](args)
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
