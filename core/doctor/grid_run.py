"""Run a small grid through the real `gridwatch run` CLI in a child process, and read what it left: the
results file (SQLite, read-only) and the notes the doctor's trainables wrote."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridwatch.doctor.proc import Done, child_env, run, run_until

TRIAL_COLUMNS = ("id", "model", "state", "slot", "attempts", "reason", "log_tail", "started", "ended")


def toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def model_toml(name: str, trainable: str, device: str, grid: dict[str, list[Any]], fixed: dict[str, Any]) -> str:
    lines = ["[[model]]", f"name = {toml_str(name)}", f"trainable = {toml_str(trainable)}",
             f"device = {toml_str(device)}", "retries = 0", "[model.grid]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in grid.items()]
    lines += ["[model.fixed]", *(f"{k} = {json.dumps(v)}" for k, v in fixed.items())]
    return "\n".join(lines) + "\n"


def grid_text(name: str, devices: str, models: str, folds: int = 2) -> str:
    return f"[run]\nname = {toml_str(name)}\nfolds = {folds}\nseed = 0\n\n[devices]\n{devices}\n{models}"


@dataclass(frozen=True)
class GridRun:
    folder: Path
    db: Path
    done: Done

    def trials(self) -> list[dict[str, Any]]:
        return [dict(zip(TRIAL_COLUMNS, r, strict=True)) for r in
                _query(self.db, f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials ORDER BY ord")]

    def notes(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.folder.glob(f"{kind}-*.json"))]

    def problem(self) -> str:
        """Why the run itself went wrong ("" when every trial finished)."""
        trials = self.trials()
        if self.done.timed_out:
            return f"gridwatch run gave no result within {self.done.wall_s:.0f} s"
        if not trials:
            return f"gridwatch run: {self.done.why()}"
        bad = [t for t in trials if t["state"] != "finished"]
        if bad:
            return f"{len(bad)}/{len(trials)} trials not finished ({bad[0]['state']}: {bad[0]['reason']})"
        return ""


def verdicts(db: Path) -> list[tuple[str, str, str, str]]:
    """(kind, subject, severity, evidence) of every starvation verdict stored so far."""
    return [(r[0], r[1], r[2], r[3]) for r in _query(db, "SELECT kind, subject, severity, evidence FROM verdicts")]


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet, or mid-creation
        return []


def run_grid(work: Path, name: str, devices: str, models: str, args: list[str], timeout: float,
             until: Callable[[Path], bool] | None = None, folds: int = 2) -> GridRun:
    """Write the grid into work/name/ and run it to its end (or until `until(db)`, then Ctrl-C)."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    grid = folder / "grid.toml"
    grid.write_text(grid_text(name, devices, models, folds), encoding="utf-8")
    db = folder / "results.gridwatch.db"
    cmd = [sys.executable, "-P", "-m", "gridwatch", "run", str(grid), "--db", str(db), "--quiet", *args]
    env = child_env({"GRIDWATCH_RUNS": str(folder / "runs")})
    if until is None:
        done = run(cmd, timeout, env, cwd=str(folder))
    else:
        done = run_until(cmd, lambda: until(db), timeout, env, cwd=str(folder))
    return GridRun(folder, db, done)
