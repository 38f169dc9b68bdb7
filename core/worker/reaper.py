"""Nothing a trial starts outlives it: ending process trees, for the worker and for the app.

A process group or a session does not hold a trial's processes (`start_new_session`, `setsid` leave both),
and a double-forked daemon is re-parented away from its tree. Linux lets a process declare itself a *child
subreaper* (prctl PR_SET_CHILD_SUBREAPER): every orphan below it is re-parented to it instead of to init, so
it stays in its tree, where the per-task children lists (gridwatch.telemetry.proctree) find it. The worker is
one, so it can end every leftover of a trial; the app is one, so what a dead worker leaves comes back to it.

Exit statuses are taken with care: a child the trainable (or subprocess, or QProcess) waits for itself must
not be reaped under it, or its `wait()` would see no status. Only orphans and processes we ended are reaped.
No imports beyond the standard library: the worker uses it too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable
from typing import NamedTuple

from gridwatch.telemetry.proctree import child_pids, descendants, parents_below

PR_SET_CHILD_SUBREAPER = 36
KILL_WAIT_S = 2.0  # after SIGKILL, how long to wait for processes to go (one stuck in the kernel is left)
POLL_S = 0.01


class ProcStat(NamedTuple):
    state: str  # "R", "S", "Z" (zombie: dead, its exit status not taken yet), ...
    ppid: int
    start: int  # clock ticks after boot: with the pid, names one process even if the pid is reused


def become_subreaper() -> bool:
    """Orphans below this process are re-parented to it (Linux >= 3.4); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        return ProcStat(fields[0].decode(), int(fields[1]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    st = stat(pid)
    return st is not None and st.state not in ("Z", "X")


def tree(root: int) -> dict[int, int]:
    """Every process below `root` -> its parent ({} where /proc has no children lists)."""
    return parents_below(root) or {}


def reap(pids: Iterable[int] | None = None) -> None:
    """Take the exit status of dead children: every one (None), or only these."""
    if pids is None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (yet, or any more)
            pass


def send(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def end_descendants(grace_s: float) -> list[int]:
    """End every process below this one: SIGTERM, up to `grace_s` for them to go, then SIGKILL (at once when
    `grace_s` is 0); their exit statuses are taken. For the worker, between trials and on its way out (it is
    a subreaper, so all are below it). Returns the pids it had to signal."""
    me = os.getpid()
    signalled: list[int] = []
    termed: set[int] = set()
    deadline = time.monotonic() + grace_s
    give_up = deadline + KILL_WAIT_S
    while True:
        reap()
        below = tree(me)
        live = [pid for pid in below if running(pid)]
        now = time.monotonic()
        if not below or now >= give_up:
            return signalled
        signalled += [pid for pid in live if pid not in termed]
        if grace_s <= 0 or now >= deadline:
            send(live, signal.SIGKILL)
        else:
            send([pid for pid in live if pid not in termed], signal.SIGTERM)
        termed.update(live)
        time.sleep(POLL_S)


class OrphanReaper:
    """The worker's side while a trial runs: an orphan it adopted (a double-forked daemon, the child of a
    process that died) is nobody else's to wait for; when it exits, take its status so it stays no zombie.
    A child first seen under another parent is such an orphan; one the worker itself started is left to the
    code that started it (subprocess waits for its own), and is reaped with the rest when the trial ends."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._first_parent: dict[int, int] = {}
        self._stop = threading.Event()

    def scan(self) -> None:
        me = os.getpid()
        below = tree(me)
        first = {pid: self._first_parent.get(pid, parent) for pid, parent in below.items()}
        reap(pid for pid, parent in below.items() if parent == me and first[pid] != me)
        self._first_parent = first

    def start(self) -> None:
        threading.Thread(target=self._run, name="orphan-reaper", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.scan()


class StraySweeper:
    """The app's side: the app is a subreaper, so what a dead worker's tree leaves comes back to it as its
    own children. A stray is such a child that is not a live worker and came from a worker: it carries this
    pool's `marker` ("NAME=value") in its environment, or was seen in a worker's tree (`note`). Strays get
    SIGTERM, SIGKILL after the grace period, and their exit status is taken; no other child is touched."""

    def __init__(self, marker: str, grace_s: float) -> None:
        self.marker = b"\0" + marker.encode() + b"\0"
        self.grace_s = grace_s
        self._seen: dict[int, int] = {}  # pid -> start: processes seen below a worker
        self._dying: dict[int, tuple[int, float]] = {}  # pid -> (start, when SIGKILL is due)

    def note(self, workers: Iterable[int]) -> None:
        """Remember what runs below each worker now: a stray that dropped the marker is still known."""
        for w in workers:
            for pid in descendants(w) or []:
                st = stat(pid)
                if st is not None and pid not in self._seen:
                    self._seen[pid] = st.start

    def sweep(self, workers: Collection[int]) -> bool:
        """One pass over this process's children (`workers` are the live workers' pids, never touched);
        True while strays are still on their way out."""
        now = time.monotonic()
        for pid in child_pids(os.getpid()) or []:
            st = stat(pid) if pid not in workers else None
            if st is None:
                continue
            known = self._dying.get(pid, (None, 0.0))[0] == st.start or self._seen.get(pid) == st.start
            if st.state == "Z":
                if known:
                    reap([pid])
            elif pid in self._dying and self._dying[pid][0] == st.start:
                if now >= self._dying[pid][1]:
                    self._signal_tree(pid, signal.SIGKILL, now)
            elif known or self._marked(pid):
                self._signal_tree(pid, signal.SIGTERM, now)
        self._forget()
        return bool(self._dying)

    def sweep_until_gone(self, workers: Collection[int], timeout_s: float) -> None:
        """The blocking version, for an app on its way out."""
        deadline = time.monotonic() + timeout_s
        while self.sweep(workers) and time.monotonic() < deadline:
            time.sleep(POLL_S * 2)

    def _signal_tree(self, pid: int, sig: int, now: float) -> None:
        """The stray and everything below it (they come back to us as the stray dies)."""
        for p in [pid, *(descendants(pid) or [])]:
            st = stat(p)
            if st is None:
                continue
            self._dying.setdefault(p, (st.start, now + self.grace_s))
            send([p], sig)

    def _forget(self) -> None:
        """Drop what is gone (or is another process now, under a reused pid)."""
        self._dying = {p: d for p, d in self._dying.items() if (st := stat(p)) is not None and st.start == d[0]}
        self._seen = {p: s for p, s in self._seen.items() if (st := stat(p)) is not None and st.start == s}

    def _marked(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return self.marker in b"\0" + f.read()
        except OSError:
            return False
