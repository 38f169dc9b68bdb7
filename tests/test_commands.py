"""Command templates, output lines, and the step each printed value is plotted at (formats: test_parse.py)."""

import io
import os
import subprocess
import sys

from PySide6.QtCore import Qt

from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial
from gridwatch.gui.trials_model import PROGRESS_COL, TrialsModel
from gridwatch.run.estimates import Estimates
from gridwatch.run.lifecycle import TrialLifecycle
from gridwatch.run.scheduler import SlotView, TrialScheduler
from gridwatch.worker import protocol
from gridwatch.worker.commands import LINE_MAX, build_args, read_lines
from gridwatch.worker.epochs import EpochSteps
from gridwatch.worker.parse import MetricParser

from helpers import REPO, write

CPU = SlotView("cpu0", "cpu", "host")


def test_args_are_filled_per_token_never_through_a_shell():
    args = build_args("python train.py --name {name} --lr {lr}", {"name": "a b; rm -rf ~ $(x)", "lr": 0.1})
    assert args == ["python", "train.py", "--name", "a b; rm -rf ~ $(x)", "--lr", "0.1"]


def test_over_long_lines_are_cut_and_the_rest_is_read_and_dropped():
    text = "short\n" + "x" * (3 * LINE_MAX + 5) + "\nloss: 0.5\n" + "y" * (LINE_MAX + 1)
    lines = list(read_lines(io.StringIO(text)))
    assert lines[0] == "short" and lines[2] == "loss: 0.5"
    assert lines[1].startswith("x" * LINE_MAX) and f"{2 * LINE_MAX + 5:,} more characters" in lines[1]
    assert lines[3].startswith("y" * LINE_MAX) and "1 more characters" in lines[3] and len(lines) == 4


# -- which step each printed value belongs to -----------------------------------------------------------

def _points(lines):
    """Each line through the parser and EpochSteps: the curve points, the final values, the total."""
    parser, steps = MetricParser(), EpochSteps()
    points = [p for line in lines for p in steps.points(parser.parse(line))]
    return points, steps.final, steps.total


def _series(points, key):
    return [(step, value) for k, step, value in points if k == key]


def test_without_an_epoch_counter_each_value_is_its_keys_next_step():
    points, final, total = _points(["epochs: 10", "step 0: loss: 0.4", "step 1: loss: 0.3", "acc=0.5",
                                    "step 2: loss: 0.2"])
    assert _series(points, "loss") == [(1, 0.4), (2, 0.3), (3, 0.2)] and _series(points, "acc") == [(1, 0.5)]
    assert final == {"loss": 0.2, "acc": 0.5} and total is None


def test_tqdm_postfixes_inside_an_epoch_stay_out_of_the_epoch_curves():
    lines = []
    for e in range(1, 4):
        lines += [f" 50%|#####     | 1/2 [00:01<00:01,  1.00it/s, loss={e}.5, acc=0.{e}]",
                  f"100%|##########| 2/2 [00:02<00:00,  1.00it/s, loss={e}.2, acc=0.{e}5]",
                  f"epoch {e}/3 - loss: 0.{e} - val_acc: 0.8{e}"]
    points, final, total = _points(lines)
    assert _series(points, "val_acc") == [(1, 0.81), (2, 0.82), (3, 0.83)]
    # epoch 1's finished bar came before any epoch counter: loss's step 1, which the epoch line then replaces
    assert _series(points, "loss") == [(1, 1.2), (1, 0.1), (2, 0.2), (3, 0.3)]
    assert _series(points, "acc") == [(1, 0.15)], "later bars belong to no epoch yet: kept out"
    assert final == {"loss": 0.3, "acc": 0.35, "val_acc": 0.83}, "a bar-only key keeps its last value"
    assert total == 3


def test_a_header_epoch_line_steps_the_values_after_it():
    lines = ["Epoch 1/2", "469/469 [==============================] - 3s 6ms/step - loss: 0.29 - val_loss: 0.14",
             "Epoch 2/2", "469/469 [==============================] - 3s 6ms/step - loss: 0.12 - val_loss: 0.09"]
    points, _, total = _points(lines)
    assert _series(points, "val_loss") == [(1, 0.14), (2, 0.09)] and total == 2


def test_a_finished_bar_after_a_header_line_is_that_epochs():
    lines = []
    for e in range(1, 3):
        lines += [f"Epoch {e}/2", f" 50%|#####     | 1/2 [00:01<00:01, loss=0.{e}9]",
                  f"100%|##########| 2/2 [00:02<00:00, loss=0.{e}5, acc=0.{e}]"]
    points, final, total = _points(lines)
    assert _series(points, "loss") == [(1, 0.15), (2, 0.25)] and _series(points, "acc") == [(1, 0.1), (2, 0.2)]
    assert final == {"loss": 0.25, "acc": 0.2} and total == 2


def test_values_after_an_epochs_lines_stay_in_that_epoch_and_its_last_value_counts():
    lines = ["Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.30", "Train Epoch: 1 [640/60000 (1%)]\tLoss: 1.10",
             "Test set: Average loss: 0.20, Accuracy: 9890/10000 (99%)",
             "Train Epoch: 2 [0/60000 (0%)]\tLoss: 0.50", "Test set: Average loss: 0.10, Accuracy: 9900/10000 (99%)"]
    points, final, total = _points(lines)
    assert _series(points, "average_loss") == [(1, 0.2), (2, 0.1)]
    assert _series(points, "loss")[-1] == (2, 0.5) and {s for s, _ in _series(points, "loss")} == {1, 2}
    assert final["loss"] == 0.5 and total is None


