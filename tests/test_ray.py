"""The Ray backend on a real local Ray head (loopback only): the same grid as local slots, streamed while it runs,
stopped without leftovers, resumed, and a lost actor's trial run again elsewhere."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from gridwatch.results.store import ResultStore
from gridwatch.run.headless import PlanError, plan_run

from helpers import alive, cli, cli_popen, descendants, grid, is_worker, wait_for, write

os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # as gridwatch imports it: no cluster of Ray's own making
ray = pytest.importorskip("ray", reason="the Ray backend's tests need the [ray] extra (make test installs it)")

# Each trial reports three epochs; with `hold`, it waits after its first epoch until the file `gate` exists (the
# 120 s cap only keeps a broken test from hanging). It leaves a file in its own folder, written as it goes.
STEPPER = """
import os, time
def fit(config, report):
    with open("artifact.txt", "w") as out:
        for ep in range(1, 4):
            loss = 1.0 / (ep * config["lr"] * 100 + config["fold"] + 1)
            report(epoch=ep, loss=loss)
            out.write(f"epoch {ep} loss {loss}\\n")
            out.flush()
            print(f"epoch {ep}/3 loss={loss:.4f}", flush=True)
            if config.get("hold") and ep == 1:
                deadline = time.monotonic() + 120
                while not os.path.exists(os.path.join(config["dir"], "gate")) and time.monotonic() < deadline:
                    time.sleep(0.02)
    return {"loss": loss, "lr_seen": config["lr"]}
"""


def stepper_grid(folder: Path, hold: bool, lrs: str = "0.01, 0.1") -> Path:
    write(folder / "stepper.py", STEPPER)
    fixed = f'dir = "{folder}"\n' + ("hold = true\n" if hold else "")
    return grid(folder, f"""
        [[model]]
        name = "step"
        trainable = "stepper.py:fit"
        metric = "loss"
        [model.grid]
        lr = [{lrs}]
        [model.fixed]
        {fixed}""", folds=2)


@pytest.fixture(scope="module")
def head():
    """One local head for the module: what `--ray local` starts, on loopback, with 2 CPUs."""
    from gridwatch.cluster.connect import connect, disconnect

    r = connect("local", num_cpus=2)
    yield r
    disconnect()


def our_actors_alive(r) -> list[str]:
    from ray._private import state  # the GCS actor table; the public listing needs the dashboard

    return [a["ActorID"] for a in state.actors().values()
            if a["State"] != "DEAD" and a.get("ActorClassName", "").endswith("SlotActor")]


def resources_free(r) -> bool:
    return r.available_resources().get("CPU", 0) == r.cluster_resources().get("CPU", -1)


def run_to_end(qtbot, planned, timeout=120_000):
    session = planned.session()
    with qtbot.waitSignal(session.finished, timeout=timeout):
        session.start()
    session.close()
    planned.release()
    return session


@contextmanager
def started(planned, gate: Path, make_pool=None):
    """A gated grid's session, started; on the way out its gate opens and nothing of the run is left."""
    session = planned.session(make_pool=make_pool)
    session.start()
    try:
        yield session
    finally:
        gate.touch()
        session.stop_blocking()
        session.close()
        planned.release()


def open_gate_and_finish(qtbot, session, gate: Path) -> None:
    gate.touch()
    with qtbot.waitSignal(session.finished, timeout=60_000):
        pass


def stored(db: Path) -> dict[str, tuple[str, dict[str, float]]]:
    store = ResultStore(db)
    try:
        return {r.id: (r.state, dict(r.metrics)) for r in store.trials()}
    finally:
        store.close()


def test_a_grid_on_ray_has_the_local_runs_trial_ids_and_results(qtbot, head, outside):
    g = stepper_grid(outside, hold=False)
    local = run_to_end(qtbot, plan_run(g, db=outside / "local.db"))
    assert local.status == "done"
    planned = plan_run(g, db=outside / "ray.db", ray="local")
    assert planned.cluster is not None and planned.machine.cpu_name.startswith("Ray cluster")
    on_ray = run_to_end(qtbot, planned)
    assert on_ray.status == "done"
    a, b = stored(outside / "local.db"), stored(outside / "ray.db")
    assert len(a) == 4 and set(a) == set(b)
    assert all(state == "finished" for state, _ in b.values())
    assert {k: v[1] for k, v in a.items()} == {k: v[1] for k, v in b.items()}
    slots = {lt.slot for lt in on_ray.trials().values()}
    assert slots and all("/cpu" in (s or "") for s in slots), slots  # <node>/<slot>: grouped by node
    for tid in b:  # the trials' folders: their files and whole output, as locally
        folder = outside / "ray" / "trials" / tid
        assert (folder / "artifact.txt").read_text().count("epoch") == 3
        assert "epoch 3/3" in (folder / "gridwatch-output.log").read_text()
    wait_for(lambda: not our_actors_alive(head), 10, lambda: f"actors still alive: {our_actors_alive(head)}")


