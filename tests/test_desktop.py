"""`gridwatch install-desktop`: the menu entry and icon, and the window's own checks before Qt starts.

- install writes the entry and every icon under $XDG_DATA_HOME, the entry launching this installation's
  `gridwatch-gui` by absolute path, or nothing: a blocked target is one line naming what blocks it, exit 2;
  uninstall removes exactly those and the icon folders it emptied, going on past any it cannot remove;
- a missing system library of Qt's xcb plugin is one line naming the Debian package, not Qt's abort;
- from a fresh venv (the wheel installed, as a stranger gets it): the entry passes `desktop-file-validate`, and
  its Exec line opens the window under Xvfb: the window appears with the class the entry names and the icon,
  is captured, and closes cleanly.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridwatch import cli, desktop
from gridwatch.gui import app as gapp
from gridwatch.resources import ICON, ICON_PNGS, ICON_SIZES

from helpers import FreshVenv, proc_tail, run_cmd, wait_for, write

GUI_BESIDE_PYTHON = Path(sys.executable).parent / "gridwatch-gui"
SKIP_FRESH = pytest.mark.skipif(os.environ.get("GRIDWATCH_SKIP_WHEEL", "") not in ("", "0"),
                                reason="GRIDWATCH_SKIP_WHEEL is set (these tests install the wheel in a fresh venv)")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG_DATA_HOME: nothing reaches the real user's menu."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def entry_fields(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]", lines[:1]
    return dict(line.split("=", 1) for line in lines[1:] if "=" in line)


def exec_argv(value: str) -> list[str]:
    """An Exec value as a launcher reads it (Desktop Entry spec): string escapes, then quoting; %f dropped."""
    value = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), value)
    argv: list[str] = []
    word: str | None = None
    quoted = escaped = False
    for c in value:
        if escaped:
            word, escaped = (word or "") + c, False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted, word = not quoted, word or ""
        elif c == " " and not quoted:
            if word is not None:
                argv.append(word)
            word = None
        else:
            word = (word or "") + c
    if word is not None:
        argv.append(word)
    return [a.replace("%%", "%") for a in argv if a != "%f"]


# -- install, uninstall --------------------------------------------------------------------------------------


def test_install_writes_the_entry_and_every_icon(home: Path, capsys: pytest.CaptureFixture[str]):
    assert GUI_BESIDE_PYTHON.is_file(), "the dev venv has no gridwatch-gui beside its python"
    assert not home.exists()
    assert cli.main(["install-desktop"]) == 0
    out = capsys.readouterr().out
    printed = [Path(line.strip()) for line in out.splitlines() if line.startswith("  /")]
    entry = home / "applications" / "gridwatch.desktop"
    icons = {home / "icons/hicolor/scalable/apps/gridwatch.svg": ICON}
    icons |= {home / f"icons/hicolor/{n}x{n}/apps/gridwatch.png": ICON_PNGS[n] for n in ICON_SIZES}
    assert sorted(printed) == sorted([entry, *icons]), out
    for target, source in icons.items():
        assert target.read_bytes() == source.read_bytes(), target
    for n in ICON_SIZES:
        assert png_size(home / f"icons/hicolor/{n}x{n}/apps/gridwatch.png") == (n, n)

    fields = entry_fields(entry)
    assert exec_argv(fields["Exec"]) == [str(GUI_BESIDE_PYTHON)], fields["Exec"]
    assert fields["Exec"].endswith(" %f")
    assert Path(exec_argv(fields["Exec"])[0]).is_absolute()
    assert fields["TryExec"] == str(GUI_BESIDE_PYTHON)
    assert fields["Icon"] == "gridwatch"
    # The window's X11 class and Wayland app id: what the entry must name for docks to group the window.
    assert fields["StartupWMClass"] == "gridwatch"
    assert "app.setDesktopFileName(\"gridwatch\")" in Path(gapp.__file__).read_text(encoding="utf-8")


def test_uninstall_removes_exactly_what_install_wrote(home: Path, capsys: pytest.CaptureFixture[str]):
    (home / "icons/hicolor/24x24/apps").mkdir(parents=True)  # empty, and not emptied by uninstall: it stays
    others = [write(home / "applications" / "other.desktop", "[Desktop Entry]\n"),
              write(home / "icons/hicolor/48x48/apps/other.png", "other"),
              write(home / "icons/hicolor/scalable/apps/other.svg", "<svg/>")]
    assert cli.main(["install-desktop"]) == 0
    written = [Path(line.strip()) for line in capsys.readouterr().out.splitlines() if line.startswith("  /")]
    assert len(written) == 1 + len(ICON_SIZES) + 1 and all(p.is_file() for p in written)

    assert cli.main(["install-desktop", "--uninstall"]) == 0
    out = capsys.readouterr().out
    assert "removed" in out
    removed = [Path(line.strip()) for line in out.splitlines() if line.startswith("  /")]
    assert sorted(removed) == sorted(written)
    assert not any(p.exists() for p in written)
    assert all(p.is_file() for p in others), "uninstall removed files it did not write"
    assert (home / "icons/hicolor/48x48/apps").is_dir() and (home / "icons/hicolor/24x24/apps").is_dir()
    emptied = [home / f"icons/hicolor/{n}x{n}" for n in ICON_SIZES if n != 48]  # scalable/ holds other.svg
    assert not any(folder.exists() for folder in emptied), "uninstall left the icon folders it emptied"

    assert cli.main(["install-desktop", "--uninstall"]) == 0
    assert "no desktop entry or icon to remove" in capsys.readouterr().out


def test_an_unwritable_folder_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]):
    # A regular file where a folder must go: unwritable for root too (CI runs as root).
    blocker = write(tmp_path / "data", "not a folder")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker / "share"))
    assert cli.main(["install-desktop"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first = blocker / "share/icons/hicolor/scalable/apps/gridwatch.svg"
    assert err == f"gridwatch: error: cannot write {first}: {blocker} is a file, not a folder\n"
    assert blocker.read_text() == "not a folder"


def all_paths(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize(("blocker", "reason"), [
    ("applications", "is a file, not a folder"),
    ("applications/gridwatch.desktop/", "is a folder, not a file"),
    ("icons/hicolor/48x48/apps", "is a file, not a folder"),
])
def test_install_checks_every_target_first_and_writes_nothing_when_one_is_blocked(
        home: Path, capsys: pytest.CaptureFixture[str], blocker: str, reason: str):
    """The entry is written last: with its folder blocked, no icon may have been written before the error."""
    where = home / blocker
    if blocker.endswith("/"):
        where.mkdir(parents=True)
    else:
        write(where, "a file")
    target = where if blocker.endswith("/") else next(
        t for t in [*desktop.targets(home).values(), desktop.entry_path(home)] if t.is_relative_to(where))
    before = all_paths(home)
    assert cli.main(["install-desktop"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"gridwatch: error: cannot write {target}: {where} {reason}\n"
    assert all_paths(home) == before, "install wrote something although it could not write everything"


def test_a_write_that_fails_midway_puts_back_what_was_there(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]):
    old = write(home / "icons/hicolor/48x48/apps/gridwatch.png", "an earlier install")
    before = all_paths(home)
    entry = desktop.entry_path(home)
    real_write = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:  # the disk fills up at the entry, written last
        if self == entry:
            raise OSError(28, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    assert cli.main(["install-desktop"]) == 2
    assert capsys.readouterr().err == f"gridwatch: error: cannot write {entry}: No space left on device\n"
    assert all_paths(home) == before
    assert old.read_text() == "an earlier install"


def test_uninstall_goes_past_an_entry_that_cannot_exist(home: Path, capsys: pytest.CaptureFixture[str]):
    """A half install: the icons are there, and a file stands where the entry's folder must be."""
    assert cli.main(["install-desktop"]) == 0
    capsys.readouterr()
    icons = list(desktop.targets(home).values())
    shutil.rmtree(home / "applications")
    write(home / "applications", "a file")
    assert all(p.is_file() for p in icons)
    assert cli.main(["install-desktop", "--uninstall"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert sorted(Path(line.strip()) for line in out.splitlines() if line.startswith("  /")) == sorted(icons)
    assert all_paths(home) == [home / "applications", home / "icons", home / "icons/hicolor"]


def test_uninstall_reports_a_file_it_cannot_remove_and_removes_the_rest(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]):
    assert cli.main(["install-desktop"]) == 0
    capsys.readouterr()
    stuck = home / "icons/hicolor/48x48/apps/gridwatch.png"
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:  # as a read-only folder would (root ignores modes)
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert cli.main(["install-desktop", "--uninstall"]) == 2
    out, err = capsys.readouterr()
    assert err == f"gridwatch: error: cannot remove {stuck}: Permission denied\n"
    removed = [Path(line.strip()) for line in out.splitlines() if line.startswith("  /")]
    assert len(removed) == len(ICON_SIZES) + 1 and stuck not in removed, out
    assert desktop.entry_path(home) in removed and not any(p.exists() for p in removed)
    assert stuck.is_file() and not (home / "icons/hicolor/16x16").exists()


def test_a_relative_xdg_data_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")
    assert desktop.data_home() == tmp_path / ".local" / "share"


def test_without_a_gridwatch_gui_script_the_entry_runs_this_python(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """The fallback command, with the characters the Exec key must quote (a space, $, quotes, %)."""
    python = tmp_path / "odd $dir \"q\" 100%" / "bin" / "python3"
    monkeypatch.setattr(desktop, "_script_folders", lambda: [tmp_path / "nothing here"])
    monkeypatch.setattr(sys, "executable", str(python))
    command = desktop.launcher()
    assert command[0] == str(python) and command[1] == "-c"
    entry = write(tmp_path / "gridwatch.desktop", desktop.entry_text(command))
    fields = entry_fields(entry)
    assert exec_argv(fields["Exec"]) == command, fields["Exec"]
    assert "TryExec" not in fields
    validate = shutil.which("desktop-file-validate")
    if validate:
        proc = run_cmd([validate, entry], timeout=30, cwd=tmp_path)
        assert proc.returncode == 0 and "error" not in proc.stdout, proc_tail(proc)


# -- the window's checks before Qt starts -----------------------------------------------------------------------


LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd8a5f2000)
\tlibQt6XcbQpa.so.6 => /venv/lib/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f3c1c400000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-cursor.so.0 => not found
\tlibfoo-x11.so.3 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c1be1e000)
"""


def test_missing_libraries_map_to_their_debian_packages():
    missing = desktop.unresolved(LDD_OUTPUT)
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libfoo-x11.so.3"]
    assert desktop.install_hint(["libxcb-cursor.so.0"]) == (
        "gridwatch: the window needs libxcb-cursor0 (apt-get install libxcb-cursor0)")
    assert desktop.install_hint(missing) == (
        "gridwatch: the window needs libxcb-cursor0, libxcb-icccm4, libfoo-x11.so.3 (apt-get install "
        "libxcb-cursor0 libxcb-icccm4; install the package that provides libfoo-x11.so.3)")
    assert desktop.install_hint(["libxkbcommon-x11.so.0", "libX11-xcb.so.1"]) == (
        "gridwatch: the window needs libxkbcommon-x11-0, libx11-xcb1 (apt-get install libxkbcommon-x11-0 libx11-xcb1)")


@pytest.mark.parametrize(("env", "xcb"), [
    ({"QT_QPA_PLATFORM": "xcb"}, True),
    ({"QT_QPA_PLATFORM": "xcb:foo=1", "WAYLAND_DISPLAY": "wayland-0"}, True),
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, False),
    ({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, False),
    ({"DISPLAY": ":0"}, True),
    ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, False),
    ({"WAYLAND_DISPLAY": "wayland-0"}, False),
])
def test_the_check_runs_only_when_qt_will_use_xcb(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], xcb: bool):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert gapp.will_use_xcb() is xcb


def test_the_check_finds_nothing_missing_when_everything_is_installed(monkeypatch: pytest.MonkeyPatch):
    """Never a false alarm: on this machine (`make test-deps` installs the xcb libraries) it finds nothing."""
    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    assert plugin.is_file() and shutil.which("ldd"), "no xcb plugin or no ldd: the check would be skipped"
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30)
    assert "libxcb-cursor.so.0 =>" in ldd.stdout, ldd.stdout  # ldd really lists the plugin's libraries
    assert "not found" not in ldd.stdout, f"install the xcb libraries (make test-deps):\n{ldd.stdout}"
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert gapp.missing_window_libraries() == []


def test_every_x11_library_of_the_plugin_is_in_the_table_and_the_makefile():
    """The table behind the one-line message and the Makefile's XCB_LIBS name the same packages, and cover
    every xcb/X11 library the installed plugin loads (a newer PySide6 may add one)."""
    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30).stdout
    x11 = {m for m in re.findall(r"^\s*(\S+) =>", ldd, re.M) if m.startswith(("libxcb", "libX11", "libxkbcommon"))}
    assert "libxcb-cursor.so.0" in x11, ldd
    makefile = (Path(__file__).parent.parent / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = dict(p.split(":") for p in re.search(r"^XCB_LIBS := (.*)$", makefile, re.M)[1].split())
    assert x11 - {"libxkbcommon.so.0"} <= set(pairs), "add these to XCB_LIBS"  # libxkbcommon0: QT_LIBS
    assert x11 <= set(desktop.XCB_PACKAGES), "add these to desktop.XCB_PACKAGES"
    assert {s: desktop.XCB_PACKAGES[s] for s in pairs} == pairs


def gui_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=":7031", XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("WAYLAND_DISPLAY", None)
    env.update(extra)
    return env


def test_a_missing_library_reported_by_ldd_is_one_line_and_exit_2(tmp_path: Path):
    fake = write(tmp_path / "bin" / "ldd", '#!/bin/sh\necho "\tlibxcb-cursor.so.0 => not found"\n')
    fake.chmod(0o755)
    env = gui_env(tmp_path, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    proc = run_cmd([GUI_BESIDE_PYTHON], timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc_tail(proc)
    assert proc.stderr == "gridwatch: the window needs libxcb-cursor0 (apt-get install libxcb-cursor0)\n"


def _hidden_library_namespace(tmp_path: Path, soname: str) -> list[str]:
    """A command prefix that runs its command with `soname` gone from the system's library folder, in a private
    mount namespace (the folder is replaced there by links to everything else in it): a real missing library,
    without touching the machine's packages."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("hiding a system library needs root and unshare (a private mount namespace)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    found = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    where = re.search(rf"^\s*{re.escape(soname)} \(.*\) => (\S+)$", found, re.M)
    assert where, f"{soname} is not installed here"
    folder = Path(where[1]).resolve().parent
    original, links = tmp_path / "original", tmp_path / "links"
    original.mkdir()
    links.mkdir()
    stem = soname.split(".so")[0] + ".so"
    for name in os.listdir(folder):
        if not name.startswith(stem):
            (links / name).symlink_to(original / name)
    script = 'mount --bind "$1" "$2" && mount --bind "$3" "$1" && shift 3 && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), str(original), str(links)]


