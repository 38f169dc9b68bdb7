"""Throughput of one plain train(config) grid, three ways in one run: serial, multiprocessing.Pool, gridwatch.

    python benchmarks/grid_throughput.py [--slots N] [--scale F]

Prints wall times, the ratio gridwatch / Pool (target <= 1.0 on 2 cores) and the median dispatch gap on a
warm slot (one trial's end -> the next trial's start; target <= 50 ms). Checks all three agree exactly.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from core import results  # noqa: E402
from gridwatch.run.headless import plan_run, run_planned  # noqa: E402

from bench_trainable import train  # noqa: E402


def grid_configs(scale: float) -> tuple[list[dict], str]:
    """18 trials: 3 widths x 2 epoch counts x 3 folds, from ~0.3 s to ~3 s each on one core."""
    widths, epochs = [16, 64, 256], [max(1, round(e * scale)) for e in (12, 40)]
    configs = [{"width": w, "epochs": e, "fold": f, "n_folds": 3, "seed": 0}
               for w in widths for e in epochs for f in range(3)]
    toml = f"""
[run]
name = "throughput"
folds = 3
[[model]]
name = "mlp"
trainable = "{HERE / 'bench_trainable.py'}:train"
device = "cpu"
[model.grid]
width = {widths}
epochs = {epochs}
"""
    return configs, toml


def key(c: dict) -> tuple:
    return (c["width"], c["epochs"], c["fold"])


def run_serial(configs: list[dict]) -> tuple[float, dict]:
    t = time.perf_counter()
    out = {key(c): train(c)["loss"] for c in configs}
    return time.perf_counter() - t, out


def run_pool(configs: list[dict], n: int) -> tuple[float, dict]:
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(n) as pool:
        losses = pool.map(train, configs)
    return time.perf_counter() - t, {key(c): r["loss"] for c, r in zip(configs, losses, strict=True)}


def run_gridwatch(toml: str, n: int) -> tuple[float, dict, list[float]]:
    with tempfile.TemporaryDirectory() as d:
        grid = Path(d) / "grid.toml"
        grid.write_text(toml)
        t = time.perf_counter()
        planned = plan_run(grid, db=Path(d) / "r.db", cpu_slots=n, gpus="none")
        session = run_planned(planned)
        wall = time.perf_counter() - t
        rows = planned.store.trials()
        planned.store.close()
    assert session.status == "done", session.status
    out = {(r.params["width"], r.params["epochs"], r.fold): r.metrics["loss"] for r in rows}
    return wall, out, results.dispatch_gaps(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply epochs (trial length)")
    ap.add_argument("--rounds", type=int, default=3, help="Pool and gridwatch alternate this many times")
    args = ap.parse_args()
    configs, toml = grid_configs(args.scale)
    print(f"{len(configs)} trials, {args.slots} processes/slots, {args.rounds} alternating rounds")
    serial, ref = run_serial(configs)
    print(f"serial loop, one process:        {serial:7.2f} s")
    same, ratios, pools, gws, gaps = True, [], [], [], []
    for i in range(args.rounds):
        pool, b = run_pool(configs, args.slots)
        gw, c, g = run_gridwatch(toml, args.slots)
        same = same and ref == b == c
        pools.append(pool)
        gws.append(gw)
        ratios.append(gw / pool)
        gaps += g
        print(f"round {i + 1}: Pool({args.slots}) spawn {pool:6.2f} s   gridwatch {args.slots} slots {gw:6.2f} s"
              f"   ratio {gw / pool:.3f}")
    med = statistics.median
    print(f"same results all three ways:     {'yes' if same else 'NO'}")
    print(f"median wall: Pool {med(pools):.2f} s, gridwatch {med(gws):.2f} s, serial {serial:.2f} s")
    print(f"ratio gridwatch / Pool (median): {med(ratios):.3f}   (target <= 1.0, must be <= 1.05)")
    print(f"ratio serial / gridwatch:        {serial / med(gws):.3f}")
    if gaps:
        print(f"dispatch gap on a warm slot:     median {med(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms "
              f"over {len(gaps)} gaps (target median <= 50 ms)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
