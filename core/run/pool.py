"""WorkerPool: owns the run's worker processes, one long-lived SlotWorker per slot (SlotPool: what it shares
with the Ray backend's pool).

It starts them, replaces one that exits (giving a slot up after MAX_BAD_STARTS deaths before its hello) or
that the session retires between trials, stops them all (SIGTERM to each, SIGKILL after a grace period) and
keeps what each printed outside the protocol. What a message *means* is the session's business: the pool
only passes it on.

Nothing a worker started outlives it. A worker ends its trials' leftovers itself; one that dies (a trainable's
os._exit, kill -9, the OOM killer) cannot, so this process is a child subreaper: the dead worker's orphans
come back to it, and the pool ends them (gridwatch.worker.reaper.StraySweeper).
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gridwatch.run.devices import Slot
from gridwatch.run.launcher import SlotWorker
from gridwatch.worker import reaper

MAX_BAD_STARTS = 3  # a slot whose worker dies before saying hello this often is given up
STOP_GRACE_MS = 3000
STRAY_KEPT = 20  # lines a worker printed outside any trial, kept to explain a worker that will not start
TEND_MS = 1000  # the workers' trees are noted, and strays looked for, this often
STRAY_GRACE_S = 1.0  # a dead worker's leftover gets SIGTERM, then SIGKILL this much later
MARKER = "GRIDWATCH_POOL"  # in the environment of a pool's workers, and so of everything they start


class SlotPool(QObject):
    """What every pool of slot workers shares, local processes or Ray actors (gridwatch.cluster.pool): the signals
    the session hears, one worker per slot, replacing one that exits (giving a slot up after MAX_BAD_STARTS
    deaths before its hello), retiring one between trials, and what each printed outside the protocol. A worker
    has `slot` (what the session sees) and `base_slot` (the slot it was started for)."""

    message = Signal(object, object)  # (worker, decoded message): `dict` would sort its keys (QVariantMap)
    stray_line = Signal(object, str)  # (worker, line printed outside the protocol)
    exited = Signal(object, str)  # (worker, how it exited): already removed from the pool
    pids_changed = Signal(dict)  # slot id -> worker pid
    gave_up = Signal(str)  # a slot abandoned, in words

    remote = False  # True: workers on other machines, whose telemetry the pool samples there (its `snapshot`)

    def __init__(self, slots: list[Slot], preload: list[tuple[str, str]], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.slots = list(slots)
        self.preload = preload
        self.workers: list[Any] = []
        self._retiring: list[Any] = []  # told to exit between trials; replaced already
        self._bad_starts: dict[str, int] = {}
        self._stray: dict[str, deque[str]] = {}

    def make_worker(self, slot: Slot) -> Any:
        raise NotImplementedError

    def spawn(self, slot: Slot) -> None:
        w = self.make_worker(slot)
        w.message.connect(self._on_message)
        w.stray_line.connect(self._on_stray)
        w.exited.connect(self._on_exited)
        self.workers.append(w)
        self._stray.setdefault(slot.id, deque(maxlen=STRAY_KEPT))
        w.start()

    def replace(self, w: Any, description: str) -> bool:
        """Start a new worker on w's slot, unless that slot keeps dying before it can say hello."""
        slot = w.base_slot
        if not w.said_hello:
            self._bad_starts[slot.id] = self._bad_starts.get(slot.id, 0) + 1
            if self._bad_starts[slot.id] >= MAX_BAD_STARTS:
                last = " | ".join(list(self._stray[slot.id])[-3:])
                self.gave_up.emit(f"slot {slot.id} given up: {description}" + (f": {last}" if last else ""))
                return False
        self.spawn(slot)
        return True

    def retire(self, w: Any) -> None:
        """Between trials: let w exit (it ends what it started, skips teardown) and start a fresh worker on
        its slot now, so the new one's start-up overlaps the old one's exit."""
        if w not in self.workers:
            return
        self.workers.remove(w)
        self._retiring.append(w)
        w.send("shutdown")
        w.close_input()
        QTimer.singleShot(STOP_GRACE_MS, w, w.terminate)  # one that will not go (no-op once it has gone)
        self.spawn(w.base_slot)
        self.pids_changed.emit(self.pids())

    def pids(self) -> dict[str, int]:
        return {}

    def kinds(self) -> set[str]:
        return {w.slot.kind for w in self.workers}

    def busy(self) -> bool:
        return any(w.trial_id is not None for w in self.workers)

    def shutdown(self) -> None:
        """The run is over: tell each idle worker to exit (it skips interpreter teardown)."""
        for w in self.workers:
            w.send("shutdown")
            w.close_input()

    def _all(self) -> list[Any]:
        return [*self.workers, *self._retiring]

    def _heard_hello(self, w: Any) -> None:
        """A worker said hello: what the pool notes of it (nothing here)."""

    def _on_message(self, w: Any, msg: dict[str, Any]) -> None:
        if msg["type"] == "hello":
            self._heard_hello(w)
        elif msg["type"] == "log" and not msg.get("trial_id"):
            self._stray[w.base_slot.id].append(str(msg.get("line", "")))
        self.message.emit(w, msg)

    def _on_stray(self, w: Any, line: str) -> None:
        if w.trial_id is None:
            self._stray[w.base_slot.id].append(line)
        self.stray_line.emit(w, line)

    def _on_exited(self, w: Any, description: str) -> None:
        raise NotImplementedError


