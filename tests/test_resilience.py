"""Nothing lost, nothing left behind: hangs, killed workers, killed apps, full disks, hostile values."""

import os
import random
import signal
import sqlite3
import subprocess
import sys

import psutil
import pytest

from gridwatch.run.headless import plan_run

from helpers import (
    REPO,
    alive,
    cli,
    cli_popen,
    descendants,
    finished_ids,
    gated_grid,
    grid,
    is_worker,
    running_workers,
    wait_for,
    worker_processes,
    write,
)

SLOW = """
import time
def train(config):
    time.sleep(config.get("sleep", 0.5))
    return {"s": float(config["fold"])}
"""


def _run(qtbot, planned, timeout=90_000):
    session = planned.session()
    with qtbot.waitSignal(session.finished, timeout=timeout):
        session.start()
    session.close()
    return session


def test_a_hanging_trial_times_out_and_the_rest_finish(qtbot, outside):
    write(outside / "hang.py", "import time\ndef fit(config):\n    if config['fold'] == 0:\n"
                               "        time.sleep(3600)\n    return {'s': 1.0}\n")
    g = grid(outside, '[[model]]\nname = "h"\ntrainable = "hang.py:fit"\ntimeout = 2\n[model.grid]\nx = [1]\n')
    planned = plan_run(g, db=outside / "r.db")
    session = _run(qtbot, planned)
    rows = {r.fold: r for r in planned.store.trials()}
    assert session.status == "failed"
    assert rows[0].state == "timeout" and rows[0].reason == "no progress for 2 s: worker killed"
    assert rows[1].state == "finished"


def test_kill_9_of_a_worker_mid_trial_is_shown_and_retried(qtbot, outside):
    write(outside / "slow.py", SLOW)
    g = grid(outside, '[[model]]\nname = "s"\ntrainable = "slow.py:train"\n[model.grid]\nx = [1, 2, 3]\n'
                      '[model.fixed]\nsleep = 1.0\n')
    planned = plan_run(g, db=outside / "r.db")
    session = planned.session()
    victim = {}

    def kill_first(trial_id):
        if not victim:
            [slot] = [r.slot for r in planned.store.trials() if r.id == trial_id and r.state == "running"]
            pid = session.worker_pids()[slot]
            victim[trial_id] = pid
            os.kill(pid, signal.SIGKILL)

    session.trial_started.connect(kill_first)
    with qtbot.waitSignal(session.finished, timeout=90_000):
        session.start()
    session.close()
    rows = {r.id: r for r in planned.store.trials()}
    [tid] = victim
    assert session.status == "done" and all(r.state == "finished" for r in rows.values())
    assert rows[tid].attempts == 2 and "worker killed by SIGKILL" in rows[tid].log_tail


def test_shell_metacharacters_stay_one_argument(outside):
    write(outside / "echo_arg.py", "import sys\nprint(f'arg={len(sys.argv[2])}')\nprint('got:', sys.argv[2])\n")
    g = grid(outside, '[[model]]\nname = "c"\ncommand = "python echo_arg.py --name {name}"\n[model.grid]\n'
                      'name = ["x; touch pwned", "$(touch pwned2)", "`touch pwned3` && echo hi | cat > pwned4"]\n',
             folds=2)
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert not list(outside.glob("pwned*")), "no shell ever ran"
    logs = [t for (t,) in sqlite3.connect(outside / "r.db").execute("SELECT log_tail FROM trials")]
    assert any("got: x; touch pwned" in t for t in logs)


