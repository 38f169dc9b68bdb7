"""Open and save grid files from the window, with a dialog for anything that goes wrong."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from gridwatch.gui.grid_editor import GridEditor
from gridwatch.resources import FOLDER as RESOURCES

FILTER = "Grid (*.toml)"


def open_grid(parent: QWidget, editor: GridEditor) -> None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open grid", str(editor.path.parent), FILTER)
    if path:
        try:
            editor.load_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            QMessageBox.critical(parent, "Cannot open grid", f"{path}: {getattr(exc, 'strerror', None) or exc}")


def save_grid(parent: QWidget, editor: GridEditor) -> None:
    if RESOURCES in editor.path.parents:  # the packaged demo grid: save a copy of your own
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
