"""SlotWorker: one QObject around the QProcess of one slot's long-lived worker."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial
from gridwatch.run.devices import Slot
from gridwatch.worker import protocol

# -P: the worker's sys.path never starts with the current folder, so a user's own `gridwatch`, `core` or
# `utils` there cannot shadow ours; the trainable's folder is put on the path by the one function that also
# validates references (gridwatch.grid.locate.search_path).
WORKER_ARGS = ["-P", "-m", "gridwatch.worker"]
HELLO_FIELDS = ("python", "torch", "cuda", "device", "slot")  # kept from a worker's hello


def worker_env(slot: Slot) -> QProcessEnvironment:
    env = QProcessEnvironment.systemEnvironment()
    for key, value in slot.env().items():
        env.insert(key, value)
    env.insert("PYTHONUNBUFFERED", "1")
    env.insert("PYTHONIOENCODING", "utf-8")
    env.insert("GRIDWATCH_PARENT_PID", str(os.getpid()))
    return env


def hello_info(msg: dict[str, Any]) -> dict[str, str | None]:
    """What a worker's hello says about it: versions (torch None when it did not load torch) and place; a
    missing or malformed field is None."""
    return {k: v if isinstance(v := msg.get(k), str) and v else None for k in HELLO_FIELDS}


def hand_on(w: Any, line: str) -> None:
    """One line of a worker's protocol stream, local or on a Ray node: a message (a hello is noted on the
    worker: versions, start-up RSS) or, if it is no protocol line, a stray."""
    if not line.strip():
        return
    try:
        msg = protocol.decode(line)
    except protocol.ProtocolError:
        w.stray_line.emit(w, line)
        return
    if msg["type"] == "hello":
        w.said_hello = True
        w.hello = hello_info(msg)
        rss = msg.get("baseline_rss")
        w.baseline_rss = float(rss) if isinstance(rss, (int, float)) else None
    w.message.emit(w, msg)


def describe_exit(code: int, crashed: bool) -> str:
    if crashed:
        try:
            name = signal.Signals(code).name
        except ValueError:
            name = f"signal {code}"
        return f"worker killed by {name}"
    return f"worker exited with code {code}"


class SlotWorker(QObject):
    """Protocol lines arrive as `message`; anything written straight to fd 1/2 arrives as `stray_line`."""

    message = Signal(object, object)  # (self, decoded message: a dict; `object` keeps its key order)
    stray_line = Signal(object, str)  # (self, line) output that bypassed Python's sys.stdout/stderr
    exited = Signal(object, str)  # (self, description)

    def __init__(self, slot: Slot, parent: QObject | None = None, preload: list[tuple[str, str]] | None = None,
                 marker: tuple[str, str] | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.pid: int | None = None
        self.said_hello = False
        self.trial_id: str | None = None  # the trial it is running, if any
        self.trials_run = 0  # trials handed to it
        self.baseline_rss: float | None = None  # its RSS before its first trial, as its hello said
        self.hello: dict[str, str | None] = {}  # python, torch and cuda versions, as its hello said
        self._out = b""
        self._err = b""
        self.proc = QProcess(self)
        self.proc.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        env = worker_env(slot)
        env.insert("GRIDWATCH_PRELOAD", json.dumps(preload or []))
        if marker is not None:  # inherited by everything below it: a stray it leaves is known by it
            env.insert(*marker)
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(self._on_stdout)
        self.proc.readyReadStandardError.connect(self._on_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        self.proc.start(sys.executable, WORKER_ARGS)
        self.pid = int(self.proc.processId()) or None

    @property
    def running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def run(self, trial: Trial, model: ModelSpec, trial_dir: str) -> None:
        """Hand the worker its next trial; `device` in its config is this slot's."""
        self.trial_id = trial.id
        self.trials_run += 1
        self.send("run", trial={"id": trial.id, "kind": model.kind, "target": model.target, "cwd": model.cwd,
                                "base": model.base, "metrics_regex": list(model.metrics_regex),
                                "metric": model.metric, "trial_dir": trial_dir, "workdir": model.workdir,
                                "config": {**trial.config, "device": self.slot.torch_device}})

    def send(self, type_: str, **fields: object) -> None:
        self.proc.write(protocol.encode(type_, **fields))

    def terminate(self) -> None:
        """SIGTERM to the worker's whole process group (its DataLoader and command children too)."""
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.pid is None or not self.running:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def base_slot(self) -> Slot:
        return self.slot  # a local slot keeps its name

    def close_input(self) -> None:
        self.proc.closeWriteChannel()

    def _on_stdout(self) -> None:
        self._out += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            hand_on(self, line.decode("utf-8", "replace"))

    def _on_stderr(self) -> None:
        self._err += bytes(self.proc.readAllStandardError().data())
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            self.stray_line.emit(self, line.decode("utf-8", "replace"))

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._on_stdout()
        self._on_stderr()
        crashed = status == QProcess.ExitStatus.CrashExit
        self.exited.emit(self, describe_exit(code, crashed))

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.exited.emit(self, f"worker failed to start: {self.proc.errorString()}")
