"""Open and save grid files from the window, and show a past run's grid, with a dialog for anything that goes
wrong."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from gridwatch.gui.grid_editor import GridEditor
from gridwatch.resources import FOLDER as RESOURCES
from gridwatch.results.store import ResultStore, StoreError

FILTER = "Grid (*.toml)"


def open_grid(parent: QWidget, editor: GridEditor) -> None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open grid", str(editor.path.parent), FILTER)
    if path:
        try:
            editor.load_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            QMessageBox.critical(parent, "Cannot open grid", f"{path}: {getattr(exc, 'strerror', None) or exc}")


def show_run_grid(parent: QWidget, editor: GridEditor, store: ResultStore, can_resume: bool = True) -> bool:
    """The grid an opened run ran, read-only in the editor; False (and a dialog) if the file holds none."""
    try:
        text, info = store.grid_text(), store.run_info()
    except StoreError as exc:
        QMessageBox.warning(parent, "Cannot show this run's grid", str(exc))
        return False
    editor.show_run_grid(text, store.path, info["grid_path"], can_resume)
    return True


def save_grid(parent: QWidget, editor: GridEditor) -> None:
    if RESOURCES in editor.path.parents or editor.read_only:  # the demo grid, a run's grid: save a copy
        save_grid_as(parent, editor)
        return
    try:
        editor.save_file()
    except OSError as exc:
        QMessageBox.critical(parent, "Cannot save grid", f"{editor.path}: {exc.strerror}")


def save_grid_as(parent: QWidget, editor: GridEditor) -> None:
    start = editor.path
    if RESOURCES in start.parents:
        start = Path.home() / start.name
    path, _ = QFileDialog.getSaveFileName(parent, "Save grid as", str(start), FILTER)
    if path:
        try:
            editor.save_file(path)
        except OSError as exc:
            QMessageBox.critical(parent, "Cannot save grid", f"{path}: {exc.strerror}")
            return
        if editor.read_only:  # a run's grid saved as a file of one's own: edit that file now
            editor.load_file(path)
