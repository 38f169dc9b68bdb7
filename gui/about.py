"""Help → About: gridwatch's version and what it runs on.

torch and CUDA are given as the workers report them in their hello: the window's process never imports
torch (seconds of start-up and hundreds of MB for a window that trains nothing). Before any run, torch's
installed version is read from its package metadata, which imports nothing.
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Mapping
from typing import Any

import pyqtgraph as pg
import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

import gridwatch

WorkerInfo = Mapping[str, str | None]  # a worker hello's fields (gridwatch.run.launcher.hello_info)


def installed(package: str) -> str | None:
    """A package's installed version from its metadata (nothing imported), None when not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_text(worker: WorkerInfo) -> str:
    if worker.get("torch"):
        return f"{worker['torch']} (as the workers report it)"
    have = installed("torch")
    if worker:  # a worker said hello without loading torch
        return f"not loaded by the workers ({have} installed)" if have else "not installed"
    return f"{have} installed; the workers report what they load once a run starts" if have else "not installed"


def cuda_text(worker: WorkerInfo) -> str:
    if worker.get("torch"):
        return worker.get("cuda") or "none: a CPU-only build of torch"
    return "reported by the workers once a run with torch starts"


def driver_version(nvml: Any = None) -> str:
    """The NVIDIA driver's version from NVML, or why there is none."""
    try:
        if nvml is None:
            import pynvml

            nvml = pynvml
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ImportError ...
        return f"no NVIDIA GPU (NVML: {str(exc) or type(exc).__name__})"
    try:
        version = nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception as exc:  # noqa: BLE001 - an old driver without the call
        return f"unknown (NVML: {str(exc) or type(exc).__name__})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - the version is read; nothing to undo
            pass


def versions(worker: WorkerInfo, nvml: Any = None) -> list[tuple[str, str]]:
    return [
        ("gridwatch", gridwatch.__version__),
        ("Python", platform.python_version()),
        ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
        ("pyqtgraph", str(pg.__version__)),
        ("torch", torch_text(worker)),
        ("CUDA", cuda_text(worker)),
        ("NVIDIA driver", driver_version(nvml)),
    ]


class AboutDialog(QDialog):
    def __init__(self, rows: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About gridwatch")
        self.rows = rows
        cells = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
                        for k, v in rows)
        self.text = QLabel("<p>Run a grid of model trainings on every CPU core and GPU of one machine, and "
                           f"watch it work.</p><table>{cells}</table>")
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.setToolTip("Copy these versions, for a bug report")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.plain()))
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)

    def plain(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.rows)


def show_about(parent: QWidget, worker: WorkerInfo) -> AboutDialog:
    """Open the About box (not blocking); it is deleted when closed."""
    dialog = AboutDialog(versions(worker), parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
