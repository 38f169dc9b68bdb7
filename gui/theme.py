"""Light or dark, as the desktop says: pyqtgraph's colours follow the system's colour scheme.

Qt widgets follow the scheme by themselves; pyqtgraph draws with its own configured background and
foreground, so those are set here at start and again, on every open plot, when the scheme changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

GUIDE = "guide"  # object name of the faint reference lines (25/50/75 %) that re-theming recolours


@dataclass(frozen=True)
class Colours:
    background: str
    foreground: str  # axes, tick labels, legend text
    guide: str  # faint horizontal reference lines


LIGHT = Colours(background="#ffffff", foreground="#37474f", guide="#eceff1")
DARK = Colours(background="#1e1f22", foreground="#cfd8dc", guide="#34373c")


def system_scheme() -> Qt.ColorScheme:
    """The desktop's scheme as Qt reports it (Unknown without an application or a platform that says)."""
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return Qt.ColorScheme.Unknown
    return app.styleHints().colorScheme()


def colours_for(scheme: Qt.ColorScheme) -> Colours:
    return DARK if scheme == Qt.ColorScheme.Dark else LIGHT


def current() -> Colours:
    """The colours pyqtgraph draws with now (its configuration is the one place they live)."""
    return DARK if pg.getConfigOption("background") == DARK.background else LIGHT


def apply(scheme: Qt.ColorScheme) -> Colours:
    """Set pyqtgraph's colours for `scheme` and recolour every plot already open."""
    c = colours_for(scheme)
    pg.setConfigOptions(background=c.background, foreground=c.foreground)
    if isinstance(QGuiApplication.instance(), QApplication):
        # The plots of each window, found from the windows down: not every widget of the application wrapped
        # for Python (one of them may be mid-destruction, and wrapping it crashed the process).
        for top in QApplication.topLevelWidgets():
            for plot in top.findChildren(pg.PlotWidget):
                retheme(plot, c)
    return c


def retheme(plot: pg.PlotWidget, c: Colours) -> None:
    plot.setBackground(c.background)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(c.foreground)
        axis.setTextPen(c.foreground)
    if item.legend is not None:
        item.legend.setLabelTextColor(c.foreground)
        for _sample, label in item.legend.items:
            label.setText(label.text)  # a label's text is rendered once: render it in the new colour
    if item.titleLabel.isVisible() and item.titleLabel.text:
        item.titleLabel.setText(item.titleLabel.text)  # one left without a colour of its own follows
    for child in item.items:
        if isinstance(child, pg.InfiniteLine) and child.objectName() == GUIDE:
            child.setPen(pg.mkPen(c.guide, width=1))


def follow_system(app: QGuiApplication) -> None:
    """Theme for the scheme now, and again whenever it changes (connected once per application)."""
    scheme = app.styleHints().colorScheme()
    if colours_for(scheme) != current():  # every get_qapp() comes here: walk the widgets only for a change
        apply(scheme)
    if not app.property("gridwatch_follows_scheme"):
        app.setProperty("gridwatch_follows_scheme", True)
        app.styleHints().colorSchemeChanged.connect(apply)
