"""Pure parts of the doctor's checks: parse what the tools print and compare readings within tolerances.

No NVML, no torch, no subprocess: what the probes measured comes in as plain data, so each rule is
tested on a machine without a GPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MIB = 1024**2
GIB = 1024**3
UTIL_TOL_POINTS = 5.0  # nvidia-smi and NVML utilisation may differ by this many points
MEM_TOL_FRACTION = 0.05  # ... and memory used by this fraction
MEM_SLACK_MIB = 1.0  # nvidia-smi prints whole MiB


@dataclass(frozen=True)
class SmiRow:
    """One line of `nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`; a field nvidia-smi cannot give ("[N/A]") is NaN."""

    index: int
    uuid: str
    util: float
    mem_used_mib: float
    mem_total_mib: float


def parse_smi_csv(text: str) -> list[SmiRow]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5:
            raise ValueError(f"unexpected nvidia-smi line (want 5 fields): {line.strip()!r}")
        rows.append(SmiRow(int(cells[0]), cells[1], _number(cells[2]), _number(cells[3]), _number(cells[4])))
    return rows


def _number(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan  # "[N/A]", "[Not Supported]", "[Unknown Error]"


def normalise_uuid(text: str) -> str:
    """NVML says "GPU-8f3c...-..." (or "MIG-..."), torch prints the bare UUID: compare the hex digits only."""
    t = str(text).strip().lower()
    t = re.sub(r"^(gpu|mig)-", "", t)
    return re.sub(r"[^0-9a-f]", "", t)


def same_uuid(a: str, b: str) -> bool:
    na, nb = normalise_uuid(a), normalise_uuid(b)
    return bool(na) and na == nb


def outside(value: float, lo: float, hi: float) -> float:
    """How far `value` lies outside [lo, hi] (0 inside): NVML's lowest and highest readings from just before
    nvidia-smi started to just after it ended bracket the instant nvidia-smi read the same counter."""
    lo, hi = min(lo, hi), max(lo, hi)
    return max(lo - value, value - hi, 0.0)


@dataclass
class SmiComparison:
    """NVML vs nvidia-smi over all samples: the worst differences seen and each disagreement in words."""

    compared: int = 0
    util_worst: float = 0.0  # points
    mem_worst_fraction: float = 0.0
    mem_worst_mib: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.problems


# One sample: nvidia-smi's CSV, and per NVML UUID the (util %, memory used bytes) NVML gave around it.
NvmlPair = tuple[tuple[float, float], tuple[float, float]]  # (lowest, highest) of NVML while nvidia-smi ran


def compare_sample(result: SmiComparison, smi_text: str, nvml: dict[str, NvmlPair]) -> None:
    by_uuid = {normalise_uuid(r.uuid): r for r in parse_smi_csv(smi_text)}
    for uuid, ((u0, m0), (u1, m1)) in nvml.items():
        row = by_uuid.get(normalise_uuid(uuid))
        if row is None:
            _problem(result, f"{uuid}: not in nvidia-smi's list")
            continue
        result.compared += 1
        du = outside(row.util, u0, u1) if _known(row.util, u0, u1) else math.inf
        smi_bytes = row.mem_used_mib * MIB
        dm = max(outside(smi_bytes, m0, m1) - MEM_SLACK_MIB * MIB, 0.0) if _known(smi_bytes, m0, m1) else math.inf
        frac = dm / max(smi_bytes, m0, m1, 1.0)
        result.util_worst = max(result.util_worst, du)
        result.mem_worst_fraction = max(result.mem_worst_fraction, frac)
        result.mem_worst_mib = max(result.mem_worst_mib, dm / MIB)
        if du > UTIL_TOL_POINTS:
            _problem(result, f"GPU {row.index} utilisation: nvidia-smi {row.util:g} %, NVML {u0:g}..{u1:g} %")
        if frac > MEM_TOL_FRACTION:
            _problem(result, f"GPU {row.index} memory used: nvidia-smi {row.mem_used_mib:g} MiB, "
                             f"NVML {m0 / MIB:.0f}..{m1 / MIB:.0f} MiB")


def _known(*values: float) -> bool:
    """No NaN: a reading one side could not give is a disagreement, never a match."""
    return all(v == v for v in values)


def _problem(result: SmiComparison, text: str) -> None:
    if text not in result.problems:
        result.problems.append(text)


def index_mismatches(smi_text: str, nvml_uuids: dict[int, str]) -> list[str]:
    """nvidia-smi's index -> UUID against NVML's: both number GPUs the same way, or something is off."""
    out = []
    smi = {r.index: r.uuid for r in parse_smi_csv(smi_text)}
    for index, uuid in sorted(nvml_uuids.items()):
        if index not in smi:
            out.append(f"NVML GPU {index} missing from nvidia-smi")
        elif not same_uuid(smi[index], uuid):
            out.append(f"GPU {index}: NVML {uuid}, nvidia-smi {smi[index]}")
    return out


def peak_concurrency(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (one ending as another starts counts once)."""
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def slot_gpu(slot_id: str) -> int | None:
    """"gpu1" and "gpu1.2" (a second or third slot on GPU 1) -> 1; CPU slots -> None."""
    m = re.fullmatch(r"gpu(\d+)(?:\.\d+)?", slot_id)
    return int(m.group(1)) if m else None


def mib(n_bytes: float) -> str:
    return "-" if n_bytes != n_bytes else f"{n_bytes / MIB:,.0f} MiB"


def gib(n_bytes: float) -> str:
    return "-" if n_bytes != n_bytes else f"{n_bytes / GIB:.2f} GiB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"
