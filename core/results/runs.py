"""The runs folder: one place for every results file, the CLI's and the window's alike, so `--resume`,
the learned estimates and Open run… see every run. `$GRIDWATCH_RUNS` overrides it; `--db` names one file.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gridwatch.grid.trials import TrialState
from gridwatch.results.files import LockHolder, lock_holder
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


RUNNING, INTERRUPTED = "running", "interrupted"
UNREADABLE = "unreadable"  # a listing's state when the file cannot be read; `best` then says why


@dataclass(frozen=True)
class RunListing:
    path: Path
    name: str
    started: float | None  # the first session's start
    state: str  # done, failed, stopped; running (a process holds its writer lock), interrupted (a run died)
    done: int
    total: int
    best: str  # the leaderboard's top config, in words ("" before anything finished), or what is wrong
    ended: float | None = None  # the last session's end; for a live run, now; for a dead one, its last trial's end
    grid_path: str | None = None  # the grid file the run was started from
    holder: int | None = None  # the pid holding the writer lock (running), if it said
    stamp: tuple[int, ...] = ()  # size and mtime of the file and its WAL: unchanged means the same contents
    closed_s: float = 0.0  # the time its sessions ran, a live one's left out (a dead one's: to its last trial)
    open_since: float | None = None  # the start of its live session, counted up to `ended`

    @property
    def duration(self) -> float | None:
        """The time its sessions ran, not the days between a run and its resume; None before it started."""
        if self.started is None:
            return None
        still = self.ended - self.open_since if self.open_since is not None and self.ended is not None else 0.0
        return self.closed_s + max(0.0, still)


def list_runs(folder: Path | None = None, known: Mapping[Path, RunListing] | None = None) -> list[RunListing]:
    """Every results file in the folder, newest first; a file that cannot be read is listed as such. `known`
    (an earlier listing, by path): files whose stamp is the same are not read again, only their lock asked."""
    found = []
    for p in (folder or runs_dir()).glob(f"*{SUFFIX}"):
        stamp = _stamp(p)
        if stamp:  # gone meanwhile: not listed
            found.append((max(stamp[1], stamp[3]), p, stamp))
    found.sort(key=lambda f: f[0], reverse=True)
    known = known or {}
    out = []
    for _mtime, p, stamp in found:
        before = known.get(p)
        out.append(_relisted(before) if before is not None and before.stamp == stamp else _listing(p, stamp))
    return out


def _stamp(path: Path) -> tuple[int, ...]:
    """A WAL run writes its -wal file, not the results file, until a checkpoint: both count."""
    out: list[int] = []
    for p in (path, Path(f"{path}-wal")):
        try:
            st = p.stat()
        except OSError:
            if p is path:
                return ()
            out += [-1, -1]
            continue
        out += [st.st_size, st.st_mtime_ns]
    return tuple(out)


def _relisted(before: RunListing) -> RunListing:
    """An unchanged file: only whether a process holds it may have changed (a run that dies writes nothing);
    when that changed, it is read again."""
    holder = lock_holder(before.path)
    if holder is None and before.holder is None and before.state != RUNNING:
        return before
    if holder is not None and before.state == RUNNING:
        return replace(before, holder=holder.pid, ended=time.time())
    return _listing(before.path, before.stamp)


def _listing(path: Path, stamp: tuple[int, ...] = ()) -> RunListing:
    holder = lock_holder(path)
    try:
        store = ResultStore(path, create=False)
    except StoreError as exc:
        return _unreadable(path, exc, holder, stamp)
    try:
        info = store.run_info()
        rows = [r for r in store.trials() if r.state != TrialState.SUPERSEDED]  # an earlier grid's: not this run's
        status, started, ended, open_since = _sessions(store.db)
        # the time its sessions ran; a live one's is counted as it goes (from open_since), a dead one's up to
        # its last trial's start or end
        closed_s = store.sessions_time(skip=store.newest_session() if holder is not None else None)
        s = summarize(rows, info["models"], info["folds"])
        best = ""
        if s.board:
            c = s.board[0]
            best = f"{c.metric} {fixed(c.mean)} ({c.model} {params_text(c.params)})"
        if holder is not None:
            state, ended = RUNNING, time.time()
        elif status == RUNNING:
            state = INTERRUPTED
            ended = max((t for r in rows for t in (r.started, r.ended) if t is not None), default=ended)
        else:
            state = status
        return RunListing(path, info["name"], started or info["created"], state, s.ended, s.total, best, ended,
                          info["grid_path"], holder.pid if holder else None, stamp, closed_s,
                          open_since if state == RUNNING else None)
    except (StoreError, sqlite3.Error) as exc:
        return _unreadable(path, exc, holder, stamp)
    finally:
        store.close()


def _sessions(db: sqlite3.Connection) -> tuple[str, float | None, float | None, float | None]:
    """The last session's status, the first session's start, the last session's end (None if it has none), and
    the start of the last session if it did not end."""
    rows = db.execute("SELECT started, ended, status FROM sessions ORDER BY id").fetchall()
    if not rows:
        return "new", None, None, None
    started, ended, status = rows[-1]
    return str(status), rows[0][0], ended, started if ended is None else None


def _unreadable(path: Path, exc: Exception, holder: LockHolder | None = None,
                stamp: tuple[int, ...] = ()) -> RunListing:
    why = str(exc).removeprefix(f"{path}: ")  # the listing names the file already
    if holder is not None:  # a run is creating it right now
        return RunListing(path, path.name, None, RUNNING, 0, -1, "starting", time.time(), None, holder.pid, stamp)
    return RunListing(path, path.name, None, UNREADABLE, 0, -1, why, stamp=stamp)
