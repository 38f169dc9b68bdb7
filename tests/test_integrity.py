"""A results file's integrity with real files and the real CLI: one writer at a time, damaged files said in
one line, files and folders private whatever the umask, and reports linear in the number of columns."""

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch.results.report import TRIAL_COLUMNS, render_trials
from gridwatch.results.store import ResultStore, StoreError

from helpers import (
    alive,
    cli,
    cli_env,
    cli_popen,
    finished_ids,
    gated_grid,
    grid,
    running_workers,
    wait_for,
    worker_processes,
    write,
)

PAGE = 4096


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _lock(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _one_error_line(r: subprocess.CompletedProcess[str], db: Path, *said: str) -> str:
    """The command failed with exit 2 and said so in one line naming the file (and the words given)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(db) in lines[0] and all(s in lines[0] for s in said), lines[0]
    return lines[0]


# -- one writer per results file ------------------------------------------------------------------------


def test_a_live_run_holds_its_file_against_a_second_run_until_it_dies(outside):
    g = gated_grid(outside, "x = [1, 2]")
    proc = cli_popen("run", str(g), cwd=outside)  # into the runs folder, so `runs` sees it too
    try:
        wait_for(lambda: len(running_workers(outside)) == 2, 60, "both slot workers held mid-trial")
        (db,) = (outside / "runs").glob("*.gridwatch.db")
        for extra in ([], ["--resume"]):  # a second run, new or resumed, on the held file
            r = cli("run", str(g), "--db", str(db), *extra, cwd=outside)
            _one_error_line(r, db, f"pid {proc.pid}", "in use")
        r = cli("run", str(g), "--resume", cwd=outside)  # --resume finds the same file by itself
        _one_error_line(r, db, f"pid {proc.pid}")

        report = cli("report", str(db), "--format", "json", cwd=outside)  # reading stays allowed
        assert report.returncode == 0, report.stderr
        ids = [t["trial_id"] for t in json.loads(report.stdout)]
        assert len(ids) == 4
        listing = cli("runs", cwd=outside)
        assert listing.returncode == 0 and "running" in listing.stdout and db.name in listing.stdout
        logs = cli("logs", str(db), ids[0], cwd=outside)
        assert logs.returncode == 0, logs.stderr
        workers = worker_processes(proc.pid)
    finally:
        proc.kill()  # kill -9: nothing of the CLI gets to release the lock
        proc.communicate(timeout=10)
    wait_for(lambda: not alive(workers), 10, lambda: f"the workers exit by themselves: {alive(workers)}")
    assert _lock(db).read_text().split()[0] == str(proc.pid), "the dead holder's lock file is still there"
    (outside / "gate").touch()
    r = cli("run", str(g), "--db", str(db), "--resume", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert len(finished_ids(db)) == 4
    assert not _lock(db).exists(), "a run that ends removes its lock file"


def test_the_windows_resume_is_refused_while_a_cli_run_holds_the_file(qtbot, outside, monkeypatch):
    from gridwatch.gui import main_window
    from gridwatch.gui.app import get_qapp
    from gridwatch.run.devices import detect

    said: list[tuple[str, str]] = []
    monkeypatch.setattr(main_window.QMessageBox, "critical", lambda _parent, title, text: said.append((title, text)))
    g = gated_grid(outside, "x = [1, 2]", free=2)  # two trials finish at once, two are held
    db = outside / "r.db"
    proc = cli_popen("run", str(g), "--db", str(db), cwd=outside)
    try:
        wait_for(lambda: len(finished_ids(db)) == 2 and len(running_workers(outside)) == 2, 60,
                 "two finished trials and both slot workers held mid-trial")
        get_qapp()
        window = main_window.MainWindow(detect(), outside / "runs")
        qtbot.addWidget(window)
        window.open_results(db)  # Open run… reads it
        assert said == [] and window.trials.rowCount() == 4
        window.resume_opened()  # Resume run would write it: refused, in a dialog naming the CLI's pid
        assert window.session is None
        (title, text), = said
        assert title == "Cannot start the run" and f"pid {proc.pid}" in text and str(db) in text
        assert "\n" not in text
        window.close()
    finally:
        (outside / "gate").touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_the_lock_is_one_per_file_and_goes_with_its_holder(tmp_path):
    first = ResultStore(tmp_path / "a.gridwatch.db")
    with pytest.raises(StoreError, match=f"in use by another gridwatch run \\(pid {os.getpid()}\\)"):
        ResultStore(tmp_path / "a.gridwatch.db", create=False, write=True)
    other = ResultStore(tmp_path / "b.gridwatch.db")  # another file is another lock
    reader = ResultStore(tmp_path / "a.gridwatch.db", create=False)  # readers take no lock
    assert reader.trials() == []
    for st in (first, other, reader):
        st.close()
    assert not _lock(tmp_path / "a.gridwatch.db").exists()
    ResultStore(tmp_path / "a.gridwatch.db", create=False, write=True).close()


# -- damaged files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    """A real results file, written by the real CLI: 12 trials with per-epoch values."""
    folder = tmp_path_factory.mktemp("made")
    write(folder / "fit.py", """
        def fit(config, report):
            for epoch in range(30):
                report(loss=1.0 / (epoch + 1))
            return {"score": config["x"] + config["fold"]}
        """)
    g = grid(folder, '[[model]]\nname = "f"\ntrainable = "fit.py:fit"\n[model.grid]\nx = [1, 2, 3, 4, 5, 6]\n')
    db = folder / "r.gridwatch.db"
    r = cli("run", str(g), "--db", str(db), "--quiet", cwd=folder)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(db) >= 8 * PAGE
    return g, db


def _garbage_page(data: bytes, page: int) -> bytes:
    junk = bytes((i * 131 + 17) % 256 for i in range(PAGE))
    return data[: (page - 1) * PAGE] + junk + data[page * PAGE:]


DAMAGE = {
    "page 2 garbage": (lambda d: _garbage_page(d, 2), "damaged results file (database disk image is malformed"),
    "page 3 garbage": (lambda d: _garbage_page(d, 3), "damaged results file (database disk image is malformed"),
    "empty": (lambda d: b"", "empty file, not a gridwatch results file"),
    "truncated": (lambda d: d[: 2 * PAGE], "damaged results file (database disk image is malformed"),
    "truncated header": (lambda d: d[:50], "damaged results file (database disk image is malformed"),
    "not sqlite": (lambda d: b"# my notes\n" * 1000, "not a gridwatch results file (file is not a database)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_file_is_said_in_one_line_by_every_command(results_file, outside, damage):
    g, good = results_file
    spoil, words = DAMAGE[damage]
    db = outside / "runs" / "t-20260101-101010.gridwatch.db"  # in the runs folder, for `runs`
    db.parent.mkdir()
    db.write_bytes(spoil(good.read_bytes()))
    _one_error_line(cli("report", str(db), cwd=outside), db, words)
    _one_error_line(cli("report", str(db), "--format", "csv", cwd=outside), db, words)
    _one_error_line(cli("logs", str(db), "f-", cwd=outside), db, words)
    _one_error_line(cli("run", str(g), "--db", str(db), "--resume", cwd=outside), db, words)
    listing = cli("runs", cwd=outside)
    _one_error_line(listing, db, words)
    assert "unreadable" in listing.stdout and db.name in listing.stdout, "listed with the others all the same"


def test_a_run_checks_the_whole_file_and_a_read_checks_what_it_reads(results_file, outside):
    """Damage in the per-epoch table: `report` never reads it and still works; a resume, which would write
    into it, is refused; the window's replay, which reads it, says so in one line."""
    g, good = results_file
    conn = sqlite3.connect(good)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='steps'").fetchone()
    conn.close()
    db = outside / "r.gridwatch.db"
    db.write_bytes(_garbage_page(good.read_bytes(), root))
    report = cli("report", str(db), cwd=outside)
    assert report.returncode == 0 and report.stdout.count("finished") == 12, report.stderr
    _one_error_line(cli("run", str(g), "--db", str(db), "--resume", cwd=outside), db,
                    "damaged results file (database disk image is malformed")
    st = ResultStore(db, create=False)
    trial = st.trials()[0].id
    with pytest.raises(StoreError, match="damaged results file") as err:
        st.steps(trial)
    assert str(db) in str(err.value) and "\n" not in str(err.value)
    st.close()


def test_a_report_read_by_head_ends_quietly(outside):
    """`gridwatch report F | head -1`: the reader leaves early; the report ends with 0 and no traceback."""
    db = outside / "wide.gridwatch.db"
    _wide_store(db, 20_000)
    proc = subprocess.Popen([sys.executable, "-m", "gridwatch", "report", str(db)], cwd=outside,
                            env=cli_env(outside), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"trial_id")
    proc.stdout.close()  # far more than a pipe holds is left unread
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == "", err


# -- private files and folders --------------------------------------------------------------------------


def _umask0_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gridwatch", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lambda: os.umask(0))


def test_files_and_folders_are_private_whatever_the_umask(outside):
    g = gated_grid(outside, "x = [1]")
    env = cli_env(outside)
    env["GRIDWATCH_RUNS"] = str(outside / "data" / "runs")  # neither folder exists yet
    proc = _umask0_cli("run", str(g), cwd=outside, env=env)
    try:
        wait_for(lambda: len(running_workers(outside)) == 2, 60, "both slot workers held mid-trial")
        (db,) = (outside / "data" / "runs").glob("*.gridwatch.db")
        run = db.with_name(db.name.removesuffix(".gridwatch.db"))
        folders = [outside / "data", outside / "data" / "runs", run, run / "trials"]
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), _lock(db)]
        assert {str(p): oct(_mode(p)) for p in folders} == {str(p): "0o700" for p in folders}
        assert {str(p): oct(_mode(p)) for p in files} == {str(p): "0o600" for p in files}
    finally:
        (outside / "gate").touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _mode(db) == 0o600


