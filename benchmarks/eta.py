"""How far the ETA is from the truth: run a grid headless (real workers) and check the ETA the run showed.

    .venv/bin/python benchmarks/eta.py [--grid FILE] [--runs N] [--cpu-slots N] [--gpus all|none|0,1] [--every]
                                       [--save FILE.json]

Runs the grid (the built-in demo grid by default) in-process with a RunSession, the way `gridwatch run` does,
into a fresh temporary results file (so nothing learned by an earlier run of the grid is used: the hardest
case). At every trial's end it reads `RunSession.progress().eta_s`, the figure the CLI's bar and the window's
status bar show, and the old formula's figure (remaining work by the scheduler's learned per-config estimates
/ slots, else the mean finished trial x trials left / slots). After the run it compares the ETAs given when
20/40/60/80 % of the trials were done with the true remaining time. Goal: every one within +-25 %.
Exit code 0 when every checked ETA of every run is within, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gridwatch.grid.checks import SpecError
from gridwatch.grid.trials import TrialState
from gridwatch.resources import DEMO_GRID
from gridwatch.run.headless import DeviceError, PlanError, StoreError, plan_run, run_planned
from gridwatch.run.progress import format_seconds
from gridwatch.run.session import RunSession

MILESTONES = (20, 40, 60, 80)
TOLERANCE = 0.25


@dataclass
class Reading:
    at: float  # seconds since the run started
    ended: int
    total: int
    eta: float | None
    old: float | None


def old_eta(session: RunSession, now: float) -> float | None:
    """The formula the ETA had before: predicted work / slots, else the mean finished trial as the unit."""
    lc = session.lifecycle
    running = [(lt.trial, lt.kind or "cpu", lt.started) for lt in lc.live.values()
               if lt.state == TrialState.RUNNING and lt.started is not None]
    kinds = {k for _t, k, _s in running} | {"cpu"}
    slots = max(1, len(session.pool.workers))
    work = lc.scheduler.predicted_work(now, kinds, running)
    if work is not None:
        return work / slots
    durations = [d for lt in lc.live.values() if lt.state == TrialState.FINISHED and (d := lt.duration) is not None]
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    queued = sum(lt.state == TrialState.QUEUED for lt in lc.live.values())
    return (queued * mean + sum(max(mean - (now - s), 0.0) for _t, _k, s in running)) / slots


def run_once(grid: str, cpu_slots: int | None, gpus: str | None, save: str | None = None
             ) -> tuple[list[Reading], float, int]:
    """Readings at each trial's end, the run's wall time, and its slot count; with `save`, the trials (model,
    config, grid values, slot, start and end) and the readings go to that JSON file."""
    readings: list[Reading] = []
    done_at: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        planned = plan_run(grid, Path(d) / "eta.gridwatch.db", cpu_slots=cpu_slots, gpus=gpus)

        def listen(session: RunSession) -> None:
            def on_ended(_tid: str) -> None:
                now = time.time()
                p = session.progress()
                readings.append(Reading(now - session.started_at, p.ended, p.total, p.eta_s, old_eta(session, now)))

            session.trial_ended.connect(on_ended)
            session.finished.connect(lambda _status: done_at.append(time.time()))

        session = run_planned(planned, on_session=listen)
        wall = (done_at[0] if done_at else time.time()) - session.started_at
        planned.store.close()
    if save:
        t0 = session.started_at
        trials = [{"id": lt.id, "model": lt.model, "config": lt.config_key, "params": lt.params, "slot": lt.slot,
                   "kind": lt.kind, "started": (lt.started or t0) - t0, "ended": (lt.ended or t0) - t0}
                  for lt in session.trials().values()]
        Path(save).write_text(json.dumps({"wall": wall, "slots": len(planned.slots), "trials": trials,
                                          "readings": [r.__dict__ for r in readings]}, default=str, indent=1))
    return readings, wall, len(planned.slots)


def error(eta: float | None, true: float) -> float | None:
    """Relative error; None without an ETA or at the very end (nothing left to be wrong about)."""
    if eta is None or true < 0.05:
        return None
    return (eta - true) / true


def pct(e: float | None) -> str:
    return "   --" if e is None else f"{100 * e:+5.0f}%"


def report(readings: list[Reading], wall: float, every: bool) -> list[float | None]:
    """Prints the table; returns each milestone's error (None: no ETA given)."""
    total = readings[-1].total if readings else 0
    print(f"{'done':>9}  {'at':>6}  {'ETA':>6}  {'true':>6}  {'error':>6}  {'within':>6}   "
          f"{'old ETA':>7}  {'old err':>7}")
    errors: list[float | None] = []
    for m in MILESTONES:
        r = next((r for r in readings if r.ended >= math.ceil(total * m / 100)), None)
        if r is None:
            continue
        true = wall - r.at
        e, o = error(r.eta, true), error(r.old, true)
        errors.append(e)
        ok = "yes" if e is not None and abs(e) <= TOLERANCE else "NO"
        print(f"{m:3d}% {r.ended:2d}/{total:<2d} {r.at:6.1f}s {_s(r.eta):>6} {_s(true):>6}  {pct(e):>6}  {ok:>6}   "
              f"{_s(r.old):>7}  {pct(o):>7}")
    if every:
        print("every trial's end:")
        for r in readings:
            true = wall - r.at
            e, o = error(r.eta, true), error(r.old, true)
            print(f"     {r.ended:2d}/{total:<2d} {r.at:6.1f}s {_s(r.eta):>6} {_s(true):>6}  {pct(e):>6}"
                  f"           {_s(r.old):>7}  {pct(o):>7}")
    return errors


def _s(s: float | None) -> str:
    return "--" if s is None else f"{s:.1f}s" if s < 60 else format_seconds(s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default=str(DEMO_GRID), help="grid file (default: the built-in demo grid)")
    ap.add_argument("--runs", type=int, default=1, help="run the grid this many times (the spread)")
    ap.add_argument("--cpu-slots", type=int, default=None)
    ap.add_argument("--gpus", default=None, help="all, none or indices like 0,1 (default: the grid's)")
    ap.add_argument("--every", action="store_true", help="also print the ETA at every trial's end")
    ap.add_argument("--save", metavar="FILE.json", help="save each run's trials and readings (FILE-<run>.json)")
    args = ap.parse_args()
    if not Path(args.grid).is_file():
        print(f"eta.py: {args.grid}: no such grid file", file=sys.stderr)
        return 2
    worst: dict[int, float] = {}
    missed = 0
    for i in range(args.runs):
        load = os.getloadavg()[0]
        save = f"{Path(args.save).with_suffix('')}-{i + 1}.json" if args.save else None
        try:
            readings, wall, slots = run_once(args.grid, args.cpu_slots, args.gpus, save)
        except (SpecError, PlanError, DeviceError, StoreError) as exc:
            print(f"eta.py: error: {exc}", file=sys.stderr)
            return 2
        print(f"\nrun {i + 1}/{args.runs}: {Path(args.grid).name}, {slots} slots, {wall:.1f} s wall "
              f"(machine load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)")
        for m, e in zip(MILESTONES, report(readings, wall, args.every), strict=False):
            bad = e is None or abs(e) > TOLERANCE
            missed += bad
            worst[m] = max(worst.get(m, 0.0), math.inf if e is None else abs(e))
    print(f"\nworst |error| over {args.runs} run(s): "
          + "  ".join(f"{m}%: {100 * w:.0f}%" for m, w in worst.items())
          + f"   -> {'all within' if not missed else f'{missed} outside'} +-{100 * TOLERANCE:.0f} %")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
