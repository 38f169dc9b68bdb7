from pathlib import Path

import pytest

from gridwatch.cli import main
from gridwatch.grid import trials
from gridwatch.grid.spec import SpecError, load_grid, parse_grid

from helpers import REPO, cli, write

GOOD_MODEL = '[[model]]\nname = "m"\ntrainable = "train.py:fit"\n[model.grid]\nlr = [0.1, 0.2]\n'


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "train.py", "def fit(config):\n    return {'loss': config['lr']}\n")
    return tmp_path


def test_demo_grid_is_valid():
    g = load_grid(REPO / "resources" / "demo.toml")
    assert [m.name for m in g.models] == ["mlp", "lstm", "heatmaps"]
    assert trials.count(g) == len(trials.expand(g)) == (12 + 4 + 2) * 3


def test_defaults(project):
    g = parse_grid(GOOD_MODEL, project / "grid.toml")
    assert (g.folds, g.seed, g.devices.cpu_slots, g.devices.gpus) == (5, 0, None, None)
    m = g.models[0]
    assert m.kind == "python" and m.device == "any" and m.target == f"{project / 'train.py'}:fit"
    assert m.cwd == str(project)


BAD = [
    ("bad TOML", "[run\nname = 'x'\n", ":1:", "invalid TOML"),
    ("unknown top key", "colour = 1\n" + GOOD_MODEL, "colour", "unknown key"),
    ("unknown run key", "[run]\nfoldz = 3\n" + GOOD_MODEL, "run.foldz", "unknown key"),
    ("unknown model key", GOOD_MODEL.replace('name = "m"', 'name = "m"\ndevise = "cpu"'), "devise",
     "unknown key"),
    ("empty axis", GOOD_MODEL.replace("[0.1, 0.2]", "[]"), "grid.lr", "empty"),
    ("axis not a list", GOOD_MODEL.replace("[0.1, 0.2]", "0.1"), "grid.lr", "list"),
    ("folds wrong type", '[run]\nfolds = "five"\n' + GOOD_MODEL, "run.folds", "whole number"),
    ("folds < 2", "[run]\nfolds = 1\n" + GOOD_MODEL, "run.folds", "at least 2"),
    ("missing trainable", '[[model]]\nname = "m"\n', "trainable", "exactly one"),
    ("both trainable and command", GOOD_MODEL.replace('name = "m"', 'name = "m"\ncommand = "echo"'),
     "trainable", "both"),
    ("unknown device", GOOD_MODEL.replace('name = "m"', 'name = "m"\ndevice = "tpu"'), "device", "tpu"),
    ("duplicate model names", GOOD_MODEL + GOOD_MODEL, "model[1].name", "duplicate"),
    ("missing script path", GOOD_MODEL.replace("train.py:fit", "nope.py:fit"), "trainable", "no such file"),
    ("function not in file", GOOD_MODEL.replace("train.py:fit", "train.py:fitt"), "trainable", "fitt"),
    ("non-importable module", GOOD_MODEL.replace("train.py:fit", "no_such_pkg.train:fit"), "trainable",
     "no_such_pkg"),
    ("no models", "[run]\nname = 'x'\n", "model", "at least one"),
    ("reserved param", GOOD_MODEL.replace("lr = ", "fold = "), "grid.fold", "set by gridwatch"),
    ("command field unknown", '[[model]]\nname = "c"\ncommand = "python t.py --lr {lrr}"\n', "command", "{lrr}"),
    ("bad gpus", '[devices]\ngpus = "some"\n' + GOOD_MODEL, "devices.gpus", "list of GPU indices"),
    ("cpu_slots negative", "[devices]\ncpu_slots = -1\n" + GOOD_MODEL, "devices.cpu_slots", "at least 0"),
    ("bad regex", '[[model]]\nname = "c"\ncommand = "x"\nmetrics_regex = "(?P<a"\n', "metrics_regex", "regex"),
    ("same key fixed and grid", GOOD_MODEL + "[model.fixed]\nlr = 1\n", "fixed.lr", "also given"),
    ("bad regex in a list", '[[model]]\nname = "c"\ncommand = "x"\nmetrics_regex = ["a (?P<a>1)", "b"]\n',
     "metrics_regex[1]", "named groups"),
    ("unknown workdir", GOOD_MODEL.replace('name = "m"', 'name = "m"\nworkdir = "tmp"'), "workdir", '"trial"'),
    ("repeats with folds", '[[model]]\nname = "c"\ncommand = "x {fold}"\nrepeats = 3\n', "repeats",
     "without {fold}"),
    ("regex in double quotes", '[[model]]\nname = "c"\ncommand = "x"\nmetrics_regex = "loss\\s+(?P<l>1)"\n',
     "invalid TOML", "single quotes"),
    ("trial_dir is reserved", GOOD_MODEL.replace("lr = ", "trial_dir = "), "grid.trial_dir", "set by gridwatch"),
]


@pytest.mark.parametrize("case,text,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_grid_names_file_and_key(project, case, text, key, words):
    path = write(project / "grid.toml", text)
    with pytest.raises(SpecError) as err:
        load_grid(path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and words in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("case,text,key,words", BAD[:12], ids=[b[0] for b in BAD[:12]])
def test_cli_bad_grid_is_one_line_exit_2(project, capsys, case, text, key, words):
    path = write(project / "grid.toml", text)
    assert main(["run", str(path), "--db", str(project / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gridwatch: error: ") and key in err
    assert not (project / "r.db").exists(), "nothing is created for a bad grid"


def test_cli_subprocess_bad_grid_no_traceback(project):
    path = write(project / "grid.toml", GOOD_MODEL.replace("[0.1, 0.2]", "[]"))
    r = cli("run", str(path), cwd=project)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "grid.lr" in r.stderr


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_grid(tmp_path / "absent.toml")


def test_module_trainable_next_to_grid(tmp_path):
    write(tmp_path / "mypkg" / "__init__.py", "")
    write(tmp_path / "mypkg" / "train.py", "def fit(config):\n    return {}\n")
    g = parse_grid(GOOD_MODEL.replace("train.py:fit", "mypkg.train:fit"), tmp_path / "grid.toml")
    assert g.models[0].target == "mypkg.train:fit"
    with pytest.raises(SpecError, match="no function 'nope'"):
        parse_grid(GOOD_MODEL.replace("train.py:fit", "mypkg.train:nope"), tmp_path / "grid.toml")


def test_spec_never_imports_the_trainable(tmp_path):
    write(tmp_path / "train.py", "raise SystemExit('imported!')\ndef fit(config):\n    return {}\n")
    parse_grid(GOOD_MODEL, Path(tmp_path) / "grid.toml")
