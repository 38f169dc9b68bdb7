"""RunSession with real QProcess workers, driven by the Qt event loop of pytest-qt."""

import pytest

from gridwatch.run.headless import PlanError, plan_run
from gridwatch.run.session import RunSession

from helpers import gated_grid, grid, running_workers, write

ENV_PROBE = """
import glob, os, sys, time
def fit(config):
    import torch
    # both slots get work: each trial waits until a second worker has entered a trial too
    # (the 120 s cap only keeps a broken run from hanging for ever: the test's 60 s wait fails first)
    open(os.path.join(config["dir"], f"worker-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 120
    while len(glob.glob(os.path.join(config["dir"], "worker-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return {
        "cuda_visible": float(os.environ["CUDA_VISIBLE_DEVICES"]),
        "omp": float(os.environ["OMP_NUM_THREADS"]),
        "torch_threads": float(torch.get_num_threads()),
        "pid": float(os.getpid()),
        "qt": float(any(m.startswith("PySide6") for m in sys.modules)),
        "device_is_cpu": float(config["device"] == "cpu"),
    }
"""

CRASHY = """
import os, signal, time
def fit(config):
    if config["fold"] == 0 and config["how"] == "exit":
        os._exit(3)
    if config["fold"] == 0 and config["how"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return {"score": config["fold"] + 1.0}
"""


def _run(qtbot, planned, timeout=60_000):
    session = RunSession(planned.grid, planned.trials, planned.slots, planned.store, planned.done_ids)
    with qtbot.waitSignal(session.finished, timeout=timeout):
        session.start()
    session.close()
    return session


def test_cpu_slots_see_no_gpu_and_their_thread_count(qtbot, outside):
    write(outside / "probe.py", ENV_PROBE)
    g = grid(outside, '[[model]]\nname = "p"\ntrainable = "probe.py:fit"\n[model.grid]\nx = [1, 2, 3]\n'
                      f'[model.fixed]\ndir = "{outside}"\n',
             devices="cpu_slots = 2\nthreads_per_cpu_slot = 2\ngpus = \"none\"")
    planned = plan_run(g, db=outside / "r.db")
    session = _run(qtbot, planned)
    assert session.status == "done"
    rows = planned.store.trials()
    assert len(rows) == 6 and all(r.state == "finished" for r in rows)
    for r in rows:
        assert r.metrics["cuda_visible"] == -1 and r.metrics["omp"] == 2 and r.metrics["torch_threads"] == 2
        assert r.metrics["qt"] == 0 and r.metrics["device_is_cpu"] == 1
    pids = {r.metrics["pid"] for r in rows}
    assert len(pids) == 2, "one long-lived worker per slot runs trial after trial"


def test_crashed_worker_is_replaced_and_the_run_goes_on(qtbot, outside):
    write(outside / "crashy.py", CRASHY)
    g = grid(outside, '[[model]]\nname = "c"\ntrainable = "crashy.py:fit"\n[model.grid]\nhow = ["exit", "kill"]\n',
             folds=3)
    planned = plan_run(g, db=outside / "r.db")
    session = _run(qtbot, planned)
    assert session.status == "failed"
    rows = {(r.params["how"], r.fold): r for r in planned.store.trials()}
    assert rows[("exit", 0)].state == "failed" and rows[("exit", 0)].reason.startswith("worker exited with code 3")
    assert rows[("kill", 0)].state == "failed" and "worker killed by SIGKILL" in rows[("kill", 0)].reason
    others = [r for k, r in rows.items() if k[1] != 0]
    assert len(others) == 4 and all(r.state == "finished" for r in others)