def test_metrics_logs_and_node_telemetry_arrive_while_trials_run(qtbot, head, outside):
    g = stepper_grid(outside, hold=True, lrs="0.1")
    planned = plan_run(g, db=outside / "r.db", ray="local")
    snaps = []
    with started(planned, outside / "gate") as session:
        session.snapshot_taken.connect(snaps.append)
        live = session.trials()
        qtbot.waitUntil(lambda: sum(1 for lt in live.values() if lt.state == "running" and lt.steps) == 2,
                        timeout=60_000)
        qtbot.waitUntil(lambda: any(lt.log and "epoch 1/3" in lt.log[-1] for lt in live.values()), timeout=10_000)
        # in the results file too (written each second), while both trials still wait at their gate
        conn = sqlite3.connect(outside / "r.db")
        qtbot.waitUntil(lambda: conn.execute("SELECT COUNT(DISTINCT trial_id) FROM steps").fetchone()[0] == 2,
                        timeout=10_000)
        conn.close()
        qtbot.waitUntil(lambda: any(s.trials for s in snaps), timeout=10_000)
        snap = next(s for s in reversed(snaps) if s.trials)
        assert snap.nodes and snap.nodes[0].cores >= 1 and snap.ram_total > 0  # sampled on the node
        running = {lt.slot for lt in live.values() if lt.state == "running"}
        assert set(snap.trials) & running, (set(snap.trials), running)  # each slot's worker tree, by its id
        assert all(lt.state == "running" for lt in live.values())
        open_gate_and_finish(qtbot, session, outside / "gate")
    assert session.status == "done"


def test_stop_leaves_no_task_or_actor_and_resume_finishes_the_run(qtbot, head, outside):
    g = stepper_grid(outside, hold=True)
    planned = plan_run(g, db=outside / "r.db", ray="local")
    session = planned.session()
    session.start()
    qtbot.waitUntil(lambda: sum(1 for lt in session.trials().values() if lt.steps) == 2, timeout=60_000)
    pids = [w.pid for w in session.pool.workers]
    assert len(pids) == 2 and all(p and psutil.pid_exists(p) for p in pids)  # this machine is the node
    assert our_actors_alive(head) and not resources_free(head)
    with qtbot.waitSignal(session.finished, timeout=30_000):
        session.stop()
    session.close()
    planned.release()
    assert session.status == "stopped"
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 10, "the workers to be gone")
    wait_for(lambda: not our_actors_alive(head), 10, lambda: f"actors still alive: {our_actors_alive(head)}")
    wait_for(lambda: resources_free(head), 10, lambda: f"resources held: {head.available_resources()}")
    assert not any(state == "finished" for state, _ in stored(outside / "r.db").values())

    (outside / "gate").touch()
    again = plan_run(g, db=outside / "r.db", resume=True, ray="local")
    assert len(again.trials) == 4 and not again.done_ids
    assert run_to_end(qtbot, again).status == "done"
    assert sorted(state for state, _ in stored(outside / "r.db").values()) == ["finished"] * 4


def test_a_trial_whose_actor_is_lost_runs_again_elsewhere_without_counting_as_a_crash(qtbot, head, outside):
    g = stepper_grid(outside, hold=True)
    planned = plan_run(g, db=outside / "r.db", ray="local")
    with started(planned, outside / "gate") as session:
        qtbot.waitUntil(lambda: sum(1 for lt in session.trials().values() if lt.steps) == 2, timeout=60_000)
        victim = next(w for w in session.pool.workers if w.trial_id)
        tid, orphan = victim.trial_id, victim.pid
        assert orphan and psutil.pid_exists(orphan)
        head.kill(victim.actor, no_restart=True)  # as when its node goes away
        qtbot.waitUntil(lambda: session.trials()[tid].lost == 1, timeout=30_000)
        wait_for(lambda: not psutil.pid_exists(orphan), 10, "the dead actor's worker to end itself")
        open_gate_and_finish(qtbot, session, outside / "gate")
    lt = session.trials()[tid]
    assert session.status == "done" and lt.state == "finished" and lt.crashes == 0, (session.status, lt)
    assert any("node lost" in line for line in lt.log), list(lt.log)


