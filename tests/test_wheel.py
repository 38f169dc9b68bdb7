"""The package as a stranger gets it: the built wheel, installed (not editable) into a fresh virtual environment.

- the wheel holds one import name, `gridwatch` (core/ -> gridwatch, gui/ -> gridwatch.gui, resources/ ->
  gridwatch.resources with the demo grid), every module of the source tree, and nothing else;
- pip installs its declared dependencies from the wheel's metadata (torch is installed first, pinned to the CPU
  build the Makefile uses, so the wheel's loose `torch>=2.1` never pulls a CUDA build);
- `gridwatch run` works from a user's project that has its own `core`, `gui` and `utils` packages, with both
  trainable forms (`core.train:fit` and `core/train.py:fit`);
- `gridwatch` with no arguments opens the window on the packaged demo grid (offscreen).

Slow (a fresh venv: about half a minute with a warm pip cache), so it can be skipped on purpose with
GRIDWATCH_SKIP_WHEEL=1; it runs by default.
"""

from __future__ import annotations

import json
import os
import tomllib
import zipfile
from pathlib import Path

import psutil
import pytest

from helpers import REPO, FreshVenv, Wheel, grid, write
from helpers import proc_tail as _tail
from helpers import run_cmd as _run

pytestmark = [
    pytest.mark.skipif(os.environ.get("GRIDWATCH_SKIP_WHEEL", "") not in ("", "0"),
                       reason="GRIDWATCH_SKIP_WHEEL is set"),
    # The session fixture (build the wheel, make the venv, install) is paid inside the first test that uses it.
    pytest.mark.timeout(900),
]

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
DEMO_NAME = tomllib.loads((REPO / "resources" / "demo.toml").read_text(encoding="utf-8"))["run"]["name"]
# The session fixtures `wheel` and `venv` (conftest.py, built by helpers.build_wheel and helpers.fresh_venv) are
# shared with the other tests that install the package as a stranger would.


# -- the wheel -------------------------------------------------------------------------------------------------


def test_wheel_holds_one_import_name_and_its_resources(wheel: Wheel):
    names = zipfile.ZipFile(wheel.path).namelist()
    assert {n.split("/")[0] for n in names} == {"gridwatch", f"gridwatch-{VERSION}.dist-info"}
    icons = [f"gridwatch/resources/icons/gridwatch-{n}.png" for n in (16, 32, 48, 64, 128, 256)]
    for data in ("gridwatch/resources/demo.toml", "gridwatch/resources/gridwatch.svg", "gridwatch/py.typed", *icons):
        assert data in names
    entry_points = zipfile.ZipFile(wheel.path).read(f"gridwatch-{VERSION}.dist-info/entry_points.txt").decode()
    assert "gridwatch = gridwatch.gui.app:entry" in entry_points
    assert "gridwatch-gui = gridwatch.gui.app:main" in entry_points


def test_wheel_holds_every_module_of_the_source_tree(wheel: Wheel):
    """A new subpackage of core/ missing from pyproject's `packages` list works in the editable install, but
    not for anyone who installs the wheel."""
    names = set(zipfile.ZipFile(wheel.path).namelist())
    expected = set()
    for folder, into in (("core", "gridwatch"), ("gui", "gridwatch/gui"), ("resources", "gridwatch/resources")):
        for f in (wheel.source / folder).rglob("*.py"):
            expected.add(f"{into}/{f.relative_to(wheel.source / folder).as_posix()}")
    assert expected - names == set(), "source modules missing from the wheel"


# -- a fresh install --------------------------------------------------------------------------------------------


def test_fresh_install_keeps_the_pinned_torch(venv: FreshVenv, capsys: pytest.CaptureFixture[str]):
    with capsys.disabled():
        steps = ", ".join(f"{k} {s:.1f} s" for k, s in venv.seconds.items() if k != "torch version")
        print(f"\n[test_wheel] fresh venv: {steps}; total {sum(venv.seconds.values()):.1f} s")
    assert venv.torch_after == venv.torch_before, "installing the wheel replaced the pinned torch"


