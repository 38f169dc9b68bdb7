"""Exports of a results file: leaderboard and trials as CSV, best configs as TOML, from the CLI and the window."""

import csv
import io
import xml.etree.ElementTree as ET

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from gridwatch.cli import main
from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.results.export import best_toml, leaderboard_csv, read_run, trials_csv
from gridwatch.results.store import ResultStore
from gridwatch.results.summary import leaderboard

from helpers import write

MODELS = """
[[model]]
name = "m"
trainable = "t.py:fit"
metric = "score"
[model.grid]
x = [{xs}]
[model.fixed]
epochs = 2
tag = "a,b \\"q\\""

[[model]]
name = "c"
command = "python run.py --lr {{lr}} --fold {{fold}}"
device = "cpu"
metrics_regex = 'loss\\s+(?P<loss>[0-9.]+)'
[model.grid]
lr = [0.1, 0.01]
"""
REASON = 'boom, "quoted"\nsecond line'


def _grid(folder, xs):
    text = '[run]\nname = "ex"\nfolds = 2\n' + MODELS.format(xs=xs)
    return parse_grid(write(folder / "grid.toml", text).read_text(), folder / "grid.toml")


def _finish(store, t, t0, metrics, state="finished", reason=None, peak=None):
    store.mark_running(t.id, "cpu0", "cpu", t0)
    store.finish_trial(t.id, state, t0 + 1.25, metrics, reason, [], "", peak)


@pytest.fixture
def db(tmp_path):
    """A results file: two models, a failed fold, and an earlier grid's (superseded) trials that scored best."""
    write(tmp_path / "t.py", "def fit(config):\n    return {}\n")
    write(tmp_path / "run.py", "print('loss 0.5')\n")  # the command's script: a grid naming a missing one is refused
    path = tmp_path / "runs" / "ex.gridwatch.db"
    store = ResultStore(path)
    old = _grid(tmp_path, "1, 2, 3, 4")
    old_trials = trials.expand(old)
    store.begin(old, old_trials, ["cpu0"])
    for t in old_trials:
        if t.model == "m" and t.params["x"] == 4:
            _finish(store, t, 50.0, {"score": 99.0})
    grid = _grid(tmp_path, "1, 2, 3")
    ts = trials.expand(grid)
    store.begin(grid, ts, ["cpu0"])
    scores = {(1, 0): 0.1 + 0.2, (1, 1): 0.5, (2, 0): 0.9, (2, 1): 0.7, (3, 0): 0.95}
    for i, t in enumerate(ts):
        if t.model == "m" and (t.params["x"], t.fold) in scores:
            _finish(store, t, 100.0 + i, {"score": scores[(t.params["x"], t.fold)], "loss": 1.0 / (i + 1)},
                    peak=2.5e8 + i)
        elif t.model == "m":
            _finish(store, t, 100.0 + i, {}, "failed", REASON)
        else:
            _finish(store, t, 100.0 + i, {"loss": t.params["lr"] * (t.fold + 1), "acc": 0.5})
    store.end_session("failed")
    store.close()
    return path


def _read(db):
    store = ResultStore(db, create=False)
    try:
        return read_run(store)
    finally:
        store.close()


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_leaderboard_csv_has_every_config_best_first_numbers_unrounded(db):
    data = _read(db)
    store = ResultStore(db, create=False)
    stored = store.trials()
    store.close()
    assert any(r.params.get("x") == 4 and r.state == "superseded" for r in stored), "precondition: superseded"
    board = leaderboard(data.rows, data.models, data.folds)
    rows = _rows(leaderboard_csv(data))
    assert len(rows) == len(board) == 5 and all(r["param.x"] != "4" for r in rows), "superseded: left out"
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 6)]
    top = rows[0]
    assert (top["model"], top["param.x"], top["metric"], top["goal"]) == ("m", "2", "score", "max")
    assert float(top["mean"]) == (0.9 + 0.7) / 2 and float(top["sd"]) == board[0].std > 0
    assert (top["folds_done"], top["folds_total"], top["folds_failed"]) == ("2", "2", "0")
    assert float(top["duration_s"]) == 2.5 and float(top["fold_duration_mean_s"]) == 1.25
    x1 = next(r for r in rows if r["param.x"] == "1")
    assert float(x1["mean"]) == (0.1 + 0.2 + 0.5) / 2, "the mean as computed, never rounded"
    x3 = next(r for r in rows if r["param.x"] == "3")
    assert x3["folds_failed"] == "1" and rows.index(x3) > rows.index(x1), "a failed fold ranks after"
    for r, c in zip(rows, board, strict=True):
        assert (r["model"], r["config_key"], float(r["mean"]), float(r["sd"])) == (c.model, c.config_key, c.mean,
                                                                                   c.std)
    lr_rows = [r for r in rows if r["model"] == "c"]
    assert {r["param.lr"] for r in lr_rows} == {"0.1", "0.01"} and all(r["param.x"] == "" for r in lr_rows)


