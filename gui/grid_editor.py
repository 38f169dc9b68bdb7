"""Grid editor: a form and the TOML text, kept in step; validated on every keystroke by gridwatch.grid.spec.

The TOML text is the truth: form edits rewrite it, text edits refill the form. The message under both is
exactly what `gridwatch run` would print, and `spec` is None until the grid is valid.

A past run's grid is shown read-only (`show_run_grid`) under a banner that offers to run it again or resume
it; `edit_mode` brings back what was being edited before.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gridwatch.grid import trials
from gridwatch.grid.checks import gpus_value
from gridwatch.grid.gridfile import dumps
from gridwatch.grid.spec import GridSpec, SpecError, parse_grid
from gridwatch.gui.model_form import ModelForm, ValueError_
from gridwatch.results.store import SUFFIX

RAY_TIP = ("Empty: run on this machine's slots. Otherwise the run's slots are actors on a Ray cluster "
           "(pip install 'gridwatch[ray]', on every node):\n"
           "  local: a Ray head on this machine for this run only, on loopback\n"
           "  auto: the cluster in RAY_ADDRESS\n"
           "  host:port: a running cluster's head (its GCS address, port 6379 by default)")


class RunBanner(QFrame):
    """Says whose grid is shown, read-only, and what can be done with it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("RunBanner { background: #fff8e1; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.run_again, self.resume = QPushButton("Run again"), QPushButton("Resume")
        self.edit = QPushButton("Edit grid")
        self.run_again.setToolTip("A new run of this grid, in a new results file")
        self.resume.setToolTip("Run this run's unfinished trials, in the same results file")
        self.edit.setToolTip("Back to the grid being edited before")
        buttons = QHBoxLayout()
        for b in (self.run_again, self.resume, self.edit):
            buttons.addWidget(b)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addLayout(buttons)


class GridEditor(QWidget):
    validity_changed = Signal(object)  # GridSpec or None
    run_again_requested = Signal(object)  # GridSpec: the shown run's grid, to run anew
    resume_requested = Signal(str)  # the shown run's results file, to finish its unfinished trials
    _busy = False  # a run is running: the banner's actions wait
    _can_resume = False  # the shown run's file may be resumed
    read_only_changed = Signal(bool)  # True: a run's grid is shown; False: back to editing

    def __init__(self) -> None:
        super().__init__()
        self.path = Path("grid.toml").resolve()
        self.data: dict[str, Any] = {}
        self.spec: GridSpec | None = None
        self.message = ""
        self.text = QPlainTextEdit()
        self.text.setFont(QFont("monospace"))
        self.text.textChanged.connect(self._on_text_edited)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._form_tab(), "Form")
        self.tabs.addTab(self.text, "TOML")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.read_only = False
        self.run_path: Path | None = None  # the results file whose grid is shown (read-only mode)
        self._editable: tuple[str, Path] | None = None  # text and path being edited before, to come back to
        self.banner = RunBanner()
        self.banner.hide()
        self.banner.run_again.clicked.connect(self._on_run_again)
        self.banner.resume.clicked.connect(self._on_resume)
        self.banner.edit.clicked.connect(self.edit_mode)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)
        self._filling = False

    # -- building ---------------------------------------------------------------------------------------

    def _form_tab(self) -> QWidget:
        self.run_name, self.folds, self.seed = QLineEdit(), QSpinBox(), QSpinBox()
        self.folds.setRange(2, 1000)
        self.seed.setRange(0, 2**31 - 1)
        self.cpu_slots, self.threads, self.gpus, self.gpu_slots = QSpinBox(), QSpinBox(), QLineEdit(), QSpinBox()
        self.cpu_slots.setRange(-1, 1024)
        self.cpu_slots.setSpecialValueText("auto")
        self.threads.setRange(1, 1024)
        self.gpus.setPlaceholderText('all, none, or indices like 0, 1')
        self.gpu_slots.setRange(1, 64)
        run_box, dev_box = QGroupBox("Run"), QGroupBox("Devices")
        run_form, dev_form = QFormLayout(run_box), QFormLayout(dev_box)
        run_form.addRow("Name", self.run_name)
        run_form.addRow("Folds", self.folds)
        run_form.addRow("Seed", self.seed)
        dev_form.addRow("CPU slots", self.cpu_slots)
        dev_form.addRow("Threads per CPU slot", self.threads)
        dev_form.addRow("GPUs", self.gpus)
        dev_form.addRow("Slots per GPU", self.gpu_slots)
        self.ray = QLineEdit()  # where the next run goes: a run option, not part of the grid file
        self.ray.setPlaceholderText("this machine; or local, auto, host:port")
        self.ray.setToolTip(RAY_TIP)
        where_box = QGroupBox("Run on")  # stays editable for Run again and Resume of a run shown read-only
        QFormLayout(where_box).addRow("Ray cluster", self.ray)
        self.model_pick = QComboBox()
        self.model_pick.activated.connect(self._show_model)
        add, remove = QPushButton("Add model"), QPushButton("Remove model")
        self.run_box, self.dev_box, self.add_button, self.remove_button = run_box, dev_box, add, remove
        add.clicked.connect(self._add_model)
        remove.clicked.connect(self._remove_model)
        pick = QHBoxLayout()
        pick.addWidget(self.model_pick, 1)
        pick.addWidget(add)
        pick.addWidget(remove)
        self.model_form = ModelForm()
        model_box = QGroupBox("Models")
        mlay = QVBoxLayout(model_box)
        mlay.addLayout(pick)
        mlay.addWidget(self.model_form)
        for w in (self.run_name, self.gpus):
            w.textEdited.connect(self._on_form_edited)
        for s in (self.folds, self.seed, self.cpu_slots, self.threads, self.gpu_slots):
            s.valueChanged.connect(self._on_form_edited)
        self.model_form.changed.connect(self._on_form_edited)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.addWidget(run_box)
        lay.addWidget(dev_box)
        lay.addWidget(where_box)
        lay.addWidget(model_box, 1)
        return page

    def ray_address(self) -> str | None:
        """The Ray cluster the next run goes to (as `gridwatch run --ray`), or None for this machine's slots."""
        return self.ray.text().strip() or None

    # -- loading and saving -----------------------------------------------------------------------------

    def load_file(self, path: str | Path) -> None:
        p = Path(path).resolve()
        text = p.read_text(encoding="utf-8")  # OSError is the caller's to show
        if self.read_only:  # a grid opened over a run's: edit that one, not what was edited before
            self._editable = None
            self._set_read_only(False)
        self.path = p
        self.set_text(text)

    def set_text(self, text: str) -> None:
        self.text.setPlainText(text)  # -> _on_text_edited

    def save_file(self, path: str | Path | None = None) -> Path:
        p = Path(path).resolve() if path else self.path
        p.write_text(self.text.toPlainText(), encoding="utf-8")
        self.path = p
        self._validate(self.text.toPlainText())
        return p

    # -- a past run's grid, read-only ------------------------------------------------------------------

    def show_run_grid(self, text: str, path: str | Path | None, grid_path: str | Path | None = None,
                      can_resume: bool = True) -> None:
        """Show the grid a run ran (`text`, as its results file `path` keeps it), read-only. `grid_path`: the
        grid file it was started from, against which relative trainables resolve (default: beside `path`).
        What was being edited comes back with edit_mode()."""
        if not self.read_only:
            self._editable = (self.text.toPlainText(), self.path)
        self.run_path = Path(path) if path else None
        if grid_path:
            self.path = Path(grid_path).resolve()
        elif self.run_path is not None:
            self.path = self.run_path.with_suffix(".toml").resolve()
        name = self.run_path.name.removesuffix(SUFFIX) if self.run_path else "a past run"
        self.banner.label.setText(f"grid of run {name} (read-only)")
        self._can_resume = self.run_path is not None and can_resume
        self.banner.resume.setEnabled(self._can_resume and not self._busy)
        was = self.read_only
        self._set_read_only(True)
        self.text.setPlainText(text)  # -> _on_text_edited: form and validation
        if not was:
            self.read_only_changed.emit(True)

    def set_busy(self, busy: bool) -> None:
        """While a run runs, the banner's actions wait: Run again and Resume would start another."""
        self._busy = busy
        self.banner.run_again.setEnabled(not busy and self.spec is not None)
        self.banner.resume.setEnabled(not busy and self._can_resume)
        self.banner.edit.setEnabled(not busy)

    def edit_mode(self) -> None:
        """Back to the editable grid, as it was before a run's grid was shown."""
        if not self.read_only:
            return
        text, path = self._editable or ("", self.path)
        self._editable, self.run_path = None, None
        self._set_read_only(False)
        self.path = path
        self.text.setPlainText(text)
        self.read_only_changed.emit(False)

    def _set_read_only(self, read_only: bool) -> None:
        self.read_only = read_only
        self.banner.setVisible(read_only)
        self.text.setReadOnly(read_only)
        for w in (self.run_box, self.dev_box, self.add_button, self.remove_button):
            w.setEnabled(not read_only)
        self.model_form.set_read_only(read_only)  # the model picker stays: every model can be looked at

    def _on_run_again(self) -> None:
        if self.read_only and self.spec is not None:
            self.run_again_requested.emit(self.spec)

    def _on_resume(self) -> None:
        if self.read_only and self.run_path is not None:
            self.resume_requested.emit(str(self.run_path))

    # -- keeping form and text in step -------------------------------------------------------------------

    def _on_text_edited(self) -> None:
        if self._filling:
            return
        text = self.text.toPlainText()
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            pass  # the form keeps its last good state; the message names line and column
        else:
            self._fill_form()
        self._validate(text)

    def _on_form_edited(self) -> None:
        if self._filling:
            return
        try:
            self.data = self._form_data()
        except ValueError_ as exc:
            self._show_error(f"{self.path}: {exc.key}: {exc}")
            return
        self._filling = True
        self.text.setPlainText(dumps(self.data))
        self._filling = False
        self._validate(self.text.toPlainText())

    def _fill_form(self) -> None:
        self._filling = True
        run = _table(self.data.get("run"))
        dev = _table(self.data.get("devices"))
        self.run_name.setText(str(run.get("name", "")))
        self.folds.setValue(_int(run.get("folds"), 5))
        self.seed.setValue(_int(run.get("seed"), 0))
        cpu = dev.get("cpu_slots", "auto")
        self.cpu_slots.setValue(-1 if cpu == "auto" else _int(cpu, -1))
        self.threads.setValue(_int(dev.get("threads_per_cpu_slot"), 1))
        gpus = dev.get("gpus", "all")
        self.gpus.setText(", ".join(map(str, gpus)) if isinstance(gpus, list) else str(gpus))
        self.gpu_slots.setValue(_int(dev.get("gpu_slots_per_gpu"), 1))
        current = max(0, self.model_pick.currentIndex())
        self.model_pick.clear()
        for i, m in enumerate(self._models()):
            self.model_pick.addItem(str(m.get("name", f"model {i + 1}")))
        self.model_pick.setCurrentIndex(min(current, self.model_pick.count() - 1))
        self._show_model(self.model_pick.currentIndex())
        self._filling = False

    def _show_model(self, index: int) -> None:
        models = self._models()
        if 0 <= index < len(models):
            was = self._filling
            self._filling = True
            self.model_form.load(models[index])
            self._filling = was
        self.model_form.setEnabled(bool(models))

    def _form_data(self) -> dict[str, Any]:
        data = dict(self.data)
        run = dict(_table(data.get("run")))
        run.update(name=self.run_name.text().strip(), folds=self.folds.value(), seed=self.seed.value())
        if not run["name"]:
            del run["name"]
        dev = dict(_table(data.get("devices")))
        dev["cpu_slots"] = "auto" if self.cpu_slots.value() < 0 else self.cpu_slots.value()
        dev["threads_per_cpu_slot"] = self.threads.value()
        dev["gpus"] = gpus_value(self.gpus.text())
        dev["gpu_slots_per_gpu"] = self.gpu_slots.value()
        models = list(self._models())
        i = self.model_pick.currentIndex()
        if 0 <= i < len(models):
            models[i] = self.model_form.dump(f"model[{i}] ({self.model_form.name.text().strip()})")
            self.model_pick.setItemText(i, models[i].get("name") or f"model {i + 1}")
        data.update(run=run, devices=dev, model=models)
        return data

    def _models(self) -> list[dict[str, Any]]:
        models = self.data.get("model", [])
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    def _add_model(self) -> None:
        models = self._models()
        name = f"model{len(models) + 1}"
        self.data = {**self.data, "model": [*models, {"name": name, "trainable": "gridwatch.demo:mlp",
                                                       "device": "any", "grid": {"lr": [0.001]}}]}
        self._filling = True
        self.text.setPlainText(dumps(self.data))
        self._filling = False
        self._fill_form()
        self.model_pick.setCurrentIndex(self.model_pick.count() - 1)
        self._show_model(self.model_pick.count() - 1)
        self._validate(self.text.toPlainText())

    def _remove_model(self) -> None:
        i = self.model_pick.currentIndex()
        models = self._models()
        if 0 <= i < len(models):
            del models[i]
            self.data = {**self.data, "model": models}
            self._filling = True
            self.text.setPlainText(dumps(self.data))
            self._filling = False
            self._fill_form()
            self._validate(self.text.toPlainText())

    # -- validation -------------------------------------------------------------------------------------

    def _validate(self, text: str) -> None:
        try:
            spec = parse_grid(text, self.path)
        except SpecError as exc:
            self._show_error(str(exc))
            return
        n = trials.count(spec)
        configs = n // spec.folds
        self.spec, self.message = spec, f"{n} trials ({configs} configs × {spec.folds} folds)"
        self.status.setStyleSheet("color: palette(text);")
        self.status.setText(self.message)
        self.banner.run_again.setEnabled(not self._busy)
        self.validity_changed.emit(spec)

    def _show_error(self, message: str) -> None:
        self.spec, self.message = None, message
        self.status.setStyleSheet("color: #c0392b; font-weight: bold;")
        self.status.setText(message)
        self.banner.run_again.setEnabled(False)
        self.validity_changed.emit(None)


def _table(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default
