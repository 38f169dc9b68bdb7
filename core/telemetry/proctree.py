"""A process's descendants, read from the kernel's per-task children lists.

psutil's children(recursive=True) reads the stat file of every process on the machine; done for each worker
four times a second (the sampler) and twice a second inside each worker (the peak meter), that is CPU taken
from the trainings being watched. /proc/<pid>/task/<tid>/children costs only the tree itself.
No imports beyond the standard library: the worker uses it too.
"""

from __future__ import annotations

import os


def child_pids(pid: int) -> list[int] | None:
    """Direct children of `pid`; None where the kernel has no such file (no CONFIG_PROC_CHILDREN, not Linux)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found = False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(x) for x in f.read().split()]
            found = True
        except OSError:
            continue
    return out if found else None


def descendants(pid: int) -> list[int] | None:
    """Every pid under `pid` (not itself); None where the children lists are unavailable."""
    below = parents_below(pid)
    return None if below is None else list(below)


def parents_below(pid: int) -> dict[int, int] | None:
    """Every pid under `pid` (not itself) -> its parent; None where the children lists are unavailable."""
    first = child_pids(pid)
    if first is None:
        return None
    out: dict[int, int] = {}
    todo = [(c, pid) for c in first]
    while todo:
        p, parent = todo.pop()
        if p in out or p == pid:
            continue
        out[p] = parent
        todo += [(c, p) for c in child_pids(p) or []]
    return out
