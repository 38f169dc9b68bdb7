"""The window's layout (geometry, docks, sizes) kept in an INI file between sessions; none in tests."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow


def restore_layout(window: QMainWindow, settings_file: Path | None) -> None:
    if settings_file is None:
        return
    settings = QSettings(str(settings_file), QSettings.Format.IniFormat)
    geometry, state = settings.value("geometry"), settings.value("state")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    if isinstance(state, QByteArray):
        window.restoreState(state)


def save_layout(window: QMainWindow, settings_file: Path | None) -> None:
    if settings_file is None:
        return
    settings = QSettings(str(settings_file), QSettings.Format.IniFormat)
    settings.setValue("geometry", window.saveGeometry())
    settings.setValue("state", window.saveState())
    settings.sync()
