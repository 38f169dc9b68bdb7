"""ResultStore: one run per SQLite file (WAL), each trial committed atomically when it ends.

Resume reads which trials are `finished` and skips them; everything else runs again.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridwatch.grid.spec import GridSpec
from gridwatch.grid.trials import Trial, TrialState
from gridwatch.results.files import StoreError, WriterLock, private_dir, private_file
from gridwatch.telemetry.starvation import Verdict

SCHEMA_VERSION = 1
APP = "gridwatch"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, grid_path TEXT, grid_text TEXT, models TEXT,
    folds INTEGER, host TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), started REAL NOT NULL,
    ended REAL, status TEXT NOT NULL DEFAULT 'running', slots TEXT
);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL,
    config_key TEXT NOT NULL, params TEXT NOT NULL, fold INTEGER NOT NULL, device_pref TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued', slot TEXT, device TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, ended REAL, reason TEXT, metrics TEXT, log_tail TEXT, session_id INTEGER, ord INTEGER,
    peak_mem REAL, rev INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS telemetry (t REAL NOT NULL, key TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS telemetry_t ON telemetry (t);
CREATE TABLE IF NOT EXISTS verdicts (
    kind TEXT NOT NULL, subject TEXT NOT NULL, started REAL NOT NULL, ended REAL, severity TEXT,
    evidence TEXT, fix TEXT, PRIMARY KEY (kind, subject, started)
);
CREATE TABLE IF NOT EXISTS estimates (
    model TEXT NOT NULL, kind TEXT NOT NULL, seconds REAL, n INTEGER, peak_mem REAL, PRIMARY KEY (model, kind)
);
CREATE TABLE IF NOT EXISTS steps (
    trial_id TEXT NOT NULL REFERENCES trials(id), key TEXT NOT NULL, step INTEGER NOT NULL,
    value REAL, t REAL, PRIMARY KEY (trial_id, key, step)
);
CREATE TABLE IF NOT EXISTS logs (trial_id TEXT NOT NULL, t REAL NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_trial ON logs (trial_id);
"""
# `rev`: the trial row's last change, counted per file, so a reader following a live run reads only what changed.
# Added after the first files were written: a writer adds it to an older file; a reader of one goes without.
TRIAL_REV = "ALTER TABLE trials ADD COLUMN rev INTEGER NOT NULL DEFAULT 0"
TRIAL_REV_INDEX = "CREATE INDEX IF NOT EXISTS trials_rev ON trials (rev)"

DONE_STATES = (str(TrialState.FINISHED),)  # resume skips these
READ_TABLES = ("meta", "runs", "sessions", "trials", "estimates", "verdicts")  # every reader reads these
UNREADABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY",
              "SQLITE_FULL", "SQLITE_NOMEM", "SQLITE_AUTH")  # the file may be fine: the machine said no


def _none(v: float) -> float | None:
    return None if v != v else v


def previous_estimates(files: list[Path], exclude: Path) -> list[tuple[str, str, float, int, float]]:
    """What the newest earlier run of the same grid learned (files newest first), so this run starts informed."""
    for f in files:
        if f.resolve() == exclude.resolve():
            continue
        try:
            other = ResultStore(f, create=False)
        except StoreError:
            continue
        try:
            rows = other.estimates()
        except StoreError:
            rows = []
        finally:
            other.close()
        if rows:
            return rows
    return []



SUFFIX = ".gridwatch.db"


def run_folder(db: Path) -> Path:
    """Where a run keeps its trials' folders: beside its results file, named like it without the suffix."""
    db = db.absolute()
    name = db.name[: -len(SUFFIX)] if db.name.endswith(SUFFIX) else db.stem
    return db.parent / name


def trial_dir(db: Path, trial_id: str) -> Path:
    return run_folder(db) / "trials" / trial_id


