"""The runs folder: where results go by default, and which files belong to which grid."""

import os
from dataclasses import replace

from gridwatch.cli import main
from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.results import runs
from gridwatch.results.files import lock_holder
from gridwatch.results.store import ResultStore

from helpers import write


def test_the_runs_folder_is_the_env_var_or_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(runs.ENV, str(tmp_path / "mine"))
    assert runs.runs_dir() == tmp_path / "mine"
    assert runs.new_db_path("g").parent == tmp_path / "mine" and runs.new_db_path("g").name.startswith("g-")
    monkeypatch.delenv(runs.ENV)
    assert runs.runs_dir().name == "runs" and "gridwatch" in str(runs.runs_dir())


def test_a_grid_finds_only_its_own_files_newest_first(tmp_path):
    names = ["exp-20260101-101010.gridwatch.db", "exp-b-20260101-101011.gridwatch.db",
             "exp-20260101-101012.gridwatch.db", "exp-notes.gridwatch.db"]
    for i, n in enumerate(names):
        (tmp_path / n).touch()
        os.utime(tmp_path / n, (1000 + i, 1000 + i))
    assert [p.name for p in runs.files_of("exp", tmp_path)] == [names[2], names[0]]
    assert runs.latest_db("exp-b", tmp_path).name == names[1]
    assert runs.latest_db("nope", tmp_path) is None


def test_an_unreadable_file_is_listed_as_such(tmp_path):
    (tmp_path / "broken-20260101-101010.gridwatch.db").write_bytes(b"not sqlite at all" * 100)
    (listed,) = runs.list_runs(tmp_path)
    assert listed.state == "unreadable" and listed.total == -1 and "not a gridwatch results file" in listed.best


# -- what `runs` says of each run: state by the writer lock, duration over sessions, read only when changed -----

GRID = '[run]\nname = "g"\nfolds = 2\n[[model]]\nname = "m"\ntrainable = "t.py:fit"\n[model.grid]\nx = [1, 2]\n'


def _begun(tmp_path):
    """A run in the runs folder whose session is still open: its store holds the writer lock."""
    write(tmp_path / "t.py", "def fit(config):\n    return {'acc': config['x']}\n")
    spec = parse_grid(GRID, tmp_path / "g.toml")
    ts = trials.expand(spec)
    store = ResultStore(tmp_path / "runs" / "g-20260101-101010.gridwatch.db")
    store.begin(spec, ts, ["cpu0"])
    store.mark_running(ts[0].id, "cpu0", "cpu", 1000.0)
    store.finish_trial(ts[0].id, "finished", 1007.0, {"acc": 1.0}, None, [], "")
    store.mark_running(ts[1].id, "cpu0", "cpu", 1008.0)
    return store


def test_a_held_file_is_running_and_one_left_by_a_dead_run_interrupted(tmp_path, monkeypatch, capsys):
    store = _begun(tmp_path)
    db = store.path
    assert lock_holder(db) is not None and lock_holder(db).pid == os.getpid()
    (live,) = runs.list_runs(tmp_path / "runs")
    assert live.state == "running" and live.holder == os.getpid() and (live.done, live.total) == (1, 4)
    monkeypatch.setenv(runs.ENV, str(tmp_path / "runs"))
    assert main(["runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "started", "duration", "state", "done", "best", "file"]
    assert f"running (pid {os.getpid()})" in out[2] and "1/4" in out[2]

    store.close()  # the lock goes, the session stays 'running': as after kill -9
    assert lock_holder(db) is None
    (dead,) = runs.list_runs(tmp_path / "runs", {db: live})
    assert dead.state == "interrupted" and dead.holder is None
    assert dead.ended == 1008.0, "a dead run ended at its last trial's last sign of life"
    assert main(["runs"]) == 0
    assert " interrupted " in capsys.readouterr().out


def test_an_unchanged_file_is_not_read_again(tmp_path):
    store = _begun(tmp_path)
    store.end_session("stopped")
    store.close()
    (first,) = runs.list_runs(tmp_path / "runs")
    assert first.state == "stopped" and first.duration is not None and first.duration >= 0
    (again,) = runs.list_runs(tmp_path / "runs", {first.path: first})
    assert again is first, "same size and mtime: the earlier listing stands"
    (fake,) = runs.list_runs(tmp_path / "runs", {first.path: replace(first, stamp=(0,))})
    assert fake is not first and fake.state == "stopped", "a changed stamp: read again"


def test_a_runs_duration_is_the_time_its_sessions_ran_a_dead_one_up_to_its_last_trial(tmp_path):
    import sqlite3

    store = _begun(tmp_path)  # session 1: trials at 1000-1007 and 1008, then it dies (never ends)
    path = store.path
    store.close()
    spec = parse_grid(GRID, tmp_path / "g.toml")
    again = ResultStore(path)  # session 2: a resume, 5 s long
    again.begin(spec, trials.expand(spec), ["cpu0"])
    again.end_session("done")
    again.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sessions SET started=990 WHERE id=1")
        conn.execute("UPDATE sessions SET started=5000, ended=5005 WHERE id=2")
    conn.close()
    (listing,) = runs.list_runs(tmp_path / "runs")
    assert listing.state == "done"
    # the dead session up to its last trial the file still credits to it (the one cut short was requeued by the
    # resume: 1007, when the first ended), plus the resume's 5 s, and not the gap between them
    assert listing.duration == (1007 - 990) + 5