def test_unwritable_results_folder_is_a_clear_error(outside):
    write(outside / "f.py", "def fit(config):\n    return {'s': 1}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "f.py:fit"\n')
    r = cli("run", str(g), "--db", "/proc/gridwatch-results.db", cwd=outside)
    assert r.returncode == 2 and "cannot create results file" in r.stderr and "Traceback" not in r.stderr


def test_disk_full_mid_run_stops_cleanly_and_keeps_what_was_committed(qtbot, outside, monkeypatch):
    write(outside / "slow.py", SLOW)
    g = grid(outside, '[[model]]\nname = "s"\ntrainable = "slow.py:train"\n[model.grid]\nx = [1, 2, 3, 4]\n'
                      '[model.fixed]\nsleep = 0.2\n', devices="cpu_slots = 1")
    planned = plan_run(g, db=outside / "r.db")
    real = planned.store.finish_trial
    calls = []

    def fill_up(*args, **kw):
        calls.append(args[0])
        if len(calls) > 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args, **kw)

    monkeypatch.setattr(planned.store, "finish_trial", fill_up)
    session = planned.session()
    notices = []
    session.notice.connect(notices.append)
    with qtbot.waitSignal(session.finished, timeout=60_000):
        session.start()
    session.close()
    assert session.status == "stopped" and any("disk is full" in n for n in notices)
    finished = [r for r in planned.store.trials() if r.state == "finished"]
    assert len(finished) == 2 and planned.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_million_trials_is_refused_with_a_clear_message(outside):
    write(outside / "f.py", "def fit(config):\n    return {'s': 1}\n")
    axis = list(range(1000))
    g = grid(outside, f'[[model]]\nname = "f"\ntrainable = "f.py:fit"\n[model.grid]\na = {axis}\nb = {axis}\n')
    r = cli("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    assert r.returncode == 2 and "2,000,000 trials" in r.stderr and "--max-trials" in r.stderr
    assert not (outside / "r.db").exists()


def test_no_listening_socket_during_a_run(outside):
    g = gated_grid(outside, "x = [1, 2, 3]")
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    try:
        # both workers are mid-trial (held at the gate): started, preloaded, talking to the CLI
        wait_for(lambda: len(running_workers(outside)) == 2, 60, "both slot workers running a trial")
        workers = worker_processes(proc.pid)
        assert {w.pid for w in workers} == running_workers(outside), "found the CLI's two slot workers"
        ours = {proc.pid, *(p.pid for p in descendants(proc.pid))}
        listening = [c for c in psutil.net_connections(kind="all")
                     if c.pid in ours and c.status == psutil.CONN_LISTEN]
        assert len(alive(workers)) == 2, "the workers were alive throughout the check"
        assert listening == []
    finally:
        (outside / "gate").touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert oct(os.stat(outside / "r.db").st_mode & 0o777) == "0o600"


WRITER = """
import sys, time
from gridwatch.results.store import ResultStore
from gridwatch.grid.spec import parse_grid
from gridwatch.grid import trials
grid = parse_grid(open(sys.argv[2]).read(), sys.argv[2])
ts = trials.expand(grid)
st = ResultStore(sys.argv[1])
st.begin(grid, ts, ["cpu0"])
print("ready", flush=True)
i = 0
while True:
    t = ts[i % len(ts)]
    st.mark_running(t.id, "cpu0", "cpu", time.time())
    steps = [("loss", k, 1.0 / (k + 1), time.time()) for k in range(200)]
    st.finish_trial(t.id, "finished", time.time(), {"loss": 0.1}, None, steps, "x" * 2000)
    st.add_telemetry([(time.time(), f"core{k}", 50.0) for k in range(64)])
    i += 1
"""


def _telemetry_rows(db):
    """Telemetry rows committed so far (WRITER adds 64 a round and never deletes any)."""
    if not db.exists():  # connecting would create it
        return 0
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_during_heavy_writes_never_corrupts_the_file(outside):
    write(outside / "f.py", "def fit(config):\n    return {'s': 1}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "f.py:fit"\n[model.grid]\nx = [1, 2, 3, 4, 5]\n')
    db = outside / "heavy.db"
    rng = random.Random(0)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(20):
        before = _telemetry_rows(db)
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(g)], stdout=subprocess.PIPE, text=True,
                             env=env)
        assert p.stdout.readline().strip() == "ready"
        # kill it mid-write, after a random number (1 to 8) of its write rounds has been committed: the poll
        # is not in step with the writer, so the kill lands anywhere in the round under way
        target = before + 64 * rng.randint(1, 8)
        wait_for(lambda t=target: _telemetry_rows(db) >= t, 60, "the writer committing its write rounds")
        p.kill()
        p.wait()
        p.stdout.close()
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 10
        conn.close()