def _one_line(text: str, limit: int = 200) -> str:
    """SQLite's words (or a check's report) as one short printable line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("*** in database")]
    line = "; ".join(lines)
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class TrialRow:
    id: str
    model: str
    config_key: str
    params: dict[str, Any]
    fold: int
    device_pref: str
    state: str
    slot: str | None
    device: str | None
    attempts: int
    started: float | None
    ended: float | None
    reason: str | None
    metrics: dict[str, float]
    log_tail: str
    peak_mem: float | None = None  # bytes: the trial's peak RSS (CPU slot) or reserved VRAM (GPU slot)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


class ResultStore:
    """A results file. `create`: make it if absent and give it the schema (a new run). `write` (default:
    `create`): this process runs on it (new or resumed), so it takes the file's writer lock, makes the file
    private and checks all of it; a reader checks the tables every reader reads (a few ms on a 4,000-trial
    file), and what it reads later is checked as it is read. Anything wrong is a one-line StoreError."""

    def __init__(self, path: str | Path, create: bool = True, write: bool | None = None) -> None:
        self.path = Path(path)
        self.lock: WriterLock | None = None
        self.run_id: int | None = None
        self.session_id: int | None = None
        self._rev = 0
        self.tables: set[str] = set()  # what this file has: an older one read as it is may lack newer tables
        self.has_rev = False
        write = create if write is None else write
        if not create and not self.path.is_file():
            raise StoreError(f"{self.path}: no such results file")
        if write:
            private_dir(self.path.parent)
            private_file(self.path)
            self.lock = WriterLock(self.path)
        try:
            self.db = self._open(create, write)
        except BaseException:
            self.release()
            raise

    def _open(self, create: bool, write: bool) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(str(self.path), timeout=10.0)
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        self.db = db
        try:
            if write:  # a reader changes nothing, not even a foreign file's journal mode
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            tables = self._check_ours(create)
            self._check_pages(None if write else [t for t in READ_TABLES if t in tables])
            if write:
                self._upgrade()
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.tables = tables
            self.has_rev = "rev" in {r[1] for r in db.execute("PRAGMA table_info(trials)")}
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error | ValueError):
                raise self._failure(exc) from None
            raise
        return db

    def _failure(self, exc: Exception) -> StoreError:
        """One line naming the file and what SQLite said."""
        words = _one_line(str(exc))
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code.startswith("SQLITE_NOTADB"):
            return StoreError(f"{self.path}: not a gridwatch results file ({words})")
        if code.startswith(UNREADABLE):
            return StoreError(f"{self.path}: cannot read results file ({words})")
        return StoreError(f"{self.path}: damaged results file ({words})")

    def _check_pages(self, tables: list[str] | None) -> None:
        """SQLite's quick_check: of the whole file (None), or of these tables only. It reads every page it
        checks, so readers leave out the big per-epoch and telemetry tables (checked as they are read)."""
        pragmas = ["PRAGMA quick_check(1)"] if tables is None else [f"PRAGMA quick_check({t})" for t in tables]
        for pragma in pragmas:
            said = [str(r[0]) for r in self.db.execute(pragma)]
            if said != ["ok"]:
                raise StoreError(f"{self.path}: damaged results file (database disk image is malformed: "
                                 f"{_one_line(' '.join(said))})")

    def _upgrade(self) -> None:
        """Tables and columns added since an older file was written (a writer of it adds them)."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
        with self.db:
            self.db.executescript(SCHEMA)
            if "rev" not in columns:
                self.db.execute(TRIAL_REV)
            self.db.execute(TRIAL_REV_INDEX)
        self._rev = int(self.db.execute("SELECT COALESCE(MAX(rev), 0) FROM trials").fetchone()[0])
        # Rows of `steps` and `logs` get rowids from these counters, never reused while this writer runs:
        # SQLite's own would reuse a deleted newest row's, and a reader following by rowid would skip the row.
        self._rowids = {t: int(self.db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0])
                        for t in ("steps", "logs")}

    def _next_rev(self) -> int:
        self._rev += 1
        return self._rev

    def _numbered(self, table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        first = self._rowids[table]
        self._rowids[table] = first + len(rows)
        return [(first + i + 1, *r) for i, r in enumerate(rows)]

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A read that meets damage the check on open could not see says so in one line."""
        try:
            yield
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise self._failure(exc) from None

    def _check_ours(self, create: bool) -> set[str]:
        """Its tables, once it is sure the file is gridwatch's (a new one gets the schema)."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            if not create:
                raise StoreError(f"{self.path}: empty file, not a gridwatch results file")
            # One transaction: a run killed while creating its file leaves no tables (a new file again), never
            # a half-made schema that every later open refuses.
            try:
                self.db.executescript(f"BEGIN;\n{SCHEMA}\nINSERT INTO meta VALUES ('app', '{APP}');\n"
                                      f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.rollback()
                raise
            return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(self.db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("app") != APP:
            raise StoreError(f"{self.path}: not a gridwatch results file")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer gridwatch (schema {version}); upgrade to open it")
        return tables

    # -- writing ---------------------------------------------------------------------------------------

    def begin(self, grid: GridSpec, trials: list[Trial], slots: list[str]) -> set[str]:
        """Record the run (once per file) and this session; return the ids already finished."""
        now = time.time()
        models = [{"name": m.name, "metric": m.metric, "goal": m.goal, "kind": m.kind, "target": m.target,
                   "device": m.device, "axes": list(m.grid), "fixed": m.fixed} for m in grid.models]
        with self.db:
            row = self.db.execute("SELECT id FROM runs ORDER BY id LIMIT 1").fetchone()
            if row is None:
                cur = self.db.execute(
                    "INSERT INTO runs (name, grid_path, grid_text, models, folds, host, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (grid.name, grid.path, grid.text, json.dumps(models), grid.folds, socket.gethostname(), now))
                self.run_id = int(cur.lastrowid or 0)
            else:
                self.run_id = int(row[0])
                self.db.execute("UPDATE runs SET grid_text=?, models=? WHERE id=?",
                                (grid.text, json.dumps(models), self.run_id))
            cur = self.db.execute("INSERT INTO sessions (run_id, started, slots) VALUES (?, ?, ?)",
                                  (self.run_id, now, json.dumps(slots)))
            self.session_id = int(cur.lastrowid or 0)
            self.db.executemany(
                "INSERT OR IGNORE INTO trials (id, run_id, model, config_key, params, fold, device_pref, ord) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(t.id, self.run_id, t.model, t.config_key, json.dumps(t.params), t.fold, t.device_pref, i)
                 for i, t in enumerate(trials)])
            ids = [t.id for t in trials]
            done = self._states(ids, DONE_STATES)
            self.db.executemany("UPDATE trials SET state='queued', slot=NULL, session_id=NULL "
                                "WHERE id=? AND state NOT IN ('finished')", [(i,) for i in ids])
            # Trials of an earlier version of the grid (their identity changed): kept, never run or ranked.
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS current_ids (id TEXT PRIMARY KEY)")
            self.db.execute("DELETE FROM current_ids")
            self.db.executemany("INSERT OR IGNORE INTO current_ids VALUES (?)", [(i,) for i in ids])
            # An earlier grid's trials that never ran hold nothing: gone. Those that ran stay, as superseded.
            self.db.execute("DELETE FROM trials WHERE id NOT IN (SELECT id FROM current_ids) AND attempts = 0")
            self.db.execute("UPDATE trials SET state='superseded' WHERE id NOT IN (SELECT id FROM current_ids)")
            self.db.execute("UPDATE trials SET rev=?", (self._next_rev(),))
        return done

    def superseded(self) -> int:
        """Trials of an earlier version of the grid, kept in the file."""
        return int(self.db.execute("SELECT COUNT(*) FROM trials WHERE state='superseded'").fetchone()[0])

    def _states(self, ids: list[str], states: tuple[str, ...]) -> set[str]:
        marks = ",".join("?" * len(states))
        rows = self.db.execute(f"SELECT id FROM trials WHERE state IN ({marks})", states).fetchall()
        wanted = set(ids)
        return {r[0] for r in rows if r[0] in wanted}

    def mark_running(self, trial_id: str, slot: str, device: str, started: float) -> None:
        with self.db:
            self.db.execute(
                "UPDATE trials SET state='running', slot=?, device=?, started=?, ended=NULL, reason=NULL, "
                "metrics=NULL, log_tail=NULL, peak_mem=NULL, attempts=attempts+1, session_id=?, rev=? WHERE id=?",
                (slot, device, started, self.session_id, self._next_rev(), trial_id))
            self.db.execute("DELETE FROM steps WHERE trial_id=?", (trial_id,))  # an earlier attempt's
            self.db.execute("DELETE FROM logs WHERE trial_id=?", (trial_id,))

    def requeue(self, trial_id: str, reason: str) -> None:
        with self.db:
            self.db.execute("UPDATE trials SET state='queued', reason=?, rev=? WHERE id=?",
                            (reason, self._next_rev(), trial_id))
            self.db.execute("DELETE FROM steps WHERE trial_id=?", (trial_id,))
            self.db.execute("DELETE FROM logs WHERE trial_id=?", (trial_id,))

    def finish_trial(self, trial_id: str, state: str, ended: float, metrics: dict[str, float],
                     reason: str | None, steps: list[tuple[str, int, float, float]], log_tail: str,
                     peak_mem: float | None = None) -> None:
        """One transaction: the trial's end, its final metrics, every per-epoch value (those written while it ran
        included) and its log tail (its live log lines give way to it), or none of it."""
        with self.db:
            self.db.execute("DELETE FROM steps WHERE trial_id=?", (trial_id,))
            self.db.executemany("INSERT OR REPLACE INTO steps (rowid, trial_id, key, step, value, t) "
                                "VALUES (?, ?, ?, ?, ?, ?)", self._numbered("steps", [(trial_id, *s) for s in steps]))
            self.db.execute("DELETE FROM logs WHERE trial_id=?", (trial_id,))
            self.db.execute("UPDATE trials SET state=?, ended=?, metrics=?, reason=?, log_tail=?, peak_mem=?, rev=? "
                            "WHERE id=?", (state, ended, json.dumps(metrics), reason, log_tail, peak_mem,
                                           self._next_rev(), trial_id))

    def add_live(self, steps: list[tuple[str, str, int, float, float]], logs: list[tuple[str, float, str]],
                 telemetry: list[tuple[float, str, float]]) -> None:
        """What running trials reported since the last call (per-epoch values, log lines) and the machine's
        telemetry, in one transaction, so a reader following the run sees it while the trials still run."""
        if not (steps or logs or telemetry):
            return
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO steps (rowid, trial_id, key, step, value, t) "
                                "VALUES (?, ?, ?, ?, ?, ?)", self._numbered("steps", steps))
            self.db.executemany("INSERT INTO logs (rowid, trial_id, t, line) VALUES (?, ?, ?, ?)",
                                self._numbered("logs", logs))
            self.db.executemany("INSERT INTO telemetry (t, key, value) VALUES (?, ?, ?)", telemetry)

    def add_telemetry(self, rows: list[tuple[float, str, float]]) -> None:
        if rows:
            with self.db:
                self.db.executemany("INSERT INTO telemetry (t, key, value) VALUES (?, ?, ?)", rows)

    def save_verdict(self, v: Verdict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (v.kind, v.subject, v.started, v.ended, v.severity, v.evidence, v.fix))

    def telemetry(self) -> list[tuple[float, str, float]]:
        if "telemetry" not in self.tables:
            return []
        with self._reading():
            rows = self.db.execute("SELECT t, key, value FROM telemetry ORDER BY t").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def verdicts(self) -> list[Verdict]:
        if "verdicts" not in self.tables:
            return []
        with self._reading():
            rows = self.db.execute("SELECT kind, subject, severity, evidence, fix, started, ended FROM verdicts "
                                   "ORDER BY started").fetchall()
        return [Verdict(r[0], r[1], r[2], r[3], r[4], r[5], r[6], active=False) for r in rows]

    def save_estimates(self, rows: list[tuple[str, str, float, int, float]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO estimates VALUES (?, ?, ?, ?, ?)",
                                [(m, k, _none(sec), n, _none(peak)) for m, k, sec, n, peak in rows])

    def estimates(self) -> list[tuple[str, str, float, int, float]]:
        if "estimates" not in self.tables:
            return []
        with self._reading():
            rows = self.db.execute("SELECT model, kind, seconds, n, peak_mem FROM estimates").fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def end_session(self, status: str) -> None:
        """The run's last write: after it the file is free for another run, even while this one shows it."""
        if self.session_id is None:
            return
        try:
            with self.db:
                self.db.execute("UPDATE sessions SET ended=?, status=? WHERE id=?",
                                (time.time(), status, self.session_id))
                self.db.execute("UPDATE trials SET state='queued', rev=? WHERE state='running' AND session_id=?",
                                (self._next_rev(), self.session_id))
        finally:
            self.release()

    def release(self) -> None:
        """Give up the writer lock (a run that ended, or a file that failed to open)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def close(self) -> None:
        self.db.close()
        self.release()

    # -- reading ---------------------------------------------------------------------------------------

    def run_info(self) -> dict[str, Any]:
        with self._reading():
            row = self.db.execute("SELECT name, grid_path, models, folds, created FROM runs ORDER BY id LIMIT 1"
                                  ).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: holds no run yet")
            return {"name": row[0], "grid_path": row[1], "models": json.loads(row[2] or "[]"), "folds": row[3],
                    "created": row[4]}

    def grid_text(self) -> str:
        with self._reading():
            row = self.db.execute("SELECT grid_text FROM runs ORDER BY id LIMIT 1").fetchone()
        if row is None or not row[0]:
            raise StoreError(f"{self.path}: holds no grid to resume")
        return str(row[0])

    def trials(self) -> list[TrialRow]:
        return self._trial_rows("ORDER BY ord, id", ())

    def trials_changed(self, after_rev: int) -> tuple[list[TrialRow], int]:
        """The trial rows changed since `after_rev`, and the newest rev (a live run's reader follows with it)."""
        if not self.has_rev:
            return [], after_rev
        with self._reading():
            newest = int(self.db.execute("SELECT COALESCE(MAX(rev), 0) FROM trials").fetchone()[0])
        if newest <= after_rev:
            return [], after_rev
        return self._trial_rows("WHERE rev > ? ORDER BY ord, id", (after_rev,)), newest

    def _trial_rows(self, where: str, args: tuple[Any, ...]) -> list[TrialRow]:
        with self._reading():
            rows = self.db.execute(
                "SELECT id, model, config_key, params, fold, device_pref, state, slot, device, attempts, started, "
                f"ended, reason, metrics, log_tail, peak_mem FROM trials {where}", args).fetchall()
            return [TrialRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                             r[11], r[12], json.loads(r[13] or "{}"), r[14] or "", r[15]) for r in rows]

    def steps(self, trial_id: str) -> list[tuple[str, int, float]]:
        return [(k, step, v) for k, step, v, _t in self.steps_with_time(trial_id)]

    def steps_with_time(self, trial_id: str) -> list[tuple[str, int, float, float]]:
        with self._reading():
            rows = self.db.execute("SELECT key, step, value, t FROM steps WHERE trial_id=? ORDER BY key, step",
                                   (trial_id,)).fetchall()
        return [(r[0], r[1], r[2], r[3] or 0.0) for r in rows]

    def all_steps(self) -> dict[str, list[tuple[str, int, float, float]]]:
        """Every trial's per-epoch values in one read (trial id -> (key, step, value, t))."""
        out: dict[str, list[tuple[str, int, float, float]]] = {}
        with self._reading():
            for r in self.db.execute("SELECT trial_id, key, step, value, t FROM steps ORDER BY trial_id, key, step"):
                out.setdefault(r[0], []).append((r[1], r[2], r[3], r[4] or 0.0))
        return out

    def rows_after(self, table: str, rowid: int) -> tuple[list[tuple[Any, ...]], int]:
        """Rows appended to `steps`, `logs` or `telemetry` after `rowid`, oldest first, and the newest rowid."""
        columns = {"steps": "trial_id, key, step, value, t", "logs": "trial_id, t, line", "telemetry": "t, key, value"}
        if table not in self.tables:
            return [], rowid
        with self._reading():
            rows = self.db.execute(f"SELECT rowid, {columns[table]} FROM {table} WHERE rowid > ? ORDER BY rowid",
                                   (rowid,)).fetchall()
        return [tuple(r[1:]) for r in rows], (rows[-1][0] if rows else rowid)

    def logs(self, trial_id: str) -> list[str]:
        """A running trial's log lines so far (a finished trial's are its log tail)."""
        if "logs" not in self.tables:
            return []
        with self._reading():
            return [r[0] for r in self.db.execute("SELECT line FROM logs WHERE trial_id=? ORDER BY rowid",
                                                  (trial_id,))]

    def data_version(self) -> int:
        """Changes when another connection (the run writing this file) commits: a cheap "anything new?"."""
        with self._reading():
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def slots(self) -> list[str]:
        """Every slot any session of the run had, in order of first use."""
        with self._reading():
            rows = self.db.execute("SELECT slots FROM sessions ORDER BY id").fetchall()
        seen: dict[str, None] = {}
        for r in rows:
            for sid in json.loads(r[0] or "[]"):
                seen.setdefault(str(sid), None)
        return list(seen)

    def sessions_time(self, open_until: float | None = None, skip: int | None = None) -> float:
        """How long the run ran: the sum of its sessions' spans, not the gaps between a run and its resume. This
        writer's own session is left out (its caller times it). A session with no end counts up to
        `open_until` (a run followed live: now), else up to its last trial's start or end (a run that died).
        `skip`: a session to leave out too."""
        total = 0.0
        with self._reading():
            rows = self.db.execute("SELECT id, started, ended FROM sessions").fetchall()
            for sid, started, ended in rows:
                if sid in (self.session_id, skip) or started is None:
                    continue
                end = ended if ended is not None else open_until
                if end is None:  # a run that died: its trials say when it last did something (the only scan)
                    end = self.db.execute("SELECT MAX(MAX(COALESCE(ended, 0), COALESCE(started, 0))) FROM trials "
                                          "WHERE session_id=?", (sid,)).fetchone()[0]
                total += max(0.0, (end or started) - started)
        return total

    def newest_session(self) -> int:
        """The newest session's id (0 before any): a resume of the file starts a new one."""
        with self._reading():
            return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM sessions").fetchone()[0])

    def last_status(self) -> str:
        """The newest session's status: done, failed, stopped, or running (a live run, or one that died)."""
        with self._reading():
            row = self.db.execute("SELECT status FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        return str(row[0]) if row else "new"
