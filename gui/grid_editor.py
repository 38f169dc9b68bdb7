"""Grid editor: a form and the TOML text, kept in step; validated on every keystroke by gridwatch.grid.spec.

The TOML text is the truth: form edits rewrite it, text edits refill the form. The message under both is
exactly what `gridwatch run` would print, and `spec` is None until the grid is valid.
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


class GridEditor(QWidget):
    validity_changed = Signal(object)  # GridSpec or None

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
        layout = QVBoxLayout(self)
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
        self.model_pick = QComboBox()
        self.model_pick.activated.connect(self._show_model)
        add, remove = QPushButton("Add model"), QPushButton("Remove model")
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
        lay.addWidget(model_box, 1)
        return page

    # -- loading and saving -----------------------------------------------------------------------------

    def load_file(self, path: str | Path) -> None:
        p = Path(path).resolve()
        text = p.read_text(encoding="utf-8")  # OSError is the caller's to show
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
        self.validity_changed.emit(spec)

    def _show_error(self, message: str) -> None:
        self.spec, self.message = None, message
        self.status.setStyleSheet("color: #c0392b; font-weight: bold;")
        self.status.setText(message)
        self.validity_changed.emit(None)


def _table(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default
