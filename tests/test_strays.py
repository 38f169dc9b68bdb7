"""Nothing left behind, ever: every process a trial starts ends with it, however it tried to get away.

Each test runs a real grid whose first trial starts one process by each escape route: a plain Popen child,
one in a new session, a grandchild that setsid()s (its parent stays), a double-forked daemon (orphaned at
once), and one that ignores SIGTERM. The test checks each was running and had escaped as intended, ends the
trial or the run one way or another, and waits for each process to be gone — reaped, not a zombie.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gridwatch.run.headless import plan_run
from gridwatch.run.pool import TEND_MS

from helpers import cli_popen, grid, wait_for, write

ESCAPE = r'''
import json, os, subprocess, sys, time

SETSID = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", "600"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""

DOUBLE_FORK = """
import os, sys
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    pid = os.fork()
    if pid == 0:
        os.execvp("sleep", ["sleep", "600"])
    os.write(w, str(pid).encode())
    os._exit(0)
os.wait()
with open(sys.argv[1], "w") as f:
    f.write(os.read(r, 64).decode())
"""

STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
time.sleep(600)
"""


def wait_file(path):
    deadline = time.monotonic() + 60  # only keeps a broken test from hanging for ever
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"never appeared: {path}")
        time.sleep(0.01)


def escape(d, config):
    pids = {"worker": os.getpid()}
    pids["plain"] = subprocess.Popen(["sleep", "600"]).pid
    pids["new_session"] = subprocess.Popen(["sleep", "600"], start_new_session=True).pid
    child = subprocess.Popen([sys.executable, "-c", SETSID, os.path.join(d, "setsid.pid")])
    wait_file(os.path.join(d, "setsid.pid"))
    pids["setsid_parent"] = child.pid
    pids["setsid"] = int(open(os.path.join(d, "setsid.pid")).read())
    subprocess.run([sys.executable, "-c", DOUBLE_FORK, os.path.join(d, "double.pid")], check=True)
    pids["double_fork"] = int(open(os.path.join(d, "double.pid")).read())
    pids["ignores_sigterm"] = subprocess.Popen([sys.executable, "-c", STUBBORN, os.path.join(d, "stubborn")]).pid
    wait_file(os.path.join(d, "stubborn"))
    if config.get("scrub"):  # no environment at all, so none of gridwatch's markers either
        pids["no_marker"] = subprocess.Popen(["sleep", "600"], env={}, start_new_session=True).pid
    with open(os.path.join(d, "pids.tmp"), "w") as f:
        json.dump(pids, f)
    os.rename(os.path.join(d, "pids.tmp"), os.path.join(d, "pids.json"))


