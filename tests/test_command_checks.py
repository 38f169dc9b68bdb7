"""A command's python script is checked before anything runs: a missing one is one line naming the grid file,
the model and the path (exit 2), not a failure in every trial."""

import pytest

from gridwatch.grid.spec import SpecError, parse_grid

from helpers import cli, write


def _grid(folder, command, extra=""):
    text = (f'[run]\nname = "t"\nfolds = 2\n[[model]]\nname = "script"\ncommand = \'{command}\'\n{extra}'
            '[model.grid]\nlr = [0.1]\n')
    return write(folder / "grid.toml", text)


def _parse(folder, command, extra=""):
    g = _grid(folder, command, extra)
    return parse_grid(g.read_text(), g)


@pytest.mark.parametrize("program", ["python", "python3", "python3.11", "/usr/bin/python3", ".venv/bin/python"])
@pytest.mark.parametrize("options", ["", "-u ", "-W ignore ", "-X dev -B ", "-Wignore -- "])
def test_a_missing_script_is_named_with_the_file_and_model(tmp_path, program, options):
    write(tmp_path / "train_script.py", "print('loss: 1')\n")
    assert _parse(tmp_path, f"{program} {options}train_script.py --lr {{lr}}").models[0].kind == "command"
    with pytest.raises(SpecError) as err:
        _parse(tmp_path, f"{program} {options}train_scrpt.py --lr {{lr}}")
    assert err.value.key == "model[0] (script).command"
    assert err.value.message == f"no such file: {tmp_path / 'train_scrpt.py'} (did you mean train_script.py?)"
    assert str(err.value).startswith(str(tmp_path / "grid.toml"))


def test_the_script_is_looked_up_in_the_models_cwd(tmp_path):
    write(tmp_path / "sub" / "train.py", "print('loss: 1')\n")
    write(tmp_path / "top.py", "print('loss: 1')\n")
    assert _parse(tmp_path, "python train.py --lr {lr}", 'cwd = "sub"\n').models[0].cwd == str(tmp_path / "sub")
    assert _parse(tmp_path, "python sub/train.py --lr {lr}")
    assert _parse(tmp_path, f"python {tmp_path / 'top.py'} --lr {{lr}}", 'cwd = "sub"\n')
    with pytest.raises(SpecError, match="no such file: .*/sub/top.py"):
        _parse(tmp_path, "python top.py --lr {lr}", 'cwd = "sub"\n')


@pytest.mark.parametrize("command", [
    "python -m my_pkg.train --lr {lr}",  # a module: found by the interpreter, not here
    "python -um my_pkg.train --lr {lr}",
    "python -c \"print(1)\" missing.py",
    "python train_{lr}.py",  # a placeholder: known only per trial
    "python {lr}",
    "bash missing.py {lr}",  # not a python program
    "./missing.py {lr}",
    "python - missing.py {lr}",  # stdin
    "python --version {lr}",  # no script at all
    "python missing.txt {lr}",
])
def test_only_a_pythons_script_is_checked(tmp_path, command):
    assert _parse(tmp_path, command).models[0].target == command


def test_unbalanced_quotes_are_caught_too(tmp_path):
    with pytest.raises(SpecError, match="cannot split into arguments: No closing quotation"):
        _parse(tmp_path, 'python train.py --name "x {lr}')


def test_the_cli_refuses_the_grid_in_one_line_before_any_trial_runs(tmp_path):
    g = _grid(tmp_path, "python train_scrpt.py --lr {lr} --fold {fold}")
    r = cli("run", str(g), "--db", "r.gridwatch.db", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"gridwatch: error: {g}: model[0] (script).command: no such file: {tmp_path / 'train_scrpt.py'}"]
    assert not (tmp_path / "r.gridwatch.db").exists() and not (tmp_path / "r").exists(), "nothing ran"