def test_an_existing_results_file_it_writes_to_is_made_private(outside):
    write(outside / "fit.py", "def fit(config):\n    return {'s': 1}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "fit.py:fit"\n')
    given = outside / "given.db"
    given.touch()
    os.chmod(given, 0o644)
    env = cli_env(outside)
    for args in (["--db", str(given)], ["--db", str(given), "--resume"]):
        os.chmod(given, 0o644)
        proc = _umask0_cli("run", str(g), *args, cwd=outside, env=env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert _mode(given) == 0o600, args
    read = cli("report", str(given), cwd=outside)  # reading changes nothing
    assert read.returncode == 0 and _mode(given) == 0o600


# -- reports linear in rows x columns -------------------------------------------------------------------


def _wide_store(db: Path, n_metrics: int) -> list[str]:
    """A results file holding two trials: one with `n_metrics` metric names, one with a few of its own."""
    from gridwatch.grid import trials
    from gridwatch.grid.spec import parse_grid

    write(db.parent / "t.py", "def fit(config):\n    return {}\n")
    spec = parse_grid('[run]\nname="w"\nfolds=2\n[[model]]\nname="m"\ntrainable="t.py:fit"\n[model.grid]\n'
                      'x=[1]\n', db.parent / "g.toml")
    ts = trials.expand(spec)
    names = [f"m{i:05d}" for i in range(n_metrics)]
    st = ResultStore(db)
    st.begin(spec, ts, ["cpu0"])
    st.mark_running(ts[0].id, "cpu0", "cpu", 1.0)
    st.finish_trial(ts[0].id, "finished", 2.0, {k: float(i) for i, k in enumerate(names)}, None, [], "")
    st.mark_running(ts[1].id, "cpu0", "cpu", 2.0)
    st.finish_trial(ts[1].id, "finished", 3.0, {"zz_only_here": 1.0, names[-1]: 2.0}, None, [], "")
    st.end_session("done")
    st.close()
    return names


def test_columns_of_a_trial_with_20000_metrics(tmp_path):
    """Every metric once, in order of first appearance, after the fixed columns and the params, in every
    format (the time this takes, against json, is benchmarks/report_width.py's)."""
    db = tmp_path / "wide.gridwatch.db"
    names = _wide_store(db, 20_000)
    st = ResultStore(db, create=False)
    rows = st.trials()
    st.close()
    expected = [*TRIAL_COLUMNS, "param.x", *(f"metric.{k}" for k in names), "metric.zz_only_here"]
    header = next(csv.reader(io.StringIO(render_trials(rows, "csv", db))))
    assert header == expected
    records = list(csv.DictReader(io.StringIO(render_trials(rows, "csv", db))))
    assert records[1]["metric.zz_only_here"] == "1.0" and records[0]["metric.zz_only_here"] == ""
    shown = render_trials(rows, "table", db).splitlines()[0].split()
    assert shown[-20_001:] == [*names, "zz_only_here"] and len(shown) == len(set(shown))


def test_a_results_file_is_created_whole_or_not_at_all(tmp_path, monkeypatch):
    """A run killed while creating its file used to leave half a schema, refused by every later open."""
    from gridwatch.results import store as store_module

    path = tmp_path / "r.gridwatch.db"
    monkeypatch.setattr(store_module, "SCHEMA", store_module.SCHEMA + "\nCREATE TABLE trials (x);\n")  # fails last
    with pytest.raises((store_module.StoreError, sqlite3.Error)):
        store_module.ResultStore(path)
    assert path.exists(), "precondition: the file was made before its schema failed"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0] == 0
    monkeypatch.undo()
    store_module.ResultStore(path).close()  # a new file again: taken as new, not refused as damaged