def test_a_remote_nodes_trial_folder_comes_back_while_the_trial_runs(qtbot, head, outside):
    from gridwatch.cluster.pool import RayWorkerPool

    g = stepper_grid(outside, hold=True, lrs="0.1")
    planned = plan_run(g, db=outside / "r.db", ray="local")
    cluster = planned.cluster

    def remote_pool(slots, preload, parent):  # as on a node that does not share this machine's disk
        return RayWorkerPool(cluster.ray, slots, preload, cluster.driver_node, copy_files=True, parent=parent)

    with started(planned, outside / "gate", remote_pool) as session:
        folders = [outside / "r" / "trials" / t.id for t in planned.trials]
        qtbot.waitUntil(lambda: all((f / "artifact.txt").exists() for f in folders), timeout=60_000)
        assert all(lt.state == "running" for lt in session.trials().values())
        assert all((f / "artifact.txt").read_text().startswith("epoch 1 ") for f in folders)
        assert not any((f / "stepper.py").is_symlink() for f in folders)  # made on the node, not here
        open_gate_and_finish(qtbot, session, outside / "gate")
    assert session.status == "done"
    for f in folders:
        assert (f / "artifact.txt").read_text().count("epoch") == 3
        assert "epoch 3/3" in (f / "gridwatch-output.log").read_text()


def test_slots_beyond_the_cluster_are_refused_before_anything_is_written(head, outside):
    g = stepper_grid(outside, hold=False)
    with pytest.raises(PlanError, match="ask the Ray cluster .* for 5 CPUs, it has 2"):
        plan_run(g, db=outside / "r.db", cpu_slots=5, ray="local")
    assert not (outside / "r.db").exists()
    assert ray.is_initialized()  # a connection the process had before is kept


