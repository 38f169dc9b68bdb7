"""Telemetry in the results file: one encoder (Snapshot -> rows) and one decoder (rows -> Snapshots).

Rows are (t, key, value) at 1 Hz. The key's text is the file format; code never builds or slices it by hand:
`Key` says what a row is (host figure, core, GPU field, slot field), `encode` writes a snapshot's rows and
`decode` rebuilds snapshots, so a replayed run goes through the same code as a live one. A reading that was
NaN is simply absent: a gap on replay.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gridwatch.telemetry.nvml import GpuSample
from gridwatch.telemetry.sampler import ProcSample, Snapshot

STORE_EVERY_S = 1.0  # an hour is ~40k rows, replayable
HOST = ("cpu_total", "ram_used", "ram_available", "swap_used")
GPU = {"util": "util", "mem_used": "mem_used", "mem_total": "mem_total", "power": "power_w", "temp": "temp_c"}
SLOT = ("rss", "cpu")
NAN = math.nan
_CORE = re.compile(r"core(\d+)")
_GPU = re.compile(r"gpu(\d+)\.(\w+)")
_SLOT = re.compile(r"slot\.(.+)\.(\w+)")


@dataclass(frozen=True)
class Key:
    scope: str  # "host" | "core" | "gpu" | "slot"
    field: str  # host: one of HOST; core: "util"; gpu: a key of GPU; slot: one of SLOT
    index: int | None = None  # the core or GPU
    slot: str | None = None

    @property
    def text(self) -> str:
        if self.scope == "host":
            return self.field
        if self.scope == "core":
            return f"core{self.index}"
        if self.scope == "gpu":
            return f"gpu{self.index}.{self.field}"
        return f"slot.{self.slot}.{self.field}"

    @classmethod
    def parse(cls, text: str) -> Key | None:
        """None for a key this version does not know (a newer file): skipped, not a crash."""
        if text in HOST:
            return cls("host", text)
        if m := _CORE.fullmatch(text):
            return cls("core", "util", int(m.group(1)))
        if (m := _GPU.fullmatch(text)) and m.group(2) in GPU:
            return cls("gpu", m.group(2), int(m.group(1)))
        if (m := _SLOT.fullmatch(text)) and m.group(2) in SLOT:
            return cls("slot", m.group(2), slot=m.group(1))
        return None


def encode(snap: Snapshot) -> list[tuple[float, str, float]]:
    """The figures a finished run replays: host, per core, per GPU, per slot."""
    t = snap.t
    rows = [(t, Key("host", f).text, float(getattr(snap, f))) for f in HOST]
    rows += [(t, Key("core", "util", i).text, v) for i, v in enumerate(snap.cpu_cores)]
    for g in snap.gpus:
        rows += [(t, Key("gpu", k, g.index).text, float(getattr(g, attr))) for k, attr in GPU.items()]
    for slot, p in snap.trials.items():
        rows += [(t, Key("slot", f, slot=slot).text, float(getattr(p, f))) for f in SLOT]
    return [r for r in rows if r[2] == r[2]]


def decode(rows: list[tuple[float, str, float]]) -> list[Snapshot]:
    """Snapshots in time order, as the sampler made them (minus what was not stored)."""
    by_t: dict[float, list[tuple[Key, float]]] = {}
    for t, text, value in rows:
        key = Key.parse(text)
        if key is not None:
            by_t.setdefault(t, []).append((key, NAN if value is None else float(value)))
    return [_snapshot(t, by_t[t]) for t in sorted(by_t)]


def _snapshot(t: float, items: list[tuple[Key, float]]) -> Snapshot:
    host: dict[str, float] = {}
    cores: dict[int, float] = {}
    gpus: dict[int, dict[str, float]] = {}
    slots: dict[str, dict[str, float]] = {}
    for key, value in items:
        if key.scope == "host":
            host[key.field] = value
        elif key.scope == "core" and key.index is not None:
            cores[key.index] = value
        elif key.scope == "gpu" and key.index is not None:
            gpus.setdefault(key.index, {})[GPU[key.field]] = value
        elif key.scope == "slot" and key.slot is not None:
            slots.setdefault(key.slot, {})[key.field] = value
    used, avail = host.get("ram_used", NAN), host.get("ram_available", NAN)
    n_cores = max(cores, default=-1) + 1
    return Snapshot(t, host.get("cpu_total", NAN), tuple(cores.get(i, NAN) for i in range(n_cores)), used, avail,
                    used + avail, tuple(_gpu(i, v) for i, v in sorted(gpus.items())),
                    {s: ProcSample(**v) for s, v in slots.items()}, host.get("swap_used", NAN))


def _gpu(index: int, v: dict[str, float]) -> GpuSample:
    return GpuSample(index, util=v.get("util", NAN), mem_used=v.get("mem_used", NAN),
                     mem_total=v.get("mem_total", NAN), power_w=v.get("power_w", NAN), temp_c=v.get("temp_c", NAN))


class TelemetryRecorder:
    """Downsamples snapshots to STORE_EVERY_S and hands rows out in batches."""

    def __init__(self, every_s: float = STORE_EVERY_S) -> None:
        self.every_s = every_s
        self.last = -math.inf
        self.pending: list[tuple[float, str, float]] = []

    def add(self, snap: Snapshot) -> None:
        if snap.t - self.last >= self.every_s:
            self.last = snap.t
            self.pending += encode(snap)

    def take(self) -> list[tuple[float, str, float]]:
        rows, self.pending = self.pending, []
        return rows
