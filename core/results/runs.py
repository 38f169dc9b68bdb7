"""The runs folder: one place for every results file, the CLI's and the window's alike, so `--resume`,
the learned estimates and Open run… see every run. `$GRIDWATCH_RUNS` overrides it; `--db` names one file.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gridwatch.grid.trials import TrialState
from gridwatch.results.report import fixed, params_text
from gridwatch.results.store import SUFFIX, ResultStore, StoreError
from gridwatch.results.summary import summarize

ENV = "GRIDWATCH_RUNS"


def runs_dir() -> Path:
    """$GRIDWATCH_RUNS, else `runs` in the user data folder (~/.local/share/gridwatch/runs on Linux)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("gridwatch")) / "runs"


def new_db_path(name: str, folder: Path | None = None) -> Path:
    """`<name>-<date>-<time>.gridwatch.db`, with `-2`, `-3`... for runs started within the same second."""
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = (folder or runs_dir()) / f"{base}{SUFFIX}", 1
    while path.exists():
        n += 1
        path = path.with_name(f"{base}-{n}{SUFFIX}")
    return path


def files_of(name: str, folder: Path | None = None) -> list[Path]:
    """Results files named for the grid called `name`, newest first: `<name>-<date>-<time>.gridwatch.db`
    exactly, so grid "exp" never picks up "exp-b"'s files."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?" + re.escape(SUFFIX))
    found = [p for p in (folder or runs_dir()).glob(f"{name}-*{SUFFIX}") if pattern.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def latest_db(name: str, folder: Path | None = None) -> Path | None:
    """The newest results file of the grid called `name`."""
    found = files_of(name, folder)
    return found[0] if found else None


@dataclass(frozen=True)
class RunListing:
    path: Path
    name: str
    started: float | None
    state: str  # the last session's status: done, failed, stopped, or running (live, or it died)
    done: int
    total: int
    best: str  # the leaderboard's top config, in words ("" before anything finished), or what is wrong


def list_runs(folder: Path | None = None) -> list[RunListing]:
    """Every results file in the folder, newest first; a file that cannot be read is listed as such."""
    files = sorted((folder or runs_dir()).glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [_listing(f) for f in files]


UNREADABLE = "unreadable"  # a listing's state when the file cannot be read; `best` then says why


def _listing(path: Path) -> RunListing:
    try:
        store = ResultStore(path, create=False)
    except StoreError as exc:
        return _unreadable(path, exc)
    try:
        info = store.run_info()
        rows = [r for r in store.trials() if r.state != TrialState.SUPERSEDED]  # an earlier grid's: not this run's
        state = store.last_status()
        s = summarize(rows, info["models"], info["folds"])
        best = ""
        if s.board:
            c = s.board[0]
            best = f"{c.metric} {fixed(c.mean)} ({c.model} {params_text(c.params)})"
        return RunListing(path, info["name"], info["created"], state, s.ended, s.total, best)
    except (StoreError, sqlite3.Error) as exc:
        return _unreadable(path, exc)
    finally:
        store.close()


def _unreadable(path: Path, exc: Exception) -> RunListing:
    why = str(exc).removeprefix(f"{path}: ")  # the listing names the file already
    return RunListing(path, path.name, None, UNREADABLE, 0, -1, why)
