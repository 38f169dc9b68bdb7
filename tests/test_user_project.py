"""A user's own project, whatever its packages are called: gridwatch's names never collide with them."""

import json

from helpers import cli, grid, write

PACKAGES = {
    "core/__init__.py": "",
    "core/utils.py": "def scale(x):\n    return 10.0 * x\n",
    "core/metrics.py": "def clean(d):\n    return {k: float(v) for k, v in d.items()}\n",
    "core/train.py": ("from core.metrics import clean\nfrom core.utils import scale\n"
                      "from utils import OFFSET\nimport protocol\n\n"
                      "def fit(config):\n"
                      "    score = scale(config['x']) + OFFSET + protocol.BONUS\n"
                      "    return clean({'score': score, 'fold': config['fold']})\n"),
    "gui/__init__.py": "RAISE = 1 / 0  # importing this by mistake would fail loudly\n",
    "resources/__init__.py": "",
    "utils/__init__.py": "OFFSET = 0.5\n",
    "protocol.py": "BONUS = 0.25\n",
    "metrics.py": "raise ImportError('not this metrics')\n",
}


def _project(folder):
    for name, text in PACKAGES.items():
        write(folder / name, text)
    return grid(folder, """
        [[model]]
        name = "by-module"
        trainable = "core.train:fit"
        [model.grid]
        x = [1, 2]

        [[model]]
        name = "by-file"
        trainable = "core/train.py:fit"
        [model.grid]
        x = [3]
        """)


def test_a_project_with_its_own_core_gui_utils_metrics_and_protocol_runs(outside):
    g = _project(outside)
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--gpus", "none", cwd=outside)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    rows = json.loads(cli("report", str(outside / "r.db"), "--format", "json", cwd=outside).stdout)
    assert len(rows) == 6 and {row["state"] for row in rows} == {"finished"}
    scores = sorted(row["metric.score"] for row in rows)
    assert scores == [10.75, 10.75, 20.75, 20.75, 30.75, 30.75], "the user's core.utils, utils and protocol"


def test_the_project_also_runs_from_another_folder(outside):
    g = _project(outside / "proj")
    elsewhere = outside / "elsewhere"
    write(elsewhere / "core" / "__init__.py", "raise ImportError('the current folder is not the grid folder')\n")
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--gpus", "none", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]


def test_the_old_demo_path_is_refused_with_the_new_one_named(outside):
    g = grid(outside, '[[model]]\nname = "m"\ntrainable = "core.demo:mlp"\n')
    r = cli("run", str(g), cwd=outside)
    assert r.returncode == 2
    assert "model[0] (m).trainable: cannot import 'core'" in r.stderr and "gridwatch.demo:mlp" in r.stderr


def test_runs_lists_every_run_in_the_runs_folder(outside):
    g = grid(outside, '[[model]]\nname = "m"\ntrainable = "t.py:fit"\n[model.grid]\nx = [1, 2]\n', name="listed")
    write(outside / "t.py", "def fit(config):\n    return {'acc': config['x'] / 10}\n")
    assert cli("runs", cwd=outside).stdout.startswith("no runs yet in ")
    r = cli("run", str(g), "--gpus", "none", cwd=outside)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((outside / "runs").glob("listed-*.gridwatch.db"))) == 1, "the default is the runs folder"
    listed = cli("runs", cwd=outside)
    assert listed.returncode == 0
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("listed"))
    assert " done " in line and "4/4" in line and "acc 0.2000 (m x=2)" in line


def test_the_primary_metric_is_the_first_one_the_trainable_returns(outside):
    write(outside / "t.py", "def fit(config):\n    return {'zeta': float(config['x']), 'acc': 0.5}\n")
    g = grid(outside, '[[model]]\nname = "m"\ntrainable = "t.py:fit"\n[model.grid]\nx = [1, 2]\n')
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--gpus", "none", cwd=outside)
    assert r.returncode == 0, r.stderr[-2000:]
    board = r.stdout.split("Leaderboard")[1].splitlines()
    assert any("zeta ↑" in line and "x=2" in line for line in board[3:4]), "ranked by zeta, best (2) first"
    rows = json.loads(cli("report", str(outside / "r.db"), "--format", "json", cwd=outside).stdout)
    assert [k for k in rows[0] if k.startswith("metric.")] == ["metric.zeta", "metric.acc"]