def test_kill_9_of_the_cli_then_resume_gives_the_same_trials(outside):
    # four trials finish at once; the others are held at the gate while it is closed
    g = gated_grid(outside, "x = [1, 2, 3, 4, 5]", free=4)
    reference = outside / "ref.db"
    (outside / "gate").touch()
    assert cli("run", str(g), "--db", str(reference), "--quiet", cwd=outside).returncode == 0
    for f in [outside / "gate", *outside.glob("free-*"), *outside.glob("running-*")]:
        f.unlink()
    db = outside / "r.db"
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=outside)
    try:
        wait_for(lambda: len(finished_ids(db)) == 4 and len(running_workers(outside)) == 2, 60,
                 "four finished trials and both slot workers held mid-trial")
        kids = alive(descendants(proc.pid))
        workers = [k for k in kids if is_worker(k)]
        assert {w.pid for w in workers} == running_workers(outside), f"found the two slot workers among {kids}"
    finally:
        proc.kill()
        proc.communicate()
    wait_for(lambda: not alive(kids), 10, lambda: f"no descendant process left after kill -9 of the CLI: "
                                                  f"{alive(kids)}")
    before = finished_ids(db)
    assert len(before) == 4, "killed mid-run: four trials finished, six left for --resume"
    (outside / "gate").touch()
    r = cli("run", str(g), "--db", str(db), "--resume", "--quiet", cwd=outside)
    assert r.returncode == 0 and f"{10 - len(before)} trials to run" in r.stderr
    ids = {t for (t,) in sqlite3.connect(db).execute("SELECT id FROM trials WHERE state='finished'")}
    ref = {t for (t,) in sqlite3.connect(reference).execute("SELECT id FROM trials WHERE state='finished'")}
    assert ids == ref and len(ids) == 10
    attempts = dict(sqlite3.connect(db).execute("SELECT id, attempts FROM trials"))
    assert all(attempts[t] == 1 for t in before), "zero finished trials repeated"


@pytest.mark.parametrize("bad", ["raises", "nan"])
def test_bad_trainables_are_failed_and_left_out_of_the_leaderboard(outside, bad):
    write(outside / "b.py", "def fit(config):\n    if config['fold'] == 0:\n"
                            + ("        raise ValueError('boom')\n" if bad == "raises" else
                               "        return {'acc': float('nan')}\n") + "    return {'acc': 0.5}\n")
    g = grid(outside, '[[model]]\nname = "b"\ntrainable = "b.py:fit"\n')
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    assert r.returncode == 1
    assert "1/2" in r.stdout, "only the good fold counts in the leaderboard row"
    reason = "ValueError: boom" if bad == "raises" else "returned acc=nan"
    assert reason in r.stdout


def test_a_command_that_does_not_exist(outside):
    g = grid(outside, '[[model]]\nname = "c"\ncommand = "no-such-program-xyz --x {fold}"\n')
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    assert r.returncode == 1 and "command not found: no-such-program-xyz" in r.stdout


def test_a_results_file_from_a_newer_gridwatch(outside):
    db = outside / "new.gridwatch.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                       "INSERT INTO meta VALUES ('app', 'gridwatch'), ('schema_version', '99');")
    conn.close()
    r = cli("report", str(db), cwd=outside)
    assert r.returncode == 2 and "newer gridwatch" in r.stderr and "Traceback" not in r.stderr
