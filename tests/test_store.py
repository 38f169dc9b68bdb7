import os
import sqlite3
import stat

import pytest

from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.results.store import ResultStore, StoreError

from helpers import write

GRID = '[run]\nname="s"\nfolds=2\n[[model]]\nname="m"\ntrainable="t.py:fit"\n[model.grid]\nx=[1,2]\n'


@pytest.fixture
def grid(tmp_path):
    write(tmp_path / "t.py", "def fit(config):\n    return {}\n")
    return parse_grid(GRID, tmp_path / "g.toml")


def test_wal_private_and_resume(tmp_path, grid):
    ts = trials.expand(grid)
    path = tmp_path / "runs" / "r.gridwatch.db"
    st = ResultStore(path)
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert st.begin(grid, ts, ["cpu0"]) == set()
    st.mark_running(ts[0].id, "cpu0", "cpu", 100.0)
    st.finish_trial(ts[0].id, "finished", 101.5, {"loss": 0.5}, None, [("loss", 1, 0.7, 100.5),
                                                                        ("loss", 2, 0.5, 101.0)], "log")
    st.mark_running(ts[1].id, "cpu0", "cpu", 102.0)
    st.finish_trial(ts[1].id, "failed", 103.0, {}, "boom", [], "")
    st.mark_running(ts[2].id, "cpu0", "cpu", 104.0)  # interrupted while running
    st.end_session("stopped")
    st.close()

    st = ResultStore(path)
    assert st.begin(grid, ts, ["cpu0"]) == {ts[0].id}, "only finished trials are skipped"
    rows = {r.id: r for r in st.trials()}
    assert rows[ts[0].id].metrics == {"loss": 0.5} and rows[ts[0].id].duration == 1.5
    assert rows[ts[1].id].state == "queued" and rows[ts[2].id].state == "queued"
    assert st.steps(ts[0].id) == [("loss", 1, 0.7), ("loss", 2, 0.5)]


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE x (a)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a gridwatch results file"):
        ResultStore(path)


def test_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"hello, I am not a database" * 100)
    with pytest.raises(StoreError, match="not a gridwatch results file"):
        ResultStore(path)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    st = ResultStore(path)
    st.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    st.db.commit()
    st.close()
    with pytest.raises(StoreError, match="newer gridwatch"):
        ResultStore(path)


def test_report_needs_existing_file(tmp_path):
    with pytest.raises(StoreError, match="no such results file"):
        ResultStore(tmp_path / "absent.db", create=False)


def test_an_older_file_gains_the_live_tables_and_superseded_trials_stay_out_of_the_run(tmp_path, grid):
    """A file written before running trials' values were written live gets `rev` and `logs` from its next
    writer; a reader of it as it is still works. Trials of an earlier grid are kept but never shown as the run's."""
    from gridwatch.results.replay import live_from_store

    ts = trials.expand(grid)
    path = tmp_path / "old.gridwatch.db"
    st = ResultStore(path)
    st.begin(grid, ts, ["cpu0"])
    st.mark_running(ts[0].id, "cpu0", "cpu", 100.0)
    st.finish_trial(ts[0].id, "finished", 101.0, {"loss": 0.5}, None, [("loss", 1, 0.5, 100.5)], "log")
    st.mark_running(ts[2].id, "cpu0", "cpu", 102.0)
    st.finish_trial(ts[2].id, "failed", 103.0, {}, "boom", [], "")
    st.end_session("stopped")
    st.close()
    assert ts[2].params == {"x": 2} and ts[3].params == {"x": 2}
    db = sqlite3.connect(path)  # as an older gridwatch left it: no `logs` table, no `rev` column
    db.executescript("DROP TABLE logs; DROP INDEX trials_rev; ALTER TABLE trials DROP COLUMN rev;")
    db.close()

    reader = ResultStore(path, create=False)
    assert not reader.has_rev and "logs" not in reader.tables
    assert reader.trials_changed(0) == ([], 0) and reader.logs(ts[0].id) == []
    live, _ = live_from_store(reader)
    assert live[ts[0].id].metrics == {"loss": 0.5}
    reader.close()

    smaller = parse_grid(GRID.replace("x=[1,2]", "x=[1]"), tmp_path / "g.toml")
    st = ResultStore(path)  # its next writer: a resume of a changed grid
    assert st.has_rev and "logs" in st.tables
    st.begin(smaller, trials.expand(smaller), ["cpu0"])
    assert st.superseded() == 1, "x=2's trial that ran is kept; the one that never ran held nothing and is gone"
    rows, rev = st.trials_changed(0)
    assert rev > 0 and len(rows) == 3
    live, _ = live_from_store(st)
    assert set(live) == {t.id for t in trials.expand(smaller)}, "superseded trials are not the run's"
    st.close()


def test_a_writer_opened_beside_a_reader_in_one_process_keeps_its_wal_when_another_process_looks(tmp_path, grid):
    """Opening (and closing) the results file by hand drops every POSIX lock this process holds on it, SQLite's
    too: the window resuming a file it shows would lose its share of the WAL, and the next process to open and
    close the file (`gridwatch runs`) would delete the WAL under the writer, losing what it writes."""
    import subprocess
    import sys

    ts = trials.expand(grid)
    path = tmp_path / "r.gridwatch.db"
    first = ResultStore(path)
    first.begin(grid, ts, ["cpu0"])
    first.end_session("stopped")
    first.close()
    reader = ResultStore(path, create=False)  # the window shows the run...
    assert reader.trials()
    writer = ResultStore(path)  # ...and resumes it, in the same process
    writer.begin(grid, ts, ["cpu0"])
    reader.close()
    look = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM trials'); c.close()"
    subprocess.run([sys.executable, "-c", look, str(path)], check=True)  # `gridwatch runs` from a terminal
    writer.mark_running(ts[0].id, "cpu0", "cpu", 100.0)
    writer.finish_trial(ts[0].id, "finished", 101.0, {"loss": 0.5}, None, [], "")
    assert os.path.exists(f"{path}-wal"), "the WAL the writer writes was deleted"
    other = subprocess.run([sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
                            "\"SELECT state FROM trials WHERE id=?\", (sys.argv[2],)).fetchone()[0])",
                            str(path), ts[0].id], check=True, capture_output=True, text=True)
    assert other.stdout.strip() == "finished", "another process sees what the writer committed"
    writer.end_session("done")
    writer.close()
