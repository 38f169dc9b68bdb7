"""The Runs panel, a run's grid shown read-only, and two runs compared: real results files, offscreen."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.gui import compare_view
from gridwatch.gui.app import get_qapp
from gridwatch.gui.grid_editor import GridEditor
from gridwatch.gui.grid_files import show_run_grid
from gridwatch.gui.runs_panel import COLUMNS, RunsPanel
from gridwatch.results.store import ResultStore

from helpers import write

GRID = '[run]\nname = "{name}"\nfolds = 2\nseed = 0\n\n[[model]]\nname = "m"\ntrainable = "t.py:fit"\n' \
       '[model.grid]\nx = [1, 2]\n'

# Holds a results file as a live run does (its writer lock, a 'running' session) until stdin closes or it dies.
HOLDER = """
import sys
from pathlib import Path
from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.results.store import ResultStore
g = Path(sys.argv[1])
spec = parse_grid(g.read_text(), g)
ts = trials.expand(spec)
store = ResultStore(Path(sys.argv[2]))
store.begin(spec, ts, ["cpu0"])
store.mark_running(ts[0].id, "cpu0", "cpu", 1000.0)
print("ready", flush=True)
sys.stdin.read()
"""


def grid_file(folder: Path, name: str) -> Path:
    write(folder / "t.py", "def fit(config):\n    return {'acc': config['x']}\n")
    return write(folder / "grid.toml", GRID.format(name=name))


def make_run(runs: Path, g: Path, stamp: str, offset: float = 0.0,
             sessions: tuple[tuple[float, float], ...] = ((1000.0, 1090.0),)) -> Path:
    """A finished run of grid `g`: every trial's acc = x / 10 + offset (+ fold / 100), two epochs each."""
    spec = parse_grid(g.read_text(), g)
    ts = trials.expand(spec)
    db = runs / f"{spec.name}-{stamp}.gridwatch.db"
    for _ in sessions:
        store = ResultStore(db)
        store.begin(spec, ts, ["cpu0"])
        for i, t in enumerate(ts):
            acc = t.params["x"] / 10 + offset + t.fold / 100
            store.mark_running(t.id, "cpu0", "cpu", 1000.0 + i)
            store.finish_trial(t.id, "finished", 1001.0 + i, {"acc": acc}, None,
                               [("acc", 1, acc / 2, 0.0), ("acc", 2, acc, 0.0)], "")
        store.end_session("done")
        store.close()
    conn = sqlite3.connect(db)
    with conn:
        for n, (started, ended) in enumerate(sessions, 1):
            conn.execute("UPDATE sessions SET started=?, ended=? WHERE id=?", (started, ended, n))
    conn.close()
    return db


def cells(panel: RunsPanel, file: str) -> dict[str, str]:
    m = panel.sorted
    for r in range(m.rowCount()):
        row = {col: m.index(r, c).data() for c, col in enumerate(COLUMNS)}
        if row["file"] == file:
            return row
    return {}


def select(panel: RunsPanel, *files: str) -> None:
    panel.table.clearSelection()
    chosen = panel.table.selectionModel()
    for r in range(panel.sorted.rowCount()):
        if panel.sorted.index(r, COLUMNS.index("file")).data() in files:
            chosen.select(panel.sorted.index(r, 0), chosen.SelectionFlag.Select | chosen.SelectionFlag.Rows)


@pytest.fixture
def runs(tmp_path):
    get_qapp()
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


def test_every_run_is_listed_and_one_opens(qtbot, runs, tmp_path):
    g = grid_file(tmp_path / "src", "cmp")
    one = make_run(runs, g, "20260101-101010", sessions=((1000.0, 1050.0), (2000.0, 2100.0)))  # resumed later
    (runs / "junk-20260101-101011.gridwatch.db").write_bytes(b"not a database at all" * 50)
    panel = RunsPanel(runs, refresh_ms=0)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.sorted.rowCount() == 2, timeout=10_000)
    row = cells(panel, one.name)
    assert row["name"] == "cmp" and row["state"] == "done" and row["done"] == "4/4"
    assert row["duration"] == "2m30s", "the time its sessions ran, 50 s + 100 s, not the gap between them"
    assert row["best"] == "acc 0.2050 (m x=2)", "the mean over folds 0.20 and 0.21"
    junk = cells(panel, "junk-20260101-101011.gridwatch.db")
    assert junk["state"] == "unreadable" and "not a gridwatch results file" in junk["best"]

    two = make_run(runs, g, "20260101-101012")
    assert not cells(panel, two.name)
    panel.refresh_button.click()
    qtbot.waitUntil(lambda: bool(cells(panel, two.name)), timeout=10_000)

    select(panel, one.name)
    assert panel.open_button.isEnabled() and not panel.compare_button.isEnabled()
    with qtbot.waitSignal(panel.open_requested, timeout=2000) as opened:
        panel.open_button.click()
    assert opened.args == [str(one)]
    index = next(panel.sorted.index(r, 0) for r in range(panel.sorted.rowCount())
                 if panel.sorted.index(r, COLUMNS.index("file")).data() == two.name)
    panel.table.setCurrentIndex(index)
    with qtbot.waitSignal(panel.open_requested, timeout=2000) as opened:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened.args == [str(two)]


