"""The runs folder: where results go by default, and which files belong to which grid."""

import os

from gridwatch.results import runs


def test_the_runs_folder_is_the_env_var_or_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(runs.ENV, str(tmp_path / "mine"))
    assert runs.runs_dir() == tmp_path / "mine"
    assert runs.new_db_path("g").parent == tmp_path / "mine" and runs.new_db_path("g").name.startswith("g-")
    monkeypatch.delenv(runs.ENV)
    assert runs.runs_dir().name == "runs" and "gridwatch" in str(runs.runs_dir())


def test_a_grid_finds_only_its_own_files_newest_first(tmp_path):
    names = ["exp-20260101-101010.gridwatch.db", "exp-b-20260101-101011.gridwatch.db",
             "exp-20260101-101012.gridwatch.db", "exp-notes.gridwatch.db"]
    for i, n in enumerate(names):
        (tmp_path / n).touch()
        os.utime(tmp_path / n, (1000 + i, 1000 + i))
    assert [p.name for p in runs.files_of("exp", tmp_path)] == [names[2], names[0]]
    assert runs.latest_db("exp-b", tmp_path).name == names[1]
    assert runs.latest_db("nope", tmp_path) is None


def test_an_unreadable_file_is_listed_as_such(tmp_path):
    (tmp_path / "broken-20260101-101010.gridwatch.db").write_bytes(b"not sqlite at all" * 100)
    (listed,) = runs.list_runs(tmp_path)
    assert listed.state == "unreadable" and listed.total == -1 and "not a gridwatch results file" in listed.best
