"""RayWorkerPool: the run's slots as Ray actors, with the local WorkerPool's signals and methods.

Each slot is one long-lived SlotActor (gridwatch.cluster.actor) placed by Ray with the slot's resources: a CPU
slot asks for its threads in CPUs, a GPU slot for its share of one GPU (1/gpu_slots_per_gpu, so several
trials share a GPU where the grid says they fit) and Ray sets CUDA_VISIBLE_DEVICES on its node. One thread
per slot drains the actor's stream and hands each batch to the Qt thread, where it becomes the same
`message`, `stray_line` and `exited` signals a local SlotWorker gives, so RunSession cannot tell them apart.
A slot's id becomes `<node>/<slot>` once its actor is placed: the window groups trials by node from it.
"""

from __future__ import annotations

import json
import math
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from PySide6.QtCore import QObject, Signal

from gridwatch.cluster.actor import SlotActorImpl
from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial
from gridwatch.run.devices import Slot
from gridwatch.run.launcher import hand_on
from gridwatch.run.lifecycle import NODE_LOST as LOST  # an exit no process chose: the trial runs elsewhere
from gridwatch.run.pool import STOP_GRACE_MS, SlotPool
from gridwatch.telemetry.nvml import GpuSample
from gridwatch.telemetry.sampler import NodeLoad, ProcSample, Snapshot
from gridwatch.worker import protocol

STOP_GRACE_S = STOP_GRACE_MS / 1000
SAMPLE_EVERY_S = 1.0  # each node's telemetry is read this often

_actor_class: Any = None


# Which of the actor's methods run beside its stream, and in which thread: control (ordered) and telemetry.
# Declared on the methods (the same for every call).
METHOD_GROUPS = {"info": "ctl", "send": "ctl", "close_input": "ctl", "signal": "ctl", "stop": "ctl", "sample": "tel"}


def actor_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        grouped = {name: ray.method(concurrency_group=group)(getattr(SlotActorImpl, name))
                   for name, group in METHOD_GROUPS.items()}
        cls = type("SlotActor", (SlotActorImpl,), grouped)
        _actor_class = ray.remote(max_restarts=0, max_task_retries=0, concurrency_groups={"ctl": 1, "tel": 1})(cls)
    return _actor_class


def slot_resources(slot: Slot, slots: list[Slot]) -> dict[str, float]:
    """What Ray reserves for a slot's actor: CPUs for a CPU slot; a share of one GPU for a GPU slot."""
    if slot.kind != "gpu":
        return {"num_cpus": float(slot.threads), "num_gpus": 0.0}
    sharing = sum(1 for s in slots if s.kind == "gpu" and s.gpu_index == slot.gpu_index)
    return {"num_cpus": 0.0, "num_gpus": 1.0 / max(1, sharing)}