def test_a_held_file_is_running_and_a_dead_one_interrupted(qtbot, runs, tmp_path):
    g = grid_file(tmp_path / "src", "live")
    db = runs / "live-20260101-101010.gridwatch.db"
    write(tmp_path / "holder.py", HOLDER)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "holder.py"), str(g), str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        panel = RunsPanel(runs, refresh_ms=100)  # the periodic refresh sees the death by itself
        qtbot.addWidget(panel)
        panel.show()
        qtbot.waitUntil(lambda: cells(panel, db.name).get("state") == f"running (pid {proc.pid})", timeout=10_000)
    finally:
        proc.kill()  # kill -9: the run never writes that it ended
        proc.communicate(timeout=10)
    qtbot.waitUntil(lambda: cells(panel, db.name).get("state") == "interrupted", timeout=10_000)
    assert cells(panel, db.name)["done"] == "0/4"


def test_a_runs_grid_is_shown_read_only_and_edit_mode_restores(qtbot, runs, tmp_path):
    g = grid_file(tmp_path / "src", "shown")
    db = make_run(runs, g, "20260101-101010")
    mine = grid_file(tmp_path / "mine", "mine")
    editor = GridEditor()
    qtbot.addWidget(editor)
    editor.load_file(mine)
    before = editor.text.toPlainText()
    assert editor.spec is not None and editor.spec.name == "mine" and not editor.read_only
    store = ResultStore(db, create=False)
    try:
        assert show_run_grid(editor, editor, store)
    finally:
        store.close()
    assert editor.read_only and editor.text.toPlainText() == g.read_text()
    assert editor.banner.label.text() == "grid of run shown-20260101-101010 (read-only)"
    assert editor.text.isReadOnly() and not editor.run_box.isEnabled() and not editor.model_form.name.isEnabled()
    assert not editor.model_form.add_param.isEnabled() and editor.model_pick.isEnabled()
    editor.show()
    editor.text.setFocus()
    qtbot.keyClicks(editor.text, "typed")
    assert editor.text.toPlainText() == g.read_text(), "typing changes nothing"
    with qtbot.waitSignal(editor.run_again_requested, timeout=2000) as again:
        editor.banner.run_again.click()
    assert again.args[0].name == "shown"
    with qtbot.waitSignal(editor.resume_requested, timeout=2000) as resume:
        editor.banner.resume.click()
    assert resume.args == [str(db)]

    editor.edit_mode()
    assert not editor.read_only and not editor.banner.isVisible() and editor.text.toPlainText() == before
    assert editor.path == mine.resolve() and editor.spec is not None and editor.spec.name == "mine"
    assert not editor.text.isReadOnly() and editor.run_box.isEnabled() and editor.model_form.name.isEnabled()


def test_two_runs_of_one_grid_compare_and_other_grids_are_refused(qtbot, runs, tmp_path, monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(compare_view.QMessageBox, "warning", lambda _p, _title, text: said.append(text))
    g = grid_file(tmp_path / "src", "cmp")
    a = make_run(runs, g, "20260101-101010", sessions=((1000.0, 1090.0),))
    b = make_run(runs, g, "20260101-101011", offset=0.05, sessions=((3000.0, 3090.0),))
    other = make_run(runs, grid_file(tmp_path / "other", "other"), "20260101-101012")
    panel = RunsPanel(runs, refresh_ms=0)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.sorted.rowCount() == 3, timeout=10_000)

    select(panel, a.name, b.name)
    assert panel.compare_button.isEnabled() and not panel.open_button.isEnabled()
    view = panel.compare_selected()
    assert view is not None and said == []
    qtbot.addWidget(view)
    board = view.board
    rows = [[board.item(r, c).text() for c in range(board.columnCount())] for r in range(board.rowCount())]
    assert [r[:2] for r in rows] == [["m", "x=2"], ["m", "x=1"]]
    assert rows[0][3] == "0.2050 ± 0.0071 (2/2)" and rows[0][4] == "0.2550 ± 0.0071 (2/2)", "A older, B newer"
    assert rows[0][5] == "+0.0500" and rows[1][5] == "+0.0500"
    assert view.metric_pick.currentText() == "acc" and view.plotted == 4, "two folds of each run"

    select(panel, a.name, other.name)
    assert panel.compare_selected() is None
    (text,) = said
    assert "grid 'cmp'" in text and "grid 'other'" in text and "same grid" in text
