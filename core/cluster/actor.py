"""SlotActor: one slot's long-lived worker on a Ray node.

The actor starts the same worker a local slot has (`python -P -m gridwatch.worker`) as a child process on its
node, writes protocol lines to it (`send`), and streams back what it prints (`stream`, a generator: each item
is a batch). On a node that is not the driver's, each trial runs in a folder of the node's own, and that
folder's files come back in the stream while the trial runs. `sample` reads the node's own telemetry: psutil
and NVML there, since the driver cannot see a remote machine.

Item kinds in a batch:
    ("out", line)                 a line of the worker's protocol stream (or a stray on it)
    ("err", line)                 a line the worker's process printed to stderr
    ("file", relpath, offset, b)  bytes of a trial-folder file, from `offset` (0 rewrites the file)
    ("exit", description)         the worker process ended: the stream ends here
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gridwatch.worker import protocol

WORKER_ARGS = ["-P", "-m", "gridwatch.worker"]
FILES_EVERY_S = 2.0  # a remote trial's folder is looked at this often while it runs, and when it ends
FILE_MAX = 64 * 2**20  # bytes of one trial-folder file sent back; a bigger file stays on its node
BATCH_MAX = 500  # items per streamed batch


def node_name() -> str:
    return socket.gethostname() or "node"


class SlotActorImpl:
    """The actor's body, importable without Ray (ray.remote wraps it in gridwatch.cluster.pool)."""

    def __init__(self, env: dict[str, str], driver_node: str, copy_files: bool | None = None) -> None:
        import ray

        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        self.node = node_name()
        # The driver's node shares its file system with us: trials write their folders in place.
        self.remote = self.node_id != driver_node if copy_files is None else copy_files
        full = dict(os.environ)
        full.update(env)
        if self.gpu_ids:  # Ray chose this actor's GPU(s) on this node
            full["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpu_ids)
            full.pop("CUDA_DEVICE_ORDER", None)  # Ray's ids are its own order, not PCI's
        full["GRIDWATCH_PARENT_PID"] = str(os.getpid())
        full["PYTHONUNBUFFERED"] = "1"
        full["PYTHONIOENCODING"] = "utf-8"
        self._q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._proc = subprocess.Popen([sys.executable, *WORKER_ARGS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=full, start_new_session=True)
        self._write_lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(self._proc.stdout, "out"), daemon=True),
                         threading.Thread(target=self._read, args=(self._proc.stderr, "err"), daemon=True)]
        for t in self._readers:
            t.start()
        threading.Thread(target=self._wait_exit, daemon=True).start()
        self._local_root = Path(tempfile.mkdtemp(prefix="gridwatch-trials-")) if self.remote else None
        self._trial_dir: Path | None = None  # the running trial's folder on this node (remote only)
        self._sent: dict[str, tuple[int, float]] = {}  # file -> (bytes sent, mtime) for the running trial
        self._files_at = 0.0
        self._sampler: Any = None

    # -- the driver's side ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Where this slot runs: node name and id, its GPUs as Ray numbers them there, its worker's pid."""
        return {"node": self.node, "node_id": self.node_id, "gpu_ids": self.gpu_ids, "pid": self._proc.pid,
                "copies_files": self.remote}

    def send(self, line: bytes) -> None:
        """One protocol line to the worker; a trial's folder is moved onto this node first if it must be."""
        if self.remote:
            line = self._localize(line)
        with self._write_lock:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the worker is gone: its exit is on its way through the stream

    def close_input(self) -> None:
        with self._write_lock:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            except OSError:
                pass

    def signal(self, sig: int) -> None:
        """To the worker's whole process group: its DataLoader and command children too."""
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self._proc.send_signal(sig)
            except (ProcessLookupError, OSError):
                pass

    def stop(self, grace_s: float) -> str:
        """SIGTERM, then SIGKILL after `grace_s`; returns once the worker has exited."""
        self.signal(signal.SIGTERM)
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self._proc.wait()
        return "stopped"

    def sample(self) -> tuple[str, str, Any]:
        """This node's telemetry now, with this slot's worker tree under its slot id."""
        from gridwatch.telemetry.sampler import TelemetrySampler

        if self._sampler is None:
            self._sampler = TelemetrySampler(lambda _s: None)
        self._sampler.watch({"slot": self._proc.pid})
        return self.node_id, self.node, self._sampler.sample()

    def stream(self) -> Any:
        """Everything the worker prints, in batches, until it exits (the last item says how)."""
        while True:
            try:  # a remote trial's folder is looked at even while the trial prints nothing
                batch = [self._q.get(timeout=FILES_EVERY_S if self._trial_dir is not None else None)]
            except queue.Empty:
                batch = []
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            ended = any(item[0] == "exit" for item in batch)
            if self.remote:
                batch = self._with_files(batch)
            if batch:
                yield batch
            if ended:
                if self._local_root is not None:
                    shutil.rmtree(self._local_root, ignore_errors=True)
                return

    # -- the worker's side ------------------------------------------------------------------------------

    def _read(self, pipe: Any, kind: str) -> None:
        for raw in iter(pipe.readline, b""):
            self._q.put((kind, raw.rstrip(b"\n").decode("utf-8", "replace")))

    def _wait_exit(self) -> None:
        code = self._proc.wait()
        for t in self._readers:
            t.join(5.0)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            self._q.put(("exit", f"worker killed by {name}"))
        else:
            self._q.put(("exit", f"worker exited with code {code}"))

    # -- a remote trial's folder ------------------------------------------------------------------------

    def _localize(self, line: bytes) -> bytes:
        try:
            msg = protocol.decode(line)
        except protocol.ProtocolError:
            return line
        if msg.get("type") != "run" or not isinstance(msg.get("trial"), dict):
            return line
        trial = dict(msg["trial"])
        assert self._local_root is not None
        here = self._local_root / str(trial["id"])
        self._trial_dir, self._sent, self._files_at = here, {}, time.monotonic()
        trial["trial_dir"] = str(here)
        # The model's folder (cwd) must exist on this node too: the same path, as for any cluster job.
        return protocol.encode("run", trial=trial)

    def _with_files(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Changed files of the running trial's folder go before a batch that ends it, and every few seconds."""
        ends = any(item[0] == "out" and _ends_trial(item[1]) for item in batch)
        if self._trial_dir is None or not (ends or time.monotonic() - self._files_at >= FILES_EVERY_S):
            return batch
        self._files_at = time.monotonic()
        files = list(self._changed_files())
        if ends:
            self._trial_dir = None
        if not files:
            return batch
        cut = next((i for i, item in enumerate(batch) if item[0] == "out" and _ends_trial(item[1])), len(batch))
        return [*batch[:cut], *files, *batch[cut:]]

    def _changed_files(self) -> Any:
        root = self._trial_dir
        if root is None or not root.is_dir():
            return
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            rel = str(path.relative_to(root))
            try:
                st = path.stat()
            except OSError:
                continue
            sent, mtime = self._sent.get(rel, (0, -1.0))
            if st.st_size == sent and st.st_mtime == mtime:
                continue
            offset = sent if st.st_size > sent else 0  # grown: the tail; else (rewritten) all of it
            if offset == 0 and st.st_size > FILE_MAX:
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(min(st.st_size, FILE_MAX) - offset)
            except OSError:
                continue
            self._sent[rel] = (offset + len(data), st.st_mtime)
            yield ("file", rel, offset, data)


def _ends_trial(line: str) -> bool:
    if '"trial_finished"' not in line and '"trial_failed"' not in line:
        return False
    try:
        return json.loads(line).get("type") in ("trial_finished", "trial_failed")
    except ValueError:
        return False