def fit(config):
    d = config["dir"]
    try:
        os.close(os.open(os.path.join(d, "claimed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # a later trial: keeps the run going until the test releases it
        open(os.path.join(d, f"held-{os.getpid()}"), "w").close()
        wait_file(os.path.join(d, "release"))
        return {"s": 0.0}
    escape(d, config)
    wait_file(os.path.join(d, "go"))
    if config["then"] == "exit":
        os._exit(1)
    return {"s": 1.0}
'''

ROUTES = {"plain", "new_session", "setsid_parent", "setsid", "double_fork", "ignores_sigterm"}


@pytest.fixture(autouse=True)
def _no_leak(tmp_path):
    """A failing test must not leave its escapees on the machine that ran it."""
    yield
    for pid in (_read_pids(tmp_path) or {}).values():
        try:
            p = psutil.Process(pid)
            if p.cmdline()[:1] in (["sleep"], [sys.executable]):
                p.kill()
        except (psutil.Error, IndexError):
            pass


def _escape_grid(folder: Path, then: str = "return", scrub: bool = False) -> Path:
    """Two trials on one slot: the first escapes (then returns, or os._exit(1)s when `go` exists), the
    second holds the run open until `release` exists. `scrub`: one more escapee, with an empty environment."""
    write(folder / "escape.py", ESCAPE)
    return grid(folder, f'[[model]]\nname = "esc"\ntrainable = "escape.py:fit"\nretries = 0\n'
                        f'[model.fixed]\ndir = "{folder}"\nthen = "{then}"\nscrub = {str(scrub).lower()}\n',
                devices="cpu_slots = 1")


def _read_pids(folder: Path) -> dict[str, int] | None:
    try:
        return json.loads((folder / "pids.json").read_text())
    except FileNotFoundError:
        return None


def _escapees(folder: Path) -> tuple[int, dict[str, psutil.Process]]:
    """The trial's worker pid and its escapees, each checked to be running and to have escaped as intended."""
    pids = wait_for(lambda: _read_pids(folder), 60, "the first trial to start its escapees")
    worker = pids.pop("worker")
    assert set(pids) - {"no_marker"} == ROUTES
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    for name, p in procs.items():
        assert p.is_running() and p.status() != psutil.STATUS_ZOMBIE, f"{name} was running"
    assert os.getsid(pids["new_session"]) != os.getsid(worker), "left the worker's session"
    assert os.getsid(pids["setsid"]) == pids["setsid"] != os.getsid(worker), "in a session of its own"
    assert procs["setsid"].ppid() == pids["setsid_parent"]
    assert os.getsid(pids["double_fork"]) != os.getsid(worker)
    assert procs["double_fork"].ppid() == worker, "orphaned at once, adopted by its worker (a subreaper)"
    return worker, procs


def _left(procs: dict[str, psutil.Process]) -> list[str]:
    """Those still there: running, or a zombie nobody reaped."""
    return sorted(name for name, p in procs.items() if p.is_running())


def _all_gone(procs: dict[str, psutil.Process], timeout: float, when: str) -> None:
    wait_for(lambda: not _left(procs), timeout, lambda: f"every escapee gone {when}; left: {_left(procs)}")


def _held(folder: Path) -> bool:
    return any(folder.glob("held-*"))


def _finish(proc: subprocess.Popen, folder: Path) -> tuple[int, str]:
    (folder / "go").touch()
    (folder / "release").touch()
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_what_a_trial_leaves_running_ends_when_the_trial_finishes(outside):
    g = _escape_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        worker, procs = _escapees(outside)
        (outside / "go").touch()
        # the next trial runs on the same worker, held: the run goes on, only the first trial has ended
        wait_for(lambda: _held(outside), 60, "the second trial to start")
        _all_gone(procs, 10, "once the first trial finished")
        assert proc.poll() is None and psutil.Process(worker).is_running(), "the run and its worker go on"
    finally:
        code, err = _finish(proc, outside)
    assert code == 0, err
    logs = [t for (t,) in sqlite3.connect(outside / "r.db").execute("SELECT log_tail FROM trials")]
    assert any(f"ended {len(ROUTES)} process(es) this trial left running" in t for t in logs), logs


def test_nothing_is_left_when_the_run_ends(outside):
    g = _escape_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        _, procs = _escapees(outside)
    finally:
        code, err = _finish(proc, outside)
    assert code == 0, err
    assert _left(procs) == [], "the run is over: nothing it started is left, not even a zombie"


def test_ctrl_c_of_the_cli_ends_every_escapee(outside):
    g = _escape_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        _, procs = _escapees(outside)  # the trial is mid-way: it waits for `go`, which never comes
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err, err
    _all_gone(procs, 10, "after Ctrl-C of the CLI")


def test_kill_9_of_the_cli_ends_every_escapee(outside):
    g = _escape_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        worker, procs = _escapees(outside)
    finally:
        proc.kill()
        proc.communicate()
    # the worker sees its parent die (parent-death signal, or its watch within a second) and ends its tree
    _all_gone(procs, 15, "after kill -9 of the CLI")
    wait_for(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE,
             15, "the worker itself to exit")


def test_a_worker_that_dies_leaves_nothing_behind(outside):
    """The trainable calls os._exit(1): the worker cannot clean up; its orphans come back to the CLI (a
    subreaper), which ends them while the run goes on (the next trial, on a fresh worker, is held). One of
    them dropped the environment that marks a worker's descendants: the CLI knows it from its worker's tree,
    which it notes every TEND_MS."""
    g = _escape_grid(outside, then="exit", scrub=True)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        worker, procs = _escapees(outside)
        assert procs["no_marker"].environ() == {}, "an escapee with no environment, so no marker"
        seen = 2.5 * TEND_MS / 1000
        wait_for(lambda: time.time() - procs["no_marker"].create_time() > seen, 10,
                 "the unmarked escapee to have lived through two of the CLI's looks at its worker's tree")
        (outside / "go").touch()
        wait_for(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie", 30,
                 "the worker to die")
        _all_gone(procs, 15, "after their worker died")
        wait_for(lambda: _held(outside), 60, "the next trial to start on a fresh worker")
        assert proc.poll() is None, "the run goes on"
    finally:
        code, err = _finish(proc, outside)
    assert code == 1, err  # the first trial failed: its worker exited with code 1


def test_kill_9_of_a_worker_leaves_nothing_behind(outside):
    g = _escape_grid(outside)
    proc = cli_popen("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    try:
        worker, procs = _escapees(outside)
        os.kill(worker, signal.SIGKILL)
        _all_gone(procs, 15, "after kill -9 of their worker")
        wait_for(lambda: _held(outside), 60, "the next trial to start on a fresh worker")
        assert proc.poll() is None, "the run goes on"
    finally:
        code, err = _finish(proc, outside)
    assert code == 1, err


DAEMON = """
import os, sys
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    pid = os.fork()
    if pid == 0:
        os.execvp("sleep", ["sleep", "600"])
    os.write(w, str(pid).encode())
    os._exit(0)
os.wait()
with open(sys.argv[1], "w") as f:
    f.write(os.read(r, 64).decode())
"""


def test_the_app_ends_only_its_workers_strays(qtbot, outside):
    """In the app's own process: a dead worker's strays are ended; the app's other children are not, even an
    orphan it adopted as a subreaper that did not come from a worker."""
    g = _escape_grid(outside, then="exit")
    planned = plan_run(g, db=outside / "r.db")
    session = planned.session()
    bystander = subprocess.Popen(["sleep", "600"])
    orphan = None
    try:
        session.start()  # from here this process is a subreaper
        subprocess.run([sys.executable, "-c", DAEMON, str(outside / "daemon.pid")], check=True)
        orphan = psutil.Process(int((outside / "daemon.pid").read_text()))
        assert orphan.ppid() == os.getpid(), "an orphan adopted by this process, not from any worker"
        qtbot.waitUntil(lambda: _read_pids(outside) is not None, timeout=60_000)
        _, procs = _escapees(outside)
        (outside / "go").touch()
        qtbot.waitUntil(lambda: not _left(procs), timeout=15_000)
        qtbot.waitUntil(lambda: _held(outside), timeout=60_000)
        assert bystander.poll() is None and orphan.is_running() and orphan.status() != "zombie", \
            "children of the app that are not from a worker are left alone"
        with qtbot.waitSignal(session.finished, timeout=60_000):
            (outside / "release").touch()
    finally:
        session.stop_blocking()
        session.close()
        bystander.kill()
        bystander.wait()
        if orphan is not None:
            orphan.kill()
            os.waitpid(orphan.pid, 0)
    assert session.status == "failed"