def ray_reason(exc: BaseException) -> str:
    """Why an actor died, in one line: the error raised on the node where Ray's text names one (its creation
    failed: `ModuleNotFoundError: No module named ...`), else the first line of Ray's own."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    raised = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): ", ln)]
    line = raised[-1] if raised else (lines[0] if lines else "")
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


class RaySlotWorker(QObject):
    message = Signal(object, object)
    stray_line = Signal(object, str)
    exited = Signal(object, str)
    _batch = Signal(object)  # from the stream thread, queued to the Qt thread

    def __init__(self, ray: Any, slot: Slot, resources: dict[str, float], env: dict[str, str], driver_node: str,
                 copy_files: bool | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ray = ray
        self.base_slot = slot
        self.slot = slot
        self.pid: int | None = None  # the worker's pid on its node (not this machine's)
        self.node = ""
        self.node_id = ""
        self.gpu_ids: list[str] = []
        self.said_hello = False
        self.trial_id: str | None = None
        self.trials_run = 0
        self.baseline_rss: float | None = None
        self.hello: dict[str, str | None] = {}
        self.gone = False  # its exit was handed on
        self.node_dead = False  # the cluster declared its node dead: said once
        self._ending = False  # gridwatch ended it: its actor's death is no lost node
        self._trial_dir: Path | None = None
        self._resources, self._env = resources, env
        self._driver_node, self._copy_files = driver_node, copy_files
        self.actor: Any = None
        self._thread: threading.Thread | None = None
        self._batch.connect(self._on_batch)

    def start(self) -> None:
        cls = actor_class(self.ray)
        self.actor = cls.options(**self._resources).remote(self._env, self._driver_node, self._copy_files)
        self._thread = threading.Thread(target=self._pump, name=f"ray-{self.slot.id}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            info = self.ray.get(self._call("info"))
            self._batch.emit([("info", info)])
            for ref in self.actor.stream.remote():
                batch = self.ray.get(ref)
                self._batch.emit(batch)
                if any(item[0] == "exit" for item in batch):
                    return
            self._batch.emit([("exit", "worker stream ended")])
        except Exception as exc:  # noqa: BLE001 - ActorDiedError, a lost node, a failed start: all end the slot
            self._batch.emit([("lost", ray_reason(exc))])

    def _call(self, method: str, *args: Any) -> Any:
        if not self.ray.is_initialized():  # the run left the cluster: nothing of it is left to call
            raise RuntimeError("not connected to the Ray cluster")
        return getattr(self.actor, method).remote(*args)

    # -- the SlotWorker surface -------------------------------------------------------------------------

    def run(self, trial: Trial, model: ModelSpec, trial_dir: str) -> None:
        self.trial_id = trial.id
        self.trials_run += 1
        self._trial_dir = Path(trial_dir)
        self.send("run", trial={"id": trial.id, "kind": model.kind, "target": model.target, "cwd": model.cwd,
                                "base": model.base, "metrics_regex": list(model.metrics_regex),
                                "metric": model.metric, "trial_dir": trial_dir, "workdir": model.workdir,
                                "config": {**trial.config, "device": self.slot.torch_device}})

    def send(self, type_: str, **fields: object) -> None:
        self._tell("send", protocol.encode(type_, **fields))

    def close_input(self) -> None:
        self._tell("close_input")

    def terminate(self) -> None:
        self._ending = True
        self._tell("stop", STOP_GRACE_S)

    def kill(self) -> None:
        self._tell("signal", int(signal.SIGKILL))

    def _tell(self, method: str, *args: Any) -> None:
        """A call whose answer nobody waits for; to a slot already gone, or after the run left, nothing."""
        if self.actor is not None and not self.gone and self.ray.is_initialized():
            self._call(method, *args)

    def end_actor(self) -> None:
        """The actor itself: its worker is gone or must go now (a lost cause, or the run's end)."""
        self._ending = True
        if self.actor is not None and self.ray.is_initialized():  # after a disconnect it has ended already
            try:
                self.ray.kill(self.actor, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - already dead, or the cluster is gone
                pass

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the stream, on the Qt thread -------------------------------------------------------------------

    def _on_batch(self, batch: list[tuple[Any, ...]]) -> None:
        for item in batch:
            kind = item[0]
            if kind == "out":
                hand_on(self, item[1])
            elif kind == "err":
                self.stray_line.emit(self, item[1])
            elif kind == "file":
                self._write_file(item[1], item[2], item[3])
            elif kind == "info":
                self._placed(item[1])
            elif kind == "exit" or self._ending:
                self._end(item[1])
            elif kind == "lost" and not self.said_hello:  # e.g. gridwatch or a trainable's package missing there
                self._end(f"worker failed to start on the Ray cluster ({self.node or 'not placed'}): {item[1]}")
            elif kind == "lost":
                self._end(f"{LOST} ({self.node or '?'}): {item[1]}")

    def _placed(self, info: dict[str, Any]) -> None:
        self.node, self.node_id = str(info.get("node", "")), str(info.get("node_id", ""))
        self.gpu_ids = [str(g) for g in info.get("gpu_ids", [])]
        self.pid = int(info["pid"]) if isinstance(info.get("pid"), int) else None
        self.slot = replace(self.base_slot, id=f"{self.node}/{self.base_slot.id}")

    def _write_file(self, rel: str, offset: int, data: bytes) -> None:
        """A remote trial's file, into its folder here; a path that would leave the folder is refused."""
        path = PurePosixPath(rel)
        if self._trial_dir is None or path.is_absolute() or ".." in path.parts:
            return
        dest = self._trial_dir / path
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "r+b" if offset and dest.exists() else "wb") as f:
                f.seek(offset)
                f.write(data)
                f.truncate()
        except OSError:
            pass

    def _end(self, description: str) -> None:
        if self.gone:
            return
        self.gone = True
        self.exited.emit(self, description)


class RayWorkerPool(SlotPool):
    """SlotPool over Ray actors; `snapshot` carries each node's telemetry, merged, once a second."""

    snapshot = Signal(object)
    workers: list[RaySlotWorker]
    _retiring: list[RaySlotWorker]

    remote = True

    def __init__(self, ray: Any, slots: list[Slot], preload: list[tuple[str, str]], driver_node: str,
                 copy_files: bool | None = None, parent: QObject | None = None) -> None:
        super().__init__(slots, preload, parent)
        self.ray = ray
        self.driver_node = driver_node
        self.copy_files = copy_files
        self._ended: list[RaySlotWorker] = []  # exited; their actors are ended at close
        self._gpu_numbers: dict[tuple[str, int], int] = {}  # (node id, GPU on it) -> the run's GPU number
        self._stop_sampling = threading.Event()
        self.live_nodes: set[str] | None = None  # the cluster's live nodes, as last asked (None: not yet)
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)
        self._sampler = threading.Thread(target=self._sample_loop, name="ray-telemetry", daemon=True)
        self._sampler.start()

    def make_worker(self, slot: Slot) -> RaySlotWorker:
        env = dict(slot.env())
        env["GRIDWATCH_PRELOAD"] = json.dumps(self.preload)
        return RaySlotWorker(self.ray, slot, slot_resources(slot, self.slots), env, self.driver_node,
                             self.copy_files, self)

    def replace(self, w: RaySlotWorker, description: str) -> bool:
        if self.live_nodes is not None and not self.live_nodes:  # nowhere to start it: say so, end the run
            self.gave_up.emit(f"slot {w.base_slot.id} given up: no live node left in the Ray cluster")
            return False
        return super().replace(w, description)

    def pids(self) -> dict[str, int]:
        return {}  # the workers' pids are their nodes', not this machine's: the nodes sample them

    def stop(self) -> None:
        """Cancel: each actor ends its worker's process group (SIGTERM, SIGKILL after the grace period)."""
        for w in self._all():
            w.terminate()

    def stop_blocking(self, timeout_ms: int = int(STOP_GRACE_S * 1000)) -> None:
        for w in self._all():
            w.terminate()
        self.close(timeout_ms)

    def close(self, timeout_ms: int = int(STOP_GRACE_S * 1000)) -> None:
        """Wait for the workers' streams to end (they were told to), then end every actor of the run."""
        deadline = time.monotonic() + timeout_ms / 1000 + 2.0
        for w in self._all():
            if not w.join(max(0.0, deadline - time.monotonic())):
                w.kill()
        self._stop_sampling.set()
        everyone = [*self._all(), *self._ended]
        for w in everyone:
            w.end_actor()
        for w in everyone:  # a dead node's stream may never end: its thread is a daemon, not waited for long
            w.join(0.2 if w.node_dead else 2.0)
        if self._sampler is not None:  # a sample in flight is waited for at most 2 s: not here
            self._sampler.join(0.1)

    # -- telemetry from the nodes -----------------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stop_sampling.wait(SAMPLE_EVERY_S) and self.ray.is_initialized():
            self._check_nodes()
            try:
                asked = [(w, w._call("sample")) for w in list(self.workers)
                         if w.said_hello and not w.gone]
                if not asked:
                    continue
                ready, _ = self.ray.wait([r for _, r in asked], num_returns=len(asked), timeout=2 * SAMPLE_EVERY_S)
                got = []
                for w, ref in asked:
                    if ref in ready:
                        got.append((w, self.ray.get(ref)))
            except Exception:  # noqa: BLE001 - a node going away: its slot's exit says so
                continue
            if got and not self._stop_sampling.is_set():
                self.snapshot.emit(self.merge(got))

    def _check_nodes(self) -> None:
        """A slot whose node the cluster has declared dead is lost, even while Ray's own calls to it still wait
        (when the node's raylet dies, its actors' streams never end)."""
        try:
            alive = {str(n["NodeID"]) for n in self.ray.nodes() if n.get("Alive")}
        except Exception:  # noqa: BLE001 - the cluster itself is unreachable: the same as no live node
            alive = set()
        self.live_nodes = alive
        for w in list(self.workers):
            if w.gone or w.node_dead:
                continue
            if w.node_id and w.node_id not in alive:
                w.node_dead = True
                w._batch.emit([("lost", f"its node {w.node or w.node_id[:8]} was declared dead by the cluster")])
            elif not alive:  # not placed yet, and nowhere it could be
                w.node_dead = True
                w._batch.emit([("lost", "no live node left in the Ray cluster")])

    def merge(self, got: list[tuple[RaySlotWorker, tuple[str, str, Snapshot]]]) -> Snapshot:
        """One snapshot of the whole run: host figures summed over nodes (each node once), GPUs numbered for
        the run, each slot's worker tree under the slot's id; `nodes` keeps each node's own figures."""
        per_node: dict[str, tuple[str, Snapshot]] = {}
        trials: dict[str, ProcSample] = {}
        for w, (node_id, name, snap) in got:
            per_node.setdefault(node_id, (name, snap))
            if "slot" in snap.trials:
                trials[w.slot.id] = snap.trials["slot"]
        nodes: list[NodeLoad] = []
        cores: list[float] = []
        gpus: list[GpuSample] = []
        for node_id, (name, snap) in per_node.items():
            nodes.append(NodeLoad(name, snap.cpu_total, len(snap.cpu_cores), snap.ram_used, snap.ram_total))
            cores.extend(snap.cpu_cores)
            for g in snap.gpus:
                number = self._gpu_numbers.setdefault((node_id, g.index), len(self._gpu_numbers))
                gpus.append(replace(g, index=number))
        snaps = [s for _, s in per_node.values()]
        total = sum(cores) / len(cores) if cores else math.nan
        return Snapshot(time.time(), total, tuple(cores), sum(s.ram_used for s in snaps),
                        sum(s.ram_available for s in snaps), sum(s.ram_total for s in snaps), tuple(gpus), trials,
                        sum(s.swap_used for s in snaps), sum(s.disk_read_bps for s in snaps),
                        sum(s.disk_write_bps for s in snaps), "; ".join(s.gpu_process_note for s in snaps
                                                                       if s.gpu_process_note),
                        tuple(nodes))

    def gpu_number(self, w: RaySlotWorker) -> int | None:
        """The run's number for the GPU a slot's actor was given (its first), as `merge` numbers GPUs."""
        if not w.gpu_ids:
            return None
        try:
            local = int(w.gpu_ids[0])
        except ValueError:
            return None
        return self._gpu_numbers.setdefault((w.node_id, local), len(self._gpu_numbers))

    # -- passing on -------------------------------------------------------------------------------------

    def _heard_hello(self, w: RaySlotWorker) -> None:
        number = self.gpu_number(w)
        if number is not None:  # the slot's GPU under the run's numbering, as the telemetry has it
            w.slot = replace(w.slot, gpu_index=number)

    def _on_exited(self, w: RaySlotWorker, description: str) -> None:
        self._ended.append(w)
        w.end_actor()
        if w in self._retiring:
            self._retiring.remove(w)
            return
        if w not in self.workers:
            return
        self.workers.remove(w)
        self.exited.emit(w, description)
