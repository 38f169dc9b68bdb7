"""Form for one [[model]]: name, trainable or command, device, metric, and its parameters table."""

from __future__ import annotations

import tomllib
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gridwatch.grid.gridfile import value_text

PARAM_KINDS = ("grid", "fixed")


class ValueError_(ValueError):
    """A parameter cell that does not read as TOML; carries the grid key it belongs to."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def parse_values(text: str, kind: str) -> Any:
    """A grid cell holds comma-separated TOML values; a fixed cell holds one TOML value."""
    source = f"v = [{text}]" if kind == "grid" else f"v = {text}"
    return tomllib.loads(source)["v"]


class ModelForm(QWidget):
    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.name = QLineEdit()
        self.kind = QComboBox()
        self.kind.addItems(["trainable", "command"])
        self.target = QLineEdit()
        self.target.setPlaceholderText("my_pkg.train:fit  or  train.py:fit  or  python train.py --lr {lr}")
        self.device = QComboBox()
        self.device.addItems(["any", "cpu", "gpu"])
        self.metric_edit = QLineEdit()
        self.metric_edit.setPlaceholderText("first reported metric")
        self.goal = QComboBox()
        self.goal.addItems(["", "max", "min"])
        form = QFormLayout()
        for label, w in (("Name", self.name), ("Runs", self.kind), ("Target", self.target),
                         ("Device", self.device), ("Metric", self.metric_edit), ("Goal", self.goal)):
            form.addRow(label, w)
        self.params = QTableWidget(0, 3)
        self.params.setHorizontalHeaderLabels(["parameter", "kind", "values"])
        self.params.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.params.verticalHeader().setVisible(False)
        add, remove = QPushButton("Add parameter"), QPushButton("Remove parameter")
        add.clicked.connect(self._add_param)
        remove.clicked.connect(self._remove_param)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.params, 1)
        layout.addLayout(buttons)
        self.add_param, self.remove_param = add, remove
        self.read_only = False
        self._edit_triggers = self.params.editTriggers()
        self.extra: dict[str, Any] = {}  # keys the form does not show (cwd, metrics_regex) survive edits
        for w in (self.name, self.target, self.metric_edit):
            w.textEdited.connect(self.changed)
        for c in (self.kind, self.device, self.goal):
            c.activated.connect(self.changed)
        self.params.itemChanged.connect(self.changed)

    def load(self, m: dict[str, Any]) -> None:
        self.blockSignals(True)
        self.params.blockSignals(True)
        self.name.setText(str(m.get("name", "")))
        is_cmd = "command" in m
        self.kind.setCurrentText("command" if is_cmd else "trainable")
        self.target.setText(str(m.get("command" if is_cmd else "trainable", "")))
        self.device.setCurrentText(str(m.get("device", "any")))
        self.metric_edit.setText(str(m.get("metric", "")))
        self.goal.setCurrentText(str(m.get("goal", "")))
        self.params.setRowCount(0)
        for kind in PARAM_KINDS:
            table = m.get(kind, {})
            for key, value in (table.items() if isinstance(table, dict) else []):
                text = ", ".join(value_text(v) for v in value) if kind == "grid" and isinstance(value, list) \
                    else value_text(value)
                self._append(key, kind, text)
        shown = {"name", "trainable", "command", "device", "metric", "goal", "grid", "fixed"}
        self.extra = {k: v for k, v in m.items() if k not in shown}
        self.params.blockSignals(False)
        self.blockSignals(False)

    def set_read_only(self, read_only: bool) -> None:
        """Shown, not edited (a past run's grid): every field disabled, the parameters still scroll."""
        self.read_only = read_only
        for w in (self.name, self.kind, self.target, self.device, self.metric_edit, self.goal, self.add_param,
                  self.remove_param):
            w.setEnabled(not read_only)
        self.params.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers if read_only
                                    else self._edit_triggers)
        for row in range(self.params.rowCount()):
            combo = self.params.cellWidget(row, 1)
            if combo is not None:
                combo.setEnabled(not read_only)

    def dump(self, where: str) -> dict[str, Any]:
        """The model as grid data; raises ValueError_ naming the key of a cell that does not parse."""
        m: dict[str, Any] = {"name": self.name.text().strip()}
        m["command" if self.kind.currentText() == "command" else "trainable"] = self.target.text().strip()
        m["device"] = self.device.currentText()
        if self.metric_edit.text().strip():
            m["metric"] = self.metric_edit.text().strip()
        if self.goal.currentText():
            m["goal"] = self.goal.currentText()
        m.update(self.extra)
        tables: dict[str, dict[str, Any]] = {"grid": {}, "fixed": {}}
        for row in range(self.params.rowCount()):
            key = (self.params.item(row, 0) or QTableWidgetItem()).text().strip()
            combo = self.params.cellWidget(row, 1)
            kind = combo.currentText() if isinstance(combo, QComboBox) else "grid"
            text = (self.params.item(row, 2) or QTableWidgetItem()).text().strip()
            if not key:
                continue
            try:
                tables[kind][key] = parse_values(text, kind) if text or kind == "grid" else ""
            except tomllib.TOMLDecodeError as exc:
                raise ValueError_(f"{where}.{kind}.{key}",
                                  f"cannot read {text!r}: {str(exc).split(' (at')[0]}") from None
        m.update({k: v for k, v in tables.items() if v})
        return m

    def _append(self, key: str, kind: str, text: str) -> None:
        row = self.params.rowCount()
        self.params.insertRow(row)
        self.params.setItem(row, 0, QTableWidgetItem(key))
        combo = QComboBox()
        combo.addItems(PARAM_KINDS)
        combo.setCurrentText(kind)
        combo.activated.connect(self.changed)
        combo.setEnabled(not self.read_only)
        self.params.setCellWidget(row, 1, combo)
        self.params.setItem(row, 2, QTableWidgetItem(text))

    def _add_param(self) -> None:
        self.params.blockSignals(True)
        self._append(f"param{self.params.rowCount() + 1}", "grid", "1, 2")
        self.params.blockSignals(False)
        self.changed.emit()

    def _remove_param(self) -> None:
        row = self.params.currentRow()
        if row >= 0:
            self.params.removeRow(row)
            self.changed.emit()
