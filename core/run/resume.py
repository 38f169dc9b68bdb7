"""Resuming a run: which results file is this grid's, and what changed in the grid since it was written.

A results file records the grid file it came from (its resolved path) and the grid's text. `--resume`
takes the newest file of *this* grid file, whatever the run's name; an explicit `--db` written by another
grid is refused unless forced. What changed is said in words; which trials rerun follows from their ids,
which hash everything that decides a result (gridwatch.grid.trials.config_key).
"""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path
from typing import Any

from gridwatch.grid.spec import GridSpec


def written_by(db: Path) -> tuple[str, str] | None:
    """(run name, grid file path) a results file records; None where it records none or cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT name, grid_path FROM runs ORDER BY id LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return (str(row[0]), str(row[1] or "")) if row else None


def latest_of(grid: GridSpec, folder: Path, suffix: str) -> Path | None:
    """The newest results file in `folder` written by this grid file."""
    files = sorted(folder.glob(f"*{suffix}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((f for f in files if (w := written_by(f)) is not None and w[1] == grid.path), None)


def other_grid(db: Path, grid: GridSpec) -> str:
    """Why `db` is not this grid's results file ("" when it is, or holds no run yet)."""
    found = written_by(db)
    if found is None or not found[1] or found[1] == grid.path:
        return ""
    return f"{db} holds the results of another grid file ({found[1]}, run {found[0]!r})"


def changes(old_text: str, grid: GridSpec) -> list[str]:
    """What differs between the grid file a results file was written with and this one, in words (edits
    of a trainable's source are not seen here: their trials' ids change all the same)."""
    try:
        old, new = tomllib.loads(old_text or ""), tomllib.loads(grid.text)
    except tomllib.TOMLDecodeError:
        return []
    out = []
    for key, default in (("folds", 5), ("seed", 0)):
        before, now = _table(old, "run").get(key, default), _table(new, "run").get(key, default)
        if before != now:
            out.append(f"{key} {before} → {now}")
    was = {m.get("name"): m for m in _models(old)}
    for m in _models(new):
        before = was.pop(m.get("name"), None)
        if before is None:
            out.append(f"model {m.get('name')}: new")
        else:
            out += [f"model {m.get('name')}: {what}" for what in _model_changes(before, m)]
    out += [f"model {name}: removed (its results stay in the file, not ranked)" for name in was]
    return out


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    return value if isinstance(value, dict) else {}


def _models(data: dict[str, Any]) -> list[dict[str, Any]]:
    value = data.get("model", [])
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _model_changes(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key in ("trainable", "command", "cwd", "workdir", "repeats", "metrics_regex"):
        if was.get(key) != now.get(key):
            out.append(f"{key} {_show(was.get(key))} → {_show(now.get(key))}")
    for section in ("fixed", "grid"):
        before, after = _table(was, section), _table(now, section)
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                out.append(f"{section}.{key} {_show(before.get(key))} → {_show(after.get(key))}")
    return out


def _show(v: Any) -> str:
    return "(none)" if v is None else repr(v)
