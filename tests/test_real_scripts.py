"""Unmodified-style training scripts as command trainables, through the real CLI: what they print becomes
metrics, each trial has its own folder, failures are readable without the window, output scales."""

import json
import os
import subprocess
import sys

from helpers import cli, cli_env, grid, write

ARGPARSE = """
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--fold", type=int, default=0)
a = p.parse_args()
print(f"Namespace(lr={a.lr}, epochs={a.epochs})")
for e in range(1, a.epochs + 1):
    print(f"STEP:  {e}")
    print(f"loss: {1.0 / e + a.lr:.4f}")
    print(f"test loss: {2.0 / e + a.lr:.4f}")
print(f"| end of epoch {a.epochs:3d} | time:  9.87s | valid loss {1.5 + a.lr:5.2f} | valid ppl {330.12 + a.lr:8.2f}")
print(f"Epoch {a.epochs}: 100%|##########| 469/469 [00:12<00:00, 38.2it/s, acc={0.9 - a.lr:.3f}]")
"""


def _model(name, command, extra=""):
    return f'[[model]]\nname = "{name}"\ncommand = "{command}"\n{extra}\n[model.grid]\nlr = [0.1, 0.2]\n'


def test_real_output_formats_become_the_right_metrics(outside):
    write(outside / "train.py", ARGPARSE)
    g = grid(outside, _model("s", "python train.py --lr {lr} --fold {fold}", 'metric = "valid_loss"'), folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert "s: ranked by valid_loss (lower is better)" in r.stderr
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    m = {k.removeprefix("metric."): v for k, v in rows[0].items() if k.startswith("metric.")}
    lr = rows[0]["param.lr"]
    assert m["loss"] == round(1 / 3 + lr, 4) and m["test_loss"] == round(2 / 3 + lr, 4), "test loss is not loss"
    assert m["valid_loss"] == round(1.5 + lr, 2) and m["valid_ppl"] == round(330.12 + lr, 2)
    assert m["acc"] == round(0.9 - lr, 3), "a tqdm postfix"
    assert not {"step", "epoch", "STEP", "lr", "epochs"} & set(m), "counters and echoed arguments are no metrics"
    assert "valid_loss ↓" in r.stdout, "the leaderboard ranks by the model's metric"


def test_a_wrong_flag_shows_argparses_message_in_the_cli_and_the_report(outside):
    write(outside / "train.py", ARGPARSE)
    g = grid(outside, _model("s", "python train.py --lr {lr} --device cpu"), folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    assert r.returncode == 1
    said = "train.py: error: unrecognized arguments: --device cpu"
    assert f"command exited with code 2: {said}" in r.stdout, r.stdout
    assert "usage: train.py" in r.stdout, "and the last lines of its output"
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert said in rows[0]["reason"] and said in rows[0]["log_tail"]
    logs = cli("logs", "r.gridwatch.db", rows[0]["trial_id"], cwd=outside)
    assert logs.returncode == 0 and said in logs.stdout and "usage: train.py" in logs.stdout


def test_output_with_no_metric_fails_with_a_hint(outside):
    write(outside / "quiet.py", "print('training...')\nprint('done, saved to model.pt')\n")
    g = grid(outside, _model("q", "python quiet.py --fold {fold}"), folds=2)
    r = cli("run", str(g), cwd=outside)
    assert r.returncode == 1, "no metric, no success"
    assert "no metric in its output: done, saved to model.pt" in r.stdout and "metrics_regex" in r.stdout


def test_a_named_metric_that_never_appears_fails_naming_what_was_seen(outside):
    write(outside / "train.py", ARGPARSE)
    g = grid(outside, _model("s", "python train.py --lr {lr} --fold {fold}", 'metric = "val_loss"'), folds=2)
    r = cli("run", str(g), cwd=outside)
    assert r.returncode == 1
    assert "metric 'val_loss' never appeared; saw: " in r.stdout and "test_loss" in r.stdout


def test_regexes_add_to_the_built_in_formats(outside):
    write(outside / "t.py", "print('loss: 0.5')\nprint('score 91 points')\nprint('bleu=0.31/0.4')\n")
    extra = "metrics_regex = ['score (?P<score>[0-9]+) points', 'bleu=(?P<bleu>[0-9.]+)/']"
    g = grid(outside, _model("t", "python t.py --x {fold}", extra), folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (rows[0]["metric.loss"], rows[0]["metric.score"], rows[0]["metric.bleu"]) == (0.5, 91.0, 0.31)


SAVER = """
import os, sys, time
me = sys.argv[1]
with open("model.pt", "w") as f:
    f.write(me)
open(os.path.join(os.environ["GRIDWATCH_TRIAL_DIR"], "started"), "w").close()
others = [d for d in os.listdir("..") if d != os.environ["GRIDWATCH_TRIAL_ID"]]
deadline = time.time() + 30
while time.time() < deadline and not all(os.path.exists(os.path.join("..", d, "started")) for d in others):
    time.sleep(0.05)   # both trials have saved before either reloads
with open("model.pt") as f:
    got = f.read()
with open("data/input.txt") as f:
    data = f.read().strip()
print(f"mine={float(got == me)} data_ok={float(data == 'inputs')}")
"""


def test_two_concurrent_trials_save_and_reload_their_own_model_pt(outside):
    write(outside / "saver.py", SAVER)
    write(outside / "data" / "input.txt", "inputs\n")
    g = grid(outside, '[[model]]\nname = "m"\ncommand = "python saver.py {trial_id}"\n[model.grid]\nlr = [1, 2]\n',
             folds=2, devices="cpu_slots = 2")
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "one run per config" in r.stderr, "no {fold}: one run per config, not two identical ones"
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert len(rows) == 2 and all(row["metric.mine"] == 1.0 and row["metric.data_ok"] == 1.0 for row in rows)
    for row in rows:
        folder = outside / "r" / "trials" / row["trial_id"]
        assert row["trial_dir"] == str(folder) and (folder / "model.pt").read_text() == row["trial_id"]
    assert not (outside / "model.pt").exists(), "nothing written into the grid's folder"
    assert (folder / "data").is_symlink() and (folder / "saver.py").is_file(), "the grid folder, mirrored"
    assert not list(folder.glob("*.gridwatch.db*")), "the run's own results file is no input"


def test_repeats_run_a_foldless_command_several_times_with_their_own_seeds(outside):
    write(outside / "r.py", "import sys\nprint(f'acc={0.5 + int(sys.argv[1]) / 100}')\n")
    g = grid(outside, _model("r", "python r.py {seed}", "repeats = 3"), folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    assert r.returncode == 0 and "3 runs (repeats) per config" in r.stderr, r.stderr
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert len(rows) == 6 and sorted({row["metric.acc"] for row in rows}) == [0.5, 0.51, 0.52]
    assert "3/3" in r.stdout, "the leaderboard counts the repeats"


def test_a_50_mb_line_is_capped_and_costs_no_memory(outside):
    write(outside / "big.py", "import sys\nsys.stdout.write('x' * 50_000_000 + '\\n')\nprint('loss: 0.5')\n")
    g = grid(outside, _model("b", "python big.py {fold}"), folds=2, devices="cpu_slots = 1")
    # A fresh parent measures the CLI's tree alone: the largest RSS of the CLI, its workers and the script.
    measure = ("import resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "gridwatch", "run", str(g),
                          "--db", "r.gridwatch.db", "--quiet"], cwd=outside, env=cli_env(outside),
                         capture_output=True, text=True, timeout=120)
    code, peak_kib = map(int, out.stdout.split())
    assert code == 0, out.stderr
    assert peak_kib > 50 * 1024, "precondition: the script's own 50 MB line is in the count"
    assert peak_kib < 200 * 1024, f"the CLI, its workers and the script peaked at {peak_kib / 1024:.0f} MB"
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert len(rows[0]["log_tail"]) < 20_000 and "more characters of this line not kept" in rows[0]["log_tail"]
    log = outside / "r" / "trials" / rows[0]["trial_id"] / "gridwatch-output.log"
    assert log.stat().st_size < 20_000


def test_quiet_prints_a_few_lines_on_a_big_grid(outside):
    write(outside / "f.py", "import sys\nprint(f'acc={float(sys.argv[1]) / 1000}')\n")
    axis = ", ".join(str(i) for i in range(60))
    g = grid(outside, f'[[model]]\nname = "f"\ncommand = "python f.py {{x}} {{fold}}"\n[model.grid]\nx = [{axis}]\n',
             folds=2)
    r = cli("run", str(g), "--quiet", cwd=outside, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) <= 12, r.stdout
    assert "... and 59 more configs" in r.stdout
    full = cli("run", str(g), "--db", "full.gridwatch.db", cwd=outside, timeout=300)
    assert "... and 40 more configs" in full.stdout and "Timing" not in full.stdout
    assert len(full.stdout.splitlines()) < 40


def test_python_trainables_get_their_folder_too(outside):
    write(outside / "py_t.py", """
        import os
        def fit(config):
            with open("out.txt", "w") as f:
                f.write(config["trial_id"])
            same = float(os.getcwd() == config["trial_dir"] == os.environ["GRIDWATCH_TRIAL_DIR"])
            return {"acc": 0.5, "in_own_folder": same}
        """)
    g = grid(outside, '[[model]]\nname = "p"\ntrainable = "py_t.py:fit"\n[model.grid]\nlr = [1]\n', folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    rows = json.loads(cli("report", "r.gridwatch.db", "--format", "json", cwd=outside).stdout)
    assert r.returncode == 0 and all(row["metric.in_own_folder"] == 1.0 for row in rows), r.stdout
    assert (outside / "r" / "trials" / rows[0]["trial_id"] / "out.txt").read_text() == rows[0]["trial_id"]
    assert not (outside / "out.txt").exists()


def test_workdir_shared_runs_in_the_grid_folder(outside):
    write(outside / "w.py", "import os\nprint(f'here={float(os.getcwd() == os.path.dirname(__file__))}')\n"
                            "open('shared.txt', 'a').write('x')\n")
    g = grid(outside, _model("w", f"{sys.executable} {outside / 'w.py'} {{fold}}", 'workdir = "shared"'), folds=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (outside / "shared.txt").read_text() == "x" * 4
    assert os.path.isdir(outside / "r" / "trials"), "the trial folders exist (their logs) all the same"


def test_a_traceback_names_the_exception_not_the_advice_after_it(outside):
    write(outside / "crash.py", """
        import sys
        print("loss: 1.0")
        print("Traceback (most recent call last):", file=sys.stderr)
        print("_pickle.UnpicklingError: Weights only load failed.", file=sys.stderr)
        print("Check the documentation of torch.load to learn more.", file=sys.stderr)
        sys.exit(1)
        """)
    g = grid(outside, _model("c", "python crash.py {fold}"), folds=2)
    r = cli("run", str(g), "--quiet", cwd=outside)
    assert r.returncode == 1
    assert "command exited with code 1: _pickle.UnpicklingError: Weights only load failed." in r.stdout
    assert "    | " not in r.stdout, "--quiet: reasons only, no output lines"