def test_trials_csv_round_trips_every_trial_but_the_superseded(db):
    data = _read(db)
    rows = _rows(trials_csv(data))
    assert len(rows) == len(data.rows) == 10 and {r["state"] for r in rows} == {"finished", "failed"}
    header = list(rows[0])
    assert header[:3] == ["trial_id", "model", "config_key"] and header[-2:] == ["peak_mem_bytes", "reason"]
    assert header.index("param.x") < header.index("fold") < header.index("metric.score")
    by_id = {r["trial_id"]: r for r in rows}
    for t in data.rows:
        r = by_id[t.id]
        assert (r["model"], r["fold"], r["state"], r["slot"], r["device"]) == (t.model, str(t.fold), t.state,
                                                                              t.slot, t.device)
        assert float(r["started"]) == t.started and float(r["duration_s"]) == t.duration == 1.25
        for k, v in t.metrics.items():
            assert float(r[f"metric.{k}"]) == v
        assert r["peak_mem_bytes"] == ("" if t.peak_mem is None else repr(t.peak_mem))
    failed = next(r for r in rows if r["state"] == "failed")
    assert failed["reason"] == REASON and failed["metric.score"] == "", "commas, quotes and newlines survive"
    assert any(float(r["metric.score"] or 0) == 0.1 + 0.2 for r in rows)


def test_best_configs_parse_as_a_grid_with_the_best_params_fixed(db, tmp_path):
    data = _read(db)
    fragment = best_toml(data, db.name)
    assert fragment.count("[[model]]") == 2
    assert f"by score (higher is better): mean {(0.9 + 0.7) / 2!r} ± sd" in fragment
    (tmp_path / "elsewhere").mkdir()  # pasted into a grid file in another folder
    spec = parse_grid('[run]\nname = "again"\nfolds = 2\n' + fragment, tmp_path / "elsewhere" / "again.toml")
    m, c = spec.models
    assert m.name == "m" and m.kind == "python" and m.target == str(tmp_path / "t.py") + ":fit"
    assert m.fixed == {"epochs": 2, "tag": 'a,b "q"', "x": 2} and m.metric == "score" and not m.grid
    best_c = next(b for b in data.board if b.model == "c")
    assert c.kind == "command" and c.device == "cpu" and c.fixed == best_c.params == {"lr": 0.01}
    assert c.cwd == str(tmp_path) and c.metrics_regex == (r"loss\s+(?P<loss>[0-9.]+)",)


def test_cli_writes_each_export_and_dash_is_stdout(db, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["export", str(db), "--leaderboard", str(out / "b.csv"), "--trials", "-",
                 "--best", str(out / "best.toml")])
    captured = capsys.readouterr()
    data = _read(db)
    assert code == 0, captured.err
    assert captured.out == trials_csv(data) and len(_rows(captured.out)) == 10
    assert (out / "b.csv").read_text() == leaderboard_csv(data)
    assert (out / "best.toml").read_text() == best_toml(data, db.name)


