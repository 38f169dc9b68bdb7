"""The window's Export menu: the open results file's leaderboard and trials as CSV and each model's best config
as TOML (gridwatch.results.export writes them, as `gridwatch export` does), and any of the window's plots as
PNG (pyqtgraph's ImageExporter) or SVG, chosen by the file's suffix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRect, QRectF
from PySide6.QtGui import QAction, QImageWriter, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog, QLabel, QMenu, QMessageBox, QWidget

from gridwatch.results.export import RENDERERS, ExportError, read_run, write_output
from gridwatch.results.store import SUFFIX, StoreError

if TYPE_CHECKING:
    from gridwatch.gui.main_window import MainWindow

CSV_FILTER = "CSV (*.csv)"
TOML_FILTER = "TOML (*.toml)"
PLOT_FILTERS = "PNG image (*.png);;SVG image (*.svg)"
DATA = (("leaderboard", "Leaderboard as CSV…", ".csv", CSV_FILTER), ("trials", "Trials as CSV…", ".csv", CSV_FILTER),
        ("best", "Best configs as TOML…", ".toml", TOML_FILTER))


@dataclass(frozen=True)
class PlotTarget:
    """One plot the user can export: its name in the picker and what pyqtgraph's exporters draw."""

    name: str
    item: pg.GraphicsScene | pg.PlotItem
    view: pg.GraphicsView


def plot_targets(window: MainWindow) -> list[PlotTarget]:
    """Every plot under the window, named as the window labels it. A PlotWidget exports its whole scene (its
    legend and a second axis's view too); a GraphicsLayoutWidget each of its PlotItems."""
    out = [PlotTarget(_plot_name(window, w), w.scene(), w) for w in window.findChildren(pg.PlotWidget)]
    for lw in window.findChildren(pg.GraphicsLayoutWidget):
        items = [i for i in lw.ci.items if isinstance(i, pg.PlotItem)]
        out += [PlotTarget(_place(lw, _item_title(i) or f"plot {n}"), i, lw) for n, i in enumerate(items, 1)]
    seen: dict[str, int] = {}
    named = []
    for t in out:
        seen[t.name] = seen.get(t.name, 0) + 1
        named.append(t if seen[t.name] == 1 else PlotTarget(f"{t.name} ({seen[t.name]})", t.item, t.view))
    return named


def _item_title(item: pg.PlotItem) -> str:
    return str(item.titleLabel.text or "").strip()


def _label_before(w: QWidget) -> str:
    """The plain label just above a plot in its layout (how the monitor titles its plots)."""
    parent = w.parentWidget()
    layout = parent.layout() if parent is not None else None
    if layout is None:
        return ""
    i = layout.indexOf(w)
    before = layout.itemAt(i - 1) if i > 0 else None
    label = before.widget() if before is not None else None
    return label.text() if isinstance(label, QLabel) else ""


def _place(w: QWidget, title: str) -> str:
    """The title, after the dock it lives in unless the title already says it."""
    p = w.parentWidget()
    while p is not None and not isinstance(p, QDockWidget):
        p = p.parentWidget()
    dock = p.windowTitle() if p is not None else ""
    return title if not dock or title.startswith(dock) else f"{dock}: {title}"


def _plot_name(window: MainWindow, w: pg.PlotWidget) -> str:
    detail = getattr(window, "detail", None)
    if detail is not None and w is getattr(detail, "curves", None):
        return "Trial curves" + (f" ({detail.trial_id})" if detail.trial_id else "")
    title = _label_before(w) or _item_title(w.getPlotItem()) or w.toolTip()
    return _place(w, title or "plot")


def export_plot(target: PlotTarget, path: Path) -> None:
    """By the suffix: .svg as SVG, else an image format Qt writes (.png, .jpg, ...). One-line errors."""
    suffix = path.suffix.lower().lstrip(".")
    formats = {bytes(f.data()).decode().lower() for f in QImageWriter.supportedImageFormats()}
    if suffix != "svg" and suffix not in formats:
        raise ExportError(f"{path}: unknown image type {path.suffix or '(none)'!r}: name a .png or .svg file")
    if target.view.width() < 1 or target.view.height() < 1:
        raise ExportError(f"{target.name}: the plot has no size on screen; show it first")
    exporter = ImageExporter(target.item)
    data = _svg(exporter, target.view.logicalDpiX()) if suffix == "svg" else _image(exporter, suffix)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write: {exc.strerror or exc}") from None


MIN_WIDTH = 1600  # px: a plot squeezed on screen is drawn larger in the file, for a report or a slide


