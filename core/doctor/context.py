"""What every check is given: the GPUs under test, a scratch folder, --quick, and where progress goes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gridwatch.run.devices import GpuInfo


def say(line: str) -> None:
    print(f"gridwatch doctor: {line}", file=sys.stderr, flush=True)


def nvml_index(g: GpuInfo) -> int:
    """NVML's number for the GPU (GpuInfo.index is the number gridwatch's slots and --gpus use); an
    nvml_index below 0, or none at all, means the two are the same."""
    n = getattr(g, "nvml_index", None)
    return g.index if not isinstance(n, int) or n < 0 else n


def label(g: GpuInfo) -> str:
    n = nvml_index(g)
    return f"GPU {g.index}" + (f" (NVML {n})" if n != g.index else "")


@dataclass
class Context:
    gpus: list[GpuInfo]  # the GPUs under test (all, or --gpus)
    work: Path  # scratch folder, removed at the end
    quick: bool = False
    torch_problem: str = ""  # why the workers' torch cannot use CUDA here ("" when it can)
    log: Callable[[str], None] = field(default=say)

    @property
    def first(self) -> GpuInfo:
        return self.gpus[0]

    def gpus_arg(self, gpus: list[GpuInfo] | None = None) -> str:
        """The same GPUs as `gridwatch run --gpus` names them."""
        return ",".join(str(g.index) for g in (self.gpus if gpus is None else gpus))
