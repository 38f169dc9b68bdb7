"""Trainables the doctor's grids run in real gridwatch workers (`gridwatch.doctor.trainables:NAME`).

Each leaves a JSON note in config["dir"] (where it ran, when it held its memory) for the doctor to read;
torch is imported only when one runs.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = Callable[..., None]


def note(config: dict[str, Any], kind: str, **fields: Any) -> None:
    folder = Path(config["dir"])
    path = folder / f"{kind}-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "slot": os.environ.get("GRIDWATCH_SLOT", ""), **fields}),
                    encoding="utf-8")


def nvml_gpu_of(pid: int) -> str | None:
    """The UUID of the GPU on which NVML lists this process; None where NVML cannot tell (containers)."""
    from gridwatch.doctor.probes import running_processes

    try:
        import pynvml

        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            if any(int(p.pid) == pid for p in running_processes(pynvml, h)):
                return str(pynvml.nvmlDeviceGetUUID(h))
    except Exception:  # noqa: BLE001 - no NVML answer is "cannot tell", never a failed trial
        return None
    return None


def where(config: dict[str, Any]) -> dict[str, float]:
    """Which GPU this worker's CUDA work lands on, as torch and as NVML see it."""
    import torch

    x = torch.ones(1 << 20, device=config["device"])
    torch.cuda.synchronize()
    current = torch.cuda.current_device()
    note(config, "where", device=config["device"], env_device=os.environ.get("GRIDWATCH_DEVICE"),
         cvd=os.environ.get("CUDA_VISIBLE_DEVICES"), count=torch.cuda.device_count(),
         uuid=str(torch.cuda.get_device_properties(current).uuid), nvml_uuid=nvml_gpu_of(os.getpid()))
    time.sleep(float(config.get("hold_s", 1.0)))  # long enough for every slot to get a trial
    return {"sum": float(x.sum().item())}


def hold_vram(config: dict[str, Any]) -> dict[str, float]:
    """Hold config["nbytes"] of VRAM for hold_s seconds, after `delay_s` with only a CUDA context (so the
    scheduler's first memory reading can be made to miss it); the memory is given back at the end."""
    import torch

    torch.zeros(1, device="cuda")
    time.sleep(float(config.get("delay_s", 0.0)))
    block = torch.empty(int(config["nbytes"]), dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    t0 = time.time()
    time.sleep(float(config.get("hold_s", 3.0)))
    t1 = time.time()
    del block
    torch.cuda.empty_cache()
    note(config, "held", t0=t0, t1=t1, nbytes=int(config["nbytes"]))
    return {"held_gib": int(config["nbytes"]) / 1024**3}


def compute_bound(config: dict[str, Any], report: Report) -> dict[str, float]:
    """Matmuls for `seconds`, batches from memory (through gridwatch.prefetch when config["prefetch"]):
    the GPU is the bottleneck, so no starvation verdict may name it."""
    import torch

    from gridwatch import prefetch

    dev = torch.device(config["device"])
    size = int(config.get("size", 2048))
    a = torch.randn(size, size, device=dev) / size**0.5
    cpu_batches = [torch.randn(size // 4, size) for _ in range(8)]
    deadline = time.monotonic() + float(config["seconds"])
    steps = 0

    def batches() -> Any:
        i = 0
        while i == 0 or time.monotonic() < deadline:  # at least one step, however short the time
            yield cpu_batches[i % len(cpu_batches)]
            i += 1

    loader = prefetch(batches(), depth=2, device=dev) if config.get("prefetch") else batches()
    for xb in loader:
        x = xb.to(dev, non_blocking=True)
        h = a
        for _ in range(8):  # a few ms of GPU work per step, far more than the batch's copy
            h = torch.tanh(h @ a)
        (x @ h).sum().item()  # one sync per step
        steps += 1
        if steps % 200 == 0:
            report(steps=steps)
    return {"steps": float(steps)}
