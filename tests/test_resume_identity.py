"""A trial's identity is everything that decides its result: resume after editing the grid reruns exactly
what changed, says what changed, and never reuses another grid's results file. Real CLI runs."""

import json
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import cli, write

TRAINABLE = """
import hashlib, json
VERSION = {version}
def fit(config):
    blob = json.dumps([VERSION, sorted((k, v) for k, v in config.items() if k not in ("device", "trial_dir"))])
    return {{"acc": int(hashlib.sha1(blob.encode()).hexdigest()[:6], 16) / 16**6}}
"""


def write_grid(folder, folds=2, seed=0, epochs=1, lrs=(0.1, 0.2), version=1, name="exp"):
    write(folder / "train.py", TRAINABLE.format(version=version))
    lr = ", ".join(map(str, lrs))
    return write(folder / "grid.toml", f"""
        [run]
        name = "{name}"
        folds = {folds}
        seed = {seed}
        [devices]
        cpu_slots = 2
        [[model]]
        name = "m"
        trainable = "train.py:fit"
        [model.grid]
        lr = [{lr}]
        [model.fixed]
        epochs = {epochs}
        """)


def results(db):
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, state, metrics FROM trials").fetchall()
    return {tid: (state, json.loads(m or "{}")) for tid, state, m in rows}


def current(db):
    return {tid: m for tid, (state, m) in results(db).items() if state != "superseded"}


def test_changing_a_fixed_value_reruns_every_trial_and_says_so(outside):
    g = write_grid(outside, epochs=1)
    assert cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside).returncode == 0
    before = current(outside / "r.gridwatch.db")
    assert len(before) == 4
    write_grid(outside, epochs=50)
    r = cli("run", str(g), "--db", "r.gridwatch.db", "--resume", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert "model m: fixed.epochs 1 → 50" in r.stderr and "0 finished trials kept, 4 to run" in r.stderr
    assert "4 earlier trials no longer match the grid" in r.stderr
    after = current(outside / "r.gridwatch.db")
    assert len(after) == 4 and not set(after) & set(before), "every trial is a new one"
    assert "2/2" in r.stdout and "4/2" not in r.stdout and "3/2" not in r.stdout


def test_more_folds_keep_the_finished_ones(outside):
    g = write_grid(outside, folds=2)
    assert cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside).returncode == 0
    write_grid(outside, folds=3)
    r = cli("run", str(g), "--db", "r.gridwatch.db", "--resume", cwd=outside)
    assert r.returncode == 0 and "folds 2 → 3" in r.stderr, r.stderr
    # n_folds is part of every trial's identity (a fold's split depends on it): all 6 run anew
    assert "0 finished trials kept, 6 to run" in r.stderr


def test_an_unchanged_grid_resumes_only_what_is_missing(outside):
    g = write_grid(outside)
    assert cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside).returncode == 0
    r = cli("run", str(g), "--db", "r.gridwatch.db", "--resume", cwd=outside)
    assert r.returncode == 0 and "4 finished trials kept, 0 to run" in r.stderr, r.stderr
    assert "the grid changed" not in r.stderr


def test_editing_the_trainables_source_reruns_its_trials(outside):
    g = write_grid(outside, version=1)
    assert cli("run", str(g), "--db", "r.gridwatch.db", cwd=outside).returncode == 0
    write_grid(outside, version=2)
    r = cli("run", str(g), "--db", "r.gridwatch.db", "--resume", cwd=outside)
    assert r.returncode == 0 and "0 finished trials kept, 4 to run" in r.stderr, r.stderr


def test_resume_finds_this_grid_files_results_not_another_by_name(outside):
    a, b = outside / "a", outside / "b"
    ga = write_grid(a, name="exp")
    gb = write_grid(b, name="exp-b")
    assert cli("run", str(ga), cwd=outside).returncode == 0
    assert cli("run", str(gb), cwd=outside).returncode == 0  # newer, and its name starts with "exp"
    r = cli("run", str(ga), "--resume", cwd=outside)
    assert r.returncode == 0 and "4 finished trials kept, 0 to run" in r.stderr, r.stderr
    assert "/exp-2" in r.stderr and "exp-b-" not in r.stderr


def test_another_grids_file_is_refused_unless_forced(outside):
    a, b = outside / "a", outside / "b"
    ga, gb = write_grid(a), write_grid(b, name="other")
    assert cli("run", str(ga), "--db", "r.gridwatch.db", cwd=outside).returncode == 0
    r = cli("run", str(gb), "--db", "r.gridwatch.db", "--resume", cwd=outside)
    assert r.returncode == 2 and "holds the results of another grid file" in r.stderr and "--force" in r.stderr
    forced = cli("run", str(gb), "--db", "r.gridwatch.db", "--resume", "--force", cwd=outside)
    assert forced.returncode == 0, forced.stderr


EDITS = st.fixed_dictionaries({
    "folds": st.sampled_from([2, 3]), "seed": st.sampled_from([0, 1]), "epochs": st.sampled_from([1, 2]),
    "lrs": st.sampled_from([(0.1, 0.2), (0.1,), (0.2, 0.3)]), "version": st.sampled_from([1, 2]),
})


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=EDITS)
def test_a_resumed_edited_grid_equals_a_fresh_run_of_it(tmp_path_factory, edit):
    folder = tmp_path_factory.mktemp("edit")
    g = write_grid(folder)
    assert cli("run", str(g), "--db", "r.gridwatch.db", cwd=folder).returncode == 0
    old = set(current(folder / "r.gridwatch.db"))
    write_grid(folder, **edit)
    resumed = cli("run", str(g), "--db", "r.gridwatch.db", "--resume", cwd=folder)
    fresh = cli("run", str(g), "--db", "fresh.gridwatch.db", cwd=folder)
    assert resumed.returncode == 0 and fresh.returncode == 0, resumed.stderr + fresh.stderr
    got, want = current(folder / "r.gridwatch.db"), current(folder / "fresh.gridwatch.db")
    assert got == want, "trial by trial: the same ids and the same metrics"
    assert old - set(want) <= set(results(folder / "r.gridwatch.db")), "the old grid's results stay in the file"

    def board(out):
        return sorted(line for line in out.splitlines() if line[:1].isdigit() and " m " in line)

    assert board(resumed.stdout) == board(fresh.stdout), "no trial of the old grid reaches the leaderboard"