def test_a_bar_with_its_own_epoch_and_fractional_epochs():
    lightning = ["Epoch 0:  50%|#####     | 1/2 [00:01<00:01, loss=0.9]",
                 "Epoch 0: 100%|##########| 2/2 [00:02<00:00, loss=0.7, val_loss=0.6]",
                 "Epoch 1: 100%|##########| 2/2 [00:02<00:00, loss=0.5, val_loss=0.4]"]
    points, _, _ = _points(lightning)
    assert _series(points, "val_loss") == [(0, 0.6), (1, 0.4)] and _series(points, "loss") == [(0, 0.7), (1, 0.5)]
    hugging_face = ["{'loss': 0.9, 'epoch': 0.5}", "{'loss': 0.7, 'epoch': 1.0}", "{'eval_loss': 0.6, 'epoch': 1.0}",
                    "{'loss': 0.5, 'epoch': 1.5}"]
    points, _, _ = _points(hugging_face)
    assert _series(points, "loss") == [(1, 0.9), (1, 0.7), (2, 0.5)] and _series(points, "eval_loss") == [(1, 0.6)]


# -- a real worker running a real script ------------------------------------------------------------------

TQDM_SCRIPT = """
import sys
E, B = 4, 3
for e in range(1, E + 1):
    for b in range(1, B + 1):
        bar = "#" * (10 * b // B)
        print(f"{100 * b // B:3d}%|{bar:<10}| {b}/{B} [00:0{b}<00:00,  3.00it/s, loss={1 / (e * b):.3f}]")
    print(f"epoch {e}/{E} - loss: {0.5 / e:.3f} - val_acc: {0.6 + e / 100:.2f}")
"""


def _worker_messages(tmp_path, script):
    write(tmp_path / "train.py", script)
    trial = {"id": "c1", "kind": "command", "target": "python train.py --lr {lr}", "cwd": str(tmp_path),
             "metrics_regex": None, "config": {"lr": 0.1, "fold": 0, "n_folds": 2, "seed": 0, "device": "cpu"}}
    env = dict(os.environ, PYTHONPATH=str(REPO), GRIDWATCH_SLOT="cpu0")
    lines = protocol.encode("run", trial=trial).decode() + protocol.encode("shutdown").decode()
    r = subprocess.run([sys.executable, "-m", "gridwatch.worker"], input=lines, capture_output=True, text=True,
                       env=env, timeout=60)
    return [protocol.decode(line) for line in r.stdout.splitlines()]


def _lifecycle():
    trial = Trial("c1", "s", "s-1", {"lr": 0.1}, 0, "any", {"lr": 0.1})
    model = ModelSpec("s", "command", "python train.py --lr {lr}", "any", {"lr": [0.1]}, {}, "/tmp")
    lc = TrialLifecycle({"s": model}, [trial], TrialScheduler([trial], Estimates(), {}))
    assert lc.assign(CPU, [CPU], 0.0, None) is not None
    return lc


def test_a_scripts_epochs_are_the_x_axis_and_its_total_the_progress(tmp_path, qapp):
    msgs = _worker_messages(tmp_path, TQDM_SCRIPT)
    end = next(m for m in msgs if m["type"] in ("trial_finished", "trial_failed"))
    assert end["type"] == "trial_finished", end
    assert end["metrics"] == {"loss": 0.125, "val_acc": 0.64}, "the last epoch line's values, not a bar's"
    lc, table = _lifecycle(), TrialsModel()
    lt = lc.get("c1")
    table.reset(lc.live, {"s": "val_acc"})
    progress = table.index(0, PROGRESS_COL)
    shown = []
    for m in msgs:
        if m.get("trial_id") == "c1" and m["type"] not in ("trial_finished", "trial_failed"):
            lc.hear("c1", m, m["t"])
            if m["type"] == "metric" and m["key"] == "val_acc" and m["step"] == 2:
                shown.append((table.data(progress), table.data(progress, Qt.ItemDataRole.UserRole)))
    assert shown == [("2/4", 0.5)], "running: 2 of 4 epochs, a half-filled bar"
    assert [(s, v) for k, s, v, _t in lt.steps if k == "val_acc"] == [(1, 0.61), (2, 0.62), (3, 0.63), (4, 0.64)]
    assert [(s, v) for k, s, v, _t in lt.steps if k == "loss"] == [(1, 0.5), (2, 0.25), (3, 0.167), (4, 0.125)]
    assert lt.epoch == 4 and lt.epochs_total == 4
    lc.hear("c1", end, end["t"])
    assert (table.data(progress), table.data(progress, Qt.ItemDataRole.UserRole)) == ("4/4", 1.0)


def test_a_script_printing_only_epoch_lines_shows_its_total(tmp_path):
    msgs = _worker_messages(tmp_path, "for e in range(1, 5):\n    print(f'epoch {e}/4 acc={e / 10}')\n")
    lc = _lifecycle()
    for m in msgs:
        if m.get("trial_id") == "c1" and m["type"] in ("metric", "log"):
            lc.hear("c1", m, m["t"])
    lt = lc.get("c1")
    assert [m["step"] for m in msgs if m["type"] == "metric"] == [1, 2, 3, 4]
    assert (lt.epoch, lt.epochs_total) == (4, 4)
