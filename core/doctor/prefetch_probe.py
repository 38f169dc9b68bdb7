"""`gridwatch.prefetch` on a real GPU, in the probe's child process (torch is imported only here).

1. Does it help? An input-bound loop (the CPU prepares each batch for about as long as the GPU step takes,
   one sync per step as `loss.item()` does) with depth=0 and depth=2; NVML samples the GPU's utilisation.
2. Is it safe? Batch i is filled with the value i and copied on prefetch's side stream; the loop queues
   slow GPU work and a per-batch checksum into a preallocated tensor with no sync until the end. A batch
   whose memory was reused before its checksum ran (a missing stream sync) reads wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from gridwatch.doctor.probes import Answer, nvml

STEP_S = 0.02  # GPU time per step the calibration aims at
BATCHES = 150
CHECKED_BATCHES = 200
SHAPE = (256, 1024)


def measure(args: Answer) -> Answer:
    import torch

    dev = torch.device("cuda")
    a = torch.randn(2048, 2048, device=dev) / 2048**0.5
    k, step_s = _calibrate(a)
    util = {depth: _busy(a, k, step_s, depth, args["uuid"]) for depth in (0, 2)}
    bad, seen = _checksums(a, max(1, k // 4))
    return {"matmuls_per_step": k, "step_s": step_s, "util_off": util[0][0], "wait_off": util[0][1],
            "util_on": util[2][0], "wait_on": util[2][1], "batches": CHECKED_BATCHES, "seen": seen, "bad": bad}


def _calibrate(a: Any) -> tuple[int, float]:
    """How many matmuls make a ~20 ms GPU step on this GPU, and how long that step really takes."""
    import torch

    def timed(k: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        x = a
        for _ in range(k):
            x = a @ x
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    timed(3)  # warm-up: kernels, cuBLAS handles
    one = max(timed(10) / 10, 1e-5)
    k = max(1, round(STEP_S / one))
    return k, timed(k)


def _slow_batches(n: int, load_s: float) -> Iterator[Any]:
    """CPU-side loading: a sleep as long as a GPU step, plus a little numpy work (GIL released in both)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    for _ in range(n):
        time.sleep(load_s)
        yield torch.from_numpy(rng.standard_normal(SHAPE, dtype=np.float32))


def _busy(a: Any, k: int, load_s: float, depth: int, uuid: str) -> tuple[float, float]:
    """(mean NVML utilisation %, data-wait fraction) of the input-bound loop at this prefetch depth."""
    from gridwatch import prefetch

    readings: list[float] = []
    stop = threading.Event()
    n = nvml()
    h = n.nvmlDeviceGetHandleByUUID(uuid)

    def sample() -> None:
        while not stop.wait(0.05):
            readings.append(float(n.nvmlDeviceGetUtilizationRates(h).gpu))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    loader = prefetch(_slow_batches(BATCHES, load_s), depth=depth, device="cuda")
    for xb in loader:
        x = a
        for _ in range(k):
            x = a @ x
        (x.sum() + xb.sum()).item()  # one sync per step, as loss.item() does
    stop.set()
    thread.join()
    skip = min(len(readings) // 5, 10)  # NVML's first readings still cover the time before the loop
    kept = readings[skip:] or readings
    return (sum(kept) / len(kept) if kept else float("nan")), loader.stats.fraction


def _checksums(a: Any, k: int) -> tuple[list[list[float]], int]:
    """Batches whose (min, max, sum) on the GPU differ from their known fill: [[i, min, max, sum], ...]."""
    import torch

    from gridwatch import prefetch

    def filled() -> Iterator[Any]:
        for i in range(CHECKED_BATCHES):
            yield torch.full(SHAPE, float(i))

    stats = torch.zeros(CHECKED_BATCHES, 3, dtype=torch.float64, device="cuda")
    seen = 0
    for i, xb in enumerate(prefetch(filled(), depth=2, device="cuda")):
        x = a
        for _ in range(k):  # queue GPU work so the stream lags behind the loader: no sync anywhere
            x = a @ x
        stats[i] = torch.stack([xb.amin().double(), xb.amax().double(), xb.double().sum()])
        seen += 1
    got = stats.cpu().tolist()  # the one sync
    numel = SHAPE[0] * SHAPE[1]
    bad = [[float(i), *row] for i, row in enumerate(got) if row != [float(i), float(i), float(i * numel)]]
    return bad, seen