@pytest.mark.parametrize("case", ["missing", "not-a-db", "no-output", "unwritable", "two-stdout", "itself"])
def test_cli_bad_input_is_one_line_naming_the_file_exit_2(db, tmp_path, capsys, case):
    junk = tmp_path / "junk.gridwatch.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    target, named = {
        "missing": ([str(tmp_path / "nope.gridwatch.db"), "--trials", "-"], "nope.gridwatch.db"),
        "not-a-db": ([str(junk), "--trials", "-"], str(junk)),
        "no-output": ([str(db)], str(db)),
        "unwritable": ([str(db), "--trials", str(tmp_path / "no" / "dir" / "t.csv")], "t.csv"),
        "two-stdout": ([str(db), "--trials", "-", "--best", "-"], str(db)),
        "itself": ([str(db), "--trials", str(db)], str(db)),
    }[case]
    size = db.stat().st_size
    assert main(["export", *target]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("gridwatch: error: "), captured.err
    assert captured.out == "" and db.stat().st_size == size


def test_cli_unknown_option_exits_2(db, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(db), "--trials", "-", "--bogus"])
    assert exc.value.code == 2 and "--bogus" in capsys.readouterr().err


# -- the window ---------------------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot, tmp_path):
    from gridwatch.gui.app import get_qapp
    from gridwatch.gui.main_window import MainWindow
    from gridwatch.run.devices import detect

    get_qapp()
    w = MainWindow(detect(), tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def _dialogs(monkeypatch, answers):
    """The file and plot pickers answer from `answers`; message boxes are recorded instead of shown."""
    shown = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: answers["file"]))
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: (answers["plot"], True)))
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda _parent, title, text: shown.append(text)))
    return shown


def test_menu_enables_data_exports_only_with_a_results_file(window, db, tmp_path, monkeypatch):
    from gridwatch.gui.export import add_export_menu

    menu = add_export_menu(window)
    assert [a.text() for a in menu.actions() if a.text()] == ["Leaderboard as CSV…", "Trials as CSV…",
                                                              "Best configs as TOML…", "Plot as PNG/SVG…"]
    menu.aboutToShow.emit()
    assert window.store is None and not any(a.isEnabled() for a in menu.data_actions.values())
    window.open_results(db)
    assert window.store is not None
    menu.aboutToShow.emit()
    assert all(a.isEnabled() for a in menu.data_actions.values()) and menu.plot_action.isEnabled()
    answers = {"file": (str(tmp_path / "lb.csv"), "CSV (*.csv)"), "plot": ""}
    shown = _dialogs(monkeypatch, answers)
    menu.data_actions["leaderboard"].trigger()
    assert _rows((tmp_path / "lb.csv").read_text())[0]["param.x"] == "2" and not shown
    answers["file"] = (str(tmp_path / "best"), "TOML (*.toml)")
    menu.data_actions["best"].trigger()
    assert "[[model]]" in (tmp_path / "best.toml").read_text(), "the chosen filter's suffix is added"
    answers["file"] = (str(tmp_path / "no" / "dir" / "t.csv"), "CSV (*.csv)")
    menu.data_actions["trials"].trigger()
    assert len(shown) == 1 and "t.csv: cannot write" in shown[0]


def test_plots_export_to_png_and_svg_from_the_window(window, db, tmp_path, monkeypatch):
    from gridwatch.gui.export import add_export_menu, plot_targets

    window.open_results(db)
    menu = add_export_menu(window)
    names = [t.name for t in plot_targets(window)]
    assert "Timeline (one lane per slot)" in names and "Monitor: CPU, all cores (%)" in names, names
    assert any(n.startswith("Trial curves") for n in names) and len(set(names)) == len(names)
    answers = {"plot": "Timeline (one lane per slot)", "file": (str(tmp_path / "timeline.png"), "")}
    shown = _dialogs(monkeypatch, answers)
    menu.plot_action.trigger()
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not shown
    from PySide6.QtGui import QImage

    assert QImage(str(tmp_path / "timeline.png")).width() >= 1600, "a small plot on screen is drawn larger in the file"
    answers.update(plot="Monitor: CPU, all cores (%)", file=(str(tmp_path / "cpu.svg"), ""))
    menu.plot_action.trigger()
    root = ET.parse(tmp_path / "cpu.svg").getroot()
    assert root.tag.endswith("svg") and not shown
    answers["file"] = (str(tmp_path / "no" / "dir" / "cpu.svg"), "")
    menu.plot_action.trigger()
    answers["file"] = (str(tmp_path / "cpu.bmpx"), "")
    menu.plot_action.trigger()
    assert len(shown) == 2 and "cannot write" in shown[0] and "unknown image type" in shown[1], shown
