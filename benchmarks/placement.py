"""One mixed grid run three ways in the same run: CPU slots only, GPU slots only, and both together.

    python benchmarks/placement.py [--epochs 8]

Small models train about as fast on a CPU core as on a GPU, so CPU and GPU should train different trials
at the same time (goal: mixed faster than the better of CPU-only and GPU-only). Without an NVIDIA GPU only
the CPU case runs, and the GPU cases are reported as needing a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import devices  # noqa: E402
from gridwatch.run.headless import plan_run, run_planned  # noqa: E402

GRID = """
[run]
name = "placement"
folds = 3
[[model]]
name = "mlp"
trainable = "gridwatch.demo:mlp"
device = "any"
metric = "val_acc"
[model.grid]
hidden_layers = [1, 2, 3]
batch_size = [32, 128]
[model.fixed]
epochs = {epochs}
[[model]]
name = "lstm"
trainable = "gridwatch.demo:lstm"
device = "any"
metric = "val_acc"
[model.grid]
hidden = [32, 64]
[model.fixed]
epochs = {epochs}
"""


def run(grid: Path, folder: Path, label: str, cpu_slots: int | None, gpus: str | None) -> tuple[float, dict]:
    planned = plan_run(grid, db=folder / f"{label}.gridwatch.db", cpu_slots=cpu_slots, gpus=gpus)
    t = time.perf_counter()
    session = run_planned(planned)
    wall = time.perf_counter() - t
    rows = planned.store.trials()
    planned.store.close()
    assert session.status == "done", f"{label}: {session.status}"
    placed: dict[str, int] = {}
    for r in rows:
        kind = "gpu" if (r.slot or "").startswith("gpu") else "cpu"
        placed[kind] = placed.get(kind, 0) + 1
    return wall, placed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    machine = devices.detect()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        grid = folder / "grid.toml"
        grid.write_text(GRID.format(epochs=args.epochs))
        cpu, placed = run(grid, folder, "cpu-only", None, "none")
        print(f"CPU only ({devices.default_cpu_slots(machine.physical_cores)} slots): {cpu:6.1f} s  {placed}")
        if not machine.gpus:
            print(f"GPU only and mixed: need an NVIDIA GPU ({machine.gpu_note}); not run")
            return 0
        gpu, placed = run(grid, folder, "gpu-only", 0, "all")
        print(f"GPU only ({len(machine.gpus)} GPU):      {gpu:6.1f} s  {placed}")
        mixed, placed = run(grid, folder, "mixed", None, "all")
        print(f"mixed CPU + GPU:           {mixed:6.1f} s  {placed}")
        best = min(cpu, gpu)
        print(f"ratio mixed / best single: {mixed / best:.3f}  (goal < 1.0)   CPU/mixed {cpu / mixed:.2f}x  "
              f"GPU/mixed {gpu / mixed:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