def _image(exporter: ImageExporter, suffix: str) -> bytes:
    params = exporter.parameters()
    if params["width"] < MIN_WIDTH:
        params["width"] = MIN_WIDTH  # the height follows, keeping the plot's shape
    image = exporter.export(toBytes=True)
    buf = QByteArray()
    device = QBuffer(buf)
    device.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(device, suffix.upper()):
        raise ExportError(f"Qt could not encode the plot as {suffix}")
    return bytes(buf.data())


def _svg(exporter: ImageExporter, dpi: int) -> bytes:
    """What the image would show, drawn by Qt's SVG generator (SVG 1.1: clip paths kept) at the screen's dpi
    (the axes' cached drawings are in screen units). pyqtgraph's own SVGExporter cannot read the paths Qt 6.11
    writes (they end in "Z"), and fails on every plot."""
    source = exporter.getSourceRect()
    size = exporter.getTargetRect().size()
    buf = QByteArray()
    device = QBuffer(buf)
    device.open(QIODevice.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator(QSvgGenerator.SvgVersion.Svg11)
    generator.setOutputDevice(device)
    generator.setResolution(dpi)
    generator.setSize(size)
    generator.setViewBox(QRect(0, 0, size.width(), size.height()))
    generator.setTitle("gridwatch plot")
    painter = QPainter(generator)
    try:
        target = QRectF(0, 0, size.width(), size.height())
        painter.fillRect(target, exporter.params["background"])
        exporter.getScene().render(painter, target, source)
    finally:
        painter.end()
    return bytes(buf.data())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "plot"


class ExportMenu(QMenu):
    """Export in the window's menu bar. Data exports need a results file (`window.store`); the state is
    checked when the menu opens, so nothing runs while the menu stays closed."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__("&Export", window)
        self.main = window  # not `window`: QWidget.window() is Qt's
        self.folder = Path.home()  # where the next file dialog opens: the last folder chosen
        self.data_actions: dict[str, QAction] = {}
        for kind, text, _suffix, _filter in DATA:
            act = self.addAction(text)
            act.triggered.connect(lambda _=False, k=kind: self.export_data(k))
            self.data_actions[kind] = act
        self.addSeparator()
        self.plot_action = self.addAction("Plot as PNG/SVG…")
        self.plot_action.triggered.connect(self.export_plot_dialog)
        self.aboutToShow.connect(self.update_actions)
        self.update_actions()

    def update_actions(self) -> None:
        has_store = self.main.store is not None
        for act in self.data_actions.values():
            act.setEnabled(has_store)
        self.plot_action.setEnabled(bool(self.main.findChildren(pg.GraphicsView)))

    def ask_path(self, title: str, name: str, filters: str) -> Path | None:
        """A save dialog; a name without a suffix gets the chosen filter's."""
        chosen, selected = QFileDialog.getSaveFileName(self.main, title, str(self.folder / name), filters)
        if not chosen:
            return None
        path = Path(chosen)
        if not path.suffix:
            m = re.search(r"\*(\.\w+)", selected or filters)
            path = path.with_suffix(m.group(1)) if m else path
        self.folder = path.parent
        return path

    def export_data(self, kind: str) -> None:
        store = self.main.store
        if store is None:
            return
        _kind, text, suffix, filters = next(d for d in DATA if d[0] == kind)
        stem = store.path.name.removesuffix(SUFFIX)
        path = self.ask_path(text.rstrip("…"), f"{stem}-{kind}{suffix}", filters)
        if path is None:
            return
        try:
            write_output(str(path), RENDERERS[kind](read_run(store), store.path.name))
        except StoreError as exc:  # ExportError (the output) or the results file itself
            self.fail(str(exc))
            return
        self.main.statusBar().showMessage(f"Exported {kind} to {path}", 8000)

    def export_plot_dialog(self) -> None:
        targets = plot_targets(self.main)
        if not targets:
            return
        names = [t.name for t in targets]
        name, ok = QInputDialog.getItem(self.main, "Export plot", "Plot:", names, 0, False)
        if not ok or name not in names:
            return
        target = targets[names.index(name)]
        path = self.ask_path("Export plot", f"{_slug(name)}.png", PLOT_FILTERS)
        if path is None:
            return
        try:
            export_plot(target, path)
        except ExportError as exc:
            self.fail(str(exc))
            return
        self.main.statusBar().showMessage(f"Exported {name} to {path}", 8000)

    def fail(self, message: str) -> None:
        QMessageBox.critical(self.main, "Cannot export", message)


def add_export_menu(window: MainWindow) -> ExportMenu:
    """Add Export to the window's menu bar (the window owns it)."""
    menu = ExportMenu(window)
    help_menu = getattr(window, "help_menu", None)
    if help_menu is not None:  # Help stays last
        window.menuBar().insertMenu(help_menu.menuAction(), menu)
    else:
        window.menuBar().addMenu(menu)
    return menu
