"""Was a process killed for memory? Readings from /proc and the memory cgroup, standard library only (the
worker uses them too).

After the kernel's OOM killer has struck, the memory is already back, so "RAM is nearly full now" misses
it; and inside a memory cgroup (a container, a Slurm job, a systemd unit) /proc/meminfo shows the host's RAM.
The cgroup's own count of OOM kills says it directly: `oom_kill` in memory.events (cgroup v2) or in
memory.oom_control (v1, Linux >= 4.13).
"""

from __future__ import annotations

import os

ROOT = "/sys/fs/cgroup"


def _memory_cgroup_dirs() -> list[str]:
    """Where this process's memory cgroup may be mounted (a container sees its own cgroup as the root)."""
    out: list[str] = []
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = [line.strip().split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        return out
    for _, controllers, path in lines:
        path = path.rstrip("/")
        if controllers == "":  # v2 (unified), also mounted under unified/ on hybrid systems
            out += [f"{ROOT}{path}", f"{ROOT}/unified{path}", ROOT]
        elif "memory" in controllers.split(","):
            out += [f"{ROOT}/memory{path}", f"{ROOT}/memory"]
    return out


def oom_kills(dirs: list[str] | None = None) -> int | None:
    """OOM kills so far in this process's memory cgroup; None where no cgroup says."""
    for d in _memory_cgroup_dirs() if dirs is None else dirs:
        for name in ("memory.events", "memory.oom_control"):
            try:
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                continue
    return None


def ram_nearly_full() -> bool:
    """Less than 10 % of RAM available."""
    try:
        with open("/proc/meminfo", "rb") as f:
            info = {k: int(v.split()[0]) for k, v in (line.split(b":", 1) for line in f if b":" in line)}
        return info[b"MemAvailable"] < 0.1 * info[b"MemTotal"]
    except (OSError, KeyError, ValueError, IndexError):
        return False


class OomWatch:
    """Did the OOM killer strike since this was made? The cgroup's count where there is one, else whether
    RAM is nearly full now."""

    def __init__(self) -> None:
        self.before = oom_kills()

    def struck(self) -> bool:
        after = oom_kills() if self.before is not None else None
        if self.before is not None and after is not None:
            return after > self.before
        return ram_nearly_full()
