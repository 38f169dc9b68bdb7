"""The window as seen from the chair: icons, shortcuts and menus, light/dark plots, tooltips, the About box."""

import os
import subprocess
import sys

import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar

from gridwatch.gui import theme
from gridwatch.gui.about import AboutDialog, versions
from gridwatch.gui.app import DEMO_GRID, get_qapp
from gridwatch.gui.main_window import MainWindow
from gridwatch.gui.trials_model import COLUMNS, HEADER_TIPS
from gridwatch.run.devices import GpuInfo, Machine
from gridwatch.run.launcher import hello_info
from gridwatch.worker import protocol

from helpers import REPO

TOOLBAR = {"open_grid": "Ctrl+O", "save_grid": "Ctrl+S", "save_as": "Ctrl+Shift+S", "run_act": "Ctrl+R",
           "pause_act": "Ctrl+P", "resume_act": "Ctrl+Shift+P", "stop_act": "Ctrl+.", "open_run": "Ctrl+Shift+O",
           "resume_run_act": ""}


@pytest.fixture
def window(qtbot, tmp_path):
    get_qapp()
    machine = Machine("cpu", 2, 2, 8 * 2**30, (GpuInfo(0, "Fake GPU", 8 * 2**30),))  # one GPU: its plots
    w = MainWindow(machine, tmp_path / "runs")
    qtbot.addWidget(w)
    w.editor.load_file(DEMO_GRID)
    yield w
    w.close()


@pytest.fixture
def light_again():
    """Each test that switches the scheme leaves pyqtgraph light, as every other test expects."""
    yield
    theme.apply(Qt.ColorScheme.Light)


