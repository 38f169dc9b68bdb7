"""The input-bound demo with prefetch off vs on, in one run: data-wait fraction, epoch time, their ratio.

    python benchmarks/prefetch.py [--epochs 3] [--rounds 2] [--heatmap 48]

CPU-side heatmap rendering sits on the training loop's critical path; with prefetch it overlaps the step.
On a machine with an NVIDIA GPU the model trains on it and the GPU's utilisation (NVML, 10 Hz) is printed
for both cases too (goal: >= 2x, or >= 85 % with prefetch).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridwatch.telemetry.nvml import open_gpu_reader  # noqa: E402


class GpuUtil:
    """Mean NVML utilisation of GPU 0 while a block runs."""

    def __init__(self) -> None:
        self.reader = open_gpu_reader()
        self.samples: list[float] = []
        self.stop = threading.Event()

    def __enter__(self) -> GpuUtil:
        self.samples, self.stop = [], threading.Event()
        if self.reader.count():
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(self.reader.read(0).util)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    @property
    def mean(self) -> float:
        good = [s for s in self.samples if s == s]
        return statistics.mean(good) if good else math.nan


def run(prefetch_on: bool, epochs: int, heatmap: int, device: str) -> tuple[float, float, float]:
    from gridwatch.demo import input_bound

    times: list[float] = []
    waits: list[float] = []
    last = [time.perf_counter()]

    def report(**m: float) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        waits.append(m["data_wait"])
        last[0] = now

    cfg = {"seed": 0, "fold": 0, "n_folds": 3, "device": device, "epochs": epochs, "prefetch": prefetch_on,
           "heatmap_size": heatmap}
    with GpuUtil() as gpu:
        last[0] = time.perf_counter()
        input_bound(cfg, report)
    return statistics.median(times), statistics.median(waits), gpu.mean


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--heatmap", type=int, default=48, help="heatmap side: CPU cost per batch grows with its square")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("GRIDWATCH_THREADS", "1")))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}" + ("" if device == "cuda" else " (no CUDA GPU: GPU utilisation not measured)"))
    run(True, 1, args.heatmap, device)  # warm-up: dataset cache, torch kernels
    results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for on in (False, True):
            results[on].append(run(on, args.epochs, args.heatmap, device))
    med = {on: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for on, rs in results.items()}
    for on in (False, True):
        t, w, g = med[on]
        gpu = f", GPU utilisation {g:.0f} %" if g == g else ""
        print(f"prefetch {'on ' if on else 'off'}: epoch {t:.3f} s, data-wait {100 * w:.1f} % of step time{gpu}")
    (t_off, w_off, g_off), (t_on, w_on, g_on) = med[False], med[True]
    print(f"ratio epoch time off / on: {t_off / t_on:.2f}x   data-wait off / on: {w_off / max(w_on, 1e-9):.1f}x")
    if g_off == g_off:
        print(f"ratio GPU utilisation on / off: {g_on / max(g_off, 1e-9):.2f}x (goal >= 2x or >= 85 % on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
