"""`gridwatch install-desktop`: a freedesktop menu entry and icon for this installation's window.

Plain file writing under the user's data folder ($XDG_DATA_HOME, default ~/.local/share): the entry in
applications/, the icon in the hicolor theme (SVG and PNGs). The entry launches *this* installation's
`gridwatch-gui` by absolute path, so a venv install shows up in the menu without being on PATH.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from gridwatch.resources import ICON, ICON_PNGS

APP_ID = "gridwatch"  # the desktop file's name; gui/app.py sets the same with setDesktopFileName
WM_CLASS = "gridwatch"  # the X11 class Qt gives every window: the application name
GUI_SCRIPT = "gridwatch-gui"
EXIT_OK, EXIT_BAD_INPUT = 0, 2
# Characters that make an Exec argument need quotes, and those escaped inside the quotes (Desktop Entry spec).
RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
ESCAPED_IN_QUOTES = set('"`$\\')


class DesktopError(Exception):
    """One line for the user: which path could not be written or removed, and why."""


@dataclass(frozen=True)
class Installed:
    written: list[Path]
    command: list[str]
    refreshed: list[str]


def data_home() -> Path:
    """$XDG_DATA_HOME when it is an absolute path (the spec says to ignore others), else ~/.local/share."""
    given = os.environ.get("XDG_DATA_HOME", "")
    return Path(given) if os.path.isabs(given) else Path.home() / ".local" / "share"


def targets(data: Path) -> dict[Path, Path]:
    """Where each packaged icon goes, in install order (the entry itself is `entry_path`)."""
    hicolor = data / "icons" / "hicolor"
    out = {ICON: hicolor / "scalable" / "apps" / f"{APP_ID}.svg"}
    for size, png in ICON_PNGS.items():
        out[png] = hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
    return out


def entry_path(data: Path) -> Path:
    return data / "applications" / f"{APP_ID}.desktop"


def _script_folders() -> list[Path]:
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    if Path(__file__).is_relative_to(site.getuserbase()):  # pip install --user: scripts in ~/.local/bin
        folders.insert(0, Path(sysconfig.get_path("scripts", f"{os.name}_user")))
    return folders


def launcher() -> list[str]:
    """This installation's window command: its `gridwatch-gui` (beside this Python in a venv, or in this
    Python's scripts folder), else this very Python running the window's entry point. Never a
    `gridwatch-gui` found on PATH: that may belong to another installation."""
    for folder in _script_folders():
        script = folder.absolute() / GUI_SCRIPT
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    code = "from gridwatch.gui.app import main; raise SystemExit(main())"
    return [str(Path(sys.executable).absolute()), "-c", code]


def exec_argument(arg: str) -> str:
    """One Exec argument, quoted as the Desktop Entry spec asks (before the string-value escaping)."""
    arg = arg.replace("%", "%%")
    if not any(c in RESERVED for c in arg):
        return arg
    return '"' + "".join("\\" + c if c in ESCAPED_IN_QUOTES else c for c in arg) + '"'


def entry_text(command: list[str]) -> str:
    exec_line = " ".join(exec_argument(a) for a in command) + " %f"
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=gridwatch",
        "GenericName=Training grid monitor",
        "Comment=Run a grid of model trainings on every CPU core and GPU, and watch it work",
        # A string value escapes its backslashes once more.
        "Exec=" + exec_line.replace("\\", "\\\\"),
        "Icon=" + APP_ID,
        "Terminal=false",
        "StartupNotify=true",
        "StartupWMClass=" + WM_CLASS,
        "Categories=Science;ArtificialIntelligence;",
        "Keywords=machine learning;hyperparameter;grid search;cross-validation;GPU;training;",
    ]
    if len(command) == 1:  # menus hide the entry once this installation is gone
        lines.insert(lines.index("Icon=" + APP_ID), "TryExec=" + command[0])
    return "\n".join(lines) + "\n"


def _check_resources() -> None:
    for source in [ICON, *ICON_PNGS.values()]:
        if not source.is_file():
            raise DesktopError(f"{source}: the package is missing its icon file (reinstall gridwatch)")


def _not_a_folder(path: Path) -> str:
    return f"{path} is a file, not a folder" if path.is_file() else f"{path} is not a folder"


def _problem(target: Path) -> str | None:
    """Why `target` cannot be written, found before anything is written: a file where a folder must be, a
    folder where the file must be, or no write permission; None when nothing stands in the way."""
    try:
        if target.is_dir():
            return f"{target} is a folder, not a file"
        if target.exists():
            return None if os.access(target, os.W_OK) else f"{target} is not writable"
        for folder in target.parents:  # the nearest that is there decides
            if folder.is_dir():
                return None if os.access(folder, os.W_OK | os.X_OK) else f"{folder} is not writable"
            if folder.exists() or folder.is_symlink():
                return _not_a_folder(folder)
    except OSError as exc:  # a folder on the way that cannot be looked into
        return f"{exc.filename or target}: {exc.strerror or exc}"
    return None


def _reason(path: Path, exc: OSError) -> str:
    """The plain reason an operation on `path` failed: what stands in its way where that is the cause."""
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder, not a file"
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        for where in [path, *path.parents]:
            if (where.exists() or where.is_symlink()) and not where.is_dir():
                return _not_a_folder(where)
    return str(exc.strerror or exc)


def _write_all(files: dict[Path, bytes]) -> None:
    """Write every file or none: each target is checked first, and a write that still fails (a full disk)
    puts back what was there before, and removes the folders made for it."""
    for target in files:
        problem = _problem(target)
        if problem:
            raise DesktopError(f"cannot write {target}: {problem}")
    before: dict[Path, bytes | None] = {}
    made: list[Path] = []
    try:
        for target, data in files.items():
            missing = [f for f in reversed(target.parents) if not f.is_dir()]
            for folder in missing:
                folder.mkdir()
                made.append(folder)
            before[target] = target.read_bytes() if target.exists() else None
            target.write_bytes(data)
    except OSError as exc:
        failed = Path(exc.filename) if exc.filename else target
        _put_back(before, made)
        raise DesktopError(f"cannot write {failed}: {_reason(failed, exc)}") from None


def _put_back(before: dict[Path, bytes | None], made: list[Path]) -> None:
    for target, old in before.items():
        try:
            if old is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(old)
        except OSError:
            pass
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def install(data: Path | None = None, refresh: bool = True) -> Installed:
    data = data or data_home()
    _check_resources()
    command = launcher()
    files = {target: source.read_bytes() for source, target in targets(data).items()}
    files[entry_path(data)] = entry_text(command).encode()
    _write_all(files)
    return Installed(list(files), command, refresh_caches(data) if refresh else [])


@dataclass(frozen=True)
class Uninstalled:
    removed: list[Path]
    left: list[str]  # "PATH: reason" for each of our files that is still there


def uninstall(data: Path | None = None, refresh: bool = True) -> Uninstalled:
    """Remove exactly the files `install` writes, and the icon-size folders that removing them emptied;
    other files and folders stay. A file that cannot be removed is reported and the others still go."""
    data = data or data_home()
    removed: list[Path] = []
    left: list[str] = []
    for path in [entry_path(data), *targets(data).values()]:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue  # not there, cannot be there (a file where its folder must be), or a folder: not ours
        except OSError as exc:
            left.append(f"{path}: {_reason(path, exc)}")
            continue
        removed.append(path)
    icons = set(targets(data).values())
    for path in removed:
        if path in icons:  # hicolor/NxN/apps, then NxN, when this left them empty
            for folder in (path.parent, path.parent.parent):
                try:
                    folder.rmdir()
                except OSError:
                    break
    if removed and refresh:
        refresh_caches(data)
    return Uninstalled(removed, left)


def refresh_caches(data: Path) -> list[str]:
    """Tell menus and icon lookups about the change, with whichever tools this machine has; never fatal.
    An icon cache is refreshed only where one exists: without it GTK reads the folder itself, and a new
    cache would hide icons that later installs add without refreshing it."""
    hicolor = data / "icons" / "hicolor"
    steps = [["update-desktop-database", "-q", str(data / "applications")],
             ["xdg-desktop-menu", "forceupdate", "--mode", "user"]]
    if (hicolor / "icon-theme.cache").exists():
        steps.insert(1, ["gtk-update-icon-cache", "-q", "-t", "-f", str(hicolor)])
    done = []
    for step in steps:
        tool = shutil.which(step[0])
        if tool is None:
            continue
        try:
            proc = subprocess.run([tool, *step[1:]], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            done.append(step[0])
    return done


# What Qt's xcb platform plugin (PySide6's Qt/plugins/platforms/libqxcb.so) links, by Debian package: Qt aborts
# the process, with a message that names none of them, when one is missing.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-render.so.0": "libxcb-render0", "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6", "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}


def unresolved(ldd_output: str) -> list[str]:
    """The libraries `ldd` could not find ("libfoo.so.1 => not found" lines), in its order."""
    out = []
    for line in ldd_output.splitlines():
        name, arrow, where = line.strip().partition("=>")
        if arrow and where.strip() == "not found" and name.strip() not in out:
            out.append(name.strip())
    return out


def missing_libraries(plugin: Path) -> list[str]:
    """The libraries `plugin` needs that this system lacks; [] when it cannot tell (no ldd, no plugin)."""
    ldd = shutil.which("ldd")
    if ldd is None or not plugin.is_file():
        return []
    try:
        proc = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return unresolved(proc.stdout)


def install_hint(sonames: list[str]) -> str:
    """One line: the Debian packages (or, for a library not in the table, its name) and the command."""
    packages = list(dict.fromkeys(XCB_PACKAGES[s] for s in sonames if s in XCB_PACKAGES))
    unknown = [s for s in sonames if s not in XCB_PACKAGES]
    how = [f"apt-get install {' '.join(packages)}"] if packages else []
    if unknown:
        how.append(f"install the package that provides {', '.join(unknown)}")
    return f"gridwatch: the window needs {', '.join(packages + unknown)} ({'; '.join(how)})"


def run_install_desktop(remove: bool = False) -> int:
    """The command: what it wrote or removed, one path a line; an error is one line a path, and exit 2."""
    if remove:
        return _run_uninstall()
    try:
        done = install()
    except DesktopError as exc:
        print(f"gridwatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"gridwatch: installed the desktop entry and icon ({len(done.written)} files):")
    print("\n".join(f"  {p}" for p in done.written))
    print(f"launches: {' '.join(exec_argument(a) for a in done.command)} %f")
    if done.refreshed:
        print(f"refreshed: {', '.join(done.refreshed)}")
    print("undo with: gridwatch install-desktop --uninstall")
    return EXIT_OK


def _run_uninstall() -> int:
    done = uninstall()
    if done.removed:
        print(f"gridwatch: removed the desktop entry and icon ({len(done.removed)} files):")
        print("\n".join(f"  {p}" for p in done.removed))
    elif not done.left:
        print(f"gridwatch: no desktop entry or icon to remove under {data_home()}")
    for line in done.left:
        print(f"gridwatch: error: cannot remove {line}", file=sys.stderr)
    return EXIT_BAD_INPUT if done.left else EXIT_OK
