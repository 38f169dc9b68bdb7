"""Soak: many short runs, each interrupted at a random moment, then resumed; nothing may be lost or left.

    python benchmarks/soak.py [--runs 200] [--seed 0] [--trials 8]

Each round runs the real CLI on a small grid in a fresh folder, interrupts it after a random delay in one of
three ways — kill -9 of the CLI, kill -9 of one of its workers, SIGINT (Ctrl-C) — then runs `--resume` until
the grid is done. After each round it checks:
  * `PRAGMA integrity_check` of the results file is "ok";
  * every trial's metrics equal those of one uninterrupted run (the trainable is deterministic);
  * no process of the round is left: none carries the round's marker in its environment (the workers, and
    the children and setsid'd grandchildren the trainable starts, inherit it).
Not part of the test suite (it takes minutes); prints the figures at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import psutil

TRAINABLE = """
import hashlib, json, os, subprocess, sys, time
def fit(config):
    # a child and a setsid'd grandchild that would outlive the trial if nothing ended them
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    time.sleep(config["sleep"])
    blob = json.dumps([config["lr"], config["fold"], config["seed"]])
    return {"acc": int(hashlib.sha1(blob.encode()).hexdigest()[:6], 16) / 16**6}
"""


def grid_text(trials: int) -> str:
    lrs = ", ".join(str(0.1 * (i + 1)) for i in range(max(1, trials // 2)))
    return textwrap.dedent(f"""
        [run]
        name = "soak"
        folds = 2
        [devices]
        cpu_slots = 2
        [[model]]
        name = "m"
        trainable = "soak_train.py:fit"
        retries = 3
        [model.grid]
        lr = [{lrs}]
        [model.fixed]
        sleep = 0.5
        """)


def run_cli(folder: Path, marker: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, GRIDWATCH_RUNS=str(folder / "runs"), GRIDWATCH_SOAK=marker)
    return subprocess.Popen([sys.executable, "-m", "gridwatch", "run", "grid.toml", "--db", "r.gridwatch.db",
                             "--quiet", *args], cwd=folder, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def results(db: Path) -> dict[str, dict[str, float]]:
    """Finished trials' metrics; {} for a file the killed CLI had not finished creating."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT id, state, metrics FROM trials").fetchall()
    except sqlite3.Error:
        return {}
    return {tid: json.loads(m or "{}") for tid, state, m in rows if state == "finished"}


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def marked(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("GRIDWATCH_SOAK") == marker and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def strays_after(marker: str, within_s: float = 10.0) -> int:
    """Processes of the round still alive `within_s` after the round ended (0 is the only good answer)."""
    deadline = time.monotonic() + within_s
    while True:
        left = marked(marker)
        if not left or time.monotonic() > deadline:
            for p in left:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            return len(left)
        time.sleep(0.2)


def interrupt(cli: subprocess.Popen[str], how: str, rng: random.Random) -> None:
    if how == "sigint":
        cli.send_signal(signal.SIGINT)
    elif how == "kill-cli":
        cli.kill()
    else:  # kill one worker: the run goes on (the trial is retried) and ends by itself
        try:
            workers = psutil.Process(cli.pid).children()
        except psutil.NoSuchProcess:
            workers = []
        if workers:
            rng.choice(workers).kill()


def one_round(base: Path, i: int, rng: random.Random, trials: int, expected: dict[str, dict[str, float]]
              ) -> dict[str, object]:
    folder = base / f"round{i}"
    folder.mkdir()
    (folder / "soak_train.py").write_text(TRAINABLE, encoding="utf-8")
    (folder / "grid.toml").write_text(grid_text(trials), encoding="utf-8")
    marker = f"soak-{os.getpid()}-{i}"
    how = rng.choice(["kill-cli", "kill-worker", "sigint"])
    cli = run_cli(folder, marker)
    time.sleep(rng.uniform(0.3, 2.5))
    interrupt(cli, how, rng)
    cli.wait(timeout=120)
    resumes = 0
    started = time.monotonic()
    fresh = False  # `--resume` refused the file (should not happen: files are created whole); deleted, run anew
    while (not (folder / "r.gridwatch.db").exists() or len(results(folder / "r.gridwatch.db")) < len(expected)):
        resumes += 1
        resume = (folder / "r.gridwatch.db").exists() and not fresh
        again = run_cli(folder, marker, "--resume") if resume else run_cli(folder, marker)
        _, err = again.communicate(timeout=300)
        if resume and again.returncode == 2:  # refused (holds no run, half-made): start anew, as a user would
            fresh = True
            for f in folder.glob("r.gridwatch.db*"):
                f.unlink()
            continue
        if again.returncode not in (0, 1) or resumes > 5:
            return {"how": how, "ok": False, "why": f"resume exit {again.returncode}: {err.strip()[-300:]}"}
    db = folder / "r.gridwatch.db"
    check, got = integrity(db), results(db)
    strays = strays_after(marker)
    ok = check == "ok" and got == expected and strays == 0
    why = "" if ok else f"integrity {check!r}, {len(got)}/{len(expected)} equal results, {strays} strays"
    return {"how": how, "ok": ok, "why": why, "resumes": resumes, "resume_s": time.monotonic() - started,
            "strays": strays, "integrity": check, "equal": got == expected, "fresh": fresh}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="gridwatch-soak-") as tmp:
        base = Path(tmp)
        ref = base / "reference"
        ref.mkdir()
        (ref / "soak_train.py").write_text(TRAINABLE, encoding="utf-8")
        (ref / "grid.toml").write_text(grid_text(args.trials), encoding="utf-8")
        marker = f"soak-{os.getpid()}-ref"
        run_cli(ref, marker).wait(timeout=300)
        expected = results(ref / "r.gridwatch.db")
        print(f"reference: {len(expected)} trials, uninterrupted; strays after it: {strays_after(marker)}")
        outcomes: list[dict[str, object]] = []
        for i in range(args.runs):
            out = one_round(base, i, rng, args.trials, expected)
            outcomes.append(out)
            mark = "ok" if out["ok"] else f"FAIL: {out['why']}"
            print(f"[{i + 1}/{args.runs}] {out['how']:<11} resumes {out.get('resumes', '-')}  {mark}", flush=True)
    by_how = Counter(str(o["how"]) for o in outcomes)
    failed = [o for o in outcomes if not o["ok"]]
    strays = sum(int(o.get("strays", 0) or 0) for o in outcomes)
    bad = sum(o.get("integrity") not in (None, "ok") for o in outcomes)
    print(f"\n{len(outcomes)} rounds ({', '.join(f'{k} {v}' for k, v in sorted(by_how.items()))}): "
          f"{len(outcomes) - len(failed)} ok, {len(failed)} failed")
    unequal = sum(o.get("equal") is False for o in outcomes)
    resumed = [float(o["resume_s"]) for o in outcomes if "resume_s" in o]  # type: ignore[arg-type]
    print(f"integrity_check not ok: {bad}; stray processes: {strays}; "
          f"results unequal to the uninterrupted run: {unequal}; "
          f"interruption to completion: mean {sum(resumed) / max(1, len(resumed)):.1f} s; "
          f"killed before its file held a run (started anew): {sum(bool(o.get('fresh')) for o in outcomes)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