def test_cli_ray_local_runs_and_leaves_nothing_running(outside):
    g = stepper_grid(outside, hold=False)
    before = {p.pid for p in psutil.process_iter() if _is_ray_service(p)}
    started = time.monotonic()
    proc = cli("run", str(g), "--ray", "local", "--db", str(outside / "cli.db"), cwd=outside, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "slots of Ray cluster, 1 node (local)" in proc.stderr
    assert "Leaderboard" in proc.stdout + proc.stderr
    assert sorted(s for s, _ in stored(outside / "cli.db").values()) == ["finished"] * 4
    left = wait_for(lambda: not [p for p in psutil.process_iter()
                                 if _is_ray_service(p) and p.pid not in before and p.create_time() >= started - 60],
                    15, "the local head's processes to end")
    assert left


def test_cli_ray_errors_are_one_line_and_exit_2(outside, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    g = stepper_grid(outside, hold=False)
    proc = cli("run", str(g), "--ray", "127.0.0.1:1", cwd=outside, timeout=60)
    assert proc.returncode == 2 and "nothing answers at 127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr
    env_less = cli("run", str(g), "--ray", "auto", cwd=outside, timeout=60)
    assert env_less.returncode == 2 and "RAY_ADDRESS is not set" in env_less.stderr
    client = cli("run", str(g), "--ray", "ray://127.0.0.1:10001", cwd=outside, timeout=60)
    assert client.returncode == 2 and "Ray Client (ray://) addresses are not supported" in client.stderr


def _is_ray_service(p: psutil.Process) -> bool:
    try:
        return p.name() in ("raylet", "gcs_server") or "ray/_private/" in " ".join(p.cmdline()[:3])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


AFTER_RAY = """
import sys, psutil, ray
from gridwatch.run.headless import plan_run, run_planned
grid, folder = sys.argv[1], sys.argv[2]
first = run_planned(plan_run(grid, db=folder + "/ray.db", ray="local"))  # kept, as the window keeps its last
assert first.status == "done" and not ray.is_initialized()
session = run_planned(plan_run(grid, db=folder + "/local.db"))  # Ray's queued leftovers are delivered here
names = [p.name() for p in psutil.Process().children(recursive=True)]
print(session.status, ray.is_initialized(), sorted(set(names)))
"""


def test_after_a_ray_run_the_process_starts_no_cluster_of_its_own(outside):
    """Ray starts a cluster by itself on any call after ray.shutdown(); a local run next must not trigger it."""
    g = stepper_grid(outside, hold=False)
    write(outside / "after.py", AFTER_RAY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # as a user's shell has it
    proc = subprocess.run([sys.executable, str(outside / "after.py"), str(g), str(outside)], cwd=outside,
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("done False"), proc.stdout
    assert "raylet" not in proc.stdout and "gcs_server" not in proc.stdout
    assert "Started a local Ray instance" not in proc.stderr


def test_the_window_runs_a_grid_on_ray_and_shows_each_node(qtbot, head, outside, monkeypatch):
    from gridwatch.gui.app import get_qapp
    from gridwatch.gui.main_window import MainWindow
    from gridwatch.run.devices import detect

    get_qapp()
    w = MainWindow(detect(), outside / "runs")
    qtbot.addWidget(w)
    w.confirm_stop = lambda: True
    errors = []
    monkeypatch.setattr("gridwatch.gui.main_window.QMessageBox.critical", lambda *a: errors.append(a[2]))
    w.editor.load_file(stepper_grid(outside, hold=True))
    w.editor.ray.setText("127.0.0.1:1")  # nothing there: a dialog, and nothing starts
    w.start_run()
    assert errors and "nothing answers at 127.0.0.1:1" in errors[0] and w.session is None
    w.editor.ray.setText("local")
    w.start_run()
    try:
        assert w.session is not None and w.session.remote
        # while the trials run: the nodes' CPU lines and each slot's memory line, named by node
        qtbot.waitUntil(lambda: bool(w.monitor.nodes.names) and len(w.monitor.nodes) > 0, timeout=60_000)
        qtbot.waitUntil(lambda: len(w.monitor.slots.names) == 2, timeout=10_000)
        assert all("/cpu" in name for name in w.monitor.slots.names), w.monitor.slots.names
    finally:
        (outside / "gate").touch()
    qtbot.waitUntil(lambda: w.session.status is not None, timeout=120_000)
    assert w.session.status == "done"
    slots = {w.trials.trial_at(r).slot for r in range(w.trials.rowCount())}
    assert w.trials.rowCount() == 4 and all("/cpu" in (s or "") for s in slots), slots
    assert ray.is_initialized()  # the window joined the head it found, and leaves it running
    w.close()


def test_a_slot_whose_actor_cannot_start_is_given_up_with_the_reason(qtbot, head, outside, monkeypatch):
    """As when gridwatch (or a trainable's package) is missing on the node Ray picks: said, not retried forever."""
    import gridwatch.cluster.pool as pool_module

    class Broken:  # defined here, so Ray ships it by value: its creation fails on the node
        def __init__(self, *args):
            raise ModuleNotFoundError("No module named 'gridwatch'")

        def info(self):
            return {}

        def stream(self):
            yield []

    monkeypatch.setattr(pool_module, "_actor_class", head.remote(max_restarts=0)(Broken))
    planned = plan_run(stepper_grid(outside, hold=False), db=outside / "r.db", ray="local")
    session = planned.session()
    notices = []
    session.notice.connect(notices.append)
    with qtbot.waitSignal(session.finished, timeout=120_000):
        session.start()
    session.close()
    planned.release()
    assert session.status == "failed"
    given_up = [n for n in notices if "given up" in n]
    assert len(given_up) == 2 and all("worker failed to start on the Ray cluster" in n for n in given_up), notices
    assert "No module named 'gridwatch'" in given_up[0]
    assert any("4 queued trials left" in n for n in notices), notices


def test_an_address_that_answers_but_is_no_ray_cluster_is_refused_at_once(outside):
    """A web server's port (a typo, the dashboard's 8265): Ray itself would retry for minutes."""
    g = stepper_grid(outside, hold=False)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=outside,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        # (Ray itself would still be retrying when this call's limit ends it)
        proc = cli("run", str(g), "--ray", f"127.0.0.1:{port}", cwd=outside, timeout=60)
        assert proc.returncode == 2 and "not a Ray cluster" in proc.stderr, proc.stderr[-2000:]
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def test_when_the_only_node_dies_the_run_ends_saying_so_and_leaves_nothing(outside):
    """`--ray local` whose raylet is killed mid-trial: Ray's own calls to its actors never return, so the run
    must notice the node declared dead, end (exit 1) with what is left queued, and leave no process behind."""
    g = stepper_grid(outside, hold=True)  # the gate never opens: only the node's death ends these trials
    proc = cli_popen("run", str(g), "--ray", "local", "--db", str(outside / "r.db"), cwd=outside)
    try:
        raylet = wait_for(lambda: next((p for p in descendants(proc.pid) if p.name() == "raylet"), None), 60,
                          "the local head's raylet")
        wait_for(lambda: len(list(outside.glob("r/trials/*/artifact.txt"))) == 2, 60, "two trials running")
        family = descendants(proc.pid)
        assert any(is_worker(p) for p in family)
        raylet.kill()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-3000:]
    assert "no live node left in the Ray cluster" in err and "queued trials left" in err, err[-3000:]
    wait_for(lambda: not alive(family), 30, lambda: f"left running: {[p.name() for p in alive(family)]}")


def test_a_gpu_the_cluster_lacks_is_named_as_the_clusters(head, outside):
    g = stepper_grid(outside, hold=False)
    with pytest.raises(ValueError, match=r"GPU 0 not found \(the Ray cluster's GPUs: none\)"):
        plan_run(g, db=outside / "r.db", gpus="0", ray="local")