class WorkerPool(SlotPool):
    """The local slots: one SlotWorker (a QProcess) each."""

    workers: list[SlotWorker]
    _retiring: list[SlotWorker]

    def __init__(self, slots: list[Slot], preload: list[tuple[str, str]], parent: QObject | None = None) -> None:
        super().__init__(slots, preload, parent)
        self._marker = (MARKER, secrets.token_hex(8))
        self._sweeper = reaper.StraySweeper("=".join(self._marker), STRAY_GRACE_S)
        self._sweep_due = False  # a follow-up sweep is scheduled
        self._tend_timer = QTimer(self)
        self._tend_timer.timeout.connect(self._tend)

    def start(self) -> None:
        reaper.become_subreaper()
        self._tend_timer.start(TEND_MS)
        for slot in self.slots:
            self.spawn(slot)

    def make_worker(self, slot: Slot) -> SlotWorker:
        return SlotWorker(slot, self, self.preload, self._marker)

    def pids(self) -> dict[str, int]:
        return {w.slot.id: w.pid for w in self.workers if w.pid is not None}

    def stop(self) -> None:
        """SIGTERM every worker now (each kills everything below it), SIGKILL whatever is left after the grace
        period; what a SIGKILLed worker leaves behind is swept."""
        for w in self._all():
            w.terminate()
        QTimer.singleShot(STOP_GRACE_MS, self, self._kill_stragglers)

    def stop_blocking(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """For a closing window or a dying CLI: return only when no worker process is left."""
        for w in self._all():
            w.terminate()
        self.close(timeout_ms)

    def close(self, timeout_ms: int = STOP_GRACE_MS) -> None:
        """Wait for the workers to exit (they were told to), kill any that do not, and end what they left."""
        for w in self._all():
            if not w.proc.waitForFinished(timeout_ms):
                w.kill()
                w.proc.waitForFinished(1000)
        self._tend_timer.stop()
        self._sweeper.sweep_until_gone(self._worker_pids(), STRAY_GRACE_S + 2.0)

    def _kill_stragglers(self) -> None:
        for w in self._all():
            w.kill()

    def _worker_pids(self) -> set[int]:
        """Every worker process this pool still holds a QProcess for: never taken for a stray."""
        return {w.pid for w in self._all() if w.pid is not None}

    def _tend(self) -> None:
        self._sweeper.note(pid for w in self._all() if w.running and (pid := w.pid) is not None)
        self._sweep()

    def _sweep(self) -> None:
        if self._sweeper.sweep(self._worker_pids()) and not self._sweep_due:
            self._sweep_due = True  # strays on their way out: SIGKILL them on time, reap them soon
            QTimer.singleShot(50, self, self._sweep_again)

    def _sweep_again(self) -> None:
        self._sweep_due = False
        self._sweep()

    def _heard_hello(self, w: SlotWorker) -> None:
        self.pids_changed.emit(self.pids())

    def _on_exited(self, w: SlotWorker, description: str) -> None:
        if w in self._retiring:
            self._retiring.remove(w)
            w.deleteLater()
            self._sweep()
            return
        if w not in self.workers:
            return
        self.workers.remove(w)
        w.deleteLater()
        self._sweep()  # its orphans came back to us as it died
        self.pids_changed.emit(self.pids())
        self.exited.emit(w, description)