def test_a_really_missing_library_is_one_line_instead_of_qts_abort(tmp_path: Path):
    hide = _hidden_library_namespace(tmp_path, "libxcb-cursor.so.0")
    env = gui_env(tmp_path)
    # Without the check, Qt aborts (SIGABRT) with a message that names no package.
    bare = [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"]
    proc = run_cmd([*hide, *bare], timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode in (-6, 134), proc_tail(proc)
    assert "no Qt platform plugin could be initialized" in proc.stderr
    proc = run_cmd([*hide, GUI_BESIDE_PYTHON], timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc_tail(proc)
    assert proc.stderr == "gridwatch: the window needs libxcb-cursor0 (apt-get install libxcb-cursor0)\n"


def test_the_window_carries_the_icon_at_every_size(qapp: object):
    icon = gapp.get_qapp().windowIcon()
    assert not icon.isNull()
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(n, n) for n in ICON_SIZES} <= sizes, sizes


# -- from a fresh venv: validate the entry, start its Exec line under Xvfb ----------------------------------------


@pytest.fixture(scope="module")
def fresh_entry(venv: FreshVenv, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """`gridwatch install-desktop` run by the fresh venv, with a temporary HOME and XDG_DATA_HOME: the entry
    and the environment it was installed with (no display of its own)."""
    root = tmp_path_factory.mktemp("desktop")
    env = venv.env(HOME=str(root / "home"), XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "config"),
                   XDG_CACHE_HOME=str(root / "cache"), GRIDWATCH_RUNS=str(root / "runs"))
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY"):
        env.pop(name, None)
    proc = run_cmd([venv.bin / "gridwatch", "install-desktop"], timeout=120, cwd=root, env=env)
    assert proc.returncode == 0, proc_tail(proc)
    entry = root / "data" / "applications" / "gridwatch.desktop"
    assert f"  {entry}" in proc.stdout.splitlines(), proc.stdout
    return entry, env


@SKIP_FRESH
@pytest.mark.timeout(900)  # the first test to use the session's fresh venv pays for it
def test_fresh_install_writes_an_entry_that_desktop_file_validate_accepts(venv: FreshVenv,
                                                                          fresh_entry: tuple[Path, dict[str, str]]):
    entry, _ = fresh_entry
    fields = entry_fields(entry)
    assert exec_argv(fields["Exec"]) == [str(venv.bin / "gridwatch-gui")], fields["Exec"]
    hicolor = entry.parent.parent / "icons" / "hicolor"
    assert all((hicolor / f"{n}x{n}" / "apps" / "gridwatch.png").is_file() for n in ICON_SIZES)
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils; `make test-deps`)")
    proc = run_cmd([validate, entry], timeout=30, cwd=entry.parent)
    assert proc.returncode == 0 and "error" not in proc.stdout + proc.stderr, proc_tail(proc)


# Run with the dev venv's Python on the Xvfb display. `shot OUT`: capture the screen once the window has painted
# (more than a handful of colours). `close WINDOW`: ask the window to close, as a window manager's close button
# does (WM_DELETE_WINDOW), so the app runs its closeEvent.
X_HELPER = """
import ctypes, ctypes.util, sys, time

def shot(out):
    from PySide6.QtGui import QGuiApplication
    app = QGuiApplication([])
    deadline = time.monotonic() + 60
    while True:
        image = app.primaryScreen().grabWindow(0).toImage()
        colours = {image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}
        if len(colours) > 12 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert image.save(out), out
    print(f"{image.width()}x{image.height()} {len(colours)} colours")

def close(window):
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class XEvent(ctypes.Union):
        _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(XEvent)]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    assert display, "cannot open the display"
    event = XEvent()
    event.xclient.type = 33  # ClientMessage
    event.xclient.window = window
    event.xclient.message_type = x11.XInternAtom(display, b"WM_PROTOCOLS", 0)
    event.xclient.format = 32
    event.xclient.data[0] = x11.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
    assert x11.XSendEvent(display, window, 0, 0, ctypes.byref(event))
    x11.XFlush(display)
    x11.XCloseDisplay(display)

{"shot": lambda a: shot(a), "close": lambda a: close(int(a, 0))}[sys.argv[1]](sys.argv[2])
"""
# A top-level window in `xwininfo -root -tree`: id, title, (instance class), size.
TOP_WINDOW = re.compile(r'^\s*(0x[0-9a-f]+) "([^"]*)": \("([^"]*)" "([^"]*)"\)\s+(\d+)x(\d+)', re.M)


def _gridwatch_window(x_env: dict[str, str]) -> tuple[str, str, str] | None:
    """(id, title, class) of the mapped gridwatch main window, once it is there."""
    tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, env=x_env, timeout=30)
    for wid, title, _instance, wm_class, width, _height in TOP_WINDOW.findall(tree.stdout):
        if (title == "gridwatch" or title.endswith(" — gridwatch")) and int(width) > 200:  # "GRID — gridwatch"
            info = subprocess.run(["xwininfo", "-id", wid], capture_output=True, text=True, env=x_env, timeout=30)
            if "Map State: IsViewable" in info.stdout:
                return wid, title, wm_class
    return None


