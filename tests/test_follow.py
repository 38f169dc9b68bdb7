"""Following a run another process writes: `gridwatch run` in a subprocess, its results file read as it goes.

The trainable reports an epoch, prints a line, then waits for a gate file the test creates: so whatever the
reader sees before the gate opens, it saw while the trial was still running.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from gridwatch.grid.trials import TrialState
from gridwatch.gui.app import get_qapp
from gridwatch.gui.main_window import MainWindow
from gridwatch.gui.trials_model import COLUMNS
from gridwatch.results.files import StoreError
from gridwatch.results.follow import Follower, is_live
from gridwatch.results.replay import live_from_store
from gridwatch.results.store import ResultStore
from gridwatch.run.devices import detect

from helpers import cli, cli_popen, grid, wait_for, write

GATED = """
import pathlib
import time


def fit(config, report):
    print(f"starting lr={config['lr']} fold={config['fold']}", flush=True)
    report(loss=1.0 / config["lr"])
    gate = pathlib.Path(config["gate"])
    while not gate.exists():
        time.sleep(0.01)
    report(loss=0.5 / config["lr"])
    return {"loss": 0.5 / config["lr"]}
"""


def gated_run(tmp_path: Path, trainable: str = GATED, devices: str = "cpu_slots = 2") -> tuple[Path, Path, Path]:
    """A grid of 4 trials of `trainable` (2 lr values x 2 folds), held by gate files under `gate`."""
    write(tmp_path / "gated.py", trainable)
    gate = tmp_path / "gate"
    g = grid(tmp_path, f"""
        [[model]]
        name = "m"
        trainable = "gated.py:fit"
        metric = "loss"
        goal = "min"
        [model.grid]
        lr = [1.0, 2.0]
        [model.fixed]
        gate = "{gate}"
        """, folds=2, devices=devices)
    return g, gate, tmp_path / "r.gridwatch.db"


def release(proc: subprocess.Popen[str], *gates: Path) -> None:
    """Open the gates and end the CLI if it still runs: a failed test leaves nothing waiting."""
    for gate in gates:
        gate.touch()
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def open_when_begun(db: Path) -> ResultStore:
    def opened() -> ResultStore | None:
        try:
            store = ResultStore(db, create=False)
        except StoreError:  # not there yet, or being created this moment
            return None
        if store.last_status() == "running":
            return store
        store.close()
        return None
    return wait_for(opened, 60, f"{db} to hold a running session")


def test_a_reader_sees_epochs_logs_and_telemetry_while_the_trials_still_run(tmp_path: Path) -> None:
    g, gate, db = gated_run(tmp_path)
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=tmp_path)
    try:
        store = open_when_begun(db)
        follower = Follower(store)
        live, info, _telemetry = follower.load()
        assert len(live) == 4 and info["name"] == "t"
        assert is_live(store)
        seen_epochs: set[str] = set()
        seen_logs: list[str] = []
        seen_telemetry = 0

        def running_with_an_epoch() -> bool:
            nonlocal seen_telemetry
            ch = follower.poll()
            assert not ch.ended, "the run cannot end while the gate is shut"
            seen_epochs.update(ch.epochs)
            seen_logs.extend(line for _tid, line in ch.logs)
            seen_telemetry += len(ch.telemetry)
            running = [lt for lt in live.values() if lt.state == TrialState.RUNNING]
            return (len(running) == 2 and all(lt.id in seen_epochs for lt in running)
                    and any(line.startswith("starting") for line in seen_logs) and seen_telemetry > 0)

        wait_for(running_with_an_epoch, 90, lambda: f"epochs {seen_epochs}, logs {seen_logs[-3:]}, "
                 f"telemetry {seen_telemetry}, states {[str(lt.state) for lt in live.values()]}")
        assert proc.poll() is None  # the CLI has not ended: the trials are held by the gate
        running = [lt for lt in live.values() if lt.state == TrialState.RUNNING]
        assert all(lt.epoch == 1 and lt.steps[0][0] == "loss" for lt in running)
        assert all(not lt.metrics for lt in running)  # no final result yet: only the per-epoch value

        gate.touch()
        wait_for(lambda: follower.poll().ended, 90, "the run to end")
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        follower.poll()  # what the run wrote last
        assert {str(lt.state) for lt in live.values()} == {"finished"}
        reread = ResultStore(db, create=False)
        fresh, _ = live_from_store(reread)
        reread.close()
        store.close()
        for tid, lt in fresh.items():  # followed to the end = read afterwards
            assert (live[tid].metrics, live[tid].steps, live[tid].epoch) == (lt.metrics, lt.steps, lt.epoch)
            assert list(live[tid].log) == list(lt.log)
        assert fresh[next(iter(fresh))].epoch == 2
    finally:
        release(proc, gate)


def test_a_file_nobody_writes_is_not_live(tmp_path: Path) -> None:
    g, gate, db = gated_run(tmp_path)
    gate.touch()
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=tmp_path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    store = ResultStore(db, create=False)
    assert store.last_status() == "done"
    assert not is_live(store)
    follower = Follower(store)
    live, _, telemetry = follower.load()
    assert {str(lt.state) for lt in live.values()} == {"finished"}
    assert follower.poll().ended and not follower.poll().trials  # nothing new, and over
    store.close()


ONE_BY_ONE = """
import pathlib
import time