def _names(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_toolbar_actions_have_icons_shortcuts_and_tooltips_naming_them(window):
    bar = window.findChild(QToolBar, "toolbar_run")
    assert bar.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonTextBesideIcon
    on_bar = [a for a in bar.actions() if not a.isSeparator()]
    assert on_bar == [getattr(window, name) for name in TOOLBAR], "every run action, in order, on the toolbar"
    for name, keys in TOOLBAR.items():
        a = getattr(window, name)
        assert not a.icon().isNull(), name
        assert a.shortcut() == QKeySequence(keys), name
        shown = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        assert a.toolTip() and (not keys or f"({shown})" in a.toolTip()), a.toolTip()


def test_menus_file_run_help_with_help_last_for_menus_added_later(window):
    bar = window.menuBar()
    titles = [a.text() for a in bar.actions()]
    assert titles[:2] == ["&File", "&Run"] and titles[-1] == "&Help", titles  # others' menus go in between
    assert _names(window.file_menu) == ["Open grid…", "Save grid", "Save as…", "Open run…", "Quit"]
    assert _names(window.run_menu) == ["Run", "Pause", "Resume", "Stop", "Resume run"]
    assert _names(window.help_menu) == ["About gridwatch"]
    bar.insertMenu(window.help_menu.menuAction(), QMenu("Export", bar))
    assert [a.text() for a in bar.actions()][-2:] == ["Export", "&Help"]


def test_theme_switches_pyqtgraph_and_open_plots_to_dark_and_back(window, light_again):
    plot = window.monitor.util_plots[0]
    guides = [i for i in plot.getPlotItem().items if isinstance(i, pg.InfiniteLine) and i.objectName() == theme.GUIDE]
    assert len(guides) == 3 and theme.current() == theme.LIGHT, "precondition: light, with guide lines"
    assert plot.backgroundBrush().color().name() == theme.LIGHT.background
    theme.apply(Qt.ColorScheme.Dark)
    assert pg.getConfigOption("background") == theme.DARK.background
    assert pg.getConfigOption("foreground") == theme.DARK.foreground
    for p in window.monitor.plots():
        assert p.backgroundBrush().color().name() == theme.DARK.background
        assert p.getPlotItem().getAxis("left").pen().color().name() == theme.DARK.foreground
    assert all(g.pen.color().name() == theme.DARK.guide for g in guides)
    legend = [label for _, label in plot.getPlotItem().legend.items]
    assert legend and all(theme.DARK.foreground in label.item.toHtml() for label in legend), "legend text redrawn"
    assert window.timeline.backgroundBrush().color().name() == theme.DARK.background, "every plot, not the monitor's"
    theme.apply(Qt.ColorScheme.Light)
    assert plot.backgroundBrush().color().name() == theme.LIGHT.background


def test_a_scheme_change_from_the_system_rethemes(window, light_again):
    app = get_qapp()  # follows the system: connected once, however often it is called
    get_qapp()
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert window.monitor.cpu_plot.backgroundBrush().color().name() == theme.DARK.background
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert window.monitor.cpu_plot.backgroundBrush().color().name() == theme.LIGHT.background


def test_monitor_readings_say_what_they_mean(window):
    m = window.monitor
    assert "averaged over all 2 cores" in m.cpu_plot.toolTip()
    assert "one row per logical core" in m.cores_plot.toolTip()
    assert "available" in m.ram_plot.toolTip() and "RSS" not in m.ram_plot.toolTip()
    util = m.util_plots[0].toolTip()
    assert "share of the last sample period during which a kernel ran" in util and "VRAM" in util
    power = m.plots()[-1].toolTip()
    assert "watts" in power and "°C" in power
    m.set_slots(["cpu0", "cpu1"])
    assert "cpu0 RSS, cpu1 RSS: resident memory" in m.ram_plot.toolTip()


def test_trials_table_headers_have_tooltips(window):
    model = window.trials
    assert set(HEADER_TIPS) == set(COLUMNS), "one tip per column"
    tips = [model.headerData(i, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole) for i in range(len(COLUMNS))]
    assert all(tips)
    assert "≥ 20 % = input-bound" in tips[COLUMNS.index("data wait")]
    assert model.headerData(0, Qt.Orientation.Horizontal) == "trial", "the header text is unchanged"


class FakeNvml:
    def nvmlInit(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "550.54.14"

    def nvmlShutdown(self):
        pass


def _hello(**fields):
    return hello_info(protocol.decode(protocol.encode("hello", pid=1, slot="gpu0", device="cuda:0",
                                                      python="3.11.7", baseline_rss=1e8, **fields)))


def test_about_gives_torch_and_cuda_as_the_workers_hello_said():
    rows = dict(versions(_hello(torch="2.4.1+cu121", cuda="12.1"), FakeNvml()))
    assert rows["torch"] == "2.4.1+cu121 (as the workers report it)"
    assert rows["CUDA"] == "12.1" and rows["NVIDIA driver"] == "550.54.14"
    cpu_build = dict(versions(_hello(torch="2.4.1+cpu", cuda=None), FakeNvml()))
    assert cpu_build["CUDA"] == "none: a CPU-only build of torch"
    no_torch = dict(versions(_hello(torch=None, cuda=None), FakeNvml()))
    assert no_torch["torch"].startswith("not loaded by the workers") or no_torch["torch"] == "not installed"
    old_worker = hello_info(protocol.decode(protocol.encode("hello", pid=1, python=3)))  # odd or missing fields
    assert old_worker["torch"] is None and old_worker["python"] is None


def test_about_box_opens_from_help_before_a_run(window, qtbot):
    window.about_act.trigger()
    dialog = window.findChild(AboutDialog)
    assert dialog is not None and dialog.isVisible()
    rows = dict(dialog.rows)
    assert rows["gridwatch"] and rows["PySide6 / Qt"] and rows["pyqtgraph"] == pg.__version__
    assert "workers report" in rows["torch"] or rows["torch"] == "not installed"
    assert rows["NVIDIA driver"], "a version, or why there is none"
    dialog.close()


ABOUT_AFTER_RUN = r"""
import sys
from pathlib import Path
from PySide6.QtCore import QTimer
from gridwatch.gui.app import get_qapp
from gridwatch.gui.about import AboutDialog
from gridwatch.gui.main_window import MainWindow
from gridwatch.run.devices import detect

app = get_qapp()
w = MainWindow(detect(), Path("runs"))
w.about_act.trigger()
print("before", "torch" in sys.modules)
w.findChild(AboutDialog).close()
w.editor.load_file("grid.toml")

def about():
    w.about_act.trigger()
    for k, v in next(d for d in w.findChildren(AboutDialog) if d.isVisible()).rows:
        print(f"{k}: {v}")
    print("after", "torch" in sys.modules)
    app.quit()

w.start_run()
w.session.finished.connect(lambda s: (print("status", s), QTimer.singleShot(0, about)))
QTimer.singleShot(60000, app.quit)
app.exec()
w.confirm_stop = lambda: True  # a run still going when the time is up: no question box to wait on
w.close()
"""

FAKE_TORCH = """
__version__ = "9.8.7+cu124"

class version:
    cuda = "12.4"

def get_num_threads():
    return 1

def set_num_threads(n):
    pass
"""
LOADS_TORCH = "import torch\n\n\ndef fit(config):\n    return {'score': float(config['fold'])}\n"


def test_a_real_run_reports_torch_and_cuda_and_the_window_never_imports_torch(outside):
    """Workers load a stand-in torch (on PYTHONPATH, as a user's own would be); the window shows its version
    from their hello and has imported no torch of its own, before or after About."""
    (outside / "torch").mkdir()
    (outside / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (outside / "t.py").write_text(LOADS_TORCH)
    (outside / "grid.toml").write_text('[run]\nname = "t"\nfolds = 2\n\n[devices]\ncpu_slots = 1\n\n'
                                       '[[model]]\nname = "m"\ntrainable = "t.py:fit"\n')
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([str(outside), str(REPO)]))
    r = subprocess.run([sys.executable, "-c", ABOUT_AFTER_RUN], cwd=outside, env=env, capture_output=True,
                       text=True, timeout=120)
    out = r.stdout
    assert "status done" in out, out + r.stderr[-3000:]
    assert "torch: 9.8.7+cu124 (as the workers report it)" in out and "CUDA: 12.4" in out, out
    assert "before False" in out and "after False" in out, "the window imported torch"


def test_an_open_verdicts_duration_grows_while_it_is_shown(qtbot):
    from gridwatch.gui.diagnosis_view import DiagnosisView
    from gridwatch.telemetry.starvation import Verdict

    get_qapp()
    now = [1000.0]
    view = DiagnosisView(clock=lambda: now[0])
    qtbot.addWidget(view)
    v = Verdict("input_bound", "t-1", "high", "waits 60 % of each step", "prefetch", started=990.0, ended=990.0)
    view.show_verdicts([v])
    item = view.topLevelItem(0)
    assert item.text(1) == "10 s"
    now[0] = 1075.0
    view.tick()  # the window ticks it; no new verdict came
    assert item.text(1) == "85 s"


def test_an_unreachable_x_display_is_one_line_not_qts_abort(monkeypatch):
    import socket

    from gridwatch.gui import app

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    server = socket.socket()
    for num in range(90, 140):  # a display number whose TCP port is free: an X server there, for the test
        try:
            server.bind(("127.0.0.1", 6000 + num))
            break
        except OSError:
            continue
    server.listen(1)
    try:
        monkeypatch.setenv("DISPLAY", f"127.0.0.1:{num}")
        assert app.unreachable_display() is None
    finally:
        server.close()
    monkeypatch.setenv("DISPLAY", f"127.0.0.1:{num}")
    said = app.unreachable_display()
    assert said is not None and said.startswith(f"DISPLAY=127.0.0.1:{num}: no X server answers")
    monkeypatch.setenv("DISPLAY", "unix:99999")
    assert app.unreachable_display() == "DISPLAY=unix:99999: no X server socket /tmp/.X11-unix/X99999"
    assert app.main([]) == 2