@SKIP_FRESH
@pytest.mark.timeout(900)
def test_fresh_install_entry_opens_the_window_under_xvfb(venv: FreshVenv, fresh_entry: tuple[Path, dict[str, str]],
                                                           tmp_path: Path):
    missing = [t for t in ("xvfb-run", "xauth", "xwininfo", "xprop") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian: xvfb xauth x11-utils; `make test-deps`)")
    entry, env = fresh_entry
    fields = entry_fields(entry)
    command = exec_argv(fields["Exec"])
    assert Path(command[0]).is_relative_to(venv.root), command
    helper = write(tmp_path / "x_helper.py", textwrap.dedent(X_HELPER))
    where = tmp_path / "display.txt"
    report = 'printf "%s\\n%s\\n" "$DISPLAY" "$XAUTHORITY" > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"'
    app = subprocess.Popen(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "sh", "-c", report, where, *command],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        display, xauthority = wait_for(lambda: where.exists() and where.read_text().split(), 60,
                                       "xvfb-run to start the X server")
        x_env = dict(os.environ, DISPLAY=display, XAUTHORITY=xauthority, QT_QPA_PLATFORM="xcb")
        x_env.pop("WAYLAND_DISPLAY", None)

        def window_or_exit() -> tuple[str, str, str] | None:
            assert app.poll() is None, f"the window's process ended: {app.returncode}\n{app.communicate()[0]}"
            return _gridwatch_window(x_env)

        wid, title, wm_class = wait_for(window_or_exit, 120, "the gridwatch window to appear", interval=0.5)
        # Docks and task bars match the window to the entry by this class.
        assert wm_class == fields["StartupWMClass"] == "gridwatch", (title, wm_class)
        props = subprocess.run(["xprop", "-len", "100000000", "-id", wid, "_NET_WM_ICON"], capture_output=True,
                               text=True, env=x_env, timeout=30).stdout  # -len: the whole property, 256 px too
        icon_sizes = {int(w) for w, h in re.findall(r"Icon \((\d+) x (\d+)\)", props) if w == h}
        assert set(ICON_SIZES) <= icon_sizes, f"the window's icons: {sorted(icon_sizes)}"

        shot = tmp_path / "desktop_shot.png"
        proc = run_cmd([sys.executable, helper, "shot", shot], timeout=120, cwd=tmp_path, env=x_env)
        assert proc.returncode == 0 and shot.is_file(), proc_tail(proc)
        print(f"\n[test_desktop] {title!r} (class {wm_class}) captured: {shot} ({proc.stdout.strip()})")

        settings = Path(env["XDG_CONFIG_HOME"]) / "gridwatch" / "window.ini"
        assert not settings.exists()
        proc = run_cmd([sys.executable, helper, "close", wid], timeout=60, cwd=tmp_path, env=x_env)
        assert proc.returncode == 0, proc_tail(proc)
        out, _ = app.communicate(timeout=60)
        assert app.returncode == 0, out
        assert settings.is_file(), "the window closed without saving its layout (no closeEvent?)"
    finally:
        if app.poll() is None:
            os.killpg(app.pid, 15)
            app.wait(30)