def test_fresh_install_imports_gridwatch_from_site_packages_only(venv: FreshVenv, tmp_path: Path):
    code = ("import importlib.util, json, gridwatch, gridwatch.gui, gridwatch.resources; "
            "print(json.dumps({'file': gridwatch.__file__, "
            "'others': [n for n in ('core', 'gui', 'resources') if importlib.util.find_spec(n)]}))")
    proc = _run([venv.python, "-c", code], timeout=120, env=venv.env(), cwd=tmp_path)
    assert proc.returncode == 0, _tail(proc)
    found = json.loads(proc.stdout)
    assert Path(found["file"]).is_relative_to(venv.root), found
    assert found["others"] == [], "the wheel installs top-level names other than gridwatch"


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A user's project with its own `core`, `gui` and `utils` packages, as common as names get."""
    proj = tmp_path / "project"
    write(proj / "core" / "__init__.py", '"""The user\'s own core package."""\n')
    write(proj / "core" / "utils.py", """
        MARKER = 41.5  # only this project's core.utils has it


        def score(lr: float, fold: int) -> float:
            return 1.0 - lr / (fold + 2)
        """)
    write(proj / "core" / "train.py", """
        from core.utils import MARKER, score


        def fit(config):
            return {"val_acc": score(config["lr"], config["fold"]), "marker": MARKER}
        """)
    write(proj / "core" / "metrics.py", """
        def unrelated():
            return "the user's metrics module, not gridwatch's"
        """)
    for pkg in ("gui", "utils"):
        write(proj / pkg / "__init__.py", f"""
            raise ImportError("the user's own {pkg!r} package was imported by gridwatch")
            """)
    grid(proj, """
        [[model]]
        name = "dotted"
        trainable = "core.train:fit"
        device = "cpu"
        metric = "val_acc"
        [model.grid]
        lr = [0.1, 0.2]

        [[model]]
        name = "by_path"
        trainable = "core/train.py:fit"
        device = "cpu"
        metric = "val_acc"
        [model.grid]
        lr = [0.3]
        """, folds=2, devices='cpu_slots = 2\ngpus = "none"', name="wheel-check")
    return proj


def test_fresh_install_runs_a_grid_next_to_the_users_own_core_package(venv: FreshVenv, user_project: Path,
                                                                       tmp_path: Path):
    db = tmp_path / "r.db"
    env = venv.env(GRIDWATCH_RUNS=str(tmp_path / "runs"), GRIDWATCH_CACHE=str(tmp_path / "cache"))
    gridwatch = venv.bin / "gridwatch"
    proc = _run([gridwatch, "run", "grid.toml", "--db", db], timeout=300, env=env, cwd=user_project)
    assert proc.returncode == 0, _tail(proc)

    # No worker outlives the run.
    mine = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(str(venv.root)):
            mine.append(p)
    _, still = psutil.wait_procs(mine, timeout=15)
    assert still == [], f"processes left behind: {[p.info['cmdline'] for p in still]}"

    report = _run([gridwatch, "report", db, "--format", "json"], timeout=120, env=env, cwd=user_project)
    assert report.returncode == 0, _tail(report)
    records = json.loads(report.stdout)
    assert len(records) == (2 + 1) * 2, records
    assert {r["model"] for r in records} == {"dotted", "by_path"}
    assert [r["state"] for r in records] == ["finished"] * len(records), [
        (r["trial_id"], r["state"], r["reason"]) for r in records]
    # The metric came from the project's own core.utils, for both trainable forms.
    assert {r["metric.marker"] for r in records} == {41.5}
    for r in records:
        assert r["metric.val_acc"] == pytest.approx(1.0 - r["param.lr"] / (r["fold"] + 2))
    assert not (user_project / "runs").exists(), "results went into the project folder despite --db"


DRIVER = """
import sys
import traceback
from pathlib import Path

import gridwatch
from gridwatch.gui import app as gapp
from gridwatch.gui.main_window import MainWindow
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

expected_name, venv_root = sys.argv[1], Path(sys.argv[2])
qapp = gapp.get_qapp()


def check():
    try:
        assert Path(gridwatch.__file__).is_relative_to(venv_root), gridwatch.__file__
        shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        assert len(shown) == 1, f"visible main windows: {shown} of {QApplication.topLevelWidgets()}"
        window = shown[0]
        spec = window.editor.spec
        assert spec is not None, f"no valid grid in the editor: {window.editor.message}"
        assert spec.name == expected_name, spec.name
        assert Path(spec.path) == gapp.DEMO_GRID.resolve(), (spec.path, gapp.DEMO_GRID)
        print(f"WINDOW-OK {spec.name}: {len(spec.models)} models from {spec.path}", flush=True)
        window.close()
        qapp.quit()
    except BaseException:
        traceback.print_exc()
        qapp.exit(3)


QTimer.singleShot(0, check)  # runs once main() has shown the window and entered the event loop
sys.exit(gapp.main([]))
"""


def test_fresh_install_opens_the_window_on_the_packaged_demo_grid(venv: FreshVenv, user_project: Path,
                                                                   tmp_path: Path):
    driver = write(tmp_path / "driver" / "open_window.py", DRIVER)
    env = venv.env(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
                   XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
                   GRIDWATCH_RUNS=str(tmp_path / "runs"), GRIDWATCH_CACHE=str(tmp_path / "cache"))
    # From the user's project folder (its own core/gui/utils next to it), as a user starts `gridwatch` there.
    proc = _run([venv.python, driver, DEMO_NAME, venv.root], timeout=180, env=env, cwd=user_project)
    assert proc.returncode == 0, _tail(proc)
    assert f"WINDOW-OK {DEMO_NAME}:" in proc.stdout, _tail(proc)
    assert "/gridwatch/resources/demo.toml" in proc.stdout
