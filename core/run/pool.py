"""WorkerPool: owns the run's worker processes, one long-lived SlotWorker per slot.

It starts them, replaces one that exits (giving a slot up after MAX_BAD_STARTS deaths before its hello),
stops them all (SIGTERM to each process group, SIGKILL after a grace period) and keeps what each printed
outside the protocol. What a message *means* is the session's business: the pool only passes it on.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gridwatch.run.devices import Slot
from gridwatch.run.launcher import SlotWorker

MAX_BAD_STARTS = 3  # a slot whose worker dies before saying hello this often is given up
STOP_GRACE_MS = 3000
STRAY_KEPT = 20  # lines a worker printed outside any trial, kept to explain a worker that will not start


class WorkerPool(QObject):
    message = Signal(object, object)  # (SlotWorker, decoded message): `dict` would sort its keys (QVariantMap)
    stray_line = Signal(object, str)  # (SlotWorker, line printed outside the protocol)
    exited = Signal(object, str)  # (SlotWorker, how it exited): already removed from the pool
    pids_changed = Signal(dict)  # slot id -> worker pid
    gave_up = Signal(str)  # a slot abandoned, in words

    def __init__(self, slots: list[Slot], preload: list[tuple[str, str]], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.slots = list(slots)
        self.preload = preload
        self.workers: list[SlotWorker] = []
        self._bad_starts: dict[str, int] = {}
        self._stray: dict[str, deque[str]] = {}

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        w = SlotWorker(slot, self, self.preload)
        w.message.connect(self._on_message)
        w.stray_line.connect(self._on_stray)
        w.exited.connect(self._on_exited)
        self.workers.append(w)
        self._stray.setdefault(slot.id, deque(maxlen=STRAY_KEPT))
        w.start()

    def replace(self, w: SlotWorker, description: str) -> bool:
        """Start a new worker on w's slot, unless that slot keeps dying before it can say hello."""
        slot = w.slot
        if not w.said_hello:
            self._bad_starts[slot.id] = self._bad_starts.get(slot.id, 0) + 1
            if self._bad_starts[slot.id] >= MAX_BAD_STARTS:
                last = " | ".join(list(self._stray[slot.id])[-3:])
                self.gave_up.emit(f"slot {slot.id} given up: {description}" + (f": {last}" if last else ""))
                return False
        self.spawn(slot)
        return True

    def pids(self) -> dict[str, int]:
        return {w.slot.id: w.pid for w in self.workers if w.pid is not None}

    def kinds(self) -> set[str]:
        return {w.slot.kind for w in self.workers}

    def busy(self) -> bool:
        return any(w.trial_id is not None for w in self.workers)

    def shutdown(self) -> None:
        """The run is over: tell each idle worker to exit (it skips interpreter teardown)."""
        for w in self.workers:
            w.send("shutdown")
            w.proc.closeWriteChannel()

    def stop(self) -> None:
        """SIGTERM every worker's process group now, SIGKILL whatever is left after the grace period."""
        for w in self.workers:
            w.terminate()
        QTimer.singleShot(STOP_GRACE_MS, self._kill_stragglers)

    def stop_blocking(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """For a closing window or a dying CLI: return only when no worker process is left."""
        for w in list(self.workers):
            w.terminate()
        self.close(timeout_ms)

    def close(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """Wait for the workers to exit (they were told to), kill any that do not."""
        for w in list(self.workers):
            if not w.proc.waitForFinished(timeout_ms):
                w.kill()
                w.proc.waitForFinished(1000)

    def _kill_stragglers(self) -> None:
        for w in self.workers:
            w.kill()

    def _on_message(self, w: SlotWorker, msg: dict[str, Any]) -> None:
        if msg["type"] == "hello":
            self.pids_changed.emit(self.pids())
        elif msg["type"] == "log" and not msg.get("trial_id"):
            self._stray[w.slot.id].append(str(msg.get("line", "")))
        self.message.emit(w, msg)

    def _on_stray(self, w: SlotWorker, line: str) -> None:
        if w.trial_id is None:
            self._stray[w.slot.id].append(line)
        self.stray_line.emit(w, line)

    def _on_exited(self, w: SlotWorker, description: str) -> None:
        if w not in self.workers:
            return
        self.workers.remove(w)
        w.deleteLater()
        self.pids_changed.emit(self.pids())
        self.exited.emit(w, description)
