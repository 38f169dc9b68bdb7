"""The real `gridwatch` CLI in a child process: end to end, reports, Ctrl-C and --resume."""

import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from helpers import (
    REPO,
    alive,
    cli,
    cli_env,
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

ARGPARSE_SCRIPT = """
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--device", default="cpu")
a = p.parse_args()
for step in range(a.steps):
    print(f"step {step}: loss: {1.0 / (step + 1) * a.lr:.3f}")
print(f"acc={0.5 + a.lr:.2f} device={a.device}")
"""


def test_command_trainable_captures_each_loss_step(outside):
    write(outside / "train.py", ARGPARSE_SCRIPT)
    g = grid(outside, """
        [[model]]
        name = "script"
        command = "python train.py --lr {lr} --steps {steps} --device {device}"
        metric = "loss"
        [model.grid]
        lr = [0.1, 0.2]
        [model.fixed]
        steps = 4
        """)
    r = cli("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    assert r.returncode == 0, r.stderr
    assert "Leaderboard" in r.stdout and "loss ↓" in r.stdout and "speedup" in r.stdout
    db = sqlite3.connect(outside / "r.db")
    steps = db.execute("SELECT s.step, s.value FROM steps s JOIN trials t ON t.id = s.trial_id "
                       "WHERE s.key='loss' AND t.fold = 0 ORDER BY t.params, s.step").fetchall()
    assert [s for s, _ in steps] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert [v for _, v in steps[:4]] == [0.1, 0.05, 0.033, 0.025], "lr=0.1's steps"
    finals = [json.loads(m) for (m,) in db.execute("SELECT metrics FROM trials")]
    assert all(m["acc"] in (0.6, 0.7) and m["loss"] in (0.025, 0.05) for m in finals)
    tails = [t for (t,) in db.execute("SELECT log_tail FROM trials")]
    assert all("step 0: loss:" in t and "device=cpu" in t for t in tails), "the script's output is the log"


def test_report_formats(outside):
    write(outside / "fit.py", "def train(config):\n    return {'score': config['a'] * 10 + config['fold']}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "fit.py:train"\n[model.grid]\na = [1, 2]\nb = ["x"]\n')
    assert cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside).returncode == 0
    rows = list(csv.DictReader(io.StringIO(cli("report", str(outside / "r.db"), "--format", "csv",
                                               cwd=outside).stdout)))
    assert len(rows) == 4
    for col in ("trial_id", "model", "fold", "param.a", "param.b", "state", "device", "slot", "start", "end",
                "duration_s", "metric.score"):
        assert col in rows[0], col
    data = json.loads(cli("report", str(outside / "r.db"), "--format", "json", cwd=outside).stdout)
    assert sorted(d["metric.score"] for d in data) == [10, 11, 20, 21]
    assert all(d["end"] >= d["start"] and d["state"] == "finished" for d in data)
    table = cli("report", str(outside / "r.db"), cwd=outside).stdout
    assert "score" in table and table.count("finished") == 4
    bad = cli("report", str(outside / "fit.py"), cwd=outside)
    assert bad.returncode == 2 and "not a gridwatch results file" in bad.stderr


def test_existing_db_needs_resume(outside):
    write(outside / "fit.py", "def train(config):\n    return {'s': 1}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "fit.py:train"\n')
    assert cli("run", str(g), "--db", str(outside / "r.db"), cwd=outside).returncode == 0
    again = cli("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = cli("run", str(g), "--db", str(outside / "r.db"), "--resume", cwd=outside)
    assert resumed.returncode == 0 and "0 trials to run (2 already finished, skipped)" in resumed.stderr


def test_failed_trial_gives_exit_1(outside):
    write(outside / "fit.py", "def train(config):\n    if config['fold']:\n        raise RuntimeError('no')\n"
                              "    return {'s': 1}\n")
    g = grid(outside, '[[model]]\nname = "f"\ntrainable = "fit.py:train"\n')
    r = cli("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    assert r.returncode == 1 and "RuntimeError: no" in r.stdout


# Each trial writes more output than a pipe holds (64 KiB), then fails once the file config["gate"] exists (the
# 120 s cap only keeps a broken test from hanging).
FAIL_AT_GATE = """
import os, time
def fit(config):
    for n in range(1500):
        print(f"line {n} " + "x" * 90)
    deadline = time.monotonic() + 120
    while not os.path.exists(config["gate"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    raise RuntimeError("no")
"""


def first_line_then_close(*args: str, cwd: Path, stderr: int | IO[str]) -> tuple[str, int]:
    """Run the CLI with stdout a pipe that is closed after its first line, as `| head -1` does; the first
    line, and the exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "gridwatch", *args], cwd=cwd, env=cli_env(cwd),
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        (cwd / "gate").touch()  # only now may the trials end: what is said about them meets a closed pipe
        return first, proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_reader_that_leaves_early_keeps_the_exit_code_and_every_trial(outside):
    """`gridwatch run grid.toml 2>&1 | head -1`: the pipe closes after the first line, before any trial ends;
    the run still ends every trial and exits 1. `gridwatch logs ... | head -1` goes on past the closed pipe."""
    write(outside / "fit.py", FAIL_AT_GATE)
    g = grid(outside, f'[[model]]\nname = "f"\ntrainable = "fit.py:fit"\n[model.fixed]\ngate = "{outside / "gate"}"\n')
    db = outside / "r.db"
    first, code = first_line_then_close("run", str(g), "--db", str(db), cwd=outside, stderr=subprocess.STDOUT)
    assert first.startswith("gridwatch: "), first
    assert code == 1, "both trials failed: exit 1, as without the pipe"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, fold, state, reason FROM trials ORDER BY fold").fetchall()
    finally:
        conn.close()
    assert [row[1:] for row in rows] == [(0, "failed", "RuntimeError: no"), (1, "failed", "RuntimeError: no")]

    with open(outside / "stderr.txt", "w+", encoding="utf-8") as err:
        first, code = first_line_then_close("logs", str(db), rows[0][0], cwd=outside, stderr=err)
        err.seek(0)
        said = err.read()
    assert first == "line 0 " + "x" * 90 + "\n"
    assert code == 0 and said == f"-- {rows[0][0]}: failed: RuntimeError: no\n", said


def test_ctrl_c_stops_workers_keeps_results_and_resume_runs_the_rest(outside):
    # four trials finish at once; the others are held at the gate until it is opened for --resume
    g = gated_grid(outside, "x = [1, 2, 3, 4, 5]", free=4)
    db = outside / "r.db"
    proc = cli_popen("run", str(g), "--db", str(db), cwd=outside)
    try:
        wait_for(lambda: len(finished_ids(db)) == 4 and len(running_workers(outside)) == 2, 60,
                 "four finished trials and both slot workers held mid-trial")
        kids = alive(descendants(proc.pid))
        workers = [k for k in kids if is_worker(k)]
        assert {w.pid for w in workers} == running_workers(outside), f"found the two slot workers among {kids}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    wait_for(lambda: not alive(kids), 5, lambda: f"no worker process left behind: {alive(kids)}")
    before = finished_ids(db)
    assert len(before) == 4 and "--resume" in err
    (outside / "gate").touch()
    r = cli("run", str(g), "--db", str(db), "--resume", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert f"{10 - len(before)} trials to run ({len(before)} already finished, skipped)" in r.stderr
    conn = sqlite3.connect(db)
    sessions = dict(conn.execute("SELECT id, status FROM sessions"))
    assert list(sessions.values()) == ["stopped", "done"]
    second = {t for (t,) in conn.execute("SELECT id FROM trials WHERE session_id=2")}
    assert not (second & before), "no finished trial ran again"
    assert len(finished_ids(db)) == 10


def test_demo_grid_end_to_end(tmp_path):
    """The built-in demo: every trial stored, a leaderboard printed (about a minute on 2 cores)."""
    r = cli("run", str(REPO / "resources" / "demo.toml"), "--quiet", cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Leaderboard" in r.stdout and "mlp" in r.stdout and "lstm" in r.stdout
    dbs = list((tmp_path / "runs").glob("pose-demo-*.gridwatch.db"))
    assert len(dbs) == 1
    conn = sqlite3.connect(dbs[0])
    assert conn.execute("SELECT COUNT(*) FROM trials WHERE state='finished'").fetchone()[0] == 54
    assert conn.execute("SELECT COUNT(DISTINCT trial_id) FROM steps WHERE key='val_acc'").fetchone()[0] == 54


@pytest.mark.parametrize("args", [["devices"], []])
def test_other_commands(args, tmp_path):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0
    if args:
        assert "CPU:" in r.stdout and ("GPU 0" in r.stdout or "no NVIDIA GPU" in r.stdout)
    else:
        assert "usage" in r.stdout


def test_no_leftover_processes_after_normal_run(outside):
    g = gated_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    try:
        # both trials are held at the gate, so the workers are certainly there to be found
        wait_for(lambda: len(running_workers(outside)) == 2, 60, "both slot workers running a trial")
        workers = worker_processes(proc.pid)
        assert {w.pid for w in workers} == running_workers(outside), "found the CLI's two slot workers"
    finally:
        (outside / "gate").touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    wait_for(lambda: not alive(workers), 5, lambda: f"no worker left after the run: {alive(workers)}")


def test_workers_exit_when_the_cli_is_killed_hard(outside):
    g = gated_grid(outside, "x = [1, 2, 3, 4, 5]")
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), cwd=outside)
    try:
        # killed mid-trial: both workers are held at the gate
        wait_for(lambda: len(running_workers(outside)) == 2, 60, "both slot workers running a trial")
        workers = worker_processes(proc.pid)
        assert {w.pid for w in workers} == running_workers(outside), "found the CLI's two slot workers"
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    wait_for(lambda: not alive(workers), 10,
             lambda: f"workers notice their parent died and exit: {alive(workers)} still alive")


@pytest.mark.parametrize("where", ["grid", "flag"])
def test_a_gpu_that_is_not_there_names_where_it_was_asked_for(outside, where):
    g = grid(outside, """
        [[model]]
        name = "m"
        trainable = "gridwatch.demo:mlp"
        [model.grid]
        lr = [0.1]
        """, devices="cpu_slots = 1\ngpus = [5]" if where == "grid" else "cpu_slots = 1")
    r = cli("run", str(g), *(["--gpus", "7"] if where == "flag" else []), cwd=outside)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    said = "devices.gpus: GPU 5 not found" if where == "grid" else "--gpus: GPU 7 not found"
    assert said in r.stderr and (where == "flag" or "grid.toml" in r.stderr), r.stderr