def test_pause_stops_new_dispatch(qtbot, outside):
    g = gated_grid(outside, "x = [1, 2, 3, 4]", devices="cpu_slots = 1")
    planned = plan_run(g, db=outside / "r.db")
    session = RunSession(planned.grid, planned.trials, planned.slots, planned.store, planned.done_ids)
    ended = []
    session.trial_ended.connect(ended.append)
    session.start()
    # the first trial is held at the gate: pause while it runs, with seven more queued
    qtbot.waitUntil(lambda: bool(running_workers(outside)), timeout=60_000)
    session.pause()
    assert session.progress().paused and session.progress().queued == 7
    (outside / "gate").touch()
    qtbot.waitUntil(lambda: len(ended) >= 1, timeout=60_000)
    p = session.progress()
    assert len(ended) == 1 and p.ended == 1 and not p.running and p.queued == 7, p
    # absence of a dispatch can only be watched for: longer than the session's 1 s retry tick
    with qtbot.assertNotEmitted(session.trial_started, wait=2500):
        pass
    p = session.progress()
    assert p.ended == 1 and not p.running and p.queued == 7 and session.status is None, p
    with qtbot.waitSignal(session.finished, timeout=60_000):
        session.resume()
    session.close()
    assert session.status == "done" and session.progress().finished == 8


def test_gpu_only_model_without_gpu_is_bad_input(outside):
    write(outside / "t.py", "def fit(config):\n    return {}\n")
    g = grid(outside, '[[model]]\nname = "g"\ntrainable = "t.py:fit"\ndevice = "gpu"\n', devices='gpus = "none"')
    with pytest.raises(PlanError, match=r'grid.toml: model\[0\] \(g\).device: "gpu", but this run has no GPU slot'):
        plan_run(g, db=outside / "r.db")


HOG = """
import time
def fit(config):
    block = bytearray(config["mb"] * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(config["hold"])
    return {"mb": float(config["mb"])}
"""


def test_ram_budget_limits_what_runs_at_once_and_all_finish(qtbot, outside):
    write(outside / "hog.py", HOG)
    g = grid(outside, '[[model]]\nname = "hog"\ntrainable = "hog.py:fit"\n[model.grid]\nx = [1, 2, 3, 4]\n'
                      '[model.fixed]\nmb = 300\nhold = 0.6\n',
             devices="cpu_slots = 3\nram_budget_gb = 0.75\nram_reserve_gb = 0")
    planned = plan_run(g, db=outside / "r.db")
    budget = planned.budgets["host"]
    assert budget == 0.75 * 1024**3
    session = planned.session()
    with qtbot.waitSignal(session.finished, timeout=120_000):
        session.start()
    session.close()
    rows = planned.store.trials()
    assert session.status == "done" and len(rows) == 8 and all(r.state == "finished" for r in rows)
    assert all(r.peak_mem > 300 * 1024**2 for r in rows), "the worker measured each trial's peak"
    # at every trial start, the peaks of the trials running together stay within the budget
    for r in rows:
        together = [o for o in rows if o.started <= r.started < o.ended]
        assert sum(o.peak_mem for o in together) <= budget, [o.id for o in together]
    overlaps = max(len([o for o in rows if o.started <= r.started < o.ended]) for r in rows)
    assert overlaps <= 2 < 3, "three slots, but the budget holds two 300 MB trials at most"


OOM_ONCE = """
import os
def fit(config):
    marker = os.path.join(config["dir"], f"tried-{config['fold']}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise MemoryError("could not allocate 12 GB")
    return {"ok": 1.0}
"""


def test_out_of_memory_is_retried_with_the_reason_kept(qtbot, outside):
    write(outside / "oom.py", OOM_ONCE)
    g = grid(outside, f'[[model]]\nname = "o"\ntrainable = "oom.py:fit"\n[model.fixed]\ndir = "{outside}"\n')
    planned = plan_run(g, db=outside / "r.db")
    session = planned.session()
    with qtbot.waitSignal(session.finished, timeout=60_000):
        session.start()
    session.close()
    rows = planned.store.trials()
    assert session.status == "done" and all(r.state == "finished" for r in rows)
    assert all(r.attempts == 2 for r in rows), "each trial ran twice: the OOM, then the retry"
    assert all("out of memory (MemoryError: could not allocate 12 GB); retry 1 of 3" in r.log_tail for r in rows)
