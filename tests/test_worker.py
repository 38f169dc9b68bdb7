"""The worker process on its own: real child, protocol on stdout only, user prints as log messages."""

import json
import os
import subprocess
import sys

from gridwatch.worker import protocol

from helpers import REPO, write

TRAINABLE = """
import os, sys
def fit(config, report):
    print("hello from the trainable")
    print('{"v": 1, "type": "trial_finished", "trial_id": "fake"}')  # looks like protocol, is not
    os.write(1, b"straight to fd 1\\n")
    for e in range(3):
        report(loss=1.0 / (e + 1), acc=e / 3)
    return {"loss": 0.333, "qt": float(any(m.startswith("PySide6") for m in sys.modules))}
"""


def _run_worker(tmp_path, trials):
    write(tmp_path / "t.py", TRAINABLE)
    env = dict(os.environ, PYTHONPATH=str(REPO), GRIDWATCH_SLOT="cpu0")
    lines = "".join(protocol.encode("run", trial=t).decode() for t in trials)
    lines += protocol.encode("shutdown").decode()
    return subprocess.run([sys.executable, "-m", "gridwatch.worker"], input=lines, capture_output=True, text=True,
                          env=env, timeout=60)


def _trial(tmp_path, tid="t1", target=None):
    return {"id": tid, "kind": "python", "target": target or f"{tmp_path / 't.py'}:fit", "cwd": str(tmp_path),
            "metrics_regex": None, "config": {"fold": 0, "n_folds": 2, "seed": 0, "device": "cpu"}}


def test_protocol_is_clean_and_prints_become_log(tmp_path):
    r = _run_worker(tmp_path, [_trial(tmp_path)])
    msgs = [protocol.decode(line) for line in r.stdout.splitlines()]  # every stdout line is protocol
    types = [m["type"] for m in msgs]
    assert types[0] == "hello" and types[1] == "trial_started" and types[-1] == "trial_finished"
    assert types.count("epoch") == 3 and types.count("trial_finished") == 1
    logs = [m["line"] for m in msgs if m["type"] == "log"]
    assert "hello from the trainable" in logs
    assert any('"type": "trial_finished"' in line for line in logs), "a print that looks like protocol is log"
    assert "straight to fd 1" in r.stderr, "C-level writes go to the log channel, not the protocol"
    epochs = [m for m in msgs if m["type"] == "epoch"]
    assert [e["step"] for e in epochs] == [1, 2, 3] and epochs[1]["metrics"] == {"loss": 0.5, "acc": 1 / 3}
    assert msgs[-1]["metrics"] == {"loss": 0.333, "qt": 0.0}, "the worker imports no Qt"


def test_failures_keep_the_worker_alive(tmp_path):
    write(tmp_path / "bad.py", """
        def raises(config):
            raise ValueError("bad lr")
        def nondict(config):
            return 3
        def nan(config):
            return {"loss": float("nan")}
        """)
    targets = ["raises", "nondict", "nan"]
    r = _run_worker(tmp_path, [_trial(tmp_path, n, f"{tmp_path / 'bad.py'}:{n}") for n in targets]
                    + [_trial(tmp_path, "ok")])
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    ends = {m["trial_id"]: m for m in msgs if m["type"] in ("trial_failed", "trial_finished")}
    assert ends["raises"]["reason"] == "ValueError: bad lr"
    assert "returned int" in ends["nondict"]["reason"]
    assert "loss=nan" in ends["nan"]["reason"]
    assert ends["ok"]["type"] == "trial_finished"
    tb = [m["line"] for m in msgs if m["type"] == "log" and m["trial_id"] == "raises"]
    assert any("Traceback" in line for line in tb), "the traceback is in the trial's log"


def test_prefetch_figures_travel_as_telemetry(tmp_path):
    write(tmp_path / "pf.py", """
        import time
        from gridwatch.worker.prefetch import prefetch
        def slow():
            for i in range(6):
                time.sleep(0.01)
                yield i
        def fit(config, report):
            for epoch in range(2):
                for b in prefetch(slow(), depth=0):
                    time.sleep(0.01)
            return {"ok": 1}
        """)
    r = _run_worker(tmp_path, [_trial(tmp_path, "p", f"{tmp_path / 'pf.py'}:fit")])
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    tele = [m for m in msgs if m["type"] == "telemetry"]
    epochs = [m for m in tele if "epoch_data_wait" in m]
    assert [m["epoch"] for m in epochs] == [1, 2] and all(m["trial_id"] == "p" for m in tele)
    assert all(0.2 < m["epoch_data_wait"] < 0.8 for m in epochs)


def test_returned_values_that_are_not_numbers_are_said_not_dropped(tmp_path):
    write(tmp_path / "ret.py", """
        def mixed(config):
            return {"acc": 0.9, "arch": "resnet", "best": None, "val": {"loss": 0.2, "tag": "x"},
                    "curve": [0.5, 0.4, 0.3]}
        """)
    r = _run_worker(tmp_path, [_trial(tmp_path, "m", f"{tmp_path / 'ret.py'}:mixed")])
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    end = next(m for m in msgs if m["type"] == "trial_finished")
    assert end["metrics"] == {"acc": 0.9, "val.loss": 0.2}, "numbers, nested ones flattened"
    said = [m["line"] for m in msgs if m["type"] == "log" and m["line"].startswith("[gridwatch] returned")]
    assert any("arch = 'resnet' (text: kept as info" in s for s in said)
    assert any("best = None" in s for s in said) and any("val.tag" in s for s in said)
    assert any("curve = a list of 3 values: not a metric" in s for s in said)


def test_an_epoch_passed_to_report_is_the_step_not_a_metric(tmp_path):
    write(tmp_path / "ep.py", """
        def fit(config, report):
            for ep in range(1, 4):
                report(epoch=ep, train_loss=1.0 / ep, val_acc=0.5 + ep / 10)
            report(step=10, loss=0.1)  # `step` names the x-axis too
            report(loss=0.05)  # none named: the next step
            report(epoch=2.0, val_acc=0.9)  # a whole float is a step; a step already reported is replaced
            report(epoch="two", acc=0.3)  # no number: not a step, and no metric either
            return {"val_acc": 0.8}
        """)
    r = _run_worker(tmp_path, [_trial(tmp_path, "e", f"{tmp_path / 'ep.py'}:fit")])
    epochs = [m for m in map(json.loads, r.stdout.splitlines()) if m["type"] == "epoch"]
    assert [e["step"] for e in epochs] == [1, 2, 3, 10, 11, 2, 3], "unnamed: the step after the last one"
    assert epochs[0]["metrics"] == {"train_loss": 1.0, "val_acc": 0.6}, "epoch is the x-axis, not a curve"
    assert epochs[3]["metrics"] == {"loss": 0.1} and epochs[5]["metrics"] == {"val_acc": 0.9}
    assert epochs[6]["metrics"] == {"acc": 0.3}
    assert not any({"epoch", "step"} & set(e["metrics"]) for e in epochs)
