"""Guards against a Qt binding that corrupts the interpreter (PySide6 6.12.0 on Python 3.11 did)."""

import sys

from PySide6.QtCore import QObject, Signal


class Emitter(QObject):
    fired = Signal(str)


def test_signal_emit_keeps_refcounts(qapp):
    e = Emitter()
    e.fired.connect(lambda _s: None)
    before = sys.getrefcount(True)
    for _ in range(2000):
        e.fired.emit("x")
    assert abs(sys.getrefcount(True) - before) < 50
