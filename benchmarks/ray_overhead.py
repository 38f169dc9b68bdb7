"""The same grid through local slots and through the Ray backend, in one run: wall times and their ratio.

    python benchmarks/ray_overhead.py [--configs 9] [--work 40] [--rounds 2]

The grid is a plain `train(config)` (fixed numpy work per trial, no sleeps) x 2 folds on 2 slots. Ray runs on a
local head on loopback, as `gridwatch run GRID --ray local` starts it. Reported:

- local: the run on local slots (QProcess workers), with no Ray head running;
- Ray: the same run on Ray actors, the head already up (joining an existing cluster); goal <= 1.3x local;
- Ray incl. head: as `--ray local` costs end to end (the head's start and stop added to the Ray run).

Rounds go local, Ray, Ray, local (and so on), so drift on a noisy machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from gridwatch.cluster.connect import connect, disconnect
from gridwatch.run.headless import plan_run, run_planned

GOAL = 1.3

TRAIN = """
import numpy as np

def train(config):
    rng = np.random.default_rng(config["seed"] * 10 + config["fold"])
    a = rng.standard_normal((256, 256))
    acc = 0.0
    for _ in range(config["work"]):
        a = np.tanh(a @ a.T / 256)
        acc += float(a[0, 0])
    return {"score": acc + config["x"]}
"""

GRID = """
[run]
name = "ray-overhead"
folds = 2
[devices]
cpu_slots = 2
gpus = "none"
[[model]]
name = "plain"
trainable = "train.py:train"
metric = "score"
[model.grid]
x = [{xs}]
[model.fixed]
work = {work}
"""


def ray_quiet(timeout_s: float = 20.0) -> None:
    """Before a local round: the last head's processes (raylet, GCS, its idle workers) have ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in psutil.Process().children(recursive=True) if _ray_process(p)]
        if not left:
            return
        time.sleep(0.1)


def _ray_process(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE and ("ray" in p.name() or "gcs_server" in p.name()
                                                       or "ray/" in " ".join(p.cmdline()[:3]))
    except psutil.Error:
        return False


def one(grid: Path, folder: Path, label: str, ray: str | None) -> float:
    if ray is None:
        ray_quiet()
    planned = plan_run(grid, db=folder / f"{label}.gridwatch.db", ray=ray)
    t = time.perf_counter()
    session = run_planned(planned)
    wall = time.perf_counter() - t
    done = sum(1 for r in planned.store.trials() if r.state == "finished")
    planned.store.close()
    assert session.status == "done" and done == len(planned.trials), f"{label}: {session.status}, {done} done"
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=9, help="configs (x 2 folds = trials)")
    ap.add_argument("--work", type=int, default=300, help="matrix steps per trial (about 1.5 ms each on one core)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gw-ray-bench-"))
    (folder / "train.py").write_text(TRAIN)
    grid = folder / "grid.toml"
    grid.write_text(GRID.format(xs=", ".join(str(i) for i in range(args.configs)), work=args.work))
    local: list[float] = []
    ray_walls: list[float] = []
    starts: list[float] = []
    stops: list[float] = []
    for r in range(args.rounds):
        if r % 2 == 0:
            local.append(one(grid, folder, f"local{r}", None))
        t = time.perf_counter()
        connect("local")
        starts.append(time.perf_counter() - t)
        ray_walls.append(one(grid, folder, f"ray{r}", "local"))
        t = time.perf_counter()
        disconnect()
        stops.append(time.perf_counter() - t)
        if r % 2 == 1:
            local.append(one(grid, folder, f"local{r}", None))
    if len(local) < len(ray_walls):
        local.append(one(grid, folder, "local-last", None))
    lo, ry = statistics.median(local), statistics.median(ray_walls)
    head = statistics.median(starts) + statistics.median(stops)
    n = args.configs * 2
    print(f"grid: {n} trials ({args.configs} configs x 2 folds) on 2 slots, {args.rounds} rounds each")
    print(f"local slots          : {lo:6.2f} s  (rounds: {', '.join(f'{w:.2f}' for w in local)})")
    print(f"Ray, head running    : {ry:6.2f} s  (rounds: {', '.join(f'{w:.2f}' for w in ray_walls)})")
    print(f"Ray head start + stop: {head:6.2f} s  (start {statistics.median(starts):.2f}, "
          f"stop {statistics.median(stops):.2f})")
    ok = "meets" if ry / lo <= GOAL else "misses"
    print(f"ratio Ray / local              : {ry / lo:.2f}x  ({ok} the goal <= {GOAL}x)")
    print(f"ratio --ray local / local (end to end, head included): {(ry + head) / lo:.2f}x")


if __name__ == "__main__":
    main()