def fit(config, report):
    print(f"starting lr={config['lr']} fold={config['fold']}", flush=True)
    report(loss=1.0 / config["lr"])
    gate = pathlib.Path(f"{config['gate']}-{config['lr']}-{config['fold']}")
    while not gate.exists():
        time.sleep(0.01)
    report(loss=0.5 / config["lr"])
    return {"loss": 0.5 / config["lr"] + config["fold"]}
"""


def board_texts(window: Any) -> list[list[str]]:
    b = window.board
    return [[b.item(r, c).text() if b.item(r, c) else "" for c in range(b.columnCount())] for r in range(b.rowCount())]


def shown(window: Any, tid: str, column: str) -> str:
    model = window.trials
    row = model.ids.index(tid)
    return str(model.data(model.index(row, COLUMNS.index(column))))


def test_the_window_follows_a_cli_run_and_reopened_it_shows_the_same(qtbot: Any, tmp_path: Path) -> None:
    g, gate, db = gated_run(tmp_path, ONE_BY_ONE, devices="cpu_slots = 1")
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=tmp_path)
    get_qapp()
    window = MainWindow(detect(), tmp_path / "runs")
    qtbot.addWidget(window)
    try:
        open_when_begun(db).close()
        window.open_results(db)
        assert window.follower is not None and "following a live run" in window.windowTitle()
        ran: list[str] = []
        for _ in range(4):  # one slot: each trial starts only after the one before it ended
            def a_new_trial_reports_its_first_epoch() -> str | None:
                return next((lt.id for lt in window.live.values() if lt.state == TrialState.RUNNING
                             and lt.id not in ran and shown(window, lt.id, "progress") == "1"), None)

            def states() -> str:
                return f"a new running trial at epoch 1; states {[str(t.state) for t in window.live.values()]}"

            tid = wait_for(lambda: (qtbot.wait(50), a_new_trial_reports_its_first_epoch())[1], 90, states)
            assert proc.poll() is None, "the CLI is still running: its trial waits for its gate"
            lt = window.live[tid]
            assert shown(window, tid, "state") == "running"
            assert shown(window, tid, "metric") == f"{1 / lt.params['lr']:.4g}"
            ran.append(tid)
            Path(f"{gate}-{lt.params['lr']}-{lt.trial.fold}").touch()
        qtbot.waitUntil(lambda: window.follower is None, timeout=90_000)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "following" not in window.windowTitle()
        assert len(window.monitor.host) > 0, "the run's telemetry reached the monitor while it ran"
        window._tick()
        at_end = ({tid: (str(lt.state), lt.metrics, lt.epoch) for tid, lt in window.live.items()},
                  board_texts(window), len(window.monitor.host))
        assert set(at_end[0]) == set(ran) and {s for s, _m, _e in at_end[0].values()} == {"finished"}
        assert len(at_end[1]) == 2, "one leaderboard row per config"

        window.open_results(db)  # reopened, finished
        assert window.follower is None
        window._tick()
        again = ({tid: (str(lt.state), lt.metrics, lt.epoch) for tid, lt in window.live.items()},
                 board_texts(window), len(window.monitor.host))
        assert again == at_end
    finally:
        release(proc, *(Path(f"{gate}-{lr}-{fold}") for lr in (1.0, 2.0) for fold in (0, 1)))
        window.close()


def test_closing_the_window_leaves_the_followed_run_alone(qtbot: Any, tmp_path: Path) -> None:
    g, gate, db = gated_run(tmp_path)
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=tmp_path)
    get_qapp()
    window = MainWindow(detect(), tmp_path / "runs")
    qtbot.addWidget(window)
    try:
        open_when_begun(db).close()
        window.open_results(db)
        assert window.follower is not None
        qtbot.waitUntil(lambda: any(lt.state == TrialState.RUNNING for lt in window.live.values()), timeout=60_000)
        window.close()
        assert window.follower is None and window.store is None
        assert proc.poll() is None, "the run goes on after the window that watched it closed"
        gate.touch()
        _out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        store = ResultStore(db, create=False)
        assert {r.state for r in store.trials()} == {"finished"} and store.last_status() == "done"
        store.close()
    finally:
        release(proc, gate)


def test_a_followed_run_whose_process_dies_ends_with_its_trials_stopped(tmp_path: Path) -> None:
    g, gate, db = gated_run(tmp_path)
    proc = cli_popen("run", str(g), "--db", str(db), "--quiet", cwd=tmp_path)
    try:
        store = open_when_begun(db)
        follower = Follower(store)
        live, _, _ = follower.load()
        wait_for(lambda: (follower.poll(), sum(lt.state == TrialState.RUNNING for lt in live.values()) == 2)[1],
                 60, "two running trials")
        proc.kill()  # kill -9: the run cannot close its session
        proc.communicate(timeout=30)
        changes = wait_for(lambda: (ch := follower.poll()).ended and ch, 30, "the follower to see the run gone")
        assert store.last_status() == "running", "the dead run left its session open"
        stopped = [lt.id for lt in live.values() if lt.state == TrialState.STOPPED]
        assert len(stopped) == 2 and set(stopped) <= set(changes.trials)
        assert not any(lt.state == TrialState.RUNNING for lt in live.values())
        store.close()
        reopened = ResultStore(db, create=False)  # opened afterwards (Runs says "interrupted"): nothing runs
        assert not is_live(reopened)
        again, _, _ = Follower(reopened).load(following=False)
        assert {str(again[tid].state) for tid in stopped} == {"stopped"}
        assert all(again[tid].ended is not None and again[tid].ended >= (again[tid].started or 0) for tid in stopped), \
            "a dead run's trials end at their last sign of life, not when the file is read"
        report = cli("report", str(db), "--format", "json", cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        states = {t["trial_id"]: t["state"] for t in json.loads(report.stdout)}
        assert {states[tid] for tid in stopped} == {"stopped"}, "report agrees with the window: nothing runs"
        reopened.close()
    finally:
        release(proc, gate)


def _store_with_a_run(tmp_path: Path) -> tuple[ResultStore, list[Any]]:
    """A results file this process writes (it holds the lock, so a follower here sees a live run)."""
    from gridwatch.grid import trials
    from gridwatch.grid.spec import parse_grid

    write(tmp_path / "t.py", "def fit(config):\n    return {}\n")
    spec = parse_grid('[run]\nname="s"\nfolds=2\n[[model]]\nname="m"\ntrainable="t.py:fit"\n[model.grid]\nx=[1,2]\n',
                      tmp_path / "g.toml")
    ts = trials.expand(spec)
    store = ResultStore(tmp_path / "w.gridwatch.db")
    store.begin(spec, ts, ["cpu0"])
    return store, ts


def test_a_follower_misses_no_row_when_the_writer_deletes_its_newest(tmp_path: Path) -> None:
    writer, ts = _store_with_a_run(tmp_path)
    a, b = ts[0].id, ts[1].id
    reader = ResultStore(writer.path, create=False)
    follower = Follower(reader)
    live, _, _ = follower.load(is_live(reader))
    assert is_live(reader)
    writer.mark_running(a, "cpu0", "cpu", 100.0)
    writer.add_live([(a, "acc", 1, 0.5, 100.5)], [(a, 100.5, f"a{i}") for i in range(5)], [])
    follower.poll()
    assert list(live[a].log) == [f"a{i}" for i in range(5)]
    writer.finish_trial(a, "finished", 101.0, {"acc": 0.5}, None, [("acc", 1, 0.5, 100.5)], "a-tail")  # drops a's lines
    writer.mark_running(b, "cpu0", "cpu", 102.0)
    writer.add_live([(b, "acc", 1, 0.7, 102.5)], [(b, 102.5, f"b{i}") for i in range(3)], [])
    changes = follower.poll()
    assert list(live[b].log) == ["b0", "b1", "b2"] and [line for _t, line in changes.logs] == ["b0", "b1", "b2"]
    assert live[b].steps == [("acc", 1, 0.7, 102.5)] and list(live[a].log) == ["a-tail"]

    # b retried between two polls: its first attempt's values go, the new one's arrive; a value sent again for the
    # same step replaces it
    writer.requeue(b, "worker died")
    writer.mark_running(b, "cpu0", "cpu", 104.0)
    writer.add_live([(b, "acc", 1, 0.1, 104.5)], [(b, 104.5, "retry")], [])
    follower.poll()
    assert live[b].steps == [("acc", 1, 0.1, 104.5)] and list(live[b].log) == ["retry"]
    assert live[b].started == 104.0 and not live[b].metrics
    writer.add_live([(b, "acc", 1, 0.2, 104.9)], [], [])
    follower.poll()
    assert live[b].steps == [("acc", 1, 0.2, 104.9)]
    reader.close()
    writer.close()
